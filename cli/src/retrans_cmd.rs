//! `ticklane retrans-server`.

use std::net::{SocketAddr, UdpSocket};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::Ordering;

use anyhow::{Context, bail};
use serde_json::{Value, json};
use ticklane_lab::retrans::{self, Allowlist, Cidr, LogSampler, RetransStore, ServeConfig, Server};

/// Serve MoldUDP64 re-requests from a capture (for labs, tests and demos).
///
/// Loads the messages of the capture's first session and answers request
/// packets (session, sequence number, count) with downstream packets
/// carrying those messages. Safe to expose on a shared network:
///
/// - Only the allowlist is answered (--allow; without it, loopback and the
///   subnet configured on the --listen address, or loopback alone when
///   listening on 0.0.0.0). Other senders are counted (`unlisted`) and never
///   answered, so the server cannot reflect traffic at anyone else.
///
/// - One answer is at most --max-count messages in at most --max-packets
///   packets of at most --max-payload bytes. A request is a 62-byte frame
///   (Ethernet, IPv4, UDP headers and 20 bytes), its answer at most
///   max-packets × (max-payload + 42) frame bytes. The defaults answer the
///   1,000 messages the ticklane client asks for at most, whole (40 packets
///   hold 1,000 ITCH messages of any type): about 32 KB for a day's mix,
///   530× the request frame, 57,680 bytes (930×) at worst. Smaller limits give a
///   smaller bound, but answers cut short make a client ask again.
///
/// - What bounds a flood is the bucket: each client address has one of
///   --client-burst bytes (UDP payload) refilled at --client-rate bytes per
///   second, so however many requests are made in its name it receives at
///   most burst + rate × seconds (by default 64 KiB + 4 MB/s: 100 requests
///   for 65,535 messages sent at once draw two whole answers, 63 KB, 10×
///   their frames, where they drew 3.2 MB before there were limits). An
///   answer is sent whole or refused (`rate_limited`), so a client's retry
///   gets it whole. Size the bucket for the loss you expect: a client that
///   falls behind asks for all it missed within its retry budget
///   (scripts/demo.sh, 2% loss of a 1.1 Gbit/s feed, gives 1 MiB and
///   16 MB/s). At most --max-clients addresses are tracked; when every one
///   still has a partly spent bucket, a new address is refused
///   (`too_many_clients`), so all clients together receive at most
///   max-clients × (burst + rate × seconds).
///
/// Refusals are logged on stderr, the first --log-lines of each second one
/// by one, the rest summed up by reason once a second. At exit a summary
/// gives every counter (also as JSON with --summary-json). Stops on
/// SIGINT/SIGTERM or after --duration seconds.
#[derive(Debug, clap::Args)]
pub(crate) struct RetransArgs {
    /// Capture holding the feed (pcap or pcapng).
    file: PathBuf,
    /// Address to listen on, e.g. 198.18.0.1:9000.
    #[arg(long)]
    listen: SocketAddr,
    /// Answer requests from this network (ADDR/PREFIX, or ADDR for one
    /// host); repeat for more. Default: loopback and the listen address's
    /// subnet.
    #[arg(long, value_name = "CIDR")]
    allow: Vec<Cidr>,
    /// Most messages answered per request.
    #[arg(long, default_value_t = 1000, value_parser = clap::value_parser!(u16).range(1..))]
    max_count: u16,
    /// Most packets sent per request.
    #[arg(long, default_value_t = 40, value_parser = clap::value_parser!(u16).range(1..))]
    max_packets: u16,
    /// Largest UDP payload sent, in bytes.
    #[arg(long, default_value_t = 1400, value_parser = clap::value_parser!(u16).range(100..=65_000))]
    max_payload: u16,
    /// Answer bytes (UDP payload) per second each client address may receive.
    #[arg(long, default_value_t = 4_000_000)]
    client_rate: u64,
    /// Answer bytes a client address may receive at once; at least one
    /// whole answer (max-packets × max-payload).
    #[arg(long, default_value_t = 65_536, value_parser = clap::value_parser!(u64).range(1..=1 << 30))]
    client_burst: u64,
    /// Client addresses tracked at once.
    #[arg(long, default_value_t = 64, value_parser = clap::value_parser!(u16).range(1..=4096))]
    max_clients: u16,
    /// Refusals logged one by one per second (the rest are counted).
    #[arg(long, default_value_t = 10)]
    log_lines: u32,
    /// Write the summary at exit as JSON to this file.
    #[arg(long)]
    summary_json: Option<PathBuf>,
    /// Print the summary at exit as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// Stop after this many seconds (default: run until stopped).
    #[arg(long)]
    duration: Option<u64>,
}

