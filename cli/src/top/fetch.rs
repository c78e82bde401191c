//! The thread that looks at the appliance: every interval GetStatus,
//! GetStats and the books of the ladder, with StreamBbo counting which
//! stocks change most; an appliance that cannot be reached (or went away)
//! is reported and tried again, with a growing pause, for as long as the
//! dashboard runs.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context;
use ticklane_control::proto;

use super::model::Sample;
use crate::ctl_cmd::{Client, client, refused};

/// What the thread tells the dashboard.
#[derive(Debug)]
pub(crate) enum Report {
    /// A fresh look.
    Sample(Box<Sample>),
    /// The appliance could not be asked; the next try is at `retry_at`.
    Unreachable { error: String, retry_at: Instant },
}

/// What the dashboard wants to see (changed by its keys).
#[derive(Debug, Default)]
pub(crate) struct Wants {
    /// Only stocks whose symbol contains this (upper case); empty: all.
    pub(crate) filter: String,
    /// Rows the ladder has room for.
    pub(crate) ladder: usize,
}

/// Where and how often to look.
#[derive(Debug, Clone)]
pub(crate) struct Target {
    pub(crate) grpc: SocketAddr,
    pub(crate) token_file: Option<PathBuf>,
    pub(crate) interval: Duration,
}

/// The longest pause between two tries.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Symbols learned per look at most (one GetBook each; the busiest first,
/// for at most a quarter of the interval).
const LEARN_PER_TICK: usize = 32;

/// Looks at the appliance until `stop` is raised or the dashboard is gone.
pub(crate) fn spawn(
    target: Target,
    wants: Arc<Mutex<Wants>>,
    reports: Sender<Report>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<std::thread::JoinHandle<()>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the client's runtime")?;
    std::thread::Builder::new()
        .name("top-fetch".into())
        .spawn(move || runtime.block_on(watch(target, wants, reports, stop)))
        .context("starting the fetch thread")
}

async fn watch(
    target: Target,
    wants: Arc<Mutex<Wants>>,
    reports: Sender<Report>,
    stop: Arc<AtomicBool>,
) {
    let mut backoff = Duration::from_secs(1);
    while !stop.load(Ordering::Relaxed) {
        let Err(e) = session(&target, &wants, &reports, &stop, &mut backoff).await else {
            return; // stopped, or nobody listens any more
        };
        let retry_at = Instant::now() + backoff;
        let report = Report::Unreachable {
            error: format!("{e:#}"),
            retry_at,
        };
        if reports.send(report).is_err() {
            return;
        }
        sleep_until(retry_at, &stop).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Sleeps until `when`, waking early on `stop`.
async fn sleep_until(when: Instant, stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        let left = when.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return;
        }
        tokio::time::sleep(left.min(Duration::from_millis(100))).await;
    }
}

/// BBO changes seen per locate since the stream opened.
type Activity = Arc<Mutex<HashMap<u32, u64>>>;

/// One connection's life: samples every interval until an error (Err) or
/// the end (Ok).
async fn session(
    target: &Target,
    wants: &Mutex<Wants>,
    reports: &Sender<Report>,
    stop: &AtomicBool,
    backoff: &mut Duration,
) -> anyhow::Result<()> {
    let call = target.interval.max(Duration::from_secs(2));
    let mut c = client(
        target.grpc,
        target.token_file.as_deref(),
        Duration::from_secs(2),
        call,
    )
    .await?;
    let activity = Activity::default();
    let mut stream: Option<tokio::task::JoinHandle<()>> = None;
    let mut ladder = Ladder::default();
    let result = loop {
        if stop.load(Ordering::Relaxed) {
            break Ok(());
        }
        if stream.as_ref().is_none_or(|s| s.is_finished()) {
            stream = Some(tokio::spawn(count_bbo(c.clone(), activity.clone())));
        }
        let tick = Instant::now() + target.interval;
        let learn_until = Instant::now() + target.interval / 4;
        let sample = match look(&mut c, wants, &activity, &mut ladder, learn_until).await {
            Ok(sample) => sample,
            Err(e) => break Err(e),
        };
        *backoff = Duration::from_secs(1);
        if reports.send(Report::Sample(Box::new(sample))).is_err() {
            break Ok(());
        }
        sleep_until(tick, stop).await;
    };
    if let Some(s) = stream {
        s.abort();
    }
    result
}

/// Counts the BBO changes of each stock while the stream lasts.
async fn count_bbo(mut c: Client, activity: Activity) {
    let request = proto::StreamRequest {
        stock: String::new(),
        disconnect_when_behind: false,
    };
    let Ok(stream) = c.stream_bbo(request).await else {
        return;
    };
    let mut stream = stream.into_inner();
    while let Ok(Some(update)) = stream.message().await {
        if let Some(proto::bbo_update::Update::Bbo(b)) = update.update {
            let mut a = activity.lock().unwrap_or_else(|p| p.into_inner());
            *a.entry(b.locate).or_default() += 1;
        }
    }
}

