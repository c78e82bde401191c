//! One [`Arbiter`] per MoldUDP64 session: feeds that carry different
//! sessions on one queue are sequenced independently, feeds that carry the
//! same session are A/B arbitrated. The table is fixed at construction.
//!
//! # Session sanity
//!
//! A packet naming a session not in the table is taken at once only when
//! its session is the configured one ([`SessionConfig::session`]) or when a
//! session in the table has ended (the next trading day follows the end of
//! the last one); it then takes a free slot or the slot of an ended session.
//! Otherwise the session is a *candidate*: its packets are kept aside (up to
//! [`PENDING`]) until [`SessionConfig::confirm_session_packets`] of them
//! arrived, or one arrived on a second line; it then takes a slot and the
//! kept packets are sequenced first, so nothing is lost to the check. A
//! stray packet of another session (a forgery, a misrouted feed) therefore
//! changes nothing: it is counted as foreign when its candidacy is evicted
//! by another or the input ends. At the end of input a lone candidate (no
//! other session seen) is the feed and is taken.

use ticklane_protocols::moldudp64::Session;

use super::{Arbiter, SessionConfig};

/// Packets a candidate session keeps aside while it waits for confirmation.
pub const PENDING: usize = 8;

/// Candidate sessions tracked at once.
const CANDIDATES: usize = 2;

/// A session not confirmed yet, and the packets it sent so far.
#[derive(Debug)]
struct Candidate {
    session: Option<Session>,
    packets: u32,
    /// Lines it was seen on (bit per line, the last bit for lines ≥ 63).
    lines: u64,
    /// When it was first seen (the oldest candidate is evicted first).
    since: u64,
    /// (line, arrival time, length) of each packet kept, in order.
    kept: Vec<(usize, u64, usize)>,
    bytes: Box<[u8]>,
    max_packet: usize,
}

impl Candidate {
    fn new(max_packet: usize) -> Self {
        Self {
            session: None,
            packets: 0,
            lines: 0,
            since: 0,
            kept: Vec::with_capacity(PENDING),
            bytes: vec![0; PENDING * max_packet].into_boxed_slice(),
            max_packet,
        }
    }

    fn start(&mut self, session: Session, now: u64) {
        self.session = Some(session);
        self.packets = 0;
        self.lines = 0;
        self.since = now;
        self.kept.clear();
    }

    /// Counts one packet; keeps its bytes if there is room. Returns the
    /// packets that could not be kept.
    fn add(&mut self, line: usize, now: u64, bytes: &[u8]) -> u64 {
        self.packets += 1;
        self.lines |= 1 << line.min(63);
        let i = self.kept.len();
        if i < PENDING && bytes.len() <= self.max_packet {
            let start = i * self.max_packet;
            self.bytes[start..start + bytes.len()].copy_from_slice(bytes);
            self.kept.push((line, now, bytes.len()));
            0
        } else {
            1
        }
    }

    /// Gives the candidacy up; returns the packets it had kept (none once
    /// confirmed: those went to the session).
    fn clear(&mut self) -> u64 {
        let kept = if self.session.take().is_some() {
            self.kept.len() as u64
        } else {
            0
        };
        self.kept.clear();
        kept
    }
}

/// The packets a session kept aside before it was confirmed: (line,
/// arrival time, bytes), oldest first. Sequence them before the packet that
/// confirmed the session.
#[derive(Debug)]
pub struct Pending<'a> {
    candidate: Option<&'a Candidate>,
    next: usize,
}

impl<'a> Iterator for Pending<'a> {
    type Item = (usize, u64, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let c = self.candidate?;
        let &(line, at, len) = c.kept.get(self.next)?;
        let start = self.next * c.max_packet;
        self.next += 1;
        Some((line, at, &c.bytes[start..start + len]))
    }
}

/// Where a packet goes.
#[derive(Debug)]
pub enum Route<'a> {
    /// To this session's arbiter, after the packets the session kept aside
    /// while it was a candidate.
    To(&'a mut Arbiter, Pending<'a>),
    /// Kept aside: its session is a candidate, not confirmed yet.
    Kept,
    /// Dropped and counted as foreign.
    Foreign,
}

/// The sessions being sequenced.
#[derive(Debug)]
pub struct SessionTable {
    slots: Vec<(Option<Session>, Arbiter)>,
    /// The slot routed to last: a feed's packets come in runs of one session.
    last: usize,
    foreign_packets: u64,
    expected: Option<Session>,
    confirm_packets: u32,
    candidates: Vec<Candidate>,
}

impl SessionTable {
    /// Room for `capacity` sessions at once, each merging `lines` lines; all
    /// memory is allocated here.
    pub fn new(cfg: &SessionConfig, lines: usize, dead_after_ns: u64, capacity: usize) -> Self {
        Self {
            slots: (0..capacity.max(1))
                .map(|_| (None, Arbiter::new(cfg.clone(), lines, dead_after_ns)))
                .collect(),
            last: 0,
            foreign_packets: 0,
            expected: cfg.session,
            confirm_packets: cfg.confirm_session_packets.max(1),
            candidates: (0..CANDIDATES)
                .map(|_| Candidate::new(cfg.max_packet))
                .collect(),
        }
    }

