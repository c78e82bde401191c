//! One [`Arbiter`] per MoldUDP64 session: feeds that carry different
//! sessions on one queue are sequenced independently, feeds that carry the
//! same session are A/B arbitrated. The table is fixed at construction; a
//! packet of a new session takes a free slot, or the slot of a session that
//! ended, and is counted as foreign when every slot holds a live session.

use ticklane_protocols::moldudp64::Session;

use super::{Arbiter, SessionConfig};

/// The sessions being sequenced.
#[derive(Debug)]
pub struct SessionTable {
    slots: Vec<(Option<Session>, Arbiter)>,
    /// The slot routed to last: a feed's packets come in runs of one session.
    last: usize,
    foreign_packets: u64,
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
        }
    }

    /// The arbiter of `session`, taking a slot for a session not seen
    /// before; `None` (counted) when every slot holds a session still live.
    #[inline]
    pub fn route(&mut self, session: Session) -> Option<&mut Arbiter> {
        if self.slots[self.last].0 == Some(session) {
            return Some(&mut self.slots[self.last].1);
        }
        let slot = match self.slots.iter().position(|(s, _)| *s == Some(session)) {
            Some(i) => i,
            None => {
                let free = self
                    .slots
                    .iter()
                    .position(|(s, a)| s.is_none() || a.tracker().is_finished());
                let Some(i) = free else {
                    self.foreign_packets += 1;
                    return None;
                };
                self.slots[i].0 = Some(session);
                i
            }
        };
        self.last = slot;
        Some(&mut self.slots[slot].1)
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

    /// Packets dropped because every slot held a live session.
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
