//! Rust clients (tonic) against the control plane of a poller running in
//! this process on a generated feed: what they read equals what the
//! generator says, what they must not do is refused with the right code and
//! a message, and a stream client that never reads is told, in its stream,
//! exactly how many events it lost. No root needed (no network namespace:
//! a capture is the source, loopback the wire).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::{BusConfig, Drain, Event, TradeEvent, TradeKind};
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Poller, PollerConfig};
use ticklane_appliance::source::memory::MemorySource;
use ticklane_appliance::source::{
    Arrival, Polled, Source, SourceCounters, SourceError, Verdict, Wait,
};
use ticklane_capture::{Format, Record};
use ticklane_control::feeds::{Feeds, Steer};
use ticklane_control::line::LineLimits;
use ticklane_control::proto::appliance_client::ApplianceClient;
use ticklane_control::proto::{self, get_book_request::Stock};
use ticklane_control::{ApplianceInfo, ControlConfig, ControlPlane, Limits};
use ticklane_lab::generate::{FeedConfig, generate};
use ticklane_lab::market::{MarketConfig, Mix};
use ticklane_protocols::moldudp64::Session;
use ticklane_protocols::wire;
use tonic::Code;
use tonic::transport::Channel;

const MESSAGES: u64 = 20_000;
const TOKEN: &str = "tok";

/// A feed in memory, handed over a few packets at a time once `go` is
/// set, then idle like a quiet live feed.
struct Gated {
    packets: MemorySource,
    go: &'static AtomicBool,
    ended: bool,
}

impl Source for Gated {
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        wait: Wait,
        f: F,
    ) -> Result<Polled, SourceError> {
        std::thread::sleep(Duration::from_micros(200));
        if self.ended || !self.go.load(Ordering::Relaxed) {
            return Ok(Polled::Arrivals(0));
        }
        let polled = self.packets.poll(wait, f)?;
        self.ended = polled == Polled::End;
        Ok(match polled {
            Polled::End => Polled::Arrivals(0),
            arrivals => arrivals,
        })
    }

    fn counters(&self) -> SourceCounters {
        self.packets.counters()
    }
}

/// A poller on a generated feed with its control plane on loopback.
struct Running {
    plane: Option<ControlPlane>,
    stop: &'static AtomicBool,
    /// Set to let the feed flow.
    go: &'static AtomicBool,
    poller: Option<std::thread::JoinHandle<()>>,
    /// The generator's books, canonical lines.
    expected: String,
    _dir: tempfile::TempDir,
}

impl Drop for Running {
    fn drop(&mut self) {
        self.plane.take();
        self.stop.store(true, Ordering::Relaxed);
        if let Some(p) = self.poller.take() {
            let _ = p.join();
        }
    }
}

impl Running {
    fn plane(&self) -> &ControlPlane {
        self.plane.as_ref().unwrap()
    }

    async fn client(&self) -> ApplianceClient<Channel> {
        let addr = self.plane().bound.grpc.unwrap();
        ApplianceClient::connect(format!("http://{addr}"))
            .await
            .unwrap()
    }
}

