//! What the control plane costs and serves, three ways, each against a
//! baseline of the same run:
//!
//! 1. The poller itself: the whole pipeline over a million messages in
//!    memory, with no control plane and serving 10,000 book snapshots a
//!    second asked by another thread, interleaved runs, best of each.
//! 2. Control requests per second on loopback against the 13,667 req/s of
//!    the seed framework the issue names, with the server in its own
//!    process as in production (`ticklane run --grpc --control` in a
//!    namespace lab, idle feed): gRPC `GetStatus` from a lean HTTP/2 client
//!    (h2, calls multiplexed on several connections) and from tonic's own
//!    client, the TCP line protocol's `STATUS` (pipelined), and `GetBook`,
//!    which goes through the poller's request ring.
//! 3. Wire to handler on a live feed (XDP → AF_XDP, veth), as the
//!    appliance's own histogram measures it (`GetStats`): p50, p99 and
//!    p99.9 with the control plane idle, and under a flood (10,000
//!    `GetBook`/s, 8 streaming clients, one of which never reads), phases
//!    interleaved in one run, with the loss of each.
//!
//! `cargo bench -p ticklane-benches --bench control` (root, for the labs;
//! TICKLANE_BENCH_SECONDS sets each rate measurement's length, 3 s by
//! default; TICKLANE_CONTROL_THREADS the server's control threads, 2).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use serde_json::Value;

use ticklane_control::proto::{self, appliance_client::ApplianceClient};
use ticklane_e2e::{Lab, start_run, stop_run};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The seed framework's rate (the baseline).
const SEED_RPS: f64 = 13_667.0;

fn seconds() -> Duration {
    let s = std::env::var("TICKLANE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

/// Runs `clients` copies of `one` (each returns how many requests it made
/// in `for_`) and returns the total rate.
async fn rate<F, Fut>(clients: usize, for_: Duration, one: F) -> f64
where
    F: Fn(Instant) -> Fut,
    Fut: std::future::Future<Output = u64> + Send + 'static,
{
    let end = Instant::now() + for_;
    let started = Instant::now();
    let tasks: Vec<_> = (0..clients).map(|_| tokio::spawn(one(end))).collect();
    let mut total = 0;
    for t in tasks {
        total += t.await.unwrap_or(0);
    }
    total as f64 / started.elapsed().as_secs_f64()
}

/// One connection with `calls` calls of `call` in flight until `end`;
/// returns how many were made.
async fn in_flight<F, Fut>(grpc: SocketAddr, calls: usize, end: Instant, call: F) -> u64
where
    F: Fn(ApplianceClient<tonic::transport::Channel>) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let c = ApplianceClient::connect(format!("http://{grpc}"))
        .await
        .unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let (c, call) = (c.clone(), call.clone());
        set.spawn(async move {
            let mut n = 0;
            while Instant::now() < end {
                call(c.clone()).await;
                n += 1;
            }
            n
        });
    }
    let mut n = 0;
    while let Some(k) = set.join_next().await {
        n += k.unwrap_or(0);
    }
    n
}

fn report(what: &str, rps: f64) {
    println!(
        "{what:<44} {rps:>10.0} req/s  {:>5.1}x the seed's 13,667 req/s (target 10x)",
        rps / SEED_RPS
    );
}

/// The poller without a control plane, and serving 10,000 book snapshots
/// (10 levels) a second through its request ring (the suite `ticklane
/// bench --suite control` runs too).
fn poller_under_flood() {
    let scale = ticklane_benches::suite::Scale {
        messages: 1_000_000,
        rounds: 5,
    };
    match ticklane_benches::suite::control::run(scale) {
        Ok(s) => print!("{}", s.text()),
        Err(e) => panic!("control suite: {e}"),
    }
}

