//! MoldUDP64 sequencing as a pure state machine: parsed packets and a
//! timestamp go in, [`Action`]s come out through a sink. It opens no socket
//! and reads no clock, so tests drive it through exact scenarios, and the same
//! code runs for live feeds, replays and backtests.
//!
//! What it guarantees, per session:
//! - messages are delivered once each, in sequence order;
//! - duplicates and fully obsolete packets are dropped, partially obsolete
//!   ones deliver only their new messages;
//! - packets ahead of a hole are held in a bounded window and released when
//!   the hole fills;
//! - a hole is reported ([`SessionEvent::GapDetected`], [`SessionEvent::Stale`]) and, when
//!   re-request servers are configured, requested in pieces of at most
//!   `max_request` messages with at most `max_in_flight` requests
//!   outstanding, retried with exponential backoff and failed over between
//!   servers; after `max_attempts` the range is reported
//!   [`SessionEvent::Unrecoverable`] with its exact bounds and skipped;
//! - heartbeats and end of session reveal tail gaps; gaps before the end of
//!   a session are still filled before [`SessionEvent::EndOfSession`];
//! - a new session name (next trading day) starts clean;
//! - a single forged packet far ahead cannot wreck the session (see
//!   *Sequence sanity* below).
//!
//! # Sequence sanity
//!
//! A packet's position is its end (the sequence number after its last
//! message) for a message packet, its sequence number for a heartbeat or an
//! end of session. The *horizon* is the furthest position accepted so far
//! (the larger of the next message to deliver and one past the highest
//! message known to exist). A packet positioned more than
//! [`SessionConfig::max_jump`] beyond the horizon, or further than the feed
//! could have sent since the last trusted packet at
//! [`SessionConfig::max_rate`] (plus one packet's worth), is *suspect*: it
//! is counted
//! ([`SessionStats::suspect_packets`]) and remembered in a single slot (the
//! last suspect only), but otherwise ignored: it moves nothing, is not held,
//! and a suspect end of session does not end the session. So one forged
//! packet numbered 2^63 neither opens a gap of 2^63 messages (that would be
//! declared lost, or requested forever) nor ends the day.
//!
//! The first packet of a session is measured against nothing: the point
//! backfill starts from (sequence number 1) is an assumption, not something
//! the feed said, so a session joined late (or a capture that begins in the
//! middle of the day) is taken where its first packet puts it, and the
//! messages before it are a gap as always. Only a packet that arrives first
//! of all can move the horizon unchecked.
//!
//! A suspect is *confirmed* when another packet (any line, any kind) is
//! itself beyond `max_jump` of the horizon but within `max_jump` of the
//! remembered suspect: the feed really is up there (joining late, a long
//! outage). Both are then trusted ([`SessionStats::confirmed_jumps`]): the
//! suspect is acted on first, then the current packet, and the hole before
//! them is reported and requested (or lost) as any other. Packets within
//! `max_jump` of the horizon are trusted at once. This rule stops a lone
//! forged packet, not an attacker who can send two.
//!
//! The suspect packet is kept aside (one slot, its bytes copied) and acted
//! on if confirmed, so a real jump loses nothing to the check.
//!
//! An end of session ends the session only as long as the feed agrees: a
//! packet positioned beyond an accepted end is suspect too, and once a
//! second one confirms it the end is taken back
//! ([`SessionStats::contradicted_ends`]). A forged end of session at the
//! horizon therefore costs nothing but a moment's [`SessionEvent::EndOfSession`].
//!
//! # Held packets
//!
//! A packet that arrives ahead of a hole is held, and is delivered only
//! once the feed has *vouched* for it: a later packet (any line, any kind)
//! started at or beyond its end, or a heartbeat or end of session named a
//! sequence number there. Until then it waits, however long, when delivery
//! reaches it; meanwhile a server (if any) is asked for its messages, and
//! any other copy that covers the next message (the genuine packet, a
//! retransmission, a lost range) takes precedence and the unvouched packet
//! is dropped ([`SessionStats::unconfirmed_packets`]). So a packet forged a
//! few thousand messages ahead (within `max_jump`, so not suspect) is never
//! applied in place of the real messages: the real packet arrives before
//! anything starts beyond the forgery. A live feed vouches within one packet
//! interval, so this costs latency only on the last packet before a pause,
//! and only after a loss. At the end of input, an unvouched packet's range
//! is reported lost. The first packet of a session, which places it, needs
//! no voucher.
//!
//! Without servers, every hole older than the reorder wait is given up in
//! one pass: a hole is as old as the earliest packet beyond it (each of
//! them revealed it). The arbiter lengthens the wait while one line lags
//! behind another (see [`Arbiter`]).
//!
//! All sequence arithmetic saturates: numbers near `u64::MAX` cannot panic
//! or wrap.
//!
//! Memory is fixed at construction (the window's arena and the request table).

mod arbiter;
mod table;

pub use arbiter::{Arbiter, LineStats};
pub use table::{PENDING, Pending, Route, SessionTable};

use std::collections::VecDeque;

use ticklane_protocols::moldudp64::{Packet, PacketKind, Request, Session};

