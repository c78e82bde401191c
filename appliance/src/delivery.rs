//! The one delivery path: what the session layer decides is carried out
//! here, for every source and every command. Sequenced messages go to the
//! audit ring and the pipeline (and, for debugging, a tap of canonical
//! JSON); requests go to the re-request servers; news goes to the bus; lost
//! ranges and audit misses are recorded with their exact bounds, in memory
//! sized up front.

use std::io::Write;

use ticklane_protocols::itch;
use ticklane_protocols::moldudp64::{Packet, Session};

use crate::pipeline::Pipeline;
use crate::recovery::Requester;
use crate::session::{Action, ActionSink, SessionEvent};

/// A range of sequence numbers of one session, `from..end`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeqRange {
    /// The session.
    pub session: Session,
    /// First sequence number.
    pub from: u64,
    /// One past the last.
    pub end: u64,
}

/// Ranges with their exact bounds, the first `capacity` kept, all counted;
/// a range that continues the last one of the same session extends it.
#[derive(Debug, Clone)]
pub struct RangeLog {
    kept: Vec<SeqRange>,
    ranges: u64,
    messages: u64,
}

impl RangeLog {
    /// Keeps up to `capacity` ranges, allocated now.
    pub fn with_capacity(capacity: usize) -> Self {
        Self {
            kept: Vec::with_capacity(capacity),
            ranges: 0,
            messages: 0,
        }
    }

    /// Records `from..end` of `session`.
    #[inline]
    pub fn record(&mut self, session: Session, from: u64, end: u64) {
        if end <= from {
            return;
        }
        self.messages = self.messages.saturating_add(end - from);
        let all_kept = self.ranges == self.kept.len() as u64;
        if let Some(last) = self.kept.last_mut()
            && all_kept
            && last.session == session
            && last.end == from
        {
            last.end = end;
            return;
        }
        self.ranges = self.ranges.saturating_add(1);
        if self.kept.len() < self.kept.capacity() {
            self.kept.push(SeqRange { session, from, end });
        }
    }

    /// The ranges kept, in the order they were recorded.
    pub fn kept(&self) -> &[SeqRange] {
        &self.kept
    }

    /// Every range recorded (kept or not).
    pub fn ranges(&self) -> u64 {
        self.ranges
    }

    /// Sequence numbers in every range recorded.
    pub fn messages(&self) -> u64 {
        self.messages
    }

    /// True when ranges were recorded beyond those kept.
    pub fn is_cut(&self) -> bool {
        self.ranges > self.kept.len() as u64
    }
}

/// The canonical JSON of every delivered message, for debugging: it formats
/// on the poller and slows it down. A failing tap never stops the feed; its
/// failures are counted.
pub struct Tap {
    out: Box<dyn Write + Send>,
    line: Vec<u8>,
    failures: u64,
}

impl std::fmt::Debug for Tap {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tap")
            .field("failures", &self.failures)
            .finish_non_exhaustive()
    }
}

impl Tap {
    /// A tap writing to `out`.
    pub fn new(out: Box<dyn Write + Send>) -> Self {
        Self {
            out,
            line: Vec::with_capacity(1024),
            failures: 0,
        }
    }

    fn write(&mut self, session: Session, seq: u64, message: &itch::MessageRef<'_>) {
        self.line.clear();
        ticklane_capture::canonical::write_message(&mut self.line, session.trimmed(), seq, message);
        if self.out.write_all(&self.line).is_err() {
            self.failures += 1;
        }
    }

    /// Flushes what is buffered.
    pub fn flush(&mut self) -> std::io::Result<()> {
        self.out.flush()
    }
}

/// How many ranges of each kind are kept with their bounds.
pub const KEPT_RANGES: usize = 1024;

/// Carries out the session layer's actions.
#[derive(Debug)]
pub struct Delivery {
    pipeline: Pipeline,
    requester: Option<Requester>,
    session: Session,
    last: (Session, u64),
    delivered: u64,
    bad_messages: u64,
    lost: RangeLog,
    audit_missed: RangeLog,
    tap: Option<Tap>,
}

impl Delivery {
    /// Delivers into `pipeline`, sends requests through `requester`.
    pub fn new(pipeline: Pipeline, requester: Option<Requester>, tap: Option<Tap>) -> Self {
        Self {
            pipeline,
            requester,
            session: Session::default(),
            last: (Session::default(), 0),
            delivered: 0,
            bad_messages: 0,
            lost: RangeLog::with_capacity(KEPT_RANGES),
            audit_missed: RangeLog::with_capacity(KEPT_RANGES),
            tap,
        }
    }