/// A lean gRPC client: one HTTP/2 connection (h2) with `calls` unary calls
/// of `path` (request body `body`, already framed) in flight until `end`;
/// returns how many were answered OK.
async fn h2_calls(addr: SocketAddr, path: &str, body: Bytes, calls: usize, end: Instant) -> u64 {
    let tcp = tokio::net::TcpStream::connect(addr).await.unwrap();
    tcp.set_nodelay(true).unwrap();
    let (client, connection) = h2::client::Builder::new()
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24)
        .handshake::<_, Bytes>(tcp)
        .await
        .unwrap();
    tokio::spawn(async move {
        let _ = connection.await;
    });
    let uri: http::Uri = format!("http://{addr}{path}").parse().unwrap();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..calls {
        let (mut client, uri, body) = (client.clone(), uri.clone(), body.clone());
        set.spawn(async move {
            let mut ok = 0u64;
            while Instant::now() < end {
                client = client.ready().await.unwrap();
                let request = http::Request::post(uri.clone())
                    .header("content-type", "application/grpc")
                    .header("te", "trailers")
                    .body(())
                    .unwrap();
                let (response, mut send) = client.send_request(request, false).unwrap();
                send.send_data(body.clone(), true).unwrap();
                let mut answer = response.await.unwrap().into_body();
                while let Some(data) = answer.data().await {
                    let n = data.unwrap().len();
                    let _ = answer.flow_control().release_capacity(n);
                }
                let trailers = answer.trailers().await.unwrap().unwrap_or_default();
                ok += u64::from(trailers.get("grpc-status").is_some_and(|s| s == "0"));
            }
            ok
        });
    }
    let mut n = 0;
    while let Some(k) = set.join_next().await {
        n += k.unwrap_or(0);
    }
    n
}

/// CPU time (user and system) process `pid` has used, in seconds.
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The fields after the command's closing parenthesis: utime is the
    // 14th field of the line, stime the 15th, in clock ticks of 100 Hz.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let ticks: u64 = rest
        .split_whitespace()
        .skip(11)
        .take(2)
        .filter_map(|t| t.parse::<u64>().ok())
        .sum();
    ticks as f64 / 100.0
}

/// Control requests per second against `ticklane run` in its own process.
fn requests_per_second(threads: &str) {
    let lab = Lab::new("cbr", 1);
    let grpc: SocketAddr = "127.0.0.1:50251".parse().unwrap();
    let line: SocketAddr = "127.0.0.1:50252".parse().unwrap();
    let run = start_run(
        &lab,
        &[
            "--mode",
            "udp",
            "--feed",
            "239.7.7.7:30001",
            "--grpc",
            "127.0.0.1:50251",
            "--control",
            "127.0.0.1:50252",
            "--control-threads",
            threads,
        ],
    );
    let for_ = seconds();
    let threads = threads.to_owned();
    let server = run.child.0.id();
    lab.in_netns(&lab.b, move || {
        // The client's threads are made here, in the lab's namespace.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            println!(
                "control plane on loopback: `ticklane run --control-threads {threads}` in its own \
                 process, the clients in this one, {for_:?} per measurement, 2 cores shared"
            );
            // An empty GetStatusRequest, framed: uncompressed, 0 bytes.
            let empty = Bytes::from_static(&[0, 0, 0, 0, 0]);
            let path = "/ticklane.v1.Appliance/GetStatus";
            for (conns, calls) in [(4, 64), (8, 64)] {
                let cpu = (cpu_seconds(server), cpu_seconds(std::process::id()));
                let rps = rate(conns, for_, |end| {
                    h2_calls(grpc, path, empty.clone(), calls, end)
                })
                .await;
                report(
                    &format!("gRPC GetStatus, h2 client ({conns} conns x {calls} in flight)"),
                    rps,
                );
                let per_request = |before: f64, pid: u32| {
                    (cpu_seconds(pid) - before) * 1e6 / (rps * for_.as_secs_f64())
                };
                let server_us = per_request(cpu.0, server);
                println!(
                    "  CPU per request: server {server_us:.1} us, client {:.1} us (one server \
                     core alone would serve {:.0} req/s)",
                    per_request(cpu.1, std::process::id()),
                    1e6 / server_us
                );
            }
            let status_rps = rate(4, for_, |end| {
                in_flight(grpc, 32, end, |mut c| async move {
                    c.get_status(proto::GetStatusRequest {}).await.unwrap();
                })
            })
            .await;
            report(
                "gRPC GetStatus, tonic client (4 x 32 in flight)",
                status_rps,
            );

            let line_rps = rate(4, for_, |end| async move {
                let mut s = tokio::net::TcpStream::connect(line).await.unwrap();
                s.set_nodelay(true).unwrap();
                let batch = "STATUS\n".repeat(64);
                let mut buf = vec![0u8; 1 << 16];
                let mut n = 0u64;
                while Instant::now() < end {
                    s.write_all(batch.as_bytes()).await.unwrap();
                    let mut lines = 0;
                    while lines < 64 {
                        let k = s.read(&mut buf).await.unwrap();
                        assert!(k > 0, "the line server closed");
                        lines += buf[..k].iter().filter(|&&b| b == b'\n').count();
                    }
                    n += 64;
                }
                n
            })
            .await;
            report("TCP STATUS (4 connections, 64 pipelined)", line_rps);

            let book_rps = rate(1, for_, |end| {
                in_flight(grpc, 32, end, |mut c| async move {
                    let r = c
                        .get_book(proto::GetBookRequest {
                            stock: Some(proto::get_book_request::Stock::Locate(1)),
                            depth: 10,
                        })
                        .await;
                    let code = r.map_or_else(|e| e.code(), |_| tonic::Code::Ok);
                    assert_eq!(
                        code,
                        tonic::Code::NotFound,
                        "no book: the ring's round trip"
                    );
                })
            })
            .await;
            report(
                "gRPC GetBook via the poller's ring (1 x 32 in flight)",
                book_rps,
            );
        });
    })
    .join()
    .unwrap();
    stop_run(run);
}