/// Tuning of a [`SessionTracker`].
#[derive(Debug, Clone)]
pub struct SessionConfig {
    /// Number of re-request servers (0: gaps wait `reorder_wait_ns`, then are lost).
    pub servers: usize,
    /// Most messages asked for in one request.
    pub max_request: u16,
    /// Most requests outstanding at once (so a large gap does not flood the server).
    pub max_in_flight: usize,
    /// Time before a request is retried, before any answer measured the
    /// round trip, and the most it waits once measured; doubles with every
    /// attempt.
    pub request_timeout_ns: u64,
    /// The least a request waits, however fast the server answers.
    pub min_request_timeout_ns: u64,
    /// Cap of the backoff.
    pub max_request_timeout_ns: u64,
    /// Attempts of one request before its range is unrecoverable.
    pub max_attempts: u32,
    /// Attempts on one server before failing over to the next.
    pub attempts_per_server: u32,
    /// Without servers: how long a hole may wait for a late (reordered)
    /// packet before it is declared lost.
    pub reorder_wait_ns: u64,
    /// Without servers, with several lines: how long a hole may wait for a
    /// live line that lags behind and has not reached it yet.
    pub max_line_wait_ns: u64,
    /// With servers: how long a hole waits for a reordered packet before
    /// it is asked for, unless the feed moves on past it first (one more
    /// packet beyond the horizon: the hole was no adjacent swap). Zero asks
    /// at once. Saves the requests that reordering alone would cause.
    pub request_delay_ns: u64,
    /// Packets the reorder window holds (see [`SessionConfig::window_for`]
    /// to size it in time at the feed's peak rate).
    pub window_packets: usize,
    /// Largest packet the window can hold, in bytes.
    pub max_packet: usize,
    /// Longest message accepted; a packet with a longer one is rejected.
    /// Off (`None`) by default: ITCH parsing checks exact lengths anyway, and
    /// the check costs a walk over every packet, which is then skipped.
    pub max_message_len: Option<usize>,
    /// Where a session's messages begin: messages before the first packet
    /// seen are a gap to fill (or report) from here. `Some(1)` by default,
    /// since books need the whole day; `None` joins at the first packet seen.
    pub backfill_from: Option<u64>,
    /// Furthest a packet may lie beyond the horizon (in messages) and still
    /// be trusted on its own; further, it is suspect until a second packet
    /// up there confirms it (see the module's *Sequence sanity*). Values
    /// below one packet's worth (65,535) act as 65,535; `u64::MAX` turns
    /// the check off.
    pub max_jump: u64,
    /// Most messages per second the feed can send: a packet further beyond
    /// the horizon than the feed could have sent since the last trusted
    /// packet (plus one packet's worth) is suspect too, however small
    /// `max_jump`'s share. `u64::MAX` turns this bound off.
    pub max_rate: u64,
    /// The session expected (the day's name, when known): taken at its first
    /// packet. Other new sessions wait for confirmation (see
    /// [`SessionTable`]).
    pub session: Option<Session>,
    /// Packets of a new session that confirm it (or one on a second line).
    pub confirm_session_packets: u32,
    /// Where a session already partly received (an earlier run on the same
    /// audit journal) resumes: messages of this session before this
    /// sequence number are not delivered again, and only those after it
    /// that did not arrive live are requested (not the whole day from
    /// `backfill_from`).
    pub resume: Option<(Session, u64)>,
}

impl Default for SessionConfig {
    fn default() -> Self {
        Self {
            servers: 0,
            max_request: 1000,
            max_in_flight: 4,
            request_timeout_ns: 50_000_000,
            min_request_timeout_ns: 2_000_000,
            max_request_timeout_ns: 1_000_000_000,
            max_attempts: 6,
            attempts_per_server: 2,
            reorder_wait_ns: 10_000_000,
            max_line_wait_ns: 1_000_000_000,
            request_delay_ns: 500_000,
            window_packets: 16_384,
            max_packet: 2048,
            max_message_len: None,
            backfill_from: Some(1),
            max_jump: 1_000_000,
            max_rate: 10_000_000,
            session: None,
            confirm_session_packets: 3,
            resume: None,
        }
    }
}

impl SessionConfig {
    /// The window (in packets) that holds `window_ns` of a feed sending
    /// `peak_pps` packets per second: at least one packet, at most what an
    /// index can count.
    pub fn window_for(window_ns: u64, peak_pps: u64) -> usize {
        let packets = u128::from(window_ns) * u128::from(peak_pps) / 1_000_000_000;
        usize::try_from(packets).unwrap_or(usize::MAX).max(1)
    }
}

/// What the tracker tells its owner to do, or reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action<'a> {
    /// Hand this message on; sequence numbers arrive strictly increasing.
    Deliver {
        /// Its sequence number.
        seq: u64,
        /// Its bytes (an ITCH message).
        message: &'a [u8],
    },
    /// Send this request to re-request server number `server`.
    Request {
        /// Index of the server.
        server: usize,
        /// The request packet's content.
        request: Request,
    },
    /// News about the session, for the bus and the operator.
    Event(SessionEvent),
}

/// Sequencing news (published on the bus as they are).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEvent {
    /// A hole opened: messages `from..end` are missing for now.
    GapDetected {
        /// First missing sequence number.
        from: u64,
        /// One past the last missing one known.
        end: u64,
    },
    /// Every hole since `from` is filled; delivery caught up to `end`.
    GapFilled {
        /// Where the gap episode began.
        from: u64,
        /// Next sequence number to deliver.
        end: u64,
    },
    /// Messages `from..end` could not be recovered and were skipped.
    Unrecoverable {
        /// First lost sequence number.
        from: u64,
        /// One past the last lost one.
        end: u64,
    },
    /// State built from this session (books) is not trustworthy until Fresh.
    Stale,
    /// Caught up again.
    Fresh,
    /// The session ended, all its messages delivered or reported lost.
    EndOfSession {
        /// Sequence number after the last message.
        next_seq: u64,
    },
    /// A session began (the first one, or the next day's).
    NewSession {
        /// Its name.
        session: Session,
    },
    /// A feed line stopped sending (A/B arbitration).
    LineDown {
        /// Index of the line.
        line: usize,
    },
    /// A line that was down sends again.
    LineUp {
        /// Index of the line.
        line: usize,
    },
}

