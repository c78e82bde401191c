//! What a running poller shows the rest of the process: a snapshot of every
//! counter, published now and then through a wait-free triple buffer
//! (`triple_buffer`). The poller never waits for a reader and never
//! allocates to publish; a reader on another thread always sees a whole,
//! consistent snapshot, the latest one.

use ticklane_protocols::moldudp64::Session;

use crate::bus::BusStats;
use crate::session::{LineStats, SessionStats};
use crate::source::SourceCounters;

/// Sessions a snapshot shows (and a poller sequences at once).
pub const MAX_SESSIONS: usize = 4;

/// Feed lines a poller arbitrates.
pub const MAX_LINES: usize = 8;

/// One session as the poller sees it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionSnapshot {
    /// Its name.
    pub session: Session,
    /// Sequencing counters.
    pub stats: SessionStats,
    /// Next sequence number to deliver.
    pub next_seq: u64,
    /// A hole is open: books built from it may be wrong until it closes.
    pub stale: bool,
    /// The end of session was seen and everything before it settled.
    pub ended: bool,
    /// One past the highest sequence number known to exist (from packets,
    /// heartbeats and the end of session). Without the end of session,
    /// what comes after it is unknown: neither delivered nor counted lost.
    pub known_end: u64,
    /// Feed lines in use (the first entries of `lines`).
    pub line_count: usize,
    /// Per-line counters.
    pub lines: [LineStats; MAX_LINES],
}

impl SessionSnapshot {
    /// The lines in use.
    pub fn lines(&self) -> &[LineStats] {
        &self.lines[..self.line_count.min(MAX_LINES)]
    }
}

/// Every counter of a poller at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Snapshot {
    /// Nanoseconds since the poller started.
    pub uptime_ns: u64,
    /// MoldUDP64 packets taken into the session layer.
    pub packets: u64,
    /// Arrivals that were not valid MoldUDP64 packets.
    pub malformed_packets: u64,
    /// Packets of a session that found no free slot (all busy).
    pub foreign_session_packets: u64,
    /// Messages delivered to the pipeline.
    pub delivered: u64,
    /// Sequenced messages that were not valid ITCH.
    pub bad_messages: u64,
    /// Messages declared unrecoverable.
    pub lost_messages: u64,
    /// Ranges declared unrecoverable.
    pub lost_ranges: u64,
    /// Delivered messages the audit ring could not take (recorded by range).
    pub audit_missed: u64,
    /// Re-requests that could not be sent.
    pub failed_requests: u64,
    /// The source's own counters (as of the last poll).
    pub source: SourceCounters,
    /// The bus.
    pub bus: BusStats,
    /// Sessions in use (the first entries of `sessions`).
    pub session_count: usize,
    /// Per session.
    pub sessions: [SessionSnapshot; MAX_SESSIONS],
}

impl Snapshot {
    /// The sessions in use.
    pub fn sessions(&self) -> &[SessionSnapshot] {
        &self.sessions[..self.session_count.min(MAX_SESSIONS)]
    }

    /// True while some session is stale.
    pub fn is_stale(&self) -> bool {
        self.sessions().iter().any(|s| s.stale)
    }
}

/// The reading side, for one other thread (a stats printer, the control
/// plane): each read returns the latest snapshot published.
pub struct StatsReader(triple_buffer::Output<Snapshot>);

impl std::fmt::Debug for StatsReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsReader")
    }
}

impl StatsReader {
    /// The latest snapshot.
    pub fn read(&mut self) -> Snapshot {
        *self.0.read()
    }
}

/// The publishing side, owned by the poller: one triple buffer per
/// reader, all made before the poller runs.
pub(crate) struct StatsWriter(Vec<triple_buffer::Input<Snapshot>>);

impl std::fmt::Debug for StatsWriter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("StatsWriter")
    }
}

impl StatsWriter {
    pub(crate) fn publish(&mut self, snapshot: &Snapshot) {
        for input in &mut self.0 {
            input.write(*snapshot);
        }
    }

    /// Another reader (each reader thread needs its own).
    pub(crate) fn reader(&mut self) -> StatsReader {
        let (input, output) = triple_buffer::triple_buffer(&Snapshot::default());
        self.0.push(input);
        StatsReader(output)
    }
}

pub(crate) fn channel() -> (StatsWriter, StatsReader) {
    let mut writer = StatsWriter(Vec::new());
    let reader = writer.reader();
    (writer, reader)
}
