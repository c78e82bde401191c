//! `ticklane ctl`: the operator's gRPC client of a running `ticklane run`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{Context, bail};
use serde_json::json;
use ticklane_control::proto::{self, appliance_client::ApplianceClient};
use tonic::metadata::MetadataValue;
use tonic::service::Interceptor;

/// Ask a running appliance (ticklane run --grpc ADDR) over gRPC.
///
/// Reads status, counters, feeds and book snapshots; subscribes and
/// unsubscribes feeds live (with --token-file); streams BBO changes,
/// trades, VWAP and session events; reads and changes the settings that
/// apply live (config).
#[derive(Debug, clap::Args)]
pub(crate) struct CtlArgs {
    /// The appliance's gRPC address (ticklane run --grpc).
    #[arg(long, default_value = "127.0.0.1:50051", global = true)]
    grpc: SocketAddr,
    /// The token file the appliance was started with (for subscribe,
    /// unsubscribe and config set).
    #[arg(long, value_name = "FILE", global = true)]
    token_file: Option<PathBuf>,
    /// Print JSON (book: the canonical book line of `ticklane book`).
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: CtlCommand,
}

#[derive(Debug, clap::Subcommand)]
enum CtlCommand {
    /// Version, interface, receive path, sessions, feeds.
    Status,
    /// Every counter.
    Stats,
    /// The feeds received now.
    Feeds,
    /// Receive one more feed, live (GROUP:PORT[@SOURCE]).
    Subscribe {
        /// The feed.
        feed: String,
    },
    /// Stop receiving a feed, live (GROUP:PORT).
    Unsubscribe {
        /// The feed.
        feed: String,
    },
    /// A snapshot of one stock's book.
    Book {
        /// The stock's symbol.
        stock: String,
        /// Best N levels per side (default: the whole book).
        #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
        depth: Option<u32>,
        /// Take a snapshot every second until interrupted.
        #[arg(long)]
        watch: bool,
    },
    /// Follow a stream of events until interrupted (or --count).
    Stream {
        /// What to follow.
        #[arg(value_enum)]
        what: StreamKind,
        /// Only this stock (symbol).
        #[arg(long)]
        stock: Option<String>,
        /// Stop after this many updates.
        #[arg(long)]
        count: Option<u64>,
    },
    /// The settings that change while the appliance runs (kept across
    /// restarts when it runs with --state).
    Config {
        #[command(subcommand)]
        what: ConfigCommand,
    },
}

#[derive(Debug, clap::Subcommand)]
enum ConfigCommand {
    /// Every setting: value, default, what it does.
    List,
    /// One setting's value.
    Get {
        /// The setting (see `list`).
        key: String,
    },
    /// Changes a setting live (needs --token-file).
    Set {
        /// The setting (see `list`).
        key: String,
        /// Its new value (durations as 500ms, 2s, 1m; 0 for off).
        value: String,
    },
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum StreamKind {
    Bbo,
    Trades,
    Vwap,
    Events,
}

/// Adds the bearer token to every call.
#[derive(Clone)]
pub(crate) struct Bearer(Option<MetadataValue<tonic::metadata::Ascii>>);

impl Interceptor for Bearer {
    fn call(
        &mut self,
        mut request: tonic::Request<()>,
    ) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            request.metadata_mut().insert("authorization", v.clone());
        }
        Ok(request)
    }
}

/// A client of the appliance's gRPC API.
pub(crate) type Client = ApplianceClient<
    tonic::service::interceptor::InterceptedService<tonic::transport::Channel, Bearer>,
>;

pub(crate) fn run(args: &CtlArgs) -> anyhow::Result<ExitCode> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    runtime.block_on(ask(args))
}

async fn connect(args: &CtlArgs) -> anyhow::Result<Client> {
    client(
        args.grpc,
        args.token_file.as_deref(),
        Duration::from_secs(3),
        Duration::from_secs(15),
    )
    .await
}

/// A client of the appliance at `grpc`, with the token of `token_file` (if
/// any) on every call; `connect` bounds the connection, `call` each call.
pub(crate) async fn client(
    grpc: SocketAddr,
    token_file: Option<&std::path::Path>,
    connect: Duration,
    call: Duration,
) -> anyhow::Result<Client> {
    let token = match token_file {
        Some(p) => {
            let t = std::fs::read_to_string(p)
                .with_context(|| format!("reading the token file {}", p.display()))?;
            Some(
                MetadataValue::try_from(format!("Bearer {}", t.trim()))
                    .context("the token file must hold one printable token")?,
            )
        }
        None => None,
    };
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{grpc}"))?
        .connect_timeout(connect)
        .timeout(call)
        .connect()
        .await
        .with_context(|| {
            format!(
                "cannot reach the appliance at {grpc}: is `ticklane run --grpc {grpc}` running there?"
            )
        })?;
    Ok(ApplianceClient::with_interceptor(channel, Bearer(token))
        .max_decoding_message_size(64 << 20))
}

