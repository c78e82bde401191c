//! The poller: the one loop that drives every source (AF_XDP, kernel UDP,
//! a capture) through MoldUDP64 sequencing and A/B arbitration into the
//! delivery path, with the session timers, gap recovery and the stats
//! snapshot. `ticklane run`, `replay` and `book` and the pipeline benchmark
//! all run this loop; nothing else applies a message to a book.
//!
//! Per iteration: one clock read (the TSC, through `quanta`), one poll of
//! the source (a batch of frames handed over in place), the timers, and the
//! re-request socket read in batches only while a request is out. Two
//! histograms are kept in fixed buckets: wire to handler (one more TSC read
//! per packet that carries a receive time) and the loop time of each poll
//! that brought packets. No
//! allocation, no lock, no printing: the stats go out through a wait-free
//! snapshot another thread reads.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ticklane_capture::feed::{BINARYFILE_SESSION, Problem};
use ticklane_protocols::moldudp64::Packet;

use crate::delivery::{Delivery, RangeLog, Tap};
use crate::pipeline::Pipeline;
use crate::recovery::{self, Answers};
use crate::request::{Answer, Ask, BookSnapshot, RequestServer, Stock};
use crate::session::{Arbiter, Pending, Route, SessionConfig, SessionTable};
use crate::source::{
    Arrival, Payload, Polled, RxClock, RxSource, Source, SourceError, Verdict, Wait,
};
use crate::stats::{
    self, Histogram, MAX_LINES, MAX_SESSIONS, SessionSnapshot, Snapshot, StatsReader, StatsWriter,
};

/// Which clock the session layer's timers run on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimeBase {
    /// The machine's monotonic clock (live feeds, replays that talk to a
    /// re-request server).
    Monotonic,
    /// The capture's own timestamps: a replay without a server is then
    /// deterministic, whatever the machine's speed.
    Capture,
}

/// How to poll.
#[derive(Debug, Clone)]
pub struct PollerConfig {
    /// Sequencing and recovery tuning (its `servers` is set from `retrans`).
    pub session: SessionConfig,
    /// Feed lines (A/B): at most [`MAX_LINES`].
    pub lines: usize,
    /// Re-request servers, in fail-over order.
    pub retrans: Vec<SocketAddr>,
    /// Waiting when idle.
    pub wait: Wait,
    /// The timers' clock.
    pub time: TimeBase,
    /// A line silent this long while another sends is reported down.
    pub dead_line_after_ns: u64,
    /// How often the timers run, at most.
    pub timer_every_ns: u64,
    /// How often a stats snapshot is published.
    pub publish_every_ns: u64,
    /// Stop after this long.
    pub duration: Option<Duration>,
    /// After the end of the input: how long to keep recovering gaps.
    pub recovery_deadline: Duration,
}

impl Default for PollerConfig {
    fn default() -> Self {
        Self {
            session: SessionConfig::default(),
            lines: 1,
            retrans: Vec::new(),
            wait: Wait::Sleep(1),
            time: TimeBase::Monotonic,
            dead_line_after_ns: 2_000_000_000,
            timer_every_ns: 100_000,
            publish_every_ns: 100_000_000,
            duration: None,
            recovery_deadline: Duration::from_secs(30),
        }
    }
}