/// Receives actions.
pub trait ActionSink {
    /// One action.
    fn action(&mut self, action: Action<'_>);

    /// The messages of `packet` are about to be delivered, in order: a sink
    /// may start loading what they will touch (the books prefetch the
    /// orders they name, so that the cache misses overlap). Default: nothing.
    #[inline]
    fn upcoming(&mut self, packet: &Packet<&[u8]>) {
        let _ = packet;
    }
}

impl<F: FnMut(Action<'_>)> ActionSink for F {
    fn action(&mut self, action: Action<'_>) {
        self(action);
    }
}

/// What the tracker counted.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionStats {
    /// Packets with messages received (any line, duplicates included).
    pub packets: u64,
    /// Heartbeats received.
    pub heartbeats: u64,
    /// Messages delivered.
    pub delivered: u64,
    /// Packets entirely behind delivery (duplicates, obsolete retransmissions).
    pub duplicate_packets: u64,
    /// Packets partly behind delivery (their new messages were delivered).
    pub partial_packets: u64,
    /// Packets held in the window because they came ahead of a hole.
    pub held_packets: u64,
    /// Packets ahead of a hole that found the window full (dropped).
    pub window_overflow: u64,
    /// Packets refused for a message longer than `max_message_len` (or a
    /// packet too large to hold).
    pub rejected_packets: u64,
    /// Gap episodes.
    pub gaps: u64,
    /// Gap episodes that ended with every message recovered.
    pub gaps_filled: u64,
    /// Requests sent, retries included.
    pub requests: u64,
    /// Retries.
    pub retries: u64,
    /// Fail-overs to another server.
    pub failovers: u64,
    /// Messages asked for, retries included.
    pub requested_messages: u64,
    /// Ranges declared unrecoverable.
    pub unrecoverable_gaps: u64,
    /// Messages in those ranges.
    pub unrecoverable_messages: u64,
    /// Session changes after the first.
    pub session_changes: u64,
    /// Packets positioned more than `max_jump` beyond the horizon (ignored).
    pub suspect_packets: u64,
    /// Suspects confirmed by a second packet far ahead (trusted jumps).
    pub confirmed_jumps: u64,
    /// Ends of session contradicted by the feed going on beyond them
    /// (confirmed by two packets).
    pub contradicted_ends: u64,
    /// Packets held ahead of a hole that nothing corroborated before their
    /// range was given up or recovered (not delivered).
    pub unconfirmed_packets: u64,
    /// How long gap episodes that ended with everything recovered lasted.
    pub recovery: Durations,
}

/// A histogram of durations in powers of two of microseconds (the first
/// bucket: under 2 µs; the last: 2^23 µs ≈ 8 s and more), and the longest.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Durations {
    /// Counts per power of two of microseconds.
    pub buckets: [u64; 24],
    /// The longest duration counted, in nanoseconds.
    pub max_ns: u64,
}

impl Durations {
    /// Counts one duration.
    pub fn record(&mut self, ns: u64) {
        let us = (ns / 1000).max(1);
        let bucket = (63 - us.leading_zeros() as usize).min(self.buckets.len() - 1);
        self.buckets[bucket] += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// How many were counted.
    pub fn count(&self) -> u64 {
        self.buckets.iter().sum()
    }

    /// The upper bound (µs) of the bucket holding quantile `q` (0..=1), or
    /// `None` when empty.
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        let total = self.count();
        if total == 0 {
            return None;
        }
        let rank = ((total as f64 * q).ceil() as u64).clamp(1, total);
        let mut seen = 0;
        for (i, n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(2u64 << i);
            }
        }
        None
    }
}

impl std::ops::AddAssign for Durations {
    fn add_assign(&mut self, o: Self) {
        for (to, from) in self.buckets.iter_mut().zip(o.buckets) {
            *to = to.saturating_add(from);
        }
        self.max_ns = self.max_ns.max(o.max_ns);
    }
}

impl std::ops::AddAssign for SessionStats {
    /// Sums the counters of several sessions (saturating).
    fn add_assign(&mut self, o: Self) {
        let fields = [
            (&mut self.packets, o.packets),
            (&mut self.heartbeats, o.heartbeats),
            (&mut self.delivered, o.delivered),
            (&mut self.duplicate_packets, o.duplicate_packets),
            (&mut self.partial_packets, o.partial_packets),
            (&mut self.held_packets, o.held_packets),
            (&mut self.window_overflow, o.window_overflow),
            (&mut self.rejected_packets, o.rejected_packets),
            (&mut self.gaps, o.gaps),
            (&mut self.gaps_filled, o.gaps_filled),
            (&mut self.requests, o.requests),
            (&mut self.retries, o.retries),
            (&mut self.failovers, o.failovers),
            (&mut self.requested_messages, o.requested_messages),
            (&mut self.unrecoverable_gaps, o.unrecoverable_gaps),
            (&mut self.unrecoverable_messages, o.unrecoverable_messages),
            (&mut self.session_changes, o.session_changes),
            (&mut self.suspect_packets, o.suspect_packets),
            (&mut self.confirmed_jumps, o.confirmed_jumps),
            (&mut self.contradicted_ends, o.contradicted_ends),
            (&mut self.unconfirmed_packets, o.unconfirmed_packets),
        ];
        for (to, from) in fields {
            *to = to.saturating_add(from);
        }
        self.recovery += o.recovery;
    }
}

/// A packet held in the window, or (`slot == LOST`) a range given up on
/// that lies beyond the next message to deliver.
#[derive(Debug, Clone, Copy)]
struct Held {
    seq: u64,
    end: u64,
    slot: usize,
    len: usize,
    /// When it arrived (`u64::MAX` for a lost range).
    arrived: u64,
    /// The earliest arrival among this entry and those after it: since
    /// then the hole before it is known (scratch of `settle_old_holes`).
    revealed: u64,
    /// How many times the horizon had moved when it arrived (0 for a lost
    /// range): once it moves again, the hole before this entry is no swap.
    nth: u64,
}

impl Held {
    /// The range `seq..end`, given up.
    fn lost(seq: u64, end: u64) -> Self {
        Self {
            seq,
            end,
            slot: LOST,
            len: 0,
            arrived: u64::MAX,
            revealed: u64::MAX,
            nth: 0,
        }
    }
}

const LOST: usize = usize::MAX;

