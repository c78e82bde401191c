//! Packets already in memory: a capture loaded into RAM, handed over in
//! NIC-sized batches. Benchmarks measure the poller and the pipeline with it
//! (no file or socket in the way), tests script exact arrival orders with
//! it (A/B lines, loss, reordering).

use std::sync::Arc;

use super::{Arrival, Payload, Polled, Source, SourceCounters, SourceError, Verdict, Wait};

/// Where a packet lies in the shared bytes, with its line and capture time.
#[derive(Debug, Clone, Copy)]
struct Stored {
    line: usize,
    start: usize,
    end: usize,
    captured_at: Option<u64>,
}

/// Packets with their feed lines, in arrival order. Clones share the
/// packets (a benchmark hands a fresh copy to every run for free).
#[derive(Debug, Clone, Default)]
pub struct MemorySource {
    bytes: Arc<Vec<u8>>,
    packets: Arc<Vec<Stored>>,
    next: usize,
    batch: usize,
}

impl MemorySource {
    /// An empty source handing over `batch` packets per poll.
    pub fn new(batch: usize) -> Self {
        Self {
            batch: batch.max(1),
            ..Self::default()
        }
    }

    /// Appends a MoldUDP64 packet arriving on `line`.
    pub fn push(&mut self, line: usize, packet: &[u8]) {
        self.push_at(line, packet, None);
    }

    /// Appends a packet arriving on `line`, captured at `ts` nanoseconds
    /// (the poller's clock with [`crate::poller::TimeBase::Capture`]).
    pub fn push_at(&mut self, line: usize, packet: &[u8], ts: Option<u64>) {
        let bytes = Arc::make_mut(&mut self.bytes);
        let start = bytes.len();
        bytes.extend_from_slice(packet);
        let end = bytes.len();
        Arc::make_mut(&mut self.packets).push(Stored {
            line,
            start,
            end,
            captured_at: ts,
        });
    }

    /// Packets handed over so far.
    pub fn position(&self) -> usize {
        self.next
    }
}

impl Source for MemorySource {
    #[inline]
    fn poll<F: FnMut(Arrival<'_>) -> Verdict>(
        &mut self,
        _wait: Wait,
        mut f: F,
    ) -> Result<Polled, SourceError> {
        if self.next >= self.packets.len() {
            return Ok(Polled::End);
        }
        let end = (self.next + self.batch).min(self.packets.len());
        for p in &self.packets[self.next..end] {
            if f(Arrival {
                line: p.line,
                payload: Payload::Packet(&self.bytes[p.start..p.end]),
                captured_at: p.captured_at,
                received_at: None,
            }) == Verdict::Stop
            {
                self.next = self.packets.len();
                return Ok(Polled::End);
            }
        }
        let n = end - self.next;
        self.next = end;
        Ok(Polled::Arrivals(n))
    }

    fn counters(&self) -> SourceCounters {
        SourceCounters {
            received: self.next as u64,
            ..SourceCounters::default()
        }
    }
}