/// Why a poller could not start or went wrong.
#[derive(Debug, thiserror::Error)]
pub enum PollerError {
    /// Too many feed lines.
    #[error("{0} feed lines: at most {MAX_LINES} are arbitrated together")]
    TooManyLines(usize),
    /// The re-request socket.
    #[error("opening the re-request socket")]
    Recovery(#[source] std::io::Error),
    /// The source failed.
    #[error(transparent)]
    Source(#[from] SourceError),
}

/// Why the loop ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Ending {
    /// Asked to stop (a signal).
    Stopped,
    /// The configured duration passed.
    Duration,
    /// The input ended (a capture).
    EndOfInput,
}

/// What a finished poller hands back.
#[derive(Debug)]
pub struct Finished<S> {
    /// The source (its own counters and problems).
    pub source: S,
    /// The pipeline: books, VWAP, bus.
    pub pipeline: Pipeline,
    /// Why it ended.
    pub ending: Ending,
    /// The last snapshot of every counter.
    pub snapshot: Snapshot,
    /// Unrecoverable ranges with their bounds.
    pub lost: RangeLog,
    /// Delivered messages the audit ring could not take.
    pub audit_missed: RangeLog,
    /// Wall time from start to finish.
    pub elapsed: Duration,
    /// Tap writes that failed, and the tap's final flush.
    pub tap: (u64, std::io::Result<()>),
}

/// Time, read from the TSC once per iteration (and per packet that has a
/// receive time).
#[derive(Debug)]
struct Clock {
    tsc: quanta::Clock,
    origin: u64,
    base: TimeBase,
    /// Wall nanoseconds since start, as of the last read.
    wall: u64,
    /// The session layer's time.
    session: u64,
    /// The TSC, CLOCK_MONOTONIC and CLOCK_REALTIME read together, taken
    /// again with every snapshot: receive times are compared on their own
    /// clock, read through the TSC since the last anchor (so that the TSC's
    /// drift against them never adds up past one snapshot interval).
    anchor: Anchor,
}

#[derive(Debug, Clone, Copy)]
struct Anchor {
    raw: u64,
    monotonic: u64,
    realtime: u64,
}

impl Anchor {
    fn now(tsc: &quanta::Clock) -> Self {
        Self {
            raw: tsc.raw(),
            monotonic: crate::sys::clock_ns(RxClock::Monotonic),
            realtime: crate::sys::clock_ns(RxClock::Realtime),
        }
    }
}

impl Clock {
    fn new(base: TimeBase) -> Self {
        let tsc = quanta::Clock::new();
        let origin = tsc.raw();
        let anchor = Anchor::now(&tsc);
        Self {
            tsc,
            origin,
            base,
            wall: 0,
            session: 0,
            anchor,
        }
    }

    /// The TSC now, raw.
    #[inline]
    fn raw(&self) -> u64 {
        self.tsc.raw()
    }

    /// Nanoseconds between two raw TSC readings.
    #[inline]
    fn between(&self, from: u64, to: u64) -> u64 {
        self.tsc.delta_as_nanos(from, to)
    }

    /// Now on `clock`, through the TSC.
    #[inline]
    fn now_on(&self, clock: RxClock) -> u64 {
        let base = match clock {
            RxClock::Monotonic => self.anchor.monotonic,
            RxClock::Realtime => self.anchor.realtime,
        };
        base + self.between(self.anchor.raw, self.raw())
    }

    /// Takes the anchor again (two vDSO clock reads: on the snapshot's
    /// schedule, not per packet).
    fn reanchor(&mut self) {
        self.anchor = Anchor::now(&self.tsc);
    }

    #[inline]
    fn tick(&mut self) -> u64 {
        self.wall = self.tsc.delta_as_nanos(self.origin, self.tsc.raw());
        if self.base == TimeBase::Monotonic {
            self.session = self.wall;
        }
        self.wall
    }

    #[inline]
    fn captured(&mut self, at: Option<u64>) {
        if self.base == TimeBase::Capture
            && let Some(at) = at
        {
            self.session = self.session.max(at);
        }
    }
}

/// Everything but the source, so that the source can lend arrivals to it.
#[derive(Debug)]
struct Core<'a> {
    sessions: SessionTable,
    delivery: Delivery,
    answers: Option<Answers>,
    clock: Clock,
    stop: &'a AtomicBool,
    packets: u64,
    malformed: u64,
    arrivals: u64,
    next_timer: u64,
    next_publish: u64,
    timer_every: u64,
    publish_every: u64,
    snapshot: Snapshot,
    writer: StatsWriter,
    /// Receive time to hand-over, per packet that has one.
    wire_to_handler: Histogram,
    rx_source: Option<RxSource>,
    /// The TSC at the first arrival of the current poll.
    batch_start: Option<u64>,
    loop_time: Histogram,
}

/// The loop and its state.
#[derive(Debug)]
pub struct Poller<'a, S> {
    source: S,
    core: Core<'a>,
    cfg: PollerConfig,
    requests: Option<RequestServer>,
}