/// The wire-to-handler histogram of `ticklane run` now, and its counters
/// by name.
async fn stats(c: &mut ApplianceClient<tonic::transport::Channel>) -> (Vec<(u64, u64)>, Value) {
    let s = c
        .get_stats(proto::GetStatsRequest {})
        .await
        .unwrap()
        .into_inner();
    let h = s
        .histograms
        .iter()
        .find(|h| h.name == "wire_to_handler")
        .expect("GetStats has the wire_to_handler histogram");
    let buckets = h.buckets.iter().map(|b| (b.le_ns, b.count)).collect();
    let counters = s
        .counters
        .iter()
        .filter(|k| k.feed.is_empty() && k.session.is_empty())
        .map(|k| (k.name.clone(), Value::from(k.value)))
        .collect();
    (buckets, Value::Object(counters))
}

/// The upper bound of the bucket holding quantile `q` of what was counted
/// between two cumulative histograms (same buckets).
fn quantile(before: &[(u64, u64)], after: &[(u64, u64)], q: f64) -> Option<u64> {
    let total = after.last()?.1 - before.last()?.1;
    let rank = ((q * total as f64).ceil() as u64).max(1);
    after
        .iter()
        .zip(before)
        .find(|((_, a), (_, b))| a - b >= rank)
        .map(|((le, _), _)| *le)
}

/// Reads `stream` until `stop` (or its end); returns how many updates.
async fn drain<T>(mut stream: tonic::Streaming<T>, stop: Arc<AtomicBool>) -> u64 {
    let mut n = 0u64;
    while !stop.load(Ordering::Relaxed) {
        match tokio::time::timeout(Duration::from_millis(50), stream.message()).await {
            Ok(Ok(Some(_))) => n += 1,
            Ok(_) => break,
            Err(_) => {}
        }
    }
    n
}