/// Starts the appliance; the feed flows at once, or when `go` is set.
fn start(limits: Limits, flowing: bool) -> Running {
    let dir = tempfile::tempdir().unwrap();
    let (pcap, book) = (dir.path().join("feed.pcap"), dir.path().join("feed.book"));
    generate(
        MarketConfig {
            seed: 9,
            stocks: 10,
            messages: MESSAGES,
            max_live_orders: 5_000,
            mix: Mix::Recent,
            resting: 0,
        },
        &FeedConfig {
            session: Session::from_name(b"CTLTEST").unwrap(),
            first_seq: 1,
            max_payload: 1400,
            max_messages: 64,
            heartbeat_every: 0,
            group: [239, 1, 1, 1],
            port: 26477,
            source: [198, 18, 0, 1],
            output: pcap.clone(),
            format: Format::Pcap,
            damage: None,
            expect_book: Some(book.clone()),
        },
        |_| {},
    )
    .unwrap();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let go: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(flowing)));
    let mut packets = MemorySource::new(4);
    ticklane_capture::read(&pcap, |r| {
        if let Record::Frame(f) = r {
            packets.push(0, wire::parse_ethernet_udp(f.data).unwrap().payload);
        }
    })
    .unwrap();
    let (pipeline, subscribers) =
        Pipeline::with_bus(Books::new(1 << 16), Vwap::default(), BusConfig::default());
    let source = Gated {
        packets,
        go,
        ended: false,
    };
    let (mut poller, _stats) =
        Poller::new(source, pipeline, None, PollerConfig::default(), stop).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let plane = ControlPlane::attach(
        &mut poller,
        ControlConfig {
            grpc: Some(local),
            control: Some(local),
            metrics: Some(local),
            token: Some(TOKEN.into()),
            tls: None,
            limits,
        },
        ApplianceInfo {
            version: "test".into(),
            mode: "capture".into(),
            ..ApplianceInfo::default()
        },
        Feeds::new(Vec::new(), Steer::Fixed, 0),
        1,
    )
    .unwrap();
    let drain = Drain::spawn_forwarding(subscribers, plane.forwarder());
    let poller = std::thread::spawn(move || {
        let ending = poller.run().unwrap();
        drop(poller.finish(ending));
        drain.finish();
    });
    Running {
        plane: Some(plane),
        stop,
        go,
        poller: Some(poller),
        expected: std::fs::read_to_string(book).unwrap(),
        _dir: dir,
    }
}

