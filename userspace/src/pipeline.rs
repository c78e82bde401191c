//! The same pipeline for live feeds, replays and backtests: sequenced
//! messages go to the order books, VWAP and the tape by static dispatch, and
//! what changed is published on the bus. [`replay`] drives it from a capture
//! through the session layer and A/B arbitration, optionally recovering gaps
//! from re-request servers over real UDP sockets.

use std::net::{SocketAddr, UdpSocket};
use std::path::Path;
use std::time::{Duration, Instant};

use ticklane_protocols::itch::{self, Handler, MESSAGE_TYPES, MessageRef};
use ticklane_protocols::moldudp64::{Packet, Session};

use crate::book::{Books, Fill, Order};
use crate::bus::{BboEvent, Publisher, TradeEvent, TradeKind};
use crate::capture::{self, CaptureError, Record};
use crate::feed::{
    BINARYFILE_SESSION, DecodeCounts, FeedDecoder, FeedFilter, FeedSink, Location, Problem,
};
use crate::session::{
    Action, ActionSink, Arbiter, LineStats, SessionConfig, SessionEvent, SessionStats,
};
use crate::vwap::Vwap;

/// Books, VWAP and tape behind one statically dispatched handler.
#[derive(Debug)]
pub struct Pipeline {
    /// Every stock's book.
    pub books: Books,
    /// Sliding-window VWAP.
    pub vwap: Vwap,
    bus: Publisher,
    by_type: [u64; MESSAGE_TYPES.len()],
    stale: bool,
    timestamp: u64,
}

fn level(l: Option<crate::book::Level>) -> (u32, u64) {
    l.map_or((0, 0), |l| (l.price, l.shares))
}

impl Pipeline {
    /// A pipeline publishing on `bus`.
    pub fn new(books: Books, vwap: Vwap, bus: Publisher) -> Self {
        Self {
            books,
            vwap,
            bus,
            by_type: [0; MESSAGE_TYPES.len()],
            stale: false,
            timestamp: 0,
        }
    }

    /// The bus publisher (for its counters).
    pub fn bus(&self) -> &Publisher {
        &self.bus
    }

    /// Messages handled, by type.
    pub fn by_type(&self) -> &[u64; MESSAGE_TYPES.len()] {
        &self.by_type
    }

    /// True while the session has an unfilled gap: the books may be wrong.
    pub fn is_stale(&self) -> bool {
        self.stale
    }

    /// One sequenced message: audited, then applied.
    #[inline]
    pub fn deliver(&mut self, session: Session, seq: u64, message: MessageRef<'_>) {
        self.bus.audit(session, seq, message.as_bytes());
        let header = message.header();
        if let Some(i) = itch::type_index(header.message_type) {
            self.by_type[i] += 1;
        }
        self.timestamp = header.timestamp();
        let bus = &mut self.bus;
        self.vwap.advance(self.timestamp, |e| bus.vwap(e));
        message.dispatch(self);
    }

    /// Session news: stale/fresh marks the books, everything is published.
    pub fn session_event(&mut self, e: SessionEvent) {
        match e {
            SessionEvent::Stale => self.stale = true,
            SessionEvent::Fresh => self.stale = false,
            _ => {}
        }
        self.bus.session(e);
    }

    fn bbo(&self, locate: u16) -> ((u32, u64), (u32, u64)) {
        self.books.book(locate).map_or(((0, 0), (0, 0)), |b| {
            let (bid, ask) = b.bbo();
            (level(bid), level(ask))
        })
    }

    /// Runs a book change and publishes the BBO if it moved.
    fn changing(&mut self, locate: u16, change: impl FnOnce(&mut Books)) {
        let before = self.bbo(locate);
        change(&mut self.books);
        let (bid, ask) = self.bbo(locate);
        if (bid, ask) != before {
            self.bus.bbo(BboEvent {
                locate,
                timestamp: self.timestamp,
                bid,
                ask,
            });
        }
    }

    fn print(&mut self, locate: u16, price: u32, shares: u64, match_number: u64, kind: TradeKind) {
        let timestamp = self.timestamp;
        self.bus.trade(TradeEvent {
            locate,
            timestamp,
            price,
            shares,
            match_number,
            kind,
        });
        self.vwap.trade(locate, timestamp, price, shares);
    }

    /// Runs a change on the book of the resting order `reference`; an
    /// unknown reference is counted instead.
    fn on_resting(&mut self, reference: u64, change: impl FnOnce(&mut Books)) {
        match self.books.order(reference).map(|o| o.locate) {
            Some(locate) => self.changing(locate, change),
            None => self.books.count_unknown(),
        }
    }