/// The flood of the issue, until `stop`: 10,000 `GetBook`/s (ten every
/// millisecond), and 8 stream clients, each on its own connection: one
/// that never reads, four following BBO and three the trades.
/// Returns the answers, the stream events read and the seconds it lasted.
async fn flood(grpc: SocketAddr, stop: Arc<AtomicBool>) -> (u64, u64, f64) {
    let url = format!("http://{grpc}");
    let connect = || ApplianceClient::connect(url.clone());
    let request = proto::StreamRequest::default;
    let never_reads = connect()
        .await
        .unwrap()
        .stream_bbo(request())
        .await
        .unwrap();
    let mut readers = tokio::task::JoinSet::new();
    for i in 1..8 {
        let mut c = connect().await.unwrap();
        let stop = stop.clone();
        if i % 2 == 0 {
            let s = c.stream_trades(request()).await.unwrap().into_inner();
            readers.spawn(drain(s, stop));
        } else {
            let s = c.stream_bbo(request()).await.unwrap().into_inner();
            readers.spawn(drain(s, stop));
        }
    }
    let c = connect().await.unwrap();
    let started = Instant::now();
    let mut books = 0u64;
    let mut tick = tokio::time::interval(Duration::from_millis(1));
    let mut locate = 0u32;
    while !stop.load(Ordering::Relaxed) {
        tick.tick().await;
        let mut asks = tokio::task::JoinSet::new();
        for _ in 0..10 {
            locate = locate % 20 + 1;
            let mut c = c.clone();
            // Answered: a book, or NOT_FOUND for a locate the day lacks;
            // both went through the poller's ring.
            asks.spawn(async move {
                let r = c
                    .get_book(proto::GetBookRequest {
                        stock: Some(proto::get_book_request::Stock::Locate(locate)),
                        depth: 10,
                    })
                    .await;
                matches!(
                    r.map_or_else(|e| e.code(), |_| tonic::Code::Ok),
                    tonic::Code::Ok | tonic::Code::NotFound
                )
            });
        }
        while let Some(ok) = asks.join_next().await {
            books += u64::from(ok.unwrap_or(false));
        }
    }
    let mut events = 0;
    while let Some(n) = readers.join_next().await {
        events += n.unwrap_or(0);
    }
    drop(never_reads);
    (books, events, started.elapsed().as_secs_f64())
}