#[derive(Debug, Clone, Copy)]
struct InFlight {
    from: u64,
    end: u64,
    server: usize,
    attempts: u32,
    /// When it was (last) sent.
    sent_at: u64,
    deadline: u64,
}

/// The last packet found too far ahead: its position and kind; its bytes
/// are in `SessionTracker::suspect_bytes`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Suspect {
    at: u64,
    kind: PacketKind,
    len: usize,
}

/// What sequence sanity makes of a packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sanity {
    /// Within reach of the horizon: act on it.
    Trusted,
    /// Too far ahead (or beyond an end of session): keep it aside.
    Suspect,
    /// Corroborates the suspect kept aside: act on both.
    Confirms,
}

#[derive(Debug, Clone, Copy)]
struct GapEpisode {
    from: u64,
    /// When it opened (for the recovery time).
    opened: u64,
    lost: bool,
}

/// Sequencing of one MoldUDP64 session.
#[derive(Debug)]
pub struct SessionTracker {
    cfg: SessionConfig,
    session: Option<Session>,
    /// Next sequence number to deliver (0 before the first packet).
    next_seq: u64,
    /// One past the highest sequence number known to exist.
    highest: u64,
    ended: bool,
    end_reported: bool,
    gap: Option<GapEpisode>,
    /// Held packets and lost ranges, sorted by sequence number.
    held: VecDeque<Held>,
    free_slots: Vec<usize>,
    arena: Vec<u8>,
    in_flight: Vec<InFlight>,
    requested_upto: u64,
    primary: usize,
    /// The last suspect packet, waiting for confirmation.
    suspect: Option<Suspect>,
    /// Its bytes (`max_packet` long).
    suspect_bytes: Box<[u8]>,
    /// A packet of this session was accepted: the horizon is the feed's
    /// word, not the backfill assumption.
    horizon_known: bool,
    /// When `highest` last moved.
    highest_at: u64,
    /// How many times `highest` moved.
    raises: u64,
    /// Without servers: the earliest time a settle pass may give a hole up
    /// (`u64::MAX`: none pending).
    settle_at: u64,
    /// When the last trusted packet arrived.
    trusted_at: u64,
    /// Since when delivery waits on a held packet nothing vouched for.
    front_wait: Option<u64>,
    /// Smoothed round trip of requests, once sampled.
    srtt: Option<u64>,
    /// Its mean deviation.
    rttvar: u64,
    /// The furthest sequence number a trusted packet started at (or a
    /// heartbeat or end of session named): the feed has moved past every
    /// held packet that ends there or before (see *Held packets*).
    vouched: u64,
    /// Without servers: the position of the slowest live line the arbiter
    /// knows of (holes it has not passed wait for it).
    slowest_line: Option<u64>,
    stats: SessionStats,
}

fn deliver(
    packet: &Packet<&[u8]>,
    next_seq: &mut u64,
    stats: &mut SessionStats,
    sink: &mut impl ActionSink,
) {
    sink.upcoming(packet);
    for (seq, message) in packet.messages() {
        if seq >= *next_seq {
            sink.action(Action::Deliver { seq, message });
            stats.delivered += 1;
        }
    }
    *next_seq = (*next_seq).max(packet.next_sequence_number());
}

impl SessionTracker {
    /// A tracker; all its memory is allocated here.
    pub fn new(cfg: SessionConfig) -> Self {
        let window = cfg.window_packets.max(1);
        Self {
            arena: vec![0; window * cfg.max_packet],
            free_slots: (0..window).rev().collect(),
            // Held packets, plus at most one lost range per hole between them.
            held: VecDeque::with_capacity(2 * window + cfg.max_in_flight + 2),
            in_flight: Vec::with_capacity(cfg.max_in_flight.max(1)),
            session: None,
            next_seq: 0,
            highest: 0,
            ended: false,
            end_reported: false,
            gap: None,
            requested_upto: 0,
            primary: 0,
            suspect: None,
            suspect_bytes: vec![0; cfg.max_packet].into_boxed_slice(),
            horizon_known: false,
            highest_at: 0,
            raises: 0,
            settle_at: u64::MAX,
            trusted_at: 0,
            front_wait: None,
            srtt: None,
            rttvar: 0,
            vouched: 0,
            slowest_line: None,
            stats: SessionStats::default(),
            cfg,
        }
    }

    /// Counters.
    pub fn stats(&self) -> SessionStats {
        self.stats
    }

    /// The session being tracked.
    pub fn session(&self) -> Option<Session> {
        self.session
    }

    /// Next sequence number to deliver.
    pub fn next_seq(&self) -> u64 {
        self.next_seq
    }

    /// True while a hole is open (books built from this session are stale).
    pub fn is_stale(&self) -> bool {
        self.gap.is_some()
    }

    /// True once the session ended and everything before its end was
    /// delivered or reported lost.
    pub fn is_finished(&self) -> bool {
        self.end_reported
    }

    /// True while messages are missing (held, requested or waiting).
    pub fn has_gap(&self) -> bool {
        self.next_seq < self.highest
    }

    /// The last suspect packet not (yet) confirmed: its position (end of a
    /// message packet, sequence number of a heartbeat or end of session)
    /// and kind.
    pub fn last_suspect(&self) -> Option<(u64, PacketKind)> {
        self.suspect.map(|s| (s.at, s.kind))
    }

    /// True while a request is out: retransmissions may be on their way.
    pub fn awaiting_retransmission(&self) -> bool {
        !self.in_flight.is_empty()
    }

    /// One past the highest sequence number known to exist, from message
    /// packets, heartbeats and the end of session (suspects excluded).
    pub fn known_end(&self) -> u64 {
        self.highest
    }

    /// True once an end of session was accepted (its messages may still be
    /// settling; see [`Self::is_finished`]).
    pub fn end_seen(&self) -> bool {
        self.ended
    }