impl<'a, S: Source> Poller<'a, S> {
    /// A poller of `source` into `pipeline`, stopping when `stop` is set.
    /// All its memory is allocated here. Returns the stats reader too.
    pub fn new(
        source: S,
        pipeline: Pipeline,
        tap: Option<Tap>,
        cfg: PollerConfig,
        stop: &'a AtomicBool,
    ) -> Result<(Self, StatsReader), PollerError> {
        if cfg.lines > MAX_LINES {
            return Err(PollerError::TooManyLines(cfg.lines));
        }
        let (requester, answers) =
            match recovery::open(&cfg.retrans).map_err(PollerError::Recovery)? {
                Some((r, a)) => (Some(r), Some(a)),
                None => (None, None),
            };
        let session_cfg = SessionConfig {
            servers: cfg.retrans.len(),
            ..cfg.session.clone()
        };
        let (writer, reader) = stats::channel();
        let core = Core {
            sessions: SessionTable::new(
                &session_cfg,
                cfg.lines.max(1),
                cfg.dead_line_after_ns,
                MAX_SESSIONS,
            ),
            delivery: Delivery::new(pipeline, requester, tap),
            answers,
            clock: Clock::new(cfg.time),
            stop,
            packets: 0,
            malformed: 0,
            arrivals: 0,
            next_timer: 0,
            next_publish: 0,
            timer_every: cfg.timer_every_ns.max(1),
            publish_every: cfg.publish_every_ns.max(1),
            snapshot: Snapshot::default(),
            writer,
            wire_to_handler: Histogram::default(),
            rx_source: None,
            batch_start: None,
            loop_time: Histogram::default(),
        };
        Ok((
            Self {
                source,
                core,
                cfg,
                requests: None,
            },
            reader,
        ))
    }

    /// Another reader of the stats snapshots (one per reading thread).
    pub fn stats_reader(&mut self) -> StatsReader {
        self.core.writer.reader()
    }

    /// Serves the requests of `server`'s ring from now on, after every poll
    /// of the source (see [`crate::request`]).
    pub fn serve(&mut self, server: RequestServer) {
        self.requests = Some(server);
    }

    /// Polls until stopped, the duration passes, or the input ends (and
    /// what it misses is recovered, or the recovery deadline passes).
    pub fn run(&mut self) -> Result<Ending, PollerError> {
        let deadline = self
            .cfg
            .duration
            .map(|d| d.as_nanos().min(u128::from(u64::MAX)) as u64);
        let wait = self.cfg.wait;
        let ending = loop {
            let now = self.core.clock.tick();
            if self.core.stop.load(Ordering::Relaxed) {
                break Ending::Stopped;
            }
            if deadline.is_some_and(|d| now >= d) {
                break Ending::Duration;
            }
            let core = &mut self.core;
            let polled = self.source.poll(wait, |a| core.arrival(a))?;
            if let Some(server) = &mut self.requests {
                let (core, source) = (&mut self.core, &mut self.source);
                server.serve(|ask| core.answer(ask, source));
            }
            if self.core.clock.wall >= self.core.next_publish {
                // Reading them may take syscalls: only when a snapshot is due.
                self.core.snapshot.source = self.source.counters();
            }
            // After every poll, the timers and the answers whatever their
            // schedule: on a live feed, recovery waits on them (measured in
            // the namespace lab: on the schedule alone, the tail of a lossy
            // feed was lost to ring overflow in every run).
            self.core.housekeeping(true);
            if let Some(start) = self.core.batch_start.take() {
                let clock = &self.core.clock;
                self.core
                    .loop_time
                    .record(clock.between(start, clock.raw()));
            }
            if polled == Polled::End {
                // A capture cut short by the stop flag ended, but not at its end.
                break if self.core.stop.load(Ordering::Relaxed) {
                    Ending::Stopped
                } else {
                    Ending::EndOfInput
                };
            }
        };
        if ending == Ending::EndOfInput {
            self.recover_rest();
        }
        Ok(ending)
    }

    /// After the input: reads answers until nothing is missing or the
    /// recovery deadline passes.
    fn recover_rest(&mut self) {
        let Some(answers) = self.core.answers.as_ref().map(Answers::fd) else {
            return;
        };
        let start = self.core.clock.tick();
        let limit = self
            .cfg
            .recovery_deadline
            .as_nanos()
            .min(u128::from(u64::MAX)) as u64;
        while self.core.sessions.has_gap() && !self.core.stop.load(Ordering::Relaxed) {
            let now = self.core.clock.tick();
            if now.saturating_sub(start) >= limit {
                break;
            }
            crate::sys::wait_readable(&[answers], 1);
            self.core.housekeeping(true);
        }
    }