    /// Where a packet of `session` from `line`, arrived at `now`, goes (see
    /// the module's *Session sanity*).
    #[inline]
    pub fn route(&mut self, session: Session, line: usize, now: u64, bytes: &[u8]) -> Route<'_> {
        if self.slots[self.last].0 == Some(session) {
            return Route::To(&mut self.slots[self.last].1, Pending::none());
        }
        if let Some(i) = self.slots.iter().position(|(s, _)| *s == Some(session)) {
            self.last = i;
            return Route::To(&mut self.slots[i].1, Pending::none());
        }
        self.newcomer(session, line, now, bytes)
    }

    /// A packet of a session not in the table.
    #[cold]
    fn newcomer(&mut self, session: Session, line: usize, now: u64, bytes: &[u8]) -> Route<'_> {
        let ended = self
            .slots
            .iter()
            .any(|(s, a)| s.is_some() && a.tracker().is_finished());
        if self.expected == Some(session) || ended {
            let Some(i) = self.free_slot() else {
                self.foreign_packets += 1;
                return Route::Foreign;
            };
            return self.take(i, session, None);
        }
        let c = match self
            .candidates
            .iter()
            .position(|c| c.session == Some(session))
        {
            Some(c) => c,
            None => {
                // A free candidacy, or the oldest one, evicted.
                let c = (0..self.candidates.len())
                    .min_by_key(|&c| {
                        let c = &self.candidates[c];
                        (c.session.is_some(), c.since)
                    })
                    .unwrap_or(0);
                self.foreign_packets += self.candidates[c].clear();
                self.candidates[c].start(session, now);
                c
            }
        };
        let cand = &mut self.candidates[c];
        let confirmed =
            cand.packets + 1 >= self.confirm_packets || (cand.lines & !(1 << line.min(63))) != 0;
        if !confirmed {
            self.foreign_packets += cand.add(line, now, bytes);
            return Route::Kept;
        }
        match self.free_slot() {
            Some(i) => self.take(i, session, Some(c)),
            None => {
                self.foreign_packets += self.candidates[c].clear() + 1;
                Route::Foreign
            }
        }
    }

    /// An empty slot, or the slot of a session that has ended.
    fn free_slot(&self) -> Option<usize> {
        self.slots
            .iter()
            .position(|(s, a)| s.is_none() || a.tracker().is_finished())
    }

    /// Gives slot `i` to `session`, with what candidate `c` kept aside.
    fn take(&mut self, i: usize, session: Session, c: Option<usize>) -> Route<'_> {
        self.slots[i].0 = Some(session);
        self.last = i;
        let candidate = c.map(|c| {
            let cand = &mut self.candidates[c];
            cand.session = None; // its kept packets stay readable until reused
            &*cand
        });
        Route::To(&mut self.slots[i].1, Pending { candidate, next: 0 })
    }

    /// At the end of input: a lone candidate (no session in the table) is
    /// the feed and is taken; any other candidate's packets are foreign.
    pub fn settle_candidates(&mut self) -> Option<(Session, &mut Arbiter, Pending<'_>)> {
        let alone = self.slots.iter().all(|(s, _)| s.is_none());
        let mut live = (0..self.candidates.len())
            .filter_map(|c| self.candidates[c].session.map(|session| (c, session)));
        let lone = match (alone, live.next(), live.next()) {
            (true, Some(only), None) => Some(only),
            _ => None,
        };
        if let Some((c, session)) = lone {
            return match self.take(0, session, Some(c)) {
                Route::To(arbiter, pending) => Some((session, arbiter, pending)),
                Route::Kept | Route::Foreign => None,
            };
        }
        for c in &mut self.candidates {
            self.foreign_packets += c.clear();
        }
        None
    }

    /// The arbiter of a session already known (retransmissions never open
    /// a session).
    #[inline]
    pub fn get_mut(&mut self, session: Session) -> Option<&mut Arbiter> {
        self.slots
            .iter_mut()
            .find(|(s, _)| *s == Some(session))
            .map(|(_, a)| a)
    }

    /// Every session with its arbiter.
    pub fn iter(&self) -> impl Iterator<Item = (Session, &Arbiter)> {
        self.slots.iter().filter_map(|(s, a)| s.map(|s| (s, a)))
    }

    /// Every session with its arbiter, to drive timers.
    pub fn iter_mut(&mut self) -> impl Iterator<Item = (Session, &mut Arbiter)> {
        self.slots.iter_mut().filter_map(|(s, a)| s.map(|s| (s, a)))
    }

    /// Every session (and every session to come) arbitrates at least
    /// `lines` lines (see [`Arbiter::grow_lines`]).
    pub fn grow_lines(&mut self, lines: usize) {
        for (_, arbiter) in &mut self.slots {
            arbiter.grow_lines(lines);
        }
    }

    /// Line `line`'s feed is gone (see [`Arbiter::vacate_line`]).
    pub fn vacate_line(&mut self, line: usize) {
        for (_, arbiter) in &mut self.slots {
            arbiter.vacate_line(line);
        }
    }

    /// Packets dropped: of sessions never confirmed, or that found every
    /// slot held by a live session.
    pub fn foreign_packets(&self) -> u64 {
        self.foreign_packets
    }

    /// True while some session misses messages.
    pub fn has_gap(&self) -> bool {
        self.iter().any(|(_, a)| a.tracker().has_gap())
    }

    /// True while some session waits for retransmissions.
    pub fn awaiting_retransmission(&self) -> bool {
        self.iter()
            .any(|(_, a)| a.tracker().awaiting_retransmission())
    }
}

impl Pending<'_> {
    fn none() -> Self {
        Self {
            candidate: None,
            next: 0,
        }
    }
}