    /// The session whose actions come next.
    #[inline]
    pub fn set_session(&mut self, session: Session) {
        self.session = session;
    }

    /// One sequenced message of the current session.
    #[inline]
    pub fn message(&mut self, seq: u64, bytes: &[u8]) -> Result<(), itch::ItchError> {
        let m = match itch::parse(bytes) {
            Ok(m) => m,
            Err(e) => {
                self.bad_messages += 1;
                return Err(e);
            }
        };
        self.delivered += 1;
        self.last = (self.session, seq);
        if !self.pipeline.deliver(self.session, seq, m) {
            self.audit_missed.record(self.session, seq, seq + 1);
        }
        if let Some(tap) = &mut self.tap {
            tap.write(self.session, seq, &m);
        }
        Ok(())
    }

    /// The pipeline.
    pub fn pipeline(&self) -> &Pipeline {
        &self.pipeline
    }

    /// Messages delivered.
    pub fn delivered(&self) -> u64 {
        self.delivered
    }

    /// The session and sequence number of the last message delivered
    /// (sequence 0: none yet).
    pub fn last_delivered(&self) -> (Session, u64) {
        self.last
    }

    /// Sequenced messages that were not valid ITCH (skipped).
    pub fn bad_messages(&self) -> u64 {
        self.bad_messages
    }

    /// Ranges declared unrecoverable.
    pub fn lost(&self) -> &RangeLog {
        &self.lost
    }

    /// Delivered messages the audit ring could not take: the auditor must
    /// fetch them from elsewhere (a re-request server, the capture).
    pub fn audit_missed(&self) -> &RangeLog {
        &self.audit_missed
    }

    /// Requests that could not be sent.
    pub fn failed_requests(&self) -> u64 {
        self.requester.as_ref().map_or(0, Requester::failed_sends)
    }

    /// Tap writes that failed.
    pub fn tap_failures(&self) -> u64 {
        self.tap.as_ref().map_or(0, |t| t.failures)
    }

    /// Flushes the tap.
    pub fn flush_tap(&mut self) -> std::io::Result<()> {
        self.tap.as_mut().map_or(Ok(()), Tap::flush)
    }

    /// Gives the pipeline back.
    pub fn into_pipeline(self) -> Pipeline {
        self.pipeline
    }
}

impl ActionSink for Delivery {
    #[inline]
    fn upcoming(&mut self, packet: &Packet<&[u8]>) {
        self.pipeline.books.prefetch(packet);
    }

    #[inline]
    fn action(&mut self, action: Action<'_>) {
        match action {
            Action::Deliver { seq, message } => {
                // Counted in `bad_messages`; the packet around it was valid.
                let _ = self.message(seq, message);
            }
            Action::Request { server, request } => {
                if let Some(r) = &mut self.requester {
                    r.send(server, &request);
                }
            }
            Action::Event(e) => {
                if let SessionEvent::Unrecoverable { from, end } = e {
                    self.lost.record(self.session, from, end);
                }
                self.pipeline.session_event(e);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn session(name: &[u8]) -> Session {
        Session::from_name(name).unwrap()
    }

    #[test]
    fn ranges_are_kept_up_to_capacity_and_all_counted() {
        let mut log = RangeLog::with_capacity(2);
        let a = session(b"A");
        log.record(a, 1, 5);
        log.record(a, 5, 7); // continues the last: extended
        log.record(a, 10, 11);
        log.record(a, 20, 30);
        log.record(a, 40, 40); // empty: ignored
        assert_eq!(
            log.kept(),
            [
                SeqRange {
                    session: a,
                    from: 1,
                    end: 7
                },
                SeqRange {
                    session: a,
                    from: 10,
                    end: 11
                }
            ]
        );
        assert_eq!((log.ranges(), log.messages()), (3, 17));
        assert!(log.is_cut(), "the third range was counted, not kept");
    }

    #[test]
    fn ranges_of_another_session_are_not_merged() {
        let mut log = RangeLog::with_capacity(4);
        log.record(session(b"A"), 1, 5);
        log.record(session(b"B"), 5, 7);
        assert_eq!(log.kept().len(), 2);
        assert!(!log.is_cut());
    }
}