    /// Tells where the slowest live feed line is (one past the last message
    /// it sent), or `None` with fewer than two lines: without servers, a
    /// hole that line has not passed yet waits for it (up to
    /// [`SessionConfig::max_line_wait_ns`]), since its copy may be on the way.
    pub fn set_slowest_line(&mut self, position: Option<u64>) {
        self.slowest_line = position;
    }

    /// Feeds one packet received at `now` (nanoseconds, any monotonic clock).
    pub fn on_packet(&mut self, now: u64, packet: &Packet<&[u8]>, sink: &mut impl ActionSink) {
        let session = packet.session();
        match self.session {
            None => self.start(session, packet.sequence_number(), sink),
            Some(s) if s != session => {
                self.finish(now, sink);
                self.stats.session_changes += 1;
                self.start(session, packet.sequence_number(), sink);
            }
            Some(_) => {}
        }
        let kind = packet.kind();
        match kind {
            PacketKind::Heartbeat => self.stats.heartbeats += 1,
            PacketKind::Messages => self.stats.packets += 1,
            PacketKind::EndOfSession => {}
        }
        // Cannot overflow: the parser refuses packets whose numbers would.
        let at = if kind == PacketKind::Messages {
            packet.next_sequence_number()
        } else {
            packet.sequence_number()
        };
        let first = !self.horizon_known;
        match self.sane(now, at, kind) {
            // The first packet places the session: it is taken at its word
            // (see *Sequence sanity*), so nothing further vouches for it.
            Sanity::Trusted if first => self.vouched = self.vouched.max(at),
            Sanity::Trusted => {}
            Sanity::Suspect => {
                self.keep_suspect(at, kind, packet.as_bytes());
                return;
            }
            Sanity::Confirms => self.apply_suspect(now, sink),
        }
        self.apply(now, packet, sink);
    }

    /// Acts on a trusted packet.
    fn apply(&mut self, now: u64, packet: &Packet<&[u8]>, sink: &mut impl ActionSink) {
        let seq = packet.sequence_number();
        let end = packet.next_sequence_number();
        match packet.kind() {
            PacketKind::Heartbeat => {
                self.raise(now, seq);
                self.vouched = self.vouched.max(seq);
            }
            PacketKind::EndOfSession => {
                self.raise(now, seq);
                self.vouched = self.vouched.max(seq);
                self.ended = true;
            }
            PacketKind::Messages => {
                let waiting = self.front_unconfirmed().is_some();
                self.vouched = self.vouched.max(seq);
                if waiting && seq > self.next_seq {
                    // This packet may vouch for the one delivery waits on,
                    // and then follow it at once rather than be held.
                    self.progress(now, sink);
                }
                self.raise(now, end);
                if let Some(max) = self.cfg.max_message_len
                    && packet.messages().any(|(_, m)| m.len() > max)
                {
                    self.stats.rejected_packets += 1;
                } else if end <= self.next_seq {
                    self.stats.duplicate_packets += 1;
                } else if seq <= self.next_seq {
                    if seq < self.next_seq {
                        self.stats.partial_packets += 1;
                    }
                    deliver(packet, &mut self.next_seq, &mut self.stats, sink);
                } else {
                    self.hold(now, seq, end, packet.as_bytes(), sink);
                }
            }
        }
        self.progress(now, sink);
    }

    fn raise(&mut self, now: u64, to: u64) {
        if to > self.highest {
            self.highest = to;
            self.highest_at = now;
            self.raises += 1;
            // A hole revealed now is due a reorder wait from now (a packet
            // held below the horizon only splits holes already known).
            self.settle_at = self
                .settle_at
                .min(now.saturating_add(self.cfg.reorder_wait_ns));
        }
    }

    /// Sequence sanity (see the module's documentation): whether a packet
    /// positioned at `at` may be acted on, is suspect, or confirms the
    /// suspect kept aside (whose position is then trusted too).
    fn sane(&mut self, now: u64, at: u64, kind: PacketKind) -> Sanity {
        let horizon = self.highest.max(self.next_seq);
        let jump = at.saturating_sub(horizon);
        let beyond_end = self.ended && at > horizon;
        if !self.horizon_known || (!beyond_end && jump <= self.allowance(now, jump)) {
            self.horizon_known = true;
            self.trusted_at = now;
            return Sanity::Trusted;
        }
        if let Some(s) = self.suspect
            && at.abs_diff(s.at) <= self.cfg.max_jump.max(u64::from(u16::MAX))
        {
            self.stats.confirmed_jumps += 1;
            self.trusted_at = now;
            if beyond_end {
                // The feed goes on: the end of session was not the end.
                self.ended = false;
                self.end_reported = false;
                self.stats.contradicted_ends += 1;
            }
            return Sanity::Confirms;
        }
        self.suspect = Some(Suspect { at, kind, len: 0 });
        self.stats.suspect_packets += 1;
        Sanity::Suspect
    }

    /// How far beyond the horizon a packet arriving at `now` may lie: one
    /// packet's worth always; beyond that, no more than `max_jump` and than
    /// the feed could have sent since the last trusted packet (computed
    /// only for a `jump` that needs it: the common case costs a compare).
    #[inline]
    fn allowance(&self, now: u64, jump: u64) -> u64 {
        let one_packet = u64::from(u16::MAX);
        if jump <= one_packet {
            return one_packet;
        }
        let could_send = u64::try_from(
            u128::from(now.saturating_sub(self.trusted_at)) * u128::from(self.cfg.max_rate)
                / 1_000_000_000,
        )
        .unwrap_or(u64::MAX);
        self.cfg
            .max_jump
            .min(one_packet.saturating_add(could_send))
            .max(one_packet)
    }

    /// Keeps the bytes of the packet just found suspect, so that it can be
    /// acted on if confirmed.
    fn keep_suspect(&mut self, at: u64, kind: PacketKind, bytes: &[u8]) {
        let len = if bytes.len() <= self.suspect_bytes.len() {
            self.suspect_bytes[..bytes.len()].copy_from_slice(bytes);
            bytes.len()
        } else {
            0 // too large to keep: confirmed, its messages are a hole
        };
        self.suspect = Some(Suspect { at, kind, len });
    }