/// Wire to handler with the control plane idle and flooded, phases
/// interleaved on one appliance.
fn latency_under_flood(threads: &str) {
    const FEED: &str = "239.7.7.8:30002";
    const MESSAGES: &str = "60000";
    const PPS: &str = "20000";
    let dir = tempfile::tempdir().unwrap();
    let lab = Lab::new("cbl", 1);
    let grpc: SocketAddr = "127.0.0.1:50253".parse().unwrap();
    let phases = ["idle", "flood", "idle", "flood"];
    let days: Vec<(String, u64)> = phases
        .iter()
        .enumerate()
        .map(|(i, _)| {
            let session = format!("LAT{i}");
            let (day, _) = ticklane_e2e::gen_day(
                dir.path(),
                &format!("day{i}"),
                MESSAGES,
                &(10 + i).to_string(),
                &["--session", &session, "--group", FEED],
            );
            let mut frames = 0;
            ticklane_capture::read(std::path::Path::new(&day), |_| frames += 1).unwrap();
            (day, frames)
        })
        .collect();
    let run = start_run(
        &lab,
        &[
            "--mode",
            "xdp",
            "--feed",
            FEED,
            "--grpc",
            "127.0.0.1:50253",
            "--control-threads",
            threads,
        ],
    );
    println!(
        "wire to handler, XDP on veth, {MESSAGES} messages at {PPS} packets/s per phase, \
         the appliance's own histogram (buckets 12.5% wide):"
    );
    let (tx, rx) = std::sync::mpsc::channel::<Option<Arc<AtomicBool>>>();
    let (done_tx, done_rx) = std::sync::mpsc::channel();
    // The clients live in the lab's namespace, on a runtime of their own.
    let clients = lab.in_netns(&lab.b, move || {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let mut c = ApplianceClient::connect(format!("http://{grpc}"))
                .await
                .unwrap();
            // One message per phase: start (with the flood's stop flag if
            // it floods), then None when the phase's feed was sent.
            while let Ok(phase) = rx.recv() {
                let before = stats(&mut c).await;
                let flooding = phase.map(|stop| tokio::spawn(flood(grpc, stop)));
                let _ = rx.recv();
                // The last packets reach the poller.
                tokio::time::sleep(Duration::from_millis(300)).await;
                let after = stats(&mut c).await;
                let flooded = match flooding {
                    Some(f) => Some(f.await.unwrap()),
                    None => None,
                };
                done_tx.send((before, after, flooded)).unwrap();
            }
        });
    });
    let mut rows = Vec::new();
    for ((phase, (day, frames)), i) in phases.iter().zip(&days).zip(0..) {
        let stop = Arc::new(AtomicBool::new(false));
        tx.send((*phase == "flood").then(|| stop.clone())).unwrap();
        // The flood settles in before the feed starts.
        std::thread::sleep(Duration::from_millis(500));
        let sent = lab
            .ticklane_in(&lab.a)
            .args(["send", day, "--iface", &lab.va, "--pps", PPS])
            .output()
            .unwrap();
        ticklane_e2e::assert_success(&sent);
        stop.store(true, Ordering::Relaxed);
        tx.send(None).unwrap();
        let ((b, bc), (a, ac), flooded) = done_rx.recv().unwrap();
        let packets = ac["packets"].as_u64().unwrap() - bc["packets"].as_u64().unwrap();
        let delivered =
            ac["delivered_messages"].as_u64().unwrap() - bc["delivered_messages"].as_u64().unwrap();
        let lost = ac["lost_messages"].as_u64().unwrap() - bc["lost_messages"].as_u64().unwrap();
        let q = |q: f64| quantile(&b, &a, q).unwrap_or(0) as f64 / 1e3;
        let (p50, p99, p999) = (q(0.5), q(0.99), q(0.999));
        println!(
            "  phase {i} {phase:<5} p50 < {p50:>7.1} us  p99 < {p99:>7.1} us  p99.9 < {p999:>8.1} us  \
             {packets}/{frames} packets, {delivered} messages, {lost} lost{}",
            flooded
                .map(|(books, events, secs)| format!(
                    "; flood: {books} GetBook answered ({:.0}/s), {events} stream events read",
                    books as f64 / secs
                ))
                .unwrap_or_default()
        );
        rows.push((
            *phase,
            [p50, p99, p999],
            lost + frames - packets.min(*frames),
        ));
    }
    drop(tx);
    clients.join().unwrap();
    let (stdout, _) = stop_run(run);
    // Best phase of each kind: the noise of a shared machine only adds.
    let best = |phase: &str, i: usize| {
        rows.iter()
            .filter(|r| r.0 == phase)
            .map(|r| r.1[i])
            .fold(f64::INFINITY, f64::min)
    };
    for (i, name) in ["p50", "p99", "p99.9"].iter().enumerate() {
        println!(
            "  {name:<6} flood / idle (best phase of each): {:.2}x",
            best("flood", i) / best("idle", i)
        );
    }
    let loss: u64 = rows.iter().map(|r| r.2).sum();
    println!(
        "  loss over all phases: {loss} (packets not taken + messages lost); the run: {}",
        stdout.lines().last().unwrap_or("")
    );
}

fn main() {
    // TICKLANE_CONTROL_BENCH=poller,rate,latency (all by default) picks parts.
    let parts = std::env::var("TICKLANE_CONTROL_BENCH").unwrap_or_default();
    let wanted = |part: &str| parts.is_empty() || parts.split(',').any(|p| p == part);
    if wanted("poller") {
        poller_under_flood();
    }
    if !ticklane_e2e::netns_available() {
        println!("(the process and latency benchmarks need root and network namespaces: skipped)");
        return;
    }
    let threads = std::env::var("TICKLANE_CONTROL_THREADS").unwrap_or_else(|_| "2".into());
    if wanted("rate") {
        requests_per_second(&threads);
    }
    if wanted("latency") {
        latency_under_flood(&threads);
    }
}
