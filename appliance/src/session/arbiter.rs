//! A/B line arbitration: feeds that carry the same session are merged into
//! one [`SessionTracker`], so the first copy of each sequence number wins and
//! the other is dropped as a duplicate. A message is lost only if every line
//! lost it and recovery failed. Without servers, a hole is given up only
//! once every line still sending has gone past it (or after
//! [`SessionConfig::max_line_wait_ns`]): a line that lags behind the other
//! fills what the other lost, however large the lag. Per-line counters tell
//! how each line fares.

use ticklane_protocols::moldudp64::{Packet, PacketKind};

use super::{Action, ActionSink, SessionConfig, SessionEvent, SessionStats, SessionTracker};

/// How one line fares.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LineStats {
    /// Packets received on this line (heartbeats included).
    pub packets: u64,
    /// Message packets that brought nothing new (the other line was first).
    pub duplicates: u64,
    /// Holes in this line's own sequence.
    pub gaps: u64,
    /// Of those, holes the other line had already filled.
    pub gaps_covered_by_other: u64,
    /// How many messages this line trailed delivery by, at its last
    /// duplicate packet (0 while it leads).
    pub lag_messages: u64,
    /// Times the line was declared down.
    pub downs: u64,
    /// True while down.
    pub down: bool,
    /// When the line last sent anything.
    pub last_seen: u64,
}

/// Merges N lines of one session.
#[derive(Debug)]
pub struct Arbiter {
    tracker: SessionTracker,
    lines: Vec<LineStats>,
    line_next: Vec<u64>,
    dead_after_ns: u64,
    /// When the first packet of any line arrived.
    started_at: Option<u64>,
}

impl Arbiter {
    /// An arbiter of `lines` lines; a line silent for `dead_after_ns` while
    /// another one sends is reported down.
    pub fn new(cfg: SessionConfig, lines: usize, dead_after_ns: u64) -> Self {
        let lines = lines.max(1);
        // Room for every line a feed added at run time may take.
        let room = lines.max(crate::stats::MAX_LINES);
        let mut line_stats = Vec::with_capacity(room);
        line_stats.resize(lines, LineStats::default());
        let mut line_next = Vec::with_capacity(room);
        line_next.resize(lines, 0);
        Self {
            tracker: SessionTracker::new(cfg),
            lines: line_stats,
            line_next,
            dead_after_ns,
            started_at: None,
        }
    }

    /// The merged session.
    pub fn tracker(&self) -> &SessionTracker {
        &self.tracker
    }

    /// Session counters.
    pub fn stats(&self) -> SessionStats {
        self.tracker.stats()
    }

    /// Per-line counters.
    pub fn lines(&self) -> &[LineStats] {
        &self.lines
    }

    /// Arbitrates at least `lines` lines from now on (a feed was added at
    /// run time); up to [`crate::stats::MAX_LINES`], without allocating.
    pub fn grow_lines(&mut self, lines: usize) {
        let lines = lines.min(self.lines.capacity());
        if lines > self.lines.len() {
            self.lines.resize(lines, LineStats::default());
            self.line_next.resize(lines, 0);
        }
    }

    /// Forgets line `line` (its feed was removed at run time): it counts as
    /// a line never heard from, which holes stop waiting for once the
    /// session has started, and which is never reported down.
    pub fn vacate_line(&mut self, line: usize) {
        if let (Some(st), Some(next)) = (self.lines.get_mut(line), self.line_next.get_mut(line)) {
            *st = LineStats::default();
            *next = 0;
        }
    }

    /// A packet from line `line` (out-of-range lines count as the last one).
    pub fn on_packet(
        &mut self,
        line: usize,
        now: u64,
        packet: &Packet<&[u8]>,
        sink: &mut impl ActionSink,
    ) {
        let line = line.min(self.lines.len() - 1);
        let delivered = self.tracker.next_seq();
        self.started_at.get_or_insert(now);
        let st = &mut self.lines[line];
        st.packets += 1;
        st.last_seen = now;
        if st.down {
            st.down = false;
            sink.action(Action::Event(SessionEvent::LineUp { line }));
        }
        if packet.kind() == PacketKind::Messages {
            let (seq, end) = (packet.sequence_number(), packet.next_sequence_number());
            let same_session = self.tracker.session() == Some(packet.session());
            if same_session && end <= delivered {
                st.duplicates += 1;
                st.lag_messages = delivered - seq;
            } else {
                st.lag_messages = 0;
            }
            let own_next = self.line_next[line];
            if same_session && own_next != 0 && seq > own_next {
                st.gaps += 1;
                if seq <= delivered {
                    st.gaps_covered_by_other += 1;
                }
            }
            self.line_next[line] = if same_session { own_next.max(end) } else { end };
        }
        self.tracker.on_packet(now, packet, sink);
    }

    /// A packet from a re-request server (no line).
    pub fn on_retransmission(
        &mut self,
        now: u64,
        packet: &Packet<&[u8]>,
        sink: &mut impl ActionSink,
    ) {
        self.tracker.on_retransmission(now, packet, sink);
    }

    /// Drives time: dead lines and the session's timers.
    pub fn on_timer(&mut self, now: u64, sink: &mut impl ActionSink) {
        let alive =
            |l: &LineStats| l.last_seen > 0 && now.saturating_sub(l.last_seen) < self.dead_after_ns;
        let any_alive = self.lines.iter().any(alive);
        for (line, st) in self.lines.iter_mut().enumerate() {
            if !st.down && st.last_seen > 0 && any_alive && !alive(st) {
                st.down = true;
                st.downs += 1;
                sink.action(Action::Event(SessionEvent::LineDown { line }));
            }
        }
        // Holes wait for the slowest line still sending (its copy may be on
        // the way: a line that lags by 40 ms fills what the other lost), and
        // for a line not heard from yet, for a while after the first packet.
        let starting = self
            .started_at
            .is_some_and(|t| now.saturating_sub(t) < self.dead_after_ns);
        let slowest = self
            .lines
            .iter()
            .zip(&self.line_next)
            .filter(|(st, _)| (st.last_seen == 0 && starting) || (!st.down && alive(st)))
            .map(|(_, &next)| next);
        let position = if self.lines.len() > 1 {
            slowest.min()
        } else {
            None
        };
        self.tracker.set_slowest_line(position);
        self.tracker.on_timer(now, sink);
    }

    /// End of input.
    pub fn finish(&mut self, now: u64, sink: &mut impl ActionSink) {
        self.tracker.finish(now, sink);
    }
}