    /// Acts on the suspect kept aside, now confirmed.
    fn apply_suspect(&mut self, now: u64, sink: &mut impl ActionSink) {
        let Some(s) = self.suspect.take() else { return };
        let bytes = std::mem::take(&mut self.suspect_bytes);
        if let Ok(p) = Packet::new_checked(&bytes[..s.len]) {
            self.apply(now, &p, sink);
        } else {
            self.raise(now, s.at);
        }
        self.suspect_bytes = bytes;
    }

    /// True for a lost range, and for a held packet the feed has moved
    /// past (see *Held packets*).
    fn vouched_for(&self, h: &Held) -> bool {
        h.slot == LOST || h.end <= self.vouched
    }

    /// Drives time: retries, fail-overs, giving up, reorder waits. Call it
    /// regularly (every millisecond or so), also when nothing arrives.
    pub fn on_timer(&mut self, now: u64, sink: &mut impl ActionSink) {
        if self.cfg.servers == 0 {
            // The pass walks the window: only when something may be due.
            if self.has_gap() && now >= self.settle_at {
                self.settle_old_holes(now);
                self.progress(now, sink);
            }
            return;
        }
        let mut i = 0;
        while i < self.in_flight.len() {
            let r = self.in_flight[i];
            if r.end <= self.next_seq || now < r.deadline {
                i += 1;
                continue;
            }
            // Ask again only for what is still missing; a request that made
            // progress since (a partial answer) starts its attempts afresh.
            let from = self.first_missing(r.from.max(self.next_seq), r.end);
            if from >= r.end {
                self.in_flight.swap_remove(i);
                continue;
            }
            let progressed = from > r.from;
            if !progressed && r.attempts >= self.cfg.max_attempts {
                self.in_flight.swap_remove(i);
                self.give_up(r.from, r.end);
                continue;
            }
            let mut server = r.server;
            if r.attempts
                .is_multiple_of(self.cfg.attempts_per_server.max(1))
                && self.cfg.servers > 1
            {
                server = (server + 1) % self.cfg.servers;
                self.primary = server;
                self.stats.failovers += 1;
            }
            let attempts = if progressed { 1 } else { r.attempts + 1 };
            self.stats.retries += 1;
            self.in_flight[i] = InFlight {
                from,
                server,
                attempts,
                sent_at: now,
                deadline: now.saturating_add(self.timeout(attempts)),
                ..r
            };
            self.send(server, from, r.end, sink);
            i += 1;
        }
        self.request_unconfirmed(now, sink);
        self.progress(now, sink);
    }

    /// The first sequence number from `cursor` (before `end`) that neither a
    /// held packet nor a range given up covers.
    fn first_missing(&self, mut cursor: u64, end: u64) -> u64 {
        let mut i = self.held.partition_point(|h| h.seq <= cursor);
        // An entry starting before `cursor` may still cover it.
        i = i.saturating_sub(1);
        while cursor < end
            && let Some(h) = self.held.get(i)
            && h.seq <= cursor
        {
            cursor = cursor.max(h.end);
            i += 1;
        }
        cursor
    }

    /// Without servers: every hole that has waited `reorder_wait` for a late
    /// copy is declared lost, all in one pass. A hole is as old as the first
    /// packet beyond it that revealed it (or, at the tail, as the horizon).
    fn settle_old_holes(&mut self, now: u64) {
        let (wait, line_wait) = (self.cfg.reorder_wait_ns, self.cfg.max_line_wait_ns);
        let slowest = self.slowest_line;
        // Old enough, and passed by every live line (or waited for long enough).
        // When the next pass may give something up: a hole not yet old
        // enough becomes due at a time; one waiting for a line, whenever the
        // line moves (so at the next timer).
        let mut next = u64::MAX;
        let mut due = |from: u64, since: u64| {
            let age = now.saturating_sub(since);
            let is_due = age >= wait && (slowest.is_none_or(|p| p > from) || age >= line_wait);
            if !is_due {
                next = next.min(if age < wait {
                    since.saturating_add(wait)
                } else {
                    now
                });
            }
            is_due
        };
        let mut revealed = u64::MAX;
        for h in self.held.iter_mut().rev() {
            revealed = revealed.min(h.arrived);
            h.revealed = revealed;
        }
        let mut cover = self.next_seq;
        let mut k = 0;
        while k < self.held.len() {
            let h = self.held[k];
            if h.seq > cover && due(cover, h.revealed) {
                self.held.insert(k, Held::lost(cover, h.seq));
                k += 1;
                cover = h.seq;
            }
            // A held packet nothing vouched for yet is no hole: it waits for
            // the feed (or the server) however long, but never for time.
            cover = cover.max(h.end);
            k += 1;
        }
        if cover < self.highest && due(cover, self.highest_at) {
            self.insert_held(Held::lost(cover, self.highest));
        }
        self.settle_at = next;
    }

    /// End of input (a replay's end of file): every hole still open is lost.
    pub fn finish(&mut self, now: u64, sink: &mut impl ActionSink) {
        while self.has_gap() {
            // A held packet nothing vouched for will stay so: its range is
            // part of the hole.
            let after = self.held.partition_point(|h| h.seq <= self.next_seq);
            let end = self
                .held
                .range(after..)
                .find(|h| self.vouched_for(h))
                .map_or(self.highest, |h| h.seq)
                .min(self.highest);
            self.give_up(self.next_seq, end);
            self.progress(now, sink);
        }
        self.in_flight.clear();
    }