const LOG_INTERVAL_NS: u64 = 1_000_000_000;

pub(crate) fn run(args: &RetransArgs) -> anyhow::Result<ExitCode> {
    let largest_answer = u64::from(args.max_packets) * u64::from(args.max_payload);
    if args.client_burst < largest_answer {
        bail!(
            "--client-burst {} cannot pay for a whole answer of --max-packets {} × --max-payload {} \
             = {largest_answer} bytes: raise it or lower those",
            args.client_burst,
            args.max_packets,
            args.max_payload
        );
    }
    let store = RetransStore::load(&args.file)?;
    let socket = UdpSocket::bind(args.listen).with_context(|| {
        format!(
            "cannot listen on {} (is the address configured here and free?)",
            args.listen
        )
    })?;
    let allow = if args.allow.is_empty() {
        Allowlist::local(args.listen.ip()).context("listing this host's addresses")?
    } else {
        Allowlist::new(args.allow.clone())
    };
    let (first, end) = store.range();
    eprintln!(
        "ticklane retrans-server: session \"{}\", messages {first}..{end}, listening on {}, answering {allow}{}",
        String::from_utf8_lossy(store.session().trimmed()),
        socket.local_addr()?,
        if args.allow.is_empty() {
            " (the default: loopback and the listen subnet; --allow to choose)"
        } else {
            ""
        }
    );
    let stop = super::stop_flag()?;
    if let Some(secs) = args.duration {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_secs(secs));
            stop.store(true, Ordering::Relaxed);
        });
    }
    let cfg = ServeConfig {
        max_count: args.max_count,
        max_packets: args.max_packets,
        max_payload: usize::from(args.max_payload),
        client_rate: args.client_rate,
        client_burst: args.client_burst,
        max_clients: usize::from(args.max_clients),
    };
    let mut server = Server::new(&store, cfg, allow);
    let mut sampler = LogSampler::new(args.log_lines, LOG_INTERVAL_NS);
    retrans::serve(&socket, &mut server, &mut sampler, &stop, |line| {
        eprintln!("ticklane retrans-server: {line}");
    })?;
    let stats = server.stats();
    eprintln!(
        "ticklane retrans-server: {} requests received; {} answered with {} messages in {} packets ({} bytes); \
         {} refused ({}); cut short: {} by --max-count, {} by --max-packets, {} by the client rate; \
         {} failed sends; clients tracked: {}",
        stats.received,
        stats.answered,
        stats.messages,
        stats.packets,
        stats.bytes,
        stats.refused.total(),
        stats.refused,
        stats.clamped.max_count,
        stats.clamped.max_packets,
        stats.clamped.rate,
        stats.send_failures,
        server.clients(),
    );
    let summary = summary_json(&server);
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
    }
    if let Some(path) = &args.summary_json {
        std::fs::write(path, serde_json::to_vec_pretty(&summary)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(ExitCode::SUCCESS)
}

fn summary_json(server: &Server<'_>) -> Value {
    let stats = server.stats();
    let mut refused: serde_json::Map<String, Value> = stats
        .refused
        .iter()
        .map(|(reason, n)| (reason.name().to_owned(), n.into()))
        .collect();
    refused.insert("total".into(), stats.refused.total().into());
    json!({
        "received": stats.received,
        "answered": stats.answered,
        "messages": stats.messages,
        "packets": stats.packets,
        "bytes": stats.bytes,
        "send_failures": stats.send_failures,
        "refused": refused,
        "clamped": {
            "max_count": stats.clamped.max_count,
            "max_packets": stats.clamped.max_packets,
            "rate": stats.clamped.rate,
        },
        "clients": server.clients(),
        "allow": server.allowlist().nets().iter().map(ToString::to_string).collect::<Vec<_>>(),
    })
}
