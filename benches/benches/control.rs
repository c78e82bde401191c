//! Control requests per second on loopback, against the 13,667 req/s of the
//! seed framework the issue names: gRPC `GetStatus` (several connections,
//! many calls in flight on each) and the TCP line protocol's `STATUS`
//! (pipelined), served by the control plane of an idle poller in this
//! process; `GetBook` too, which goes through the poller's request ring.
//!
//! Then the poller itself: the whole pipeline over a million messages in
//! memory, with no control plane and serving 10,000 book snapshots a second
//! asked by another thread, interleaved runs, best of each: the ratio says
//! what the control plane costs the hot path.
//!
//! `cargo bench -p ticklane-benches --bench control` (TICKLANE_BENCH_SECONDS
//! sets each measurement's length, 3 s by default).

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use ticklane_appliance::analytics::vwap::Vwap;
use ticklane_appliance::book::Books;
use ticklane_appliance::bus::{BusConfig, Drain};
use ticklane_appliance::pipeline::Pipeline;
use ticklane_appliance::poller::{Poller, PollerConfig};
use ticklane_appliance::source::{
    Arrival, Polled, Source, SourceCounters, SourceError, Verdict, Wait,
};
use ticklane_control::feeds::{Feeds, Steer};
use ticklane_control::proto::{self, appliance_client::ApplianceClient};
use ticklane_control::{ApplianceInfo, ControlConfig, ControlPlane};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The seed framework's rate (the baseline).
const SEED_RPS: f64 = 13_667.0;

/// A feed that sends nothing: the poller idles as it does between bursts.
struct Quiet;

impl Source for Quiet {
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        _: Wait,
        _: F,
    ) -> Result<Polled, SourceError> {
        std::thread::sleep(Duration::from_micros(200));
        Ok(Polled::Arrivals(0))
    }

    fn counters(&self) -> SourceCounters {
        SourceCounters::default()
    }
}

fn seconds() -> Duration {
    let s = std::env::var("TICKLANE_BENCH_SECONDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(3.0);
    Duration::from_secs_f64(s)
}

/// Runs `clients` copies of `one` (each returns how many requests it made
/// in `for_`) and reports the total rate.
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

fn main() {
    poller_under_flood();
    let stop: &'static AtomicBool = Box::leak(Box::new(AtomicBool::new(false)));
    let (pipeline, subscribers) =
        Pipeline::with_bus(Books::new(1 << 10), Vwap::default(), BusConfig::default());
    let (mut poller, _stats) =
        Poller::new(Quiet, pipeline, None, PollerConfig::default(), stop).unwrap();
    let local = "127.0.0.1:0".parse().unwrap();
    let plane = ControlPlane::attach(
        &mut poller,
        ControlConfig {
            grpc: Some(local),
            control: Some(local),
            ..ControlConfig::default()
        },
        ApplianceInfo {
            version: "bench".into(),
            ..ApplianceInfo::default()
        },
        Feeds::new(Vec::new(), Steer::Fixed, 0),
        2,
    )
    .unwrap();
    let drain = Drain::spawn_forwarding(subscribers, plane.forwarder());
    let poller = std::thread::spawn(move || {
        let ending = poller.run().unwrap();
        drop(poller.finish(ending));
    });
    let (grpc, line) = (plane.bound.grpc.unwrap(), plane.bound.control.unwrap());
    let for_ = seconds();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async move {
        println!(
            "control plane on loopback, {for_:?} per measurement, 2 cores shared with the server"
        );
        let status_rps = rate(4, for_, |end| {
            in_flight(grpc, 32, end, |mut c| async move {
                c.get_status(proto::GetStatusRequest {}).await.unwrap();
            })
        })
        .await;
        report("gRPC GetStatus (4 connections x 32 in flight)", status_rps);

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
    plane.stop();
    stop.store(true, Ordering::Relaxed);
    let _ = poller.join();
    drain.finish();
}
