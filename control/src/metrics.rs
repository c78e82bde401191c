//! Prometheus text at `/metrics` (`prometheus-client`, every counter of
//! [`crate::counters`] with its feed and session as labels, the poller's
//! wire-to-handler and loop-time histograms in seconds, who takes the
//! receive times, and the events stream clients lost), `/healthz` (alive)
//! and `/readyz` (the poller publishes, no session is stale, no ring
//! overflowed since the last check, and, with the `ready_max_p99` setting,
//! the wire-to-handler p99 since the last check within it), over a minimal
//! HTTP/1.1 server: one request per connection, GET only.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::{MetricType, TypedMetric};
use prometheus_client::registry::{Registry, Unit};
use ticklane_appliance::stats::Histogram;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;

use crate::appliance::Appliance;
use crate::counters;
use crate::settings::Key;

/// Longest request head read.
const MAX_HEAD: usize = 8 << 10;

/// A request head not complete within this is dropped.
const HEAD_TIMEOUT: Duration = Duration::from_secs(5);

/// Scrapes at once, at most.
const MAX_CONNECTIONS: usize = 64;

/// Counters that are levels, not running totals.
const GAUGES: [&str; 10] = [
    "session_next_seq",
    "session_stale",
    "session_ended",
    "line_down",
    "audit_journal_disk_bytes",
    "audit_journal_alarm",
    "audit_unshipped_bytes",
    "audit_unshipped_messages",
    "audit_shipped_segment",
    "audit_shipped_offset",
];

type Labels = Vec<(String, String)>;

/// The metrics server's memory between readiness checks.
#[derive(Debug, Default)]
struct Readiness {
    overflows: AtomicU64,
    latency: Mutex<Histogram>,
}

/// A histogram of the poller's as Prometheus buckets, in seconds.
#[derive(Debug)]
struct Seconds(Histogram);

impl TypedMetric for Seconds {
    const TYPE: MetricType = MetricType::Histogram;
}

impl EncodeMetric for Seconds {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), std::fmt::Error> {
        let buckets: Vec<(f64, u64)> = counters::coarse_buckets(&self.0)
            .into_iter()
            .map(|(bound, n)| (bound.map_or(f64::MAX, |ns| ns as f64 / 1e9), n))
            .collect();
        encoder.encode_histogram::<NoLabelSet>(
            self.0.sum() as f64 / 1e9,
            self.0.count(),
            &buckets,
            None,
        )
    }

    fn metric_type(&self) -> MetricType {
        Self::TYPE
    }
}

/// Serves the metrics and health endpoints on `listener`.
pub async fn serve(listener: TcpListener, app: Arc<Appliance>) {
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let readiness = Arc::new(Readiness::default());
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let Ok(permit) = slots.clone().try_acquire_owned() else {
            continue; // dropped: closed at once
        };
        let (app, readiness) = (app.clone(), readiness.clone());
        tokio::spawn(async move {
            handle(stream, &app, &readiness).await;
            drop(permit);
        });
    }
}

async fn handle(mut stream: TcpStream, app: &Appliance, readiness: &Readiness) {
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    let complete = tokio::time::timeout(HEAD_TIMEOUT, async {
        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return false,
                Ok(n) => head.extend_from_slice(&chunk[..n]),
            }
        }
        true
    })
    .await
    .unwrap_or(false);
    if !complete {
        return;
    }
    let first = head.split(|&b| b == b'\n').next().unwrap_or_default();
    let first = String::from_utf8_lossy(first);
    let mut parts = first.split_ascii_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, content_type, body) = if method != "GET" {
        (
            "405 Method Not Allowed",
            "text/plain",
            "only GET is served\n".to_owned(),
        )
    } else {
        match path {
            "/metrics" => (
                "200 OK",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                metrics_text(app).await,
            ),
            "/healthz" => ("200 OK", "text/plain", "ok\n".to_owned()),
            "/readyz" => match not_ready(app, readiness) {
                None => ("200 OK", "text/plain", "ready\n".to_owned()),
                Some(why) => ("503 Service Unavailable", "text/plain", why + "\n"),
            },
            _ => (
                "404 Not Found",
                "text/plain",
                "not found: /metrics, /healthz and /readyz are served\n".to_owned(),
            ),
        }
    };
    let response = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(HEAD_TIMEOUT, stream.write_all(response.as_bytes())).await;
}

