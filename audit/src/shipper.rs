//! The shipper: journal → ClickHouse, exactly once.
//!
//! It reads the journal from the acknowledged position and seals batches
//! (one session, one partition day, at most `max_rows` rows, whatever was
//! journaled when it woke up). Before a batch is sent, its end is written to
//! `DIR/acked` as *pending*; after the server confirmed it, the acknowledged
//! position moves past it and the segments before are reclaimed. After any
//! failed attempt, the shipper asks the server whether the batch landed
//! (the rows carry their batch id) before sending it again; at start-up, a
//! pending batch left by a crash is rebuilt from the journal, byte for byte
//! the same batch, and asked about the same way. Retries back off, capped.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::journal::{AckState, JournalError, Position, Reader, reclaim};
use crate::record::Entry;
use crate::store::{GapRow, MessageRow, Store, StoreError, day_of, hex};

/// How long an earlier attempt is given to show up on the server before
/// the shipper asks whether it landed.
const SETTLE: Duration = Duration::from_millis(500);

/// Shipper failures that stop it.
#[derive(Debug, thiserror::Error)]
pub enum ShipError {
    /// The journal could not be read or the acknowledgement written.
    #[error(transparent)]
    Journal(#[from] JournalError),
    /// The async runtime could not be built.
    #[error("audit shipper: cannot start its runtime: {0}")]
    Runtime(std::io::Error),
    /// The store's clients could not be made.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// How the shipper batches and retries.
#[derive(Debug, Clone, Copy)]
pub struct ShipConfig {
    /// Rows per batch at most (ClickHouse makes one part of an insert below
    /// 1,048,576 rows).
    pub max_rows: usize,
    /// How often it looks for newly journaled entries.
    pub every: Duration,
    /// First retry delay; doubles up to `max_backoff`.
    pub backoff: Duration,
    /// Retry delay cap.
    pub max_backoff: Duration,
    /// Delete segments once everything in them is acknowledged.
    pub reclaim: bool,
}

impl Default for ShipConfig {
    fn default() -> Self {
        Self {
            max_rows: 100_000,
            every: Duration::from_millis(20),
            backoff: Duration::from_millis(50),
            max_backoff: Duration::from_secs(2),
            reclaim: true,
        }
    }
}

/// Live counters.
#[derive(Debug, Default)]
pub struct ShipGauges {
    /// Message rows confirmed by the server.
    pub rows: AtomicU64,
    /// Batches confirmed.
    pub batches: AtomicU64,
    /// Failed attempts.
    pub failures: AtomicU64,
    /// Batches found already landed after a failure (not sent again).
    pub found_landed: AtomicU64,
    /// Set while the server is failing.
    pub failing: AtomicBool,
    /// The acknowledged (shipped) position: its segment…
    pub acked_segment: AtomicU64,
    /// …and the offset in it.
    pub acked_offset: AtomicU64,
}

impl ShipGauges {
    /// The acknowledged position.
    pub fn acked(&self) -> Position {
        Position {
            segment: self.acked_segment.load(Ordering::Relaxed),
            offset: self.acked_offset.load(Ordering::Relaxed),
        }
    }

    pub(crate) fn set_acked(&self, at: Position) {
        self.acked_segment.store(at.segment, Ordering::Relaxed);
        self.acked_offset.store(at.offset, Ordering::Relaxed);
    }
}

/// What the shipper did.
#[derive(Debug)]
pub struct ShipReport {
    /// Message rows confirmed.
    pub rows: u64,
    /// Batches confirmed (messages and gaps).
    pub batches: u64,
    /// Failed attempts.
    pub failures: u64,
    /// Batches that had landed despite a failure, so were not resent.
    pub found_landed: u64,
    /// Journaled messages not yet acknowledged (shipped at the next start).
    pub left_messages: u64,
    /// The last server error, if any.
    pub last_error: Option<String>,
    /// The error that stopped it, if one did.
    pub fatal: Option<ShipError>,
}

/// A sealed batch.
#[derive(Debug, Default)]
struct Batch {
    messages: Vec<MessageRow>,
    gaps: Vec<GapRow>,
    end: Position,
}

impl Batch {
    fn id(&self) -> Option<(&[u8], u64, u64)> {
        let (first, last) = (self.messages.first()?, self.messages.last()?);
        Some((&first.session, first.seq, last.seq))
    }

    /// The query id of its inserts, the same for every attempt.
    fn query_id(&self) -> String {
        match (self.id(), self.gaps.first()) {
            (Some((s, first, last)), _) => format!("ticklane-{}-{first}-{last}", hex(s)),
            (None, Some(g)) => format!(
                "ticklane-gap-{}-{}-{}",
                hex(&g.session),
                g.from_seq,
                g.end_seq
            ),
            (None, None) => String::from("ticklane-empty"),
        }
    }
}

/// Reads the next batch from `reader` (stopping before `upto`).
fn next_batch(
    reader: &mut Reader,
    upto: Option<Position>,
    max_rows: usize,
    spare: &mut Vec<MessageRow>,
) -> Result<Batch, JournalError> {
    let mut b = Batch {
        end: reader.position(),
        ..Batch::default()
    };
    loop {
        // Look before taking: an entry that belongs to the next batch stays.
        let before = reader.position();
        let Some((entry, next)) = reader.next(upto)? else {
            break;
        };
        match entry {
            Entry::Message {
                session,
                seq,
                journaled_ns,
                bytes,
            } => {
                let fits = b.gaps.is_empty()
                    && b.messages.len() < max_rows
                    && b.messages.first().is_none_or(|f| {
                        f.session == session.trimmed() && f.day == day_of(journaled_ns)
                    });
                if !fits {
                    reader.rewind(before);
                    break;
                }
                let row = match spare.pop() {
                    Some(mut row) => {
                        row.fill(session.trimmed(), seq, journaled_ns, bytes);
                        row
                    }
                    None => MessageRow::new(session.trimmed(), seq, journaled_ns, bytes),
                };
                b.messages.push(row);
            }
            Entry::Gap {
                session,
                from,
                end,
                journaled_ns,
            } => {
                if !b.messages.is_empty() {
                    reader.rewind(before);
                    break;
                }
                b.gaps.push(GapRow {
                    day: day_of(journaled_ns),
                    session: session.trimmed().to_vec(),
                    from_seq: from,
                    end_seq: end,
                    journaled_ns,
                });
            }
        }
        b.end = next;
    }
    if let Some((_, first, last)) = b.id() {
        for r in &mut b.messages {
            r.batch_first = first;
            r.batch_last = last;
        }
    }
    Ok(b)
}

/// The shipping loop's state.
struct Ship {
    dir: PathBuf,
    store: Store,
    cfg: ShipConfig,
    gauges: Arc<ShipGauges>,
    ack: AckState,
    last_error: Option<String>,
}

impl Ship {
    /// Sends `batch` until the server has it exactly once, or `give_up`
    /// says stop (then false: it stays pending for the next start).
    async fn deliver(
        &mut self,
        batch: &Batch,
        mut ambiguous: bool,
        give_up: &dyn Fn() -> bool,
    ) -> bool {
        let mut delay = self.cfg.backoff;
        let query_id = batch.query_id();
        loop {
            let attempt = async {
                if ambiguous {
                    self.settle(&query_id).await?;
                    if self.landed(batch).await? {
                        self.gauges.found_landed.fetch_add(1, Ordering::Relaxed);
                        return Ok::<(), StoreError>(());
                    }
                }
                if !batch.messages.is_empty() {
                    self.store
                        .insert_messages(&batch.messages, &query_id)
                        .await?;
                }
                if !batch.gaps.is_empty() {
                    self.store.insert_gaps(&batch.gaps, &query_id).await?;
                }
                Ok(())
            };
            match attempt.await {
                Ok(()) => {
                    self.gauges.failing.store(false, Ordering::Relaxed);
                    return true;
                }
                Err(e) => {
                    // Whatever failed, the batch may have landed: ask first.
                    ambiguous = true;
                    self.gauges.failures.fetch_add(1, Ordering::Relaxed);
                    self.gauges.failing.store(true, Ordering::Relaxed);
                    self.last_error = Some(e.to_string());
                    if give_up() {
                        return false;
                    }
                    tokio::time::sleep(delay).await;
                    delay = (delay * 2).min(self.cfg.max_backoff);
                }
            }
        }
    }

    /// Before asking whether a batch landed: an earlier attempt that timed
    /// out here may still sit unread in the server's socket, or still run.
    /// Give the server a moment to pick it up, then wait until no query
    /// with its id runs (the server serves one at a time per id).
    async fn settle(&self, query_id: &str) -> Result<(), StoreError> {
        tokio::time::sleep(SETTLE).await;
        while self.store.running(query_id).await? {
            tokio::time::sleep(self.cfg.backoff).await;
        }
        Ok(())
    }

    /// Whether every row of `batch` is in the store already.
    async fn landed(&self, batch: &Batch) -> Result<bool, StoreError> {
        if let Some((session, first, last)) = batch.id() {
            return Ok(
                self.store.batch_rows(session, first, last).await? >= batch.messages.len() as u64
            );
        }
        for g in &batch.gaps {
            if self
                .store
                .gap_rows(&g.session, g.from_seq, g.end_seq)
                .await?
                == 0
            {
                return Ok(false);
            }
        }
        Ok(true)
    }

    /// Records `batch` as acknowledged, and `next` (when one is ready) as
    /// the batch now in flight, in one durable write.
    fn acknowledge(&mut self, batch: &Batch, next: Option<&Batch>) -> Result<(), JournalError> {
        self.ack = AckState {
            acked: batch.end,
            pending: next.map(|n| n.end),
        };
        self.ack.store(&self.dir)?;
        self.gauges.set_acked(self.ack.acked);
        self.gauges
            .rows
            .fetch_add(batch.messages.len() as u64, Ordering::Relaxed);
        self.gauges.batches.fetch_add(1, Ordering::Relaxed);
        if self.cfg.reclaim {
            reclaim(&self.dir, self.ack.acked)?;
        }
        Ok(())
    }

    /// Ships until `stop` and everything before `upto` is acknowledged, or
    /// the deadline after `stop` passes.
    async fn run(
        &mut self,
        committed: Option<Arc<Mutex<Position>>>,
        stop: &Arc<AtomicBool>,
        deadline: &Mutex<Option<Instant>>,
    ) -> Result<(), ShipError> {
        let give_up = || {
            stop.load(Ordering::Acquire)
                && deadline
                    .lock()
                    .unwrap_or_else(PoisonError::into_inner)
                    .is_some_and(|d| Instant::now() >= d)
        };
        let mut reader = Reader::open(&self.dir, self.ack.acked);
        if let Some(end) = self.ack.pending {
            // A crash left this batch in flight: the same batch again, asked about first.
            let batch = next_batch(&mut reader, Some(end), usize::MAX, &mut Vec::new())?;
            if !self.deliver(&batch, true, &give_up).await {
                return Ok(());
            }
            self.acknowledge(&batch, None)?;
        }
        // The next batch is read and built on a thread of its own while
        // this one is being inserted (one batch ahead, no more).
        let (tx, rx) = std::sync::mpsc::sync_channel(1);
        // Shipped batches go back to the sealer, which fills their rows again.
        let (recycle, recycled) = std::sync::mpsc::channel::<Batch>();
        let sealer = Sealer {
            recycled,
            spare: Vec::new(),
            reader,
            committed,
            stop: stop.clone(),
            max_rows: self.cfg.max_rows,
            every: self.cfg.every,
        };
        std::thread::Builder::new()
            .name("audit-sealer".into())
            .spawn(move || sealer.run(&tx))
            .map_err(ShipError::Runtime)?;
        // Ends when the sealer has nothing more (it then drops its sender).
        let mut next = match rx.recv() {
            Ok(b) => Some(b?),
            Err(_) => return Ok(()),
        };
        if let Some(b) = &next {
            self.ack.pending = Some(b.end);
            self.ack.store(&self.dir)?;
        }
        while let Some(batch) = next.take() {
            if !self.deliver(&batch, false, &give_up).await {
                return Ok(());
            }
            // The next batch, when ready now, is marked in flight in the
            // same write as this one's acknowledgement; else it is marked
            // on its own when it comes.
            next = match rx.try_recv() {
                Ok(b) => Some(b?),
                Err(std::sync::mpsc::TryRecvError::Empty) => None,
                Err(std::sync::mpsc::TryRecvError::Disconnected) => {
                    self.acknowledge(&batch, None)?;
                    return Ok(());
                }
            };
            self.acknowledge(&batch, next.as_ref())?;
            let _ = recycle.send(batch);
            if next.is_none() {
                next = match rx.recv() {
                    Ok(b) => Some(b?),
                    Err(_) => return Ok(()),
                };
                if let Some(b) = &next {
                    self.ack.pending = Some(b.end);
                    self.ack.store(&self.dir)?;
                }
            }
        }
        Ok(())
    }
}

/// Reads the journal into sealed batches, in order, for the shipper.
struct Sealer {
    /// Batches the shipper is done with.
    recycled: std::sync::mpsc::Receiver<Batch>,
    /// Their rows, to be filled again.
    spare: Vec<MessageRow>,
    reader: Reader,
    committed: Option<Arc<Mutex<Position>>>,
    stop: Arc<AtomicBool>,
    max_rows: usize,
    every: Duration,
}

impl Sealer {
    /// Until stopped with nothing left (or, with no writer, at the end), or
    /// until the shipper hangs up.
    fn run(mut self, tx: &std::sync::mpsc::SyncSender<Result<Batch, JournalError>>) {
        loop {
            let stopping = self.stop.load(Ordering::Acquire);
            let upto = self
                .committed
                .as_ref()
                .map(|c| *c.lock().unwrap_or_else(PoisonError::into_inner));
            while let Ok(mut done) = self.recycled.try_recv() {
                self.spare.append(&mut done.messages);
            }
            match next_batch(&mut self.reader, upto, self.max_rows, &mut self.spare) {
                Err(e) => {
                    let _ = tx.send(Err(e));
                    return;
                }
                Ok(b) if b.messages.is_empty() && b.gaps.is_empty() => {
                    if stopping || self.committed.is_none() {
                        return;
                    }
                    std::thread::sleep(self.every);
                }
                Ok(b) => {
                    if tx.send(Ok(b)).is_err() {
                        return;
                    }
                }
            }
        }
    }
}

/// The shipper thread.
#[derive(Debug)]
pub struct Shipper {
    stop: Arc<AtomicBool>,
    deadline: Arc<Mutex<Option<Instant>>>,
    gauges: Arc<ShipGauges>,
    handle: std::thread::JoinHandle<(Option<ShipError>, Option<String>)>,
    dir: PathBuf,
}

impl Shipper {
    /// Ships the journal in `dir` to `store` on a thread of its own.
    /// `committed`: the writer's committed position when the journal is
    /// being written (the shipper follows it); None ships what is there.
    pub fn spawn(
        dir: &Path,
        store: Store,
        cfg: ShipConfig,
        committed: Option<Arc<Mutex<Position>>>,
    ) -> Result<Self, ShipError> {
        let ack = AckState::load(dir)?;
        // Connections of its own, made on its runtime.
        let store = store.fresh()?;
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .map_err(ShipError::Runtime)?;
        let stop = Arc::new(AtomicBool::new(false));
        let deadline = Arc::new(Mutex::new(None));
        let gauges = Arc::new(ShipGauges::default());
        gauges.set_acked(ack.acked);
        let mut ship = Ship {
            dir: dir.to_owned(),
            store,
            cfg,
            gauges: gauges.clone(),
            ack,
            last_error: None,
        };
        let (s, d) = (stop.clone(), deadline.clone());
        let handle = std::thread::Builder::new()
            .name("audit-shipper".into())
            .spawn(move || {
                let r = runtime.block_on(ship.run(committed, &s, &d));
                (r.err(), ship.last_error)
            })
            .map_err(ShipError::Runtime)?;
        Ok(Self {
            stop,
            deadline,
            gauges,
            handle,
            dir: dir.to_owned(),
        })
    }

    /// Its live counters.
    pub fn gauges(&self) -> Arc<ShipGauges> {
        self.gauges.clone()
    }

    /// Ships what is journaled, for at most `timeout` more, then stops and
    /// reports (what is left is shipped at the next start).
    pub fn finish(self, timeout: Duration) -> ShipReport {
        *self.deadline.lock().unwrap_or_else(PoisonError::into_inner) =
            Some(Instant::now() + timeout);
        self.stop.store(true, Ordering::Release);
        let (fatal, last_error) = self
            .handle
            .join()
            .unwrap_or_else(|_| (None, Some("the shipper thread panicked".into())));
        let g = &self.gauges;
        ShipReport {
            rows: g.rows.load(Ordering::Relaxed),
            batches: g.batches.load(Ordering::Relaxed),
            failures: g.failures.load(Ordering::Relaxed),
            found_landed: g.found_landed.load(Ordering::Relaxed),
            left_messages: unacknowledged(&self.dir).unwrap_or(u64::MAX),
            last_error,
            fatal,
        }
    }
}

/// Journaled messages after the acknowledged position.
pub fn unacknowledged(dir: &Path) -> Result<u64, JournalError> {
    let ack = AckState::load(dir)?;
    let mut reader = Reader::open(dir, ack.acked);
    let mut n = 0;
    while let Some((e, _)) = reader.next(None)? {
        if matches!(e, Entry::Message { .. }) {
            n += 1;
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::journal::{Journal, JournalConfig};
    use ticklane_protocols::moldudp64::Session;

    const DAY: u64 = 86_400 * 1_000_000_000;

    /// Every batch is one session, one partition day, at most `max_rows`
    /// rows, and gaps travel on their own; batch ids are the first and last
    /// seq, carried by every row.
    #[test]
    fn batches_are_sealed_by_session_day_size_and_gaps() {
        let dir = tempfile::tempdir().unwrap();
        let (mut j, _) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        let (a, b) = (
            Session::from_name(b"A").unwrap(),
            Session::from_name(b"B").unwrap(),
        );
        let msg = |session, seq, journaled_ns| Entry::Message {
            session,
            seq,
            journaled_ns,
            bytes: b"S\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00O",
        };
        for seq in 1..=5 {
            j.append(&msg(a, seq, DAY - 10));
        }
        for seq in 6..=8 {
            j.append(&msg(a, seq, DAY + 10));
        }
        j.append(&Entry::Gap {
            session: a,
            from: 9,
            end: 12,
            journaled_ns: DAY + 11,
        });
        for seq in 12..=13 {
            j.append(&msg(a, seq, DAY + 12));
        }
        j.append(&msg(b, 1, DAY + 13));
        j.commit().unwrap();
        let mut reader = Reader::open(dir.path(), Position::default());
        let mut shapes = Vec::new();
        loop {
            let batch = next_batch(&mut reader, None, 3, &mut Vec::new()).unwrap();
            if batch.messages.is_empty() && batch.gaps.is_empty() {
                break;
            }
            for r in &batch.messages {
                let id = batch.id().unwrap();
                assert_eq!((r.batch_first, r.batch_last), (id.1, id.2));
            }
            shapes.push((
                batch.messages.first().map(|r| (r.session.clone(), r.seq)),
                batch.messages.len(),
                batch
                    .gaps
                    .iter()
                    .map(|g| (g.from_seq, g.end_seq))
                    .collect::<Vec<_>>(),
            ));
        }
        let a1 = |seq| Some((b"A".to_vec(), seq));
        assert_eq!(
            shapes,
            vec![
                (a1(1), 3, vec![]),
                (a1(4), 2, vec![]),
                (a1(6), 3, vec![]),
                (None, 0, vec![(9, 12)]),
                (a1(12), 2, vec![]),
                (Some((b"B".to_vec(), 1)), 1, vec![]),
            ],
            "3 rows at most; the day changes after seq 5; the gap alone; session B apart"
        );
    }
}