    fn execution(&mut self, reference: u64, shares: u32) -> Option<Fill> {
        let mut fill = None;
        self.on_resting(reference, |b| fill = b.execute(reference, shares));
        fill
    }

    fn add(&mut self, order: Order, stock: itch::Alpha<8>) {
        self.changing(order.locate, |b| b.add(order, stock));
    }
}

impl Handler for Pipeline {
    fn on_stock_directory(&mut self, m: &itch::StockDirectory) {
        self.books.name(m.header.stock_locate(), m.stock);
        self.vwap.reserve(m.header.stock_locate());
    }
    fn on_add_order(&mut self, m: &itch::AddOrder) {
        self.add(m.into(), m.stock);
    }
    fn on_add_order_mpid(&mut self, m: &itch::AddOrderMpid) {
        self.add(m.into(), m.stock);
    }
    fn on_order_executed(&mut self, m: &itch::OrderExecuted) {
        if let Some(f) = self.execution(m.order_reference_number(), m.executed_shares()) {
            self.print(
                f.locate,
                f.price,
                u64::from(f.shares),
                m.match_number(),
                TradeKind::Executed,
            );
        }
    }
    fn on_order_executed_with_price(&mut self, m: &itch::OrderExecutedWithPrice) {
        let fill = self.execution(m.order_reference_number(), m.executed_shares());
        if let Some(f) = fill
            && m.printable() == b'Y'
        {
            let price = m.execution_price();
            self.print(
                f.locate,
                price,
                u64::from(f.shares),
                m.match_number(),
                TradeKind::ExecutedWithPrice,
            );
        }
    }
    fn on_order_cancel(&mut self, m: &itch::OrderCancel) {
        let (reference, shares) = (m.order_reference_number(), m.cancelled_shares());
        self.on_resting(reference, |b| {
            b.cancel(reference, shares);
        });
    }
    fn on_order_delete(&mut self, m: &itch::OrderDelete) {
        let reference = m.order_reference_number();
        self.on_resting(reference, |b| {
            b.delete(reference);
        });
    }
    fn on_order_replace(&mut self, m: &itch::OrderReplace) {
        let (old, new) = (
            m.original_order_reference_number(),
            m.new_order_reference_number(),
        );
        let (shares, price) = (m.shares(), m.price());
        self.on_resting(old, |b| {
            b.replace(old, new, shares, price);
        });
    }
    fn on_trade(&mut self, m: &itch::Trade) {
        self.print(
            m.header.stock_locate(),
            m.price(),
            u64::from(m.shares()),
            m.match_number(),
            TradeKind::Hidden,
        );
    }
    fn on_cross_trade(&mut self, m: &itch::CrossTrade) {
        if m.shares() > 0 {
            self.print(
                m.header.stock_locate(),
                m.cross_price(),
                m.shares(),
                m.match_number(),
                TradeKind::Cross,
            );
        }
    }
}

/// How fast a replay runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Speed {
    /// As fast as possible.
    Max,
    /// Paced by the capture's timestamps, sped up by this factor (1.0 = real time).
    Factor(f64),
}

/// How to replay.
#[derive(Debug, Clone)]
pub struct ReplayOptions {
    /// Feed lines (group, port): frames to the same session on several
    /// lines are arbitrated, line = index here. Empty: every UDP frame, one line.
    pub feeds: Vec<([u8; 4], u16)>,
    /// Session layer tuning (its `servers` is set from `retrans`).
    pub session: SessionConfig,
    /// Re-request servers.
    pub retrans: Vec<SocketAddr>,
    /// Pace.
    pub speed: Speed,
    /// How long to keep recovering after the end of the file.
    pub recovery_deadline: Duration,
}

impl Default for ReplayOptions {
    fn default() -> Self {
        Self {
            feeds: Vec::new(),
            session: SessionConfig::default(),
            retrans: Vec::new(),
            speed: Speed::Max,
            recovery_deadline: Duration::from_secs(30),
        }
    }
}

/// What a replay did.
#[derive(Debug, Clone, Default)]
pub struct ReplayOutcome {
    /// Records, packets and messages read, and what was malformed.
    pub decode: DecodeCounts,
    /// Session layer counters.
    pub session: SessionStats,
    /// Per-line counters.
    pub lines: Vec<LineStats>,
    /// Messages delivered to the pipeline.
    pub delivered: u64,
    /// Lost ranges (the first 64), exact.
    pub lost: Vec<(u64, u64)>,
    /// Wall time.
    pub elapsed: Duration,
    /// Malformed packets reported (the first few are printed by the caller).
    pub problems: Vec<String>,
}