/// What the ladder remembers between looks.
#[derive(Debug, Default)]
struct Ladder {
    /// Symbols by locate, as GetBook named them.
    symbols: HashMap<u32, String>,
    /// The BBO change counts of the last look, and when.
    last: Option<(Instant, HashMap<u32, u64>)>,
}

/// One look: status, counters, the ladder's books.
async fn look(
    c: &mut Client,
    wants: &Mutex<Wants>,
    activity: &Activity,
    ladder: &mut Ladder,
    learn_until: Instant,
) -> anyhow::Result<Sample> {
    let status = c
        .get_status(proto::GetStatusRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let stats = c
        .get_stats(proto::GetStatsRequest {})
        .await
        .map_err(refused)?
        .into_inner();
    let at = Instant::now();
    let (filter, rows) = {
        let w = wants.lock().unwrap_or_else(|p| p.into_inner());
        (w.filter.clone(), w.ladder.max(1))
    };
    let counts = activity.lock().unwrap_or_else(|p| p.into_inner()).clone();
    // Changes per second since the last look.
    let rates: HashMap<u32, f64> = counts
        .iter()
        .map(|(locate, n)| {
            let rate = ladder.last.as_ref().map_or(0.0, |(then, before)| {
                let secs = at.duration_since(*then).as_secs_f64().max(1e-3);
                n.saturating_sub(before.get(locate).copied().unwrap_or(0)) as f64 / secs
            });
            (*locate, rate)
        })
        .collect();
    ladder.last = Some((at, counts.clone()));
    // Learn the symbols of stocks that changed (a few per look).
    let mut unknown: Vec<(u64, u32)> = counts
        .iter()
        .filter(|(l, _)| !ladder.symbols.contains_key(l))
        .map(|(l, n)| (*n, *l))
        .collect();
    unknown.sort_unstable_by(|a, b| b.cmp(a));
    for (_, locate) in unknown.into_iter().take(LEARN_PER_TICK) {
        if Instant::now() > learn_until {
            break;
        }
        if let Some(b) = book(c, proto::get_book_request::Stock::Locate(locate), 1).await? {
            ladder.symbols.insert(locate, b.symbol);
        }
    }
    // The busiest first: changes per second, then in all.
    let mut busiest: Vec<u32> = counts.keys().copied().collect();
    busiest.sort_by(|a, b| {
        let key = |l: &u32| (rates.get(l).copied().unwrap_or(0.0), counts[l]);
        let (ka, kb) = (key(a), key(b));
        kb.0.total_cmp(&ka.0).then(kb.1.cmp(&ka.1)).then(a.cmp(b))
    });
    let matching: Vec<u32> = busiest
        .into_iter()
        .filter(|l| {
            filter.is_empty()
                || ladder
                    .symbols
                    .get(l)
                    .is_some_and(|s| s.contains(filter.as_str()))
        })
        .collect();
    let exact = ladder
        .symbols
        .iter()
        .find(|(_, s)| !filter.is_empty() && **s == filter)
        .map(|(l, _)| *l);
    let single = exact.or(match matching[..] {
        [only] => Some(only),
        _ => None,
    });
    let mut books = Vec::new();
    let mut note = None;
    if let Some(locate) = single {
        // One stock: its whole ladder, as deep as there is room.
        let which = proto::get_book_request::Stock::Locate(locate);
        if let Some(b) = book(c, which, rows as u32).await? {
            books.push((b, rates.get(&locate).copied().unwrap_or(0.0)));
        }
    } else if matching.is_empty() && !filter.is_empty() {
        // Not seen changing: perhaps a stock all the same.
        let which = proto::get_book_request::Stock::Symbol(filter.clone());
        match book(c, which, rows as u32).await? {
            Some(b) => books.push((b, 0.0)),
            None => note = Some(format!("no stock {filter} in the books")),
        }
    } else {
        for locate in matching.iter().take(rows) {
            let which = proto::get_book_request::Stock::Locate(*locate);
            if let Some(b) = book(c, which, 1).await? {
                books.push((b, rates.get(locate).copied().unwrap_or(0.0)));
            }
        }
    }
    Ok(Sample {
        at,
        status,
        stats,
        books,
        filter,
        book_note: note,
    })
}

/// A book snapshot; None for a stock the appliance does not know (or a
/// symbol it refuses).
async fn book(
    c: &mut Client,
    stock: proto::get_book_request::Stock,
    depth: u32,
) -> anyhow::Result<Option<proto::Book>> {
    let request = proto::GetBookRequest {
        stock: Some(stock),
        depth,
    };
    match c.get_book(request).await {
        Ok(b) => Ok(Some(b.into_inner())),
        Err(e)
            if matches!(
                e.code(),
                tonic::Code::NotFound | tonic::Code::InvalidArgument
            ) =>
        {
            Ok(None)
        }
        Err(e) => Err(refused(e)),
    }
}