/// A refusal as the appliance worded it.
pub(crate) fn refused(e: tonic::Status) -> anyhow::Error {
    anyhow::anyhow!("the appliance refused ({:?}): {}", e.code(), e.message())
}

async fn ask(args: &CtlArgs) -> anyhow::Result<ExitCode> {
    let mut c = connect(args).await?;
    match &args.command {
        CtlCommand::Status => {
            let s = c
                .get_status(proto::GetStatusRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            if args.json {
                println!("{}", status_json(&s));
            } else {
                println!(
                    "ticklane {} on {} queue {} via {}{}, up {:.1} s, {}",
                    s.version,
                    s.interface,
                    s.queue,
                    s.mode,
                    if s.xdp_mode.is_empty() {
                        String::new()
                    } else {
                        format!(" ({} XDP, {} bind)", s.xdp_mode, s.bind)
                    },
                    s.uptime_ns as f64 / 1e9,
                    if s.stale { "STALE" } else { "fresh" }
                );
                if !s.rx_timestamps.is_empty() {
                    println!("receive times: {}", s.rx_timestamps);
                }
                for x in &s.sessions {
                    println!(
                        "session {}: next seq {}{}{}",
                        x.session,
                        x.next_seq,
                        if x.stale { ", stale" } else { "" },
                        if x.ended { ", ended" } else { "" }
                    );
                }
                print_feeds(&s.feeds);
            }
        }
        CtlCommand::Stats => {
            let s = c
                .get_stats(proto::GetStatsRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            if args.json {
                let counters: Vec<_> = s.counters.iter().map(|k| json!({"name": k.name, "value": k.value, "feed": k.feed, "session": k.session})).collect();
                let histograms: Vec<_> = s.histograms.iter().map(histogram_json).collect();
                println!(
                    "{}",
                    json!({"uptime_ns": s.uptime_ns, "counters": counters, "histograms": histograms})
                );
            } else {
                for h in &s.histograms {
                    let us = |ns: u64| ns as f64 / 1e3;
                    println!(
                        "{:<32} {:>14} p50 < {:.2} us, p99 < {:.2} us, p99.9 < {:.2} us{}",
                        h.name,
                        h.count,
                        us(h.p50_ns),
                        us(h.p99_ns),
                        us(h.p999_ns),
                        if h.source.is_empty() {
                            String::new()
                        } else {
                            format!(" ({})", h.source)
                        }
                    );
                }
                for k in &s.counters {
                    let labels = [&k.session, &k.feed]
                        .iter()
                        .filter(|l| !l.is_empty())
                        .map(|l| l.as_str())
                        .collect::<Vec<_>>()
                        .join(" ");
                    println!("{:<32} {:>14} {labels}", k.name, k.value);
                }
            }
        }
        CtlCommand::Feeds => {
            let f = c
                .list_feeds(proto::ListFeedsRequest {})
                .await
                .map_err(refused)?
                .into_inner();
            if args.json {
                println!(
                    "{}",
                    json!(f.feeds.iter().map(feed_json).collect::<Vec<_>>())
                );
            } else {
                print_feeds(&f.feeds);
            }
        }
        CtlCommand::Config { what } => config(&mut c, what, args).await?,
        CtlCommand::Subscribe { feed } | CtlCommand::Unsubscribe { feed } => {
            if args.token_file.is_none() {
                bail!(
                    "subscribe and unsubscribe need the appliance's token: give --token-file FILE"
                );
            }
            let request = proto::FeedRequest { feed: feed.clone() };
            let sub = matches!(args.command, CtlCommand::Subscribe { .. });
            let r = if sub {
                c.subscribe(request).await
            } else {
                c.unsubscribe(request).await
            };
            let r = r.map_err(refused)?.into_inner();
            if args.json {
                println!(
                    "{}",
                    json!({"feed": r.feed, "line": r.line, "subscribed": sub})
                );
            } else {
                println!(
                    "{} {} (feed line {})",
                    if sub { "subscribed" } else { "unsubscribed" },
                    r.feed,
                    r.line
                );
            }
        }
        CtlCommand::Book {
            stock,
            depth,
            watch,
        } => loop {
            let request = proto::GetBookRequest {
                stock: Some(proto::get_book_request::Stock::Symbol(stock.clone())),
                depth: depth.unwrap_or(0),
            };
            let b = c.get_book(request).await.map_err(refused)?.into_inner();
            print_book(&b, args.json);
            if !watch {
                break;
            }
            tokio::time::sleep(Duration::from_secs(1)).await;
        },
        CtlCommand::Stream { what, stock, count } => {
            let request = proto::StreamRequest {
                stock: stock.clone().unwrap_or_default(),
                disconnect_when_behind: false,
            };
            let limit = count.unwrap_or(u64::MAX);
            match what {
                StreamKind::Bbo => follow(c.stream_bbo(request).await, limit).await?,
                StreamKind::Trades => follow(c.stream_trades(request).await, limit).await?,
                StreamKind::Vwap => follow(c.stream_vwap(request).await, limit).await?,
                StreamKind::Events => follow(c.stream_session_events(request).await, limit).await?,
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// A book as the canonical line (`json`) or as a ladder.
fn print_book(b: &proto::Book, json: bool) {
    if json {
        print!("{}", String::from_utf8_lossy(&b.canonical()));
        return;
    }
    println!(
        "{} (locate {}) at {} seq {}{}",
        b.symbol,
        b.locate,
        b.session,
        b.seq,
        if b.stale { ", STALE" } else { "" }
    );
    let side = |l: Option<&proto::Level>| {
        l.map(|l| format!("{:>10} @ {:>12.4}", l.shares, f64::from(l.price) / 1e4))
            .unwrap_or_default()
    };
    for i in 0..b.bids.len().max(b.asks.len()) {
        println!("{:<30} | {}", side(b.bids.get(i)), side(b.asks.get(i)));
    }
}

/// Prints each update as it comes (its Debug form: every field named).
async fn follow<T: std::fmt::Debug>(
    opened: Result<tonic::Response<tonic::Streaming<T>>, tonic::Status>,
    limit: u64,
) -> anyhow::Result<()> {
    let mut stream = opened.map_err(refused)?.into_inner();
    let mut n = 0;
    while n < limit {
        match stream.message().await.map_err(refused)? {
            Some(update) => println!("{update:?}"),
            None => break,
        }
        n += 1;
    }
    Ok(())
}

/// `config list|get|set`.
async fn config(c: &mut Client, what: &ConfigCommand, args: &CtlArgs) -> anyhow::Result<()> {
    let entries = match what {
        ConfigCommand::List => {
            let l = c.list_config(proto::ListConfigRequest {}).await;
            l.map_err(refused)?.into_inner().entries
        }
        ConfigCommand::Get { key } => {
            let e = c.get_config(proto::ConfigKey { key: key.clone() }).await;
            vec![e.map_err(refused)?.into_inner()]
        }
        ConfigCommand::Set { key, value } => {
            if args.token_file.is_none() {
                bail!("config set needs the appliance's token: give --token-file FILE");
            }
            let request = proto::SetConfigRequest {
                key: key.clone(),
                value: value.clone(),
            };
            let e = c.set_config(request).await.map_err(refused)?.into_inner();
            if !args.json && !e.stored {
                eprintln!(
                    "ticklane ctl: {} applies now, but not after a restart: the appliance \
                     runs without --state",
                    e.key
                );
            }
            vec![e]
        }
    };
    for e in &entries {
        if args.json {
            println!(
                "{}",
                json!({"key": e.key, "value": e.value, "default": e.default, "stored": e.stored, "help": e.help})
            );
        } else if matches!(what, ConfigCommand::List) {
            println!(
                "{} = {} (default {}): {}",
                e.key, e.value, e.default, e.help
            );
        } else {
            println!("{} = {}", e.key, e.value);
        }
    }
    Ok(())
}

fn histogram_json(h: &proto::Histogram) -> serde_json::Value {
    json!({
        "name": h.name, "count": h.count, "sum_ns": h.sum_ns, "p50_ns": h.p50_ns,
        "p99_ns": h.p99_ns, "p999_ns": h.p999_ns, "source": h.source,
        "buckets": h.buckets.iter().map(|b| json!([b.le_ns, b.count])).collect::<Vec<_>>(),
    })
}

fn feed_json(f: &proto::Feed) -> serde_json::Value {
    json!({"feed": f.feed, "source": f.source, "line": f.line, "packets": f.packets, "duplicates": f.duplicates, "gaps": f.gaps, "down": f.down})
}

fn status_json(s: &proto::Status) -> serde_json::Value {
    json!({
        "version": s.version, "uptime_ns": s.uptime_ns, "interface": s.interface, "queue": s.queue,
        "mode": s.mode, "xdp_mode": s.xdp_mode, "bind": s.bind, "stale": s.stale,
        "rx_timestamps": s.rx_timestamps,
        "sessions": s.sessions.iter().map(|x| json!({"session": x.session, "next_seq": x.next_seq, "stale": x.stale, "ended": x.ended, "known_end": x.known_end})).collect::<Vec<_>>(),
        "feeds": s.feeds.iter().map(feed_json).collect::<Vec<_>>(),
    })
}

fn print_feeds(feeds: &[proto::Feed]) {
    for f in feeds {
        let from = if f.source.is_empty() {
            String::new()
        } else {
            format!("@{}", f.source)
        };
        println!(
            "line {}: {}{from}: {} packets, {} duplicates, {} gaps{}",
            f.line,
            f.feed,
            f.packets,
            f.duplicates,
            f.gaps,
            if f.down { ", DOWN" } else { "" }
        );
    }
}