    fn start(&mut self, session: Session, seq: u64, sink: &mut impl ActionSink) {
        let window = self.arena.len() / self.cfg.max_packet.max(1);
        self.session = Some(session);
        self.next_seq = match self.cfg.resume {
            Some((s, next)) if s == session => next,
            _ => self.cfg.backfill_from.map_or(seq, |b| b.min(seq)),
        }
        .max(1);
        self.highest = self.next_seq;
        self.ended = false;
        self.end_reported = false;
        self.gap = None;
        self.held.clear();
        self.free_slots.clear();
        self.free_slots.extend((0..window).rev());
        self.in_flight.clear();
        self.requested_upto = 0;
        self.front_wait = None;
        self.settle_at = u64::MAX;
        self.suspect = None;
        self.horizon_known = false;
        self.vouched = 0;
        self.slowest_line = None;
        sink.action(Action::Event(SessionEvent::NewSession { session }));
    }

    /// How long attempt `attempts` of a request waits for its answer: the
    /// retransmission timeout learnt from the server's answers (smoothed
    /// round trip + 4 × its variation, as TCP does, within
    /// `min_request_timeout_ns..=request_timeout_ns`; `request_timeout_ns`
    /// before the first answer), doubled at every retry.
    fn timeout(&self, attempts: u32) -> u64 {
        let rto = self.srtt.map_or(self.cfg.request_timeout_ns, |srtt| {
            srtt.saturating_add(self.rttvar.saturating_mul(4)).clamp(
                self.cfg.min_request_timeout_ns,
                self.cfg
                    .request_timeout_ns
                    .max(self.cfg.min_request_timeout_ns),
            )
        });
        let factor = 1u64 << attempts.saturating_sub(1).min(20);
        rto.saturating_mul(factor)
            .min(self.cfg.max_request_timeout_ns)
    }

    /// A packet from a re-request server: sequenced like any other, and,
    /// when it answers a request sent once (Karn's rule: a retried one's
    /// answer could be to either send), a sample of the round trip.
    pub fn on_retransmission(
        &mut self,
        now: u64,
        packet: &Packet<&[u8]>,
        sink: &mut impl ActionSink,
    ) {
        let seq = packet.sequence_number();
        if let Some(r) = self
            .in_flight
            .iter()
            .find(|r| r.from == seq && r.attempts == 1)
        {
            let sample = now.saturating_sub(r.sent_at);
            match self.srtt {
                None => {
                    self.srtt = Some(sample);
                    self.rttvar = sample / 2;
                }
                Some(srtt) => {
                    self.rttvar = (self.rttvar * 3 + srtt.abs_diff(sample)) / 4;
                    self.srtt = Some((srtt * 7 + sample) / 8);
                }
            }
        }
        self.on_packet(now, packet, sink);
    }

    /// The smoothed round trip to the servers, once an answer came.
    pub fn round_trip(&self) -> Option<u64> {
        self.srtt
    }

    fn insert_held(&mut self, entry: Held) {
        let at = self.held.partition_point(|h| h.seq < entry.seq);
        self.held.insert(at, entry);
    }

    fn hold(&mut self, now: u64, seq: u64, end: u64, bytes: &[u8], sink: &mut impl ActionSink) {
        if bytes.len() > self.cfg.max_packet {
            self.stats.rejected_packets += 1;
            return;
        }
        // The held entry starting closest below `seq` is the one that could
        // cover it (binary search: the window may hold thousands). One that
        // nothing vouches for does not: this packet may be the genuine copy.
        let below = self.held.partition_point(|h| h.seq <= seq);
        if below > 0 {
            let h = self.held[below - 1];
            if h.end >= end && self.vouched_for(&h) {
                self.stats.duplicate_packets += 1;
                return;
            }
        }
        if self.free_slots.is_empty() && self.cfg.servers == 0 {
            // Only time could fill the front hole; with the window full,
            // declare it lost so that the held packets can go.
            let end = self.hole_end();
            self.give_up(self.next_seq, end);
            self.progress(now, sink);
            if seq <= self.next_seq {
                if let Ok(p) = Packet::new_checked(bytes)
                    && end > self.next_seq
                {
                    deliver(&p, &mut self.next_seq, &mut self.stats, sink);
                }
                return;
            }
        }
        let Some(slot) = self.free_slots.pop() else {
            self.stats.window_overflow += 1;
            return;
        };
        let start = slot * self.cfg.max_packet;
        self.arena[start..start + bytes.len()].copy_from_slice(bytes);
        self.insert_held(Held {
            seq,
            end,
            slot,
            len: bytes.len(),
            arrived: now,
            revealed: now,
            nth: self.raises,
        });
        self.stats.held_packets += 1;
    }

    /// First held sequence number after `next_seq`, or `highest`.
    fn hole_end(&self) -> u64 {
        let after = self.held.partition_point(|h| h.seq <= self.next_seq);
        self.held
            .get(after)
            .map_or(self.highest, |h| h.seq)
            .min(self.highest)
    }

    /// Declares `from..end` lost: at once when it starts at the next message,
    /// otherwise when delivery reaches it.
    fn give_up(&mut self, from: u64, end: u64) {
        if end <= self.next_seq {
            return;
        }
        self.insert_held(Held::lost(from.max(self.next_seq), end));
    }

    fn send(&mut self, server: usize, from: u64, end: u64, sink: &mut impl ActionSink) {
        let Some(session) = self.session else { return };
        if end <= from {
            return;
        }
        // u16::MAX is no count (it marks an end of session).
        let count = u16::try_from(end - from)
            .unwrap_or(u16::MAX)
            .min(u16::MAX - 1);
        self.stats.requests += 1;
        self.stats.requested_messages = self
            .stats
            .requested_messages
            .saturating_add(u64::from(count));
        sink.action(Action::Request {
            server,
            request: Request {
                session,
                sequence_number: from,
                message_count: count,
            },
        });
    }

    /// Whether the front of the window is a packet that delivery has reached
    /// but nothing corroborates yet: it waits (see *Held packets*).
    fn front_unconfirmed(&self) -> Option<Held> {
        self.held
            .front()
            .filter(|h| !self.vouched_for(h) && h.seq <= self.next_seq)
            .copied()
    }