impl ReplayOutcome {
    /// Prints what the operator must know on stderr: losses and malformed input.
    pub fn warn(&self, who: &str) {
        for p in &self.problems {
            eprintln!("{who}: {p}");
        }
        if self.session.unrecoverable_messages > 0 {
            eprintln!(
                "{who}: warning: {} messages lost in {} gaps (first: {:?}); books may be wrong",
                self.session.unrecoverable_messages,
                self.session.unrecoverable_gaps,
                self.lost.first()
            );
        }
    }
}

/// Why a replay failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError {
    /// Reading the capture failed.
    #[error(transparent)]
    Capture(#[from] CaptureError),
    /// The re-request socket could not be set up.
    #[error("re-request socket: {0}")]
    Socket(std::io::Error),
}

const MAX_PROBLEMS: usize = 20;

struct Problems<'a> {
    path: &'a Path,
    list: &'a mut Vec<String>,
}

impl FeedSink for Problems<'_> {
    fn message(&mut self, _: &Session, _: u64, _: MessageRef<'_>) {}
    fn problem(&mut self, at: Location, problem: Problem) {
        if self.list.len() < MAX_PROBLEMS {
            self.list.push(format!(
                "{}: {} {} (byte offset {}): {problem}; skipped",
                self.path.display(),
                at.unit,
                at.number,
                at.offset
            ));
        }
    }
}

/// Applies the session's actions: deliveries to the pipeline (and the tap),
/// requests to the servers, news to the bus.
pub(crate) struct Apply<'a> {
    pub(crate) pipeline: &'a mut Pipeline,
    pub(crate) socket: Option<&'a UdpSocket>,
    pub(crate) servers: &'a [SocketAddr],
    pub(crate) session: Session,
    pub(crate) delivered: u64,
    pub(crate) lost: &'a mut Vec<(u64, u64)>,
    pub(crate) bad_messages: u64,
    /// Canonical JSON of every delivered message, for debugging.
    pub(crate) tap: Option<&'a mut dyn std::io::Write>,
    pub(crate) line: Vec<u8>,
}

impl ActionSink for Apply<'_> {
    fn action(&mut self, action: Action<'_>) {
        match action {
            Action::Deliver { seq, message } => match itch::parse(message) {
                Ok(m) => {
                    self.delivered += 1;
                    self.pipeline.deliver(self.session, seq, m);
                    if let Some(tap) = &mut self.tap {
                        self.line.clear();
                        crate::json::write_message(&mut self.line, self.session.trimmed(), seq, &m);
                        // The tap is a debugging aid: a failing tap must not stop the feed.
                        let _ = tap.write_all(&self.line);
                    }
                }
                Err(_) => self.bad_messages += 1,
            },
            Action::Request { server, request } => {
                if let (Some(socket), Some(addr)) = (self.socket, self.servers.get(server)) {
                    // A failed send is retried by the session's timer.
                    let _ = socket.send_to(&request.encode(), addr);
                }
            }
            Action::Event(e) => {
                match e {
                    SessionEvent::NewSession { session } => self.session = session,
                    SessionEvent::Unrecoverable { from, end } if self.lost.len() < 64 => {
                        self.lost.push((from, end));
                    }
                    _ => {}
                }
                self.pipeline.session_event(e);
            }
        }
    }
}

/// Reads every retransmission waiting on the socket into the arbiter.
pub(crate) fn drain_socket(
    socket: &UdpSocket,
    buf: &mut [u8],
    arbiter: &mut Arbiter,
    now: u64,
    apply: &mut Apply<'_>,
) {
    while let Ok((n, _)) = socket.recv_from(buf) {
        if let Ok(p) = Packet::new_checked(&buf[..n]) {
            arbiter.on_retransmission(now, &p, apply);
        }
    }
}