    /// Settles what is still open (every hole left is lost), publishes the
    /// last snapshot and hands everything back.
    pub fn finish(mut self, ending: Ending) -> Finished<S> {
        let core = &mut self.core;
        core.clock.tick();
        let now = core.clock.session;
        if let Some((session, arbiter, pending)) = core.sessions.settle_candidates() {
            core.delivery.set_session(session);
            sequence_pending(arbiter, pending, &mut core.delivery);
        }
        for (session, arbiter) in core.sessions.iter_mut() {
            core.delivery.set_session(session);
            arbiter.finish(now, &mut core.delivery);
        }
        self.core.snapshot.source = self.source.counters();
        self.core.publish();
        let core = self.core;
        let mut delivery = core.delivery;
        let tap = (delivery.tap_failures(), delivery.flush_tap());
        let (lost, audit_missed) = (delivery.lost().clone(), delivery.audit_missed().clone());
        Finished {
            source: self.source,
            ending,
            snapshot: core.snapshot,
            lost,
            audit_missed,
            elapsed: Duration::from_nanos(core.clock.wall),
            tap,
            pipeline: delivery.into_pipeline(),
        }
    }
}

/// Sequences the packets a session kept aside before it was confirmed.
fn sequence_pending(arbiter: &mut Arbiter, pending: Pending<'_>, delivery: &mut Delivery) {
    for (line, at, kept) in pending {
        if let Ok(p) = Packet::new_checked(kept) {
            arbiter.on_packet(line, at, &p, delivery);
        }
    }
}