/// Waits until the whole feed is delivered (as the stats say).
async fn delivered(c: &mut ApplianceClient<Channel>) {
    for _ in 0..500 {
        let stats = c
            .get_stats(proto::GetStatsRequest {})
            .await
            .unwrap()
            .into_inner();
        let n = stats
            .counters
            .iter()
            .find(|k| k.name == "delivered_messages")
            .unwrap()
            .value;
        if n == MESSAGES {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("the feed was not delivered");
}

fn book_request(stock: Stock, depth: u32) -> proto::GetBookRequest {
    proto::GetBookRequest {
        stock: Some(stock),
        depth,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn books_equal_the_generators_and_refusals_say_what_to_do() {
    let run = start(Limits::default(), true);
    let mut c = run.client().await;
    delivered(&mut c).await;
    let status = c
        .get_status(proto::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!((status.version.as_str(), status.stale), ("test", false));
    assert_eq!(status.sessions.len(), 1);
    assert_eq!(status.sessions[0].next_seq, MESSAGES + 1);

    let mut lines = 0;
    for line in run.expected.lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        let symbol = v["stock"].as_str().unwrap().to_owned();
        let b = c
            .get_book(book_request(Stock::Symbol(symbol), 0))
            .await
            .unwrap()
            .into_inner();
        assert_eq!(String::from_utf8(b.canonical()).unwrap().trim_end(), line);
        assert_eq!(
            (b.seq, b.stale),
            (MESSAGES, false),
            "taken after the last message"
        );
        let top = c
            .get_book(book_request(Stock::Locate(b.locate), 1))
            .await
            .unwrap()
            .into_inner();
        assert!(top.bids.len() <= 1 && top.asks.len() <= 1);
        assert_eq!((top.bid_depth, top.ask_depth), (b.bid_depth, b.ask_depth));
        lines += 1;
    }
    assert!(lines > 0, "the generator left books to compare");

    let e = c
        .get_book(book_request(Stock::Symbol("NOSUCH".into()), 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("no book for stock NOSUCH"), "{e:?}");
    let e = c
        .get_book(book_request(Stock::Symbol("WAY2LONGSYM".into()), 0))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    let e = c
        .get_book(proto::GetBookRequest {
            stock: None,
            depth: 0,
        })
        .await
        .unwrap_err();
    assert!(e.message().contains("give the stock"), "{e:?}");

    let feed = |f: &str| proto::FeedRequest { feed: f.into() };
    let e = c.subscribe(feed("239.1.1.1:5")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("authorization: Bearer"), "{e:?}");
    let mut authed = tonic::Request::new(feed("239.1.1.1:5"));
    authed
        .metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    let e = c.subscribe(authed).await.unwrap_err();
    assert_eq!(
        e.code(),
        Code::FailedPrecondition,
        "feeds fixed on this source"
    );
    assert!(
        e.message().contains("restart it with the --feed options"),
        "{e:?}"
    );
    let e = c.subscribe(feed(&"9".repeat(100_000))).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");

    // Server reflection lists the service.
    use tonic_reflection::pb::v1::ServerReflectionRequest;
    use tonic_reflection::pb::v1::server_reflection_client::ServerReflectionClient;
    use tonic_reflection::pb::v1::server_reflection_request::MessageRequest;
    use tonic_reflection::pb::v1::server_reflection_response::MessageResponse;
    let addr = run.plane().bound.grpc.unwrap();
    let channel = Channel::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut r = ServerReflectionClient::new(channel);
    let ask = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut answers = r
        .server_reflection_info(tokio_stream::iter([ask]))
        .await
        .unwrap()
        .into_inner();
    let Some(MessageResponse::ListServicesResponse(list)) =
        answers.message().await.unwrap().unwrap().message_response
    else {
        panic!("not a service list");
    };
    assert!(
        list.service
            .iter()
            .any(|s| s.name == "ticklane.v1.Appliance")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_client_that_never_reads_is_told_how_many_events_it_lost() {
    let run = start(
        Limits {
            max_streams: 2,
            // A unary call's limit, not a stream's: the streams below live
            // longer than this.
            timeout: Duration::from_millis(200),
            ..Limits::default()
        },
        true,
    );
    let mut c = run.client().await;
    delivered(&mut c).await;
    let request = |disconnect_when_behind| proto::StreamRequest {
        stock: String::new(),
        disconnect_when_behind,
    };
    let mut slow = c.stream_trades(request(false)).await.unwrap().into_inner();
    let mut cut = c.stream_trades(request(true)).await.unwrap().into_inner();
    let e = c.stream_vwap(request(false)).await.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "the stream limit");
    assert!(e.message().contains("2 streams are open"), "{e:?}");

    tokio::time::sleep(Duration::from_millis(500)).await;
    // Three buffers' worth published while the client reads nothing.
    let published = 3 * ticklane_control::appliance::STREAM_BUFFER as u64;
    let mut forward = run.plane().forwarder();
    for i in 0..published {
        forward(Event::Trade(TradeEvent {
            locate: 1,
            session: Session::default(),
            seq: i,
            timestamp: i,
            price: 1,
            shares: 1,
            match_number: i,
            kind: TradeKind::Cross,
        }));
    }
    let (mut trades, mut dropped) = (0u64, 0u64);
    while trades + dropped < published {
        let update = tokio::time::timeout(Duration::from_secs(10), slow.message())
            .await
            .expect("every event is either received or counted as dropped")
            .unwrap()
            .unwrap();
        match update.update.unwrap() {
            proto::trade_update::Update::Trade(_) => trades += 1,
            proto::trade_update::Update::Dropped(d) => dropped += d.count,
        }
    }
    assert_eq!(trades + dropped, published);
    assert!(dropped > 0, "the client's buffer overflowed");
    // The client that asked to be disconnected instead was.
    let ended = loop {
        match tokio::time::timeout(Duration::from_secs(10), cut.message()).await {
            Ok(Ok(Some(_))) => continue,
            Ok(other) => break other,
            Err(_) => panic!("the slow client was not disconnected"),
        }
    };
    let e = ended.unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted);
    assert!(e.message().contains("disconnect_when_behind"), "{e:?}");
    let metrics = http_get(run.plane().bound.metrics.unwrap(), "/metrics");
    let counted: u64 = metrics
        .lines()
        .find_map(|l| l.strip_prefix("ticklane_stream_dropped_total{topic=\"trades\"} "))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{metrics}"));
    assert!(
        counted > dropped,
        "both clients' losses are counted: {counted} vs {dropped} of the first"
    );
}

fn http_get(addr: std::net::SocketAddr, path: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    write!(s, "GET {path} HTTP/1.1\r\n\r\n").unwrap();
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    text
}

fn read_line(s: &mut TcpStream) -> String {
    let mut text = Vec::new();
    let mut byte = [0u8];
    while s.read(&mut byte).unwrap() == 1 && byte[0] != b'\n' {
        text.push(byte[0]);
    }
    String::from_utf8(text).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_line_server_limits_clients_and_closes_idle_ones() {
    let run = start(
        Limits {
            line: LineLimits {
                max_line: 64,
                idle: Duration::from_millis(300),
                write: Duration::from_secs(1),
                max_clients: 2,
            },
            ..Limits::default()
        },
        true,
    );
    let addr = run.plane().bound.control.unwrap();
    let mut one = TcpStream::connect(addr).unwrap();
    let mut two = TcpStream::connect(addr).unwrap();
    one.write_all(b"STATUS\n").unwrap();
    assert!(read_line(&mut one).starts_with("OK version=test"));
    two.write_all(b"HELP\n").unwrap();
    assert!(read_line(&mut two).starts_with("OK commands"));
    let mut three = TcpStream::connect(addr).unwrap();
    assert_eq!(
        read_line(&mut three),
        "ERR 2 clients are connected (the limit): try again later"
    );
    let mut long = vec![b'A'; 100];
    long.extend_from_slice(b"\nFEEDS\n");
    two.write_all(&long).unwrap();
    assert_eq!(
        read_line(&mut two),
        "ERR line longer than 64 bytes: ignored"
    );
    assert_eq!(read_line(&mut two), "OK 0 feeds");
    // Idle for longer than the timeout: told and closed.
    assert_eq!(read_line(&mut one), "ERR no command for 300ms: closing");
    let mut rest = Vec::new();
    assert_eq!(one.read_to_end(&mut rest).unwrap(), 0, "closed");
    // Slowloris: a byte every 50 ms, never a whole line: closed all the same.
    drop(two);
    let mut slow = TcpStream::connect(addr).unwrap();
    let mut trickle = slow.try_clone().unwrap();
    let started = std::time::Instant::now();
    let trickler = std::thread::spawn(move || {
        for _ in 0..30 {
            if trickle.write_all(b"S").is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    });
    assert_eq!(read_line(&mut slow), "ERR no command for 300ms: closing");
    let took = started.elapsed();
    assert!(
        took < Duration::from_millis(1000),
        "closed while still trickling, after {took:?}"
    );
    trickler.join().unwrap();
}

/// A snapshot joined to the BBO stream rebuilds the appliance's BBO: the
/// snapshot taken before the feed (sequence 0, empty), then every change
/// with a higher sequence number, equals every book's best levels at the
/// end; the events come in sequence order, each with its session.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_snapshot_joined_to_the_bbo_stream_rebuilds_the_bbo() {
    let run = start(Limits::default(), false);
    let mut c = run.client().await;
    let mut stream = c
        .stream_bbo(proto::StreamRequest {
            stock: String::new(),
            disconnect_when_behind: false,
        })
        .await
        .unwrap()
        .into_inner();
    let status = c
        .get_status(proto::GetStatusRequest {})
        .await
        .unwrap()
        .into_inner();
    assert!(
        status.sessions.is_empty(),
        "nothing delivered before the snapshot"
    );
    run.go.store(true, Ordering::Relaxed);
    delivered(&mut c).await;
    let mut bbo = std::collections::BTreeMap::new();
    let mut last_seq = 0;
    loop {
        let next = tokio::time::timeout(Duration::from_millis(500), stream.message()).await;
        let Ok(update) = next else { break };
        match update.unwrap().unwrap().update.unwrap() {
            proto::bbo_update::Update::Bbo(b) => {
                assert_eq!(b.session, "CTLTEST");
                assert!(b.seq >= last_seq && b.seq <= MESSAGES, "in order: {b:?}");
                last_seq = b.seq;
                bbo.insert(
                    b.locate,
                    (b.bid_price, b.bid_shares, b.ask_price, b.ask_shares),
                );
            }
            proto::bbo_update::Update::Dropped(d) => panic!("the test's client lost {}", d.count),
        }
    }
    assert!(bbo.len() >= 5, "{bbo:?}");
    assert!(
        last_seq > MESSAGES / 2,
        "events carry their sequence numbers"
    );
    for (locate, rebuilt) in bbo {
        let b = c
            .get_book(book_request(Stock::Locate(locate), 1))
            .await
            .map(tonic::Response::into_inner)
            .unwrap_or_default();
        let best = |side: &[proto::Level]| side.first().map_or((0, 0), |l| (l.price, l.shares));
        let ((bp, bs), (ap, as_)) = (best(&b.bids), best(&b.asks));
        assert_eq!(rebuilt, (bp, bs, ap, as_), "locate {locate}");
    }
}

/// A request with the bearer token.
fn authed<T>(message: T) -> tonic::Request<T> {
    let mut r = tonic::Request::new(message);
    r.metadata_mut()
        .insert("authorization", format!("Bearer {TOKEN}").parse().unwrap());
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settings_change_live_and_bad_ones_are_refused() {
    let app = start(Limits::default(), true);
    let mut c = app.client().await;
    let list = c
        .list_config(proto::ListConfigRequest {})
        .await
        .unwrap()
        .into_inner();
    let keys: Vec<&str> = list.entries.iter().map(|e| e.key.as_str()).collect();
    assert_eq!(keys, ["log_interval", "max_streams", "ready_max_p99"]);
    assert!(list.entries.iter().all(|e| !e.help.is_empty() && !e.stored));
    let set = |key: &str, value: &str| proto::SetConfigRequest {
        key: key.into(),
        value: value.into(),
    };
    // The token is needed, and the key and value must make sense.
    let e = c.set_config(set("max_streams", "1")).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated, "{e:?}");
    for (key, value, says) in [
        ("nosuch", "1", "'nosuch' is not a setting"),
        ("max_streams", "-3", "whole number from 1 to 4096"),
        ("log_interval", "1h30", "is not a duration"),
        ("ready_max_p99", "11s", "out of range"),
    ] {
        let e = c.set_config(authed(set(key, value))).await.unwrap_err();
        assert_eq!(e.code(), Code::InvalidArgument, "{key}: {e:?}");
        assert!(e.message().contains(says), "{key}: {}", e.message());
    }
    let e = c
        .get_config(proto::ConfigKey { key: "x".into() })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::InvalidArgument);
    // Applied at once: with one stream allowed, a second is refused.
    let entry = c
        .set_config(authed(set("max_streams", "1")))
        .await
        .unwrap()
        .into_inner();
    assert_eq!((entry.value.as_str(), entry.stored), ("1", false));
    let first = c.stream_bbo(proto::StreamRequest::default()).await.unwrap();
    let e = c
        .stream_trades(proto::StreamRequest::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::ResourceExhausted, "{e:?}");
    assert!(e.message().contains("max_streams"), "{}", e.message());
    drop(first);
    c.set_config(authed(set("max_streams", "64")))
        .await
        .unwrap();
    let got = c
        .get_config(proto::ConfigKey {
            key: "log_interval".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!((got.value.as_str(), got.default.as_str()), ("1s", "1s"));
}