/// Replays a capture through the session layer into `pipeline`; `progress`
/// gets the byte offset now and then.
pub fn replay(
    path: &Path,
    options: &ReplayOptions,
    pipeline: &mut Pipeline,
    progress: &mut dyn FnMut(u64),
) -> Result<ReplayOutcome, ReplayError> {
    let started = Instant::now();
    let mut outcome = ReplayOutcome::default();
    let socket = crate::net::udp::retrans_socket(&options.retrans).map_err(ReplayError::Socket)?;
    let cfg = SessionConfig {
        servers: options.retrans.len(),
        ..options.session.clone()
    };
    let lines = options.feeds.len().max(1);
    let mut arbiter = Arbiter::new(cfg, lines, 1_000_000_000);
    let filter = FeedFilter {
        feeds: options.feeds.clone(),
    };
    let mut decoder = FeedDecoder::new(filter.clone());
    let mut problems = Vec::new();
    let mut lost = Vec::new();
    let mut apply = Apply {
        pipeline,
        socket: socket.as_ref(),
        servers: &options.retrans,
        session: BINARYFILE_SESSION,
        delivered: 0,
        lost: &mut lost,
        bad_messages: 0,
        tap: None,
        line: Vec::new(),
    };
    let mut rx = vec![0u8; 65_536];
    let clock = |capture_ts: u64| {
        if options.retrans.is_empty() {
            capture_ts
        } else {
            started.elapsed().as_nanos() as u64
        }
    };
    let mut first_ts: Option<u64> = None;
    let mut last_ts = 0u64;
    let mut records = 0u64;
    capture::read(path, |record| {
        records += 1;
        let mut report = Problems {
            path,
            list: &mut problems,
        };
        match record {
            Record::Message {
                number,
                offset,
                data,
            } => {
                // BinaryFILE: no packets, no sequencing to do.
                let at = Location::message(number, offset);
                let mut direct = Direct {
                    apply: &mut apply,
                    report: &mut report,
                };
                decoder.message(at, &BINARYFILE_SESSION, number, data, &mut direct);
                if records.is_multiple_of(65_536) {
                    progress(offset);
                }
            }
            Record::Frame(frame) => {
                pace(options.speed, started, &mut first_ts, frame.ts_nanos);
                last_ts = frame.ts_nanos;
                let now = clock(frame.ts_nanos);
                let at = Location::frame(&frame);
                if let Some(udp) = decoder.udp(&frame, &mut report)
                    && let Some(packet) = decoder.packet(at, udp.payload, &mut report)
                {
                    // Every frame is one of the feeds (the decoder filtered),
                    // or, without feeds, of the only line.
                    let line = filter.line(&udp).unwrap_or(0);
                    arbiter.on_packet(line, now, &packet, &mut apply);
                }
                if let Some(s) = &socket {
                    drain_socket(s, &mut rx, &mut arbiter, now, &mut apply);
                }
                arbiter.on_timer(now, &mut apply);
                if frame.number.is_multiple_of(4096) {
                    progress(frame.offset);
                }
            }
        }
    })?;
    // After the file: keep recovering what is missing, then give up on the rest.
    if let Some(s) = &socket {
        s.set_nonblocking(false).map_err(ReplayError::Socket)?;
        s.set_read_timeout(Some(Duration::from_millis(2)))
            .map_err(ReplayError::Socket)?;
        let deadline = Instant::now() + options.recovery_deadline;
        while arbiter.tracker().has_gap() && Instant::now() < deadline {
            let now = clock(0);
            if let Ok((n, _)) = s.recv_from(&mut rx)
                && let Ok(p) = Packet::new_checked(&rx[..n])
            {
                arbiter.on_retransmission(now, &p, &mut apply);
            }
            arbiter.on_timer(clock(0), &mut apply);
        }
    }
    arbiter.finish(clock(last_ts), &mut apply);
    outcome.delivered = apply.delivered;
    outcome.decode = decoder.counts();
    outcome.decode.bad_messages += apply.bad_messages;
    outcome.session = arbiter.stats();
    outcome.lines = arbiter.lines().to_vec();
    outcome.lost = lost;
    outcome.problems = problems;
    outcome.elapsed = started.elapsed();
    Ok(outcome)
}

/// BinaryFILE messages go straight to the pipeline.
struct Direct<'a, 'b, 'c> {
    apply: &'a mut Apply<'b>,
    report: &'a mut Problems<'c>,
}

impl FeedSink for Direct<'_, '_, '_> {
    fn message(&mut self, session: &Session, seq: u64, message: MessageRef<'_>) {
        self.apply.delivered += 1;
        self.apply.pipeline.deliver(*session, seq, message);
    }
    fn problem(&mut self, at: Location, problem: Problem) {
        self.report.problem(at, problem);
    }
}

/// Sleeps so that the frame stamped `ts` goes out at its (scaled) time.
fn pace(speed: Speed, started: Instant, first_ts: &mut Option<u64>, ts: u64) {
    let Speed::Factor(factor) = speed else { return };
    let first = *first_ts.get_or_insert(ts);
    let due = Duration::from_secs_f64(ts.saturating_sub(first) as f64 / 1e9 / factor.max(1e-9));
    let elapsed = started.elapsed();
    if due > elapsed {
        std::thread::sleep(due - elapsed);
    }
}
