//! `ticklane book`.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use ticklane_appliance::bus::BusConfig;

use super::replay_cmd::{PipelineArgs, Speed, run_pipeline};

/// Print every stock's order book after a whole capture, as canonical JSON Lines.
///
/// The capture runs through the same pipeline as the live path: MoldUDP64
/// sequencing (duplicates dropped, reordering undone, gaps reported and,
/// with --retrans, recovered), then full-depth books with exact ITCH 5.0
/// semantics. One line per stock whose book is not empty, by stock_locate:
/// {"stock":"AAPL","bids":[[price,shares],…],"asks":[…]}, raw Price(4)
/// integers, best levels first.
#[derive(Debug, clap::Args)]
pub(crate) struct BookArgs {
    /// Capture file (pcap, pcapng or BinaryFILE).
    file: PathBuf,
    /// Only this stock (symbol, e.g. AAPL).
    #[arg(long)]
    stock: Option<String>,
    /// Keep the best N levels per side.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    depth: Option<u64>,
    #[command(flatten)]
    pipeline: PipelineArgs,
}

pub(crate) fn run(args: &BookArgs) -> anyhow::Result<ExitCode> {
    // Only the books are printed: no bus (no audit copy, no BBO events).
    let run = run_pipeline(
        &args.file,
        &args.pipeline,
        Speed::Max,
        false,
        BusConfig::OFF,
    )?;
    let mut out = Vec::new();
    let depth = args.depth.map(|d| usize::try_from(d).unwrap_or(usize::MAX));
    run.finished.pipeline.books.write_canonical(
        &mut out,
        depth,
        args.stock.as_deref().map(str::as_bytes),
    );
    super::report::warn("ticklane book", &run.summary);
    if let Some(stock) = &args.stock
        && out.is_empty()
    {
        eprintln!("ticklane book: no resting orders for stock {stock}");
    }
    match std::io::stdout().lock().write_all(&out) {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => {}
        r => r.context("writing the books")?,
    }
    Ok(ExitCode::SUCCESS)
}
