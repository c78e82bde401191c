//! `ticklane gen`.

use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use ticklane_capture::{Format, OutputFile};
use ticklane_lab::generate::{self, Damage, FeedConfig};
use ticklane_lab::market::{MarketConfig, Mix};
use ticklane_protocols::itch::MESSAGE_TYPES;
use ticklane_protocols::moldudp64::Session;

use super::GroupPort;
use super::args::FormatArg;

/// Generate a deterministic synthetic NASDAQ TotalView-ITCH 5.0 feed.
///
/// Many stocks, every message type, orders that live, execute, shrink, get
/// replaced and die consistently, in the mix of a real NASDAQ day. Output is
/// MoldUDP64 in Ethernet/IPv4/UDP multicast frames (pcap or pcapng), or a
/// BinaryFILE. The same --seed gives the same bytes. Memory stays bounded for
/// any --messages; a progress bar shows on a terminal.
///
/// Example: ticklane gen --messages 1000000 --stocks 500 -o feed.pcap
#[derive(Debug, clap::Args)]
pub(crate) struct GenArgs {
    /// Output file.
    #[arg(short, long)]
    output: PathBuf,
    /// Output format [default: from the extension (.pcap, .pcapng, .itch/.bin), else pcap].
    #[arg(long, value_enum)]
    format: Option<FormatArg>,
    /// Random seed.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Number of stocks (locate codes 1..=N).
    #[arg(long, default_value_t = 100, value_parser = clap::value_parser!(u16).range(1..=20_000))]
    stocks: u16,
    /// Number of messages in all.
    #[arg(long, default_value_t = 1_000_000)]
    messages: u64,
    /// Most orders resting at once (bounds memory).
    #[arg(long, default_value_t = 200_000)]
    max_live_orders: usize,
    /// Which live orders cancels, executions, deletes and replaces name:
    /// mostly the newest (recent), or any with equal odds, references
    /// stepping by 1 to 4 (uniform).
    #[arg(long, value_enum, default_value_t = MixArg::Recent)]
    mix: MixArg,
    /// Orders placed before the mix starts: a standing population, as on a
    /// real day (at most --max-live-orders).
    #[arg(long, default_value_t = 0)]
    resting: usize,
    /// MoldUDP64 session name (at most 10 ASCII characters).
    #[arg(long, default_value = "TICKLANE01")]
    session: String,
    /// Sequence number of the first message.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u64).range(1..))]
    first_seq: u64,
    /// Largest UDP payload in bytes, MoldUDP64 header included.
    #[arg(long, default_value_t = 1400)]
    max_payload: usize,
    /// Most messages per packet.
    #[arg(long, default_value_t = 65_534, value_parser = clap::value_parser!(u16).range(1..=65_534))]
    max_messages: u16,
    /// Send a heartbeat after every N packets (0: never).
    #[arg(long, default_value_t = 0)]
    heartbeat_every: u64,
    /// Destination multicast group and port.
    #[arg(long, default_value = "239.1.1.1:26477")]
    group: GroupPort,
    /// Source IPv4 address of the frames.
    #[arg(long, default_value = "198.18.0.1")]
    source: Ipv4Addr,
    /// Also write a damaged copy of the packet stream here (same format).
    #[arg(long)]
    damaged: Option<PathBuf>,
    /// Probability of dropping a packet in the damaged copy.
    #[arg(long, default_value_t = 0.0, requires = "damaged", value_parser = probability)]
    drop: f64,
    /// Probability of duplicating a packet in the damaged copy.
    #[arg(long, default_value_t = 0.0, requires = "damaged", value_parser = probability)]
    dup: f64,
    /// Probability of swapping a packet with the next in the damaged copy.
    #[arg(long, default_value_t = 0.0, requires = "damaged", value_parser = probability)]
    reorder: f64,
    /// Seed of the damage [default: --seed]. A/B lines of one feed (same
    /// --seed) lose different packets with different damage seeds.
    #[arg(long, requires = "damaged")]
    damage_seed: Option<u64>,
    /// Write the books the feed must leave (canonical `ticklane book` lines) here.
    #[arg(long)]
    expect_book: Option<PathBuf>,
    /// Write what was generated (per-type counts, packets, damage) as JSON here.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Print what was generated as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

/// `--mix`.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum MixArg {
    Recent,
    Uniform,
}