    /// Delivers what the window allows, then opens, pursues or closes the gap.
    fn progress(&mut self, now: u64, sink: &mut impl ActionSink) {
        while let Some(&h) = self.held.front() {
            if h.seq > self.next_seq {
                break;
            }
            let vouched = self.vouched_for(&h);
            if !vouched && h.end > self.next_seq {
                // Delivery waits for the feed to vouch for it, unless another
                // copy or a lost range already covers the next message.
                let Some(&n) = self.held.get(1).filter(|n| n.seq <= self.next_seq) else {
                    self.front_wait.get_or_insert(now);
                    break;
                };
                self.held.pop_front();
                self.free_slots.push(h.slot);
                if n.slot == LOST {
                    self.stats.unconfirmed_packets += 1;
                } else {
                    self.stats.duplicate_packets += 1;
                }
                continue;
            }
            self.held.pop_front();
            self.front_wait = None;
            if h.slot == LOST {
                // Adjoining lost ranges are one loss.
                let mut end = h.end;
                while let Some(n) = self.held.front()
                    && n.slot == LOST
                    && n.seq <= end
                {
                    end = end.max(n.end);
                    self.held.pop_front();
                }
                if end > self.next_seq {
                    sink.action(Action::Event(SessionEvent::Unrecoverable {
                        from: self.next_seq,
                        end,
                    }));
                    self.stats.unrecoverable_gaps += 1;
                    self.stats.unrecoverable_messages = self
                        .stats
                        .unrecoverable_messages
                        .saturating_add(end - self.next_seq);
                    self.next_seq = end;
                    if let Some(g) = &mut self.gap {
                        g.lost = true;
                    }
                }
                continue;
            }
            self.free_slots.push(h.slot);
            let start = h.slot * self.cfg.max_packet;
            match Packet::new_checked(&self.arena[start..start + h.len]) {
                Ok(p) if h.end > self.next_seq => {
                    deliver(&p, &mut self.next_seq, &mut self.stats, sink)
                }
                // Passed by delivery before anything vouched for it.
                _ if !vouched => self.stats.unconfirmed_packets += 1,
                _ => self.stats.duplicate_packets += 1,
            }
        }
        self.in_flight.retain(|r| r.end > self.next_seq);
        if self.next_seq < self.highest {
            if self.gap.is_none() {
                let end = self.hole_end();
                self.gap = Some(GapEpisode {
                    from: self.next_seq,
                    opened: now,
                    lost: false,
                });
                self.stats.gaps += 1;
                sink.action(Action::Event(SessionEvent::GapDetected {
                    from: self.next_seq,
                    end,
                }));
                sink.action(Action::Event(SessionEvent::Stale));
            }
            if self.cfg.servers > 0 {
                self.request_missing(now, sink);
            }
            return;
        }
        if let Some(g) = self.gap.take() {
            if !g.lost {
                self.stats.gaps_filled += 1;
                self.stats.recovery.record(now.saturating_sub(g.opened));
                sink.action(Action::Event(SessionEvent::GapFilled {
                    from: g.from,
                    end: self.next_seq,
                }));
            }
            sink.action(Action::Event(SessionEvent::Fresh));
        }
        if self.ended && !self.end_reported {
            self.end_reported = true;
            sink.action(Action::Event(SessionEvent::EndOfSession {
                next_seq: self.next_seq,
            }));
        }
    }

    /// Asks the server for the messages of an uncorroborated packet that
    /// delivery has reached and that nothing vouched for within the least
    /// request timeout: the server's copy settles what they are.
    fn request_unconfirmed(&mut self, now: u64, sink: &mut impl ActionSink) {
        let Some(h) = self.front_unconfirmed() else {
            return;
        };
        if self
            .front_wait
            .is_none_or(|t| now.saturating_sub(t) < self.cfg.min_request_timeout_ns)
        {
            return;
        }
        let next = self.next_seq;
        if self.in_flight.len() >= self.cfg.max_in_flight
            || self
                .in_flight
                .iter()
                .any(|r| r.from <= next && r.end > next)
        {
            return;
        }
        let end = h
            .end
            .min(next.saturating_add(u64::from(self.cfg.max_request.max(1))));
        self.ask(now, next, end, sink);
    }

    /// Asks the primary server for `from..end`, tracked in flight.
    fn ask(&mut self, now: u64, from: u64, end: u64, sink: &mut impl ActionSink) {
        let server = self.primary;
        self.in_flight.push(InFlight {
            from,
            end,
            server,
            attempts: 1,
            sent_at: now,
            deadline: now.saturating_add(self.timeout(1)),
        });
        self.send(server, from, end, sink);
    }

    /// Requests the missing ranges not yet asked for, in pieces, within the
    /// in-flight limit.
    fn request_missing(&mut self, now: u64, sink: &mut impl ActionSink) {
        let mut cursor = self.next_seq.max(self.requested_upto);
        let mut h = 0;
        while self.in_flight.len() < self.cfg.max_in_flight && cursor < self.highest {
            while h < self.held.len() && self.held[h].end <= cursor {
                h += 1;
            }
            if let Some(held) = self.held.get(h)
                && held.seq <= cursor
            {
                cursor = held.end;
                continue;
            }
            let (limit, since, nth) = self
                .held
                .get(h)
                .map_or((self.highest, self.highest_at, self.raises), |held| {
                    (held.seq, held.arrived, held.nth)
                });
            // A hole the latest packet revealed may be an adjacent swap:
            // it is asked for once the feed moves on or the delay is over
            // (the timer comes back; later holes are younger still).
            if nth >= self.raises && now < since.saturating_add(self.cfg.request_delay_ns) {
                break;
            }
            let end = limit
                .min(cursor.saturating_add(u64::from(self.cfg.max_request.max(1))))
                .min(self.highest);
            self.ask(now, cursor, end, sink);
            self.requested_upto = end;
            cursor = end;
        }
    }
}

#[cfg(test)]
mod tests;
