//! `ticklane retrans-server`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use ticklane_lab::retrans::{self, RetransStore, ServeConfig};

/// Serve MoldUDP64 re-requests from a capture (for labs, tests and demos).
///
/// Loads the messages of the capture's first session, then answers every
/// request packet (session, sequence number, count) with downstream packets
/// carrying those messages, at most --max-count per request. Bad requests are
/// logged on stderr (the first 100). Stops on SIGINT/SIGTERM or after
/// --duration seconds.
#[derive(Debug, clap::Args)]
pub(crate) struct RetransArgs {
    /// Capture holding the feed (pcap or pcapng).
    file: PathBuf,
    /// Address to listen on, e.g. 198.18.0.2:9000.
    #[arg(long)]
    listen: SocketAddr,
    /// Most messages answered per request.
    #[arg(long, default_value_t = 1000)]
    max_count: u16,
    /// Largest UDP payload sent.
    #[arg(long, default_value_t = 1400)]
    max_payload: usize,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(long)]
    duration: Option<u64>,
}

const MAX_LOGGED: u64 = 100;

pub(crate) fn run(args: &RetransArgs) -> anyhow::Result<ExitCode> {
    let store = RetransStore::load(&args.file)?;
    let socket = UdpSocket::bind(args.listen).with_context(|| {
        format!(
            "cannot listen on {} (is the address configured here and free?)",
            args.listen
        )
    })?;
    let (first, end) = store.range();
    eprintln!(
        "ticklane retrans-server: session \"{}\", messages {first}..{end}, listening on {}",
        String::from_utf8_lossy(store.session().trimmed()),
        socket.local_addr()?
    );
    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, stop.clone())
            .context("installing the signal handler")?;
    }
    if let Some(secs) = args.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let cfg = ServeConfig {
        max_count: args.max_count.max(1),
        max_payload: args.max_payload.clamp(100, 65_000),
    };
    let mut logged = 0u64;
    let stats = retrans::serve(&socket, &store, &cfg, &stop, |peer, refusal| {
        logged += 1;
        if logged <= MAX_LOGGED {
            eprintln!("ticklane retrans-server: refused a request from {peer}: {refusal:?}");
        }
    })?;
    eprintln!(
        "ticklane retrans-server: {} requests answered with {} messages in {} packets; {} refused, {} clamped",
        stats.requests, stats.messages, stats.packets, stats.bad_requests, stats.clamped
    );
    Ok(ExitCode::SUCCESS)
}