fn probability(s: &str) -> Result<f64, String> {
    let p: f64 = s.parse().map_err(|_| format!("'{s}' is not a number"))?;
    if (0.0..=1.0).contains(&p) {
        Ok(p)
    } else {
        Err(format!("{p} is not a probability in [0, 1]"))
    }
}

pub(crate) fn run(args: &GenArgs) -> anyhow::Result<ExitCode> {
    let session = Session::from_name(args.session.as_bytes())
        .filter(|_| args.session.is_ascii())
        .with_context(|| {
            format!(
                "--session '{}' must be at most 10 ASCII characters",
                args.session
            )
        })?;
    let format = args
        .format
        .map(Format::from)
        .or_else(|| Format::from_extension(&args.output))
        .unwrap_or(Format::Pcap);
    if args.max_live_orders == 0 {
        bail!("--max-live-orders must be at least 1");
    }
    if let Some(source) = args.group.source {
        bail!("--group takes GROUP:PORT; the frames' source address is --source {source}");
    }
    let market = MarketConfig {
        seed: args.seed,
        stocks: args.stocks,
        messages: args.messages,
        max_live_orders: args.max_live_orders,
        mix: match args.mix {
            MixArg::Recent => Mix::Recent,
            MixArg::Uniform => Mix::Uniform,
        },
        resting: args.resting,
    };
    let feed = FeedConfig {
        session,
        first_seq: args.first_seq,
        max_payload: args.max_payload,
        max_messages: args.max_messages,
        heartbeat_every: args.heartbeat_every,
        group: args.group.group.octets(),
        port: args.group.port,
        source: args.source.octets(),
        output: args.output.clone(),
        format,
        damage: args.damaged.as_ref().map(|output| Damage {
            output: output.clone(),
            drop: args.drop,
            dup: args.dup,
            reorder: args.reorder,
            seed: args.damage_seed.unwrap_or(args.seed),
        }),
        expect_book: args.expect_book.clone(),
    };
    // Opened before generating: a summary that cannot be written fails now,
    // not after the whole feed, and the feed files are then not created.
    let summary = args
        .summary_json
        .as_deref()
        .map(OutputFile::create)
        .transpose()?;
    let bar = super::progress_bar(args.messages, "generating");
    let started = std::time::Instant::now();
    let report = generate::generate(market, &feed, |done| bar.set_position(done))?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "ticklane gen: {} messages in {} packets to {} ({:?}) in {secs:.1} s ({:.2} M messages/s); next seq {}",
        report.messages,
        report.packets,
        args.output.display(),
        format,
        report.messages as f64 / secs.max(1e-9) / 1e6,
        report.next_seq
    );
    if let Some(d) = &feed.damage {
        eprintln!(
            "ticklane gen: damaged copy {}: {} dropped, {} duplicated, {} reordered",
            d.output.display(),
            report.dropped,
            report.duplicated,
            report.reordered
        );
    }
    let missing: Vec<String> = MESSAGE_TYPES
        .iter()
        .zip(report.by_type)
        .filter(|(_, n)| *n == 0)
        .map(|(t, _)| char::from(t.tag).to_string())
        .collect();
    if !missing.is_empty() {
        eprintln!(
            "ticklane gen: note: types {} are absent (the feed is too short for all 23; \
             use more --messages)",
            missing.join(" ")
        );
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report.to_json())?);
    }
    if let Some(mut out) = summary {
        serde_json::to_writer_pretty(&mut out, &report.to_json())
            .with_context(|| format!("writing {}", out.path().display()))?;
        out.commit()?;
    }
    Ok(ExitCode::SUCCESS)
}