impl Core<'_> {
    /// One arrival from the source.
    #[inline]
    fn arrival(&mut self, a: Arrival<'_>) -> Verdict {
        self.clock.captured(a.captured_at);
        if self.batch_start.is_none() {
            self.batch_start = Some(self.clock.raw());
        }
        let verdict = match a.payload {
            Payload::Packet(bytes) => match Packet::new_checked(bytes) {
                Ok(packet) => {
                    if let Some(rx) = a.received_at {
                        let now = self.clock.now_on(rx.source.clock());
                        self.wire_to_handler.record(now.saturating_sub(rx.ns));
                        self.rx_source = Some(rx.source);
                    }
                    self.packets += 1;
                    let session = packet.session();
                    let now = self.clock.session;
                    if let Route::To(arbiter, pending) =
                        self.sessions.route(session, a.line, now, bytes)
                    {
                        self.delivery.set_session(session);
                        sequence_pending(arbiter, pending, &mut self.delivery);
                        arbiter.on_packet(a.line, now, &packet, &mut self.delivery);
                    }
                    Verdict::Taken
                }
                Err(e) => {
                    self.malformed += 1;
                    Verdict::Rejected(Problem::Mold(e))
                }
            },
            Payload::Message { seq, bytes } => {
                self.delivery.set_session(BINARYFILE_SESSION);
                match self.delivery.message(seq, bytes) {
                    Ok(()) => Verdict::Taken,
                    Err(error) => Verdict::Rejected(Problem::Itch { seq, error }),
                }
            }
        };
        // A capture hands over its whole content in one poll: the timers run
        // when its clock says so, and the stop flag and the wall clock (for
        // the snapshot) are looked at every 1024 arrivals.
        self.arrivals += 1;
        if self.arrivals.is_multiple_of(1024) {
            self.clock.tick();
            if self.stop.load(Ordering::Relaxed) {
                return Verdict::Stop;
            }
        }
        self.housekeeping(false);
        verdict
    }

    /// Answers from the re-request servers and the timers, every
    /// `timer_every` of session time (or now, with `force`: after every
    /// poll); the snapshot every `publish_every` of wall time. Called after
    /// every arrival (a capture hands over its whole file in one poll), it
    /// costs two comparisons when nothing is due.
    #[inline]
    fn housekeeping(&mut self, force: bool) {
        let now = self.clock.session;
        if force || now >= self.next_timer {
            self.timers(now);
        }
        if self.clock.wall >= self.next_publish {
            self.publish();
            self.clock.reanchor();
            self.next_publish = self.clock.wall.saturating_add(self.publish_every);
        }
    }

    fn timers(&mut self, now: u64) {
        if let Some(answers) = &mut self.answers
            && self.sessions.awaiting_retransmission()
        {
            let (sessions, delivery) = (&mut self.sessions, &mut self.delivery);
            // Batches until the socket is empty (bounded: a server's burst).
            for _ in 0..64 {
                let got = answers.receive(|datagram| {
                    if let Ok(p) = Packet::new_checked(datagram)
                        && let Some(arbiter) = sessions.get_mut(p.session())
                    {
                        delivery.set_session(p.session());
                        arbiter.on_retransmission(now, &p, delivery);
                    }
                });
                if !matches!(got, Ok(n) if n > 0) {
                    break;
                }
            }
        }
        for (session, arbiter) in self.sessions.iter_mut() {
            self.delivery.set_session(session);
            arbiter.on_timer(now, &mut self.delivery);
        }
        self.next_timer = now.saturating_add(self.timer_every);
    }

    /// Serves one control-plane request (bounded work: a snapshot copies
    /// at most the levels it has room for; a symbol is looked up among the
    /// books, one per stock).
    fn answer(&mut self, ask: Ask, source: &mut impl Source) -> Answer {
        match ask {
            Ask::Book { stock, mut into } => {
                self.snapshot_book(stock, &mut into);
                Answer::Book(into)
            }
            Ask::AddFeed { feed, mut socket } => {
                let line = source.add_feed(feed, &mut socket);
                if let Ok(line) = line {
                    self.sessions.grow_lines(line + 1);
                }
                Answer::FeedAdded { line, socket }
            }
            Ask::RemoveFeed { group, port } => {
                let mut socket = None;
                let line = source.remove_feed(group, port, &mut socket);
                if let Ok(line) = line {
                    self.sessions.vacate_line(line);
                }
                Answer::FeedRemoved { line, socket }
            }
        }
    }

    fn snapshot_book(&self, stock: Stock, into: &mut BookSnapshot) {
        let books = &self.delivery.pipeline().books;
        let book = match stock {
            Stock::Locate(locate) => books.book(locate).map(|b| (locate, b)),
            Stock::Symbol(symbol) => books.iter().find(|(_, b)| b.stock().0 == symbol),
        };
        (into.session, into.seq) = self.delivery.last_delivered();
        into.stale = self.sessions.iter().any(|(_, a)| a.tracker().is_stale());
        match book {
            Some((locate, book)) => into.fill(locate, book),
            None => into.found = false,
        }
    }

    /// Fills the snapshot from the counters and publishes it.
    fn publish(&mut self) {
        let s = &mut self.snapshot;
        s.uptime_ns = self.clock.wall;
        s.packets = self.packets;
        s.malformed_packets = self.malformed;
        s.foreign_session_packets = self.sessions.foreign_packets();
        s.delivered = self.delivery.delivered();
        s.bad_messages = self.delivery.bad_messages();
        s.lost_messages = self.delivery.lost().messages();
        s.lost_ranges = self.delivery.lost().ranges();
        s.audit_missed = self.delivery.audit_missed().messages();
        s.failed_requests = self.delivery.failed_requests();
        s.bus = self.delivery.pipeline().bus().stats();
        s.wire_to_handler = self.wire_to_handler;
        s.rx_source = self.rx_source;
        s.loop_time = self.loop_time;
        s.session_count = 0;
        for ((session, arbiter), slot) in self.sessions.iter().zip(s.sessions.iter_mut()) {
            let tracker = arbiter.tracker();
            let lines = arbiter.lines();
            let mut snap = SessionSnapshot {
                session,
                stats: tracker.stats(),
                next_seq: tracker.next_seq(),
                stale: tracker.is_stale(),
                ended: tracker.is_finished(),
                known_end: tracker.known_end(),
                line_count: lines.len().min(MAX_LINES),
                ..SessionSnapshot::default()
            };
            for (to, from) in snap.lines.iter_mut().zip(lines) {
                *to = *from;
            }
            *slot = snap;
            s.session_count += 1;
        }
        self.writer.publish(&self.snapshot);
    }
}