/// Why the appliance is not ready, if it is not.
fn not_ready(app: &Appliance, readiness: &Readiness) -> Option<String> {
    let snap = app.snapshot();
    if snap.uptime_ns == 0 {
        return Some("not ready: the poller has not published its stats yet".into());
    }
    if let Some(s) = snap.sessions().iter().find(|s| s.stale) {
        return Some(format!(
            "not ready: session {} is stale (a hole is open)",
            crate::counters::session_name(&s.session)
        ));
    }
    let xsk = snap.source.xsk.unwrap_or_default();
    let overflows = xsk.rx_ring_full + snap.bus.dropped.total() + snap.bus.audit_overflow;
    let before = readiness.overflows.swap(overflows, Ordering::Relaxed);
    if overflows > before {
        return Some(format!(
            "not ready: {} overflows of the socket's rx ring or the bus since the last check",
            overflows - before
        ));
    }
    let earlier = std::mem::replace(
        &mut *readiness
            .latency
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner),
        snap.wire_to_handler,
    );
    let limit = app.settings.get(Key::ReadyMaxP99);
    let p99 = snap.wire_to_handler.since(&earlier).quantile(0.99);
    if limit > 0
        && let Some(p99) = p99.filter(|p| *p > limit)
    {
        return Some(format!(
            "not ready: the wire-to-handler p99 since the last check is up to {p99} ns, \
             above ready_max_p99 = {} (ticklane ctl config set ready_max_p99 D to change it)",
            Key::ReadyMaxP99.format(limit)
        ));
    }
    None
}

/// The Prometheus text of every counter.
pub async fn metrics_text(app: &Appliance) -> String {
    let (_, counters) = app.counters().await;
    let mut registry = Registry::with_prefix("ticklane");
    let mut names: Vec<&str> = Vec::new();
    for c in &counters {
        if !names.contains(&c.name.as_str()) {
            names.push(&c.name);
        }
    }
    for name in names {
        let of_name = counters.iter().filter(|c| c.name == name);
        let help = of_name.clone().next().map_or("", |c| c.help);
        let labels = |c: &crate::counters::Counter| -> Labels {
            [("session", &c.session), ("feed", &c.feed)]
                .into_iter()
                .filter(|(_, v)| !v.is_empty())
                .map(|(k, v)| (k.to_owned(), v.clone()))
                .collect()
        };
        let gauge = GAUGES.contains(&name);
        if let [only] = of_name.clone().collect::<Vec<_>>()[..]
            && labels(only).is_empty()
        {
            // One value for the whole appliance: no label set at all.
            if gauge {
                let g = Gauge::<i64>::default();
                g.set(i64::try_from(only.value).unwrap_or(i64::MAX));
                registry.register(name, help, g);
            } else {
                let c = Counter::<u64>::default();
                c.inc_by(only.value);
                registry.register(name, help, c);
            }
        } else if gauge {
            let family = Family::<Labels, Gauge>::default();
            for c in of_name {
                family
                    .get_or_create(&labels(c))
                    .set(i64::try_from(c.value).unwrap_or(i64::MAX));
            }
            registry.register(name, help, family);
        } else {
            let family = Family::<Labels, Counter>::default();
            for c in of_name {
                family.get_or_create(&labels(c)).inc_by(c.value);
            }
            registry.register(name, help, family);
        }
    }
    let snap = app.snapshot();
    for h in counters::histograms(&snap) {
        registry.register_with_unit(h.name, h.help, Unit::Seconds, Seconds(h.histogram));
    }
    let source = Family::<Labels, Gauge>::default();
    let rx = counters::rx_timestamps(&snap);
    if !rx.is_empty() {
        source
            .get_or_create(&vec![("source".to_owned(), rx.to_owned())])
            .set(1);
    }
    registry.register(
        "rx_timestamps",
        "who takes the receive times of wire_to_handler (1 for the source in use): \
         xdp_software (the XDP program's bpf_ktime_get_ns), kernel_so_timestampns",
        source,
    );
    let dropped = Family::<Labels, Counter>::default();
    for (topic, n) in app.stream_dropped() {
        dropped
            .get_or_create(&vec![("topic".to_owned(), topic.name().to_owned())])
            .inc_by(n);
    }
    registry.register(
        "stream_dropped",
        "events stream clients lost by reading too slowly",
        dropped,
    );
    let mut out = String::new();
    // Writing into a String cannot fail.
    let _ = encode(&mut out, &registry);
    out
}
