//! The local journal: append-only segment files of CRC'd records
//! ([`crate::record`]) in one directory, rotated by size.
//!
//! - `DIR/{index:020}.seg`: a segment, an 8-byte magic then records. A
//!   segment is never written again once the next one exists; every open
//!   starts a new one.
//! - `DIR/acked`: how far the shipper's store acknowledged (and the batch it
//!   was sending), written atomically (temporary file, fsync, rename).
//!
//! A crash can leave the last segment with a torn tail: [`Journal::open`]
//! cuts it at the last whole record and reports what it cut
//! ([`Recovery`]). A corrupt record inside a sealed segment is an error
//! naming the file and offset; a sealed segment that ends inside a record
//! (truncated) is skipped from there and counted.

use std::fs::{File, OpenOptions};
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::record::{Decoded, Entry};

const MAGIC: &[u8; 8] = b"TLAUDJ1\n";
const ACK_MAGIC: &[u8; 8] = b"TLACKD1\n";

/// A place in the journal: a segment and a byte offset in it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    /// Segment index.
    pub segment: u64,
    /// Byte offset in that segment.
    pub offset: u64,
}

/// When the journal calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsyncPolicy {
    /// After every batch the writer drained from the ring.
    Batch,
    /// At most once per interval.
    Interval(Duration),
    /// Never (the kernel writes back; a power loss may lose the tail).
    Off,
}

impl std::str::FromStr for FsyncPolicy {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "batch" => Ok(Self::Batch),
            "off" => Ok(Self::Off),
            _ => match s.strip_prefix("interval:").map(str::parse::<u64>) {
                Some(Ok(ms)) if ms > 0 => Ok(Self::Interval(Duration::from_millis(ms))),
                _ => Err(format!(
                    "'{s}' is not an fsync policy: batch, interval:MS (MS > 0) or off"
                )),
            },
        }
    }
}

/// How the journal writes.
#[derive(Debug, Clone, Copy)]
pub struct JournalConfig {
    /// A segment is sealed and the next one started once it holds this many bytes.
    pub segment_bytes: u64,
    /// When to fsync.
    pub fsync: FsyncPolicy,
}

impl Default for JournalConfig {
    fn default() -> Self {
        Self {
            segment_bytes: 64 << 20,
            fsync: FsyncPolicy::Interval(Duration::from_millis(100)),
        }
    }
}

/// What the journal found wrong and what it did about it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Recovery {
    /// Segments whose tail ended inside a record (or in garbage) and was cut.
    pub torn_segments: u64,
    /// Bytes cut or skipped.
    pub bytes_dropped: u64,
    /// Where the first cut was.
    pub first_at: Option<Position>,
}

impl Recovery {
    fn note(&mut self, at: Position, bytes: u64) {
        self.torn_segments += 1;
        self.bytes_dropped += bytes;
        self.first_at.get_or_insert(at);
    }
}

/// Journal failures.
#[derive(Debug, thiserror::Error)]
pub enum JournalError {
    /// A file operation failed.
    #[error("audit journal: {what} {path}: {source}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The system's error.
        source: std::io::Error,
    },
    /// A file in the journal is not a journal segment.
    #[error(
        "audit journal: {path} is not a ticklane journal segment (bad magic); move it out of the journal directory"
    )]
    NotAJournal {
        /// The file.
        path: PathBuf,
    },
    /// A record inside a sealed segment fails its CRC.
    #[error(
        "audit journal: corrupt record in {path} at byte {offset} (CRC mismatch); the records after it in that segment cannot be read: ship or query from a copy, and restore the segment from backup if you have one"
    )]
    Corrupt {
        /// The segment.
        path: PathBuf,
        /// Byte offset of the bad record.
        offset: u64,
    },
    /// The acknowledgement file is damaged.
    #[error(
        "audit journal: {path} is damaged; delete it to ship the whole journal again (the store deduplicates by batch and sequence)"
    )]
    BadAck {
        /// The file.
        path: PathBuf,
    },
}

fn io(what: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> JournalError {
    let path = path.to_owned();
    move |source| JournalError::Io { what, path, source }
}

pub(crate) fn segment_path(dir: &Path, index: u64) -> PathBuf {
    dir.join(format!("{index:020}.seg"))
}

/// The segment indexes in `dir`, ascending.
pub fn segments(dir: &Path) -> Result<Vec<u64>, JournalError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io("reading the directory", dir))? {
        let entry = entry.map_err(io("reading the directory", dir))?;
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".seg")) else {
            continue;
        };
        if stem.len() == 20
            && let Ok(i) = stem.parse::<u64>()
        {
            out.push(i);
        }
    }
    out.sort_unstable();
    Ok(out)
}

/// Bytes the segments of `dir` take.
pub fn disk_bytes(dir: &Path) -> Result<u64, JournalError> {
    let mut total = 0;
    for i in segments(dir)? {
        let p = segment_path(dir, i);
        total += std::fs::metadata(&p).map_err(io("reading", &p))?.len();
    }
    Ok(total)
}

/// The writing end of a journal (one per directory; the audit writer thread owns it).
#[derive(Debug)]
pub struct Journal {
    dir: PathBuf,
    cfg: JournalConfig,
    file: File,
    at: Position,
    buf: Vec<u8>,
    synced_at: Instant,
    committed: Arc<Mutex<Position>>,
    bytes_written: u64,
}

impl Journal {
    /// Opens (creating) the journal in `dir`: repairs a torn tail of the
    /// last segment and starts a new segment after it.
    pub fn open(dir: &Path, cfg: JournalConfig) -> Result<(Self, Recovery), JournalError> {
        std::fs::create_dir_all(dir).map_err(io("creating", dir))?;
        let existing = segments(dir)?;
        let mut recovery = Recovery::default();
        if let Some(&last) = existing.last() {
            repair_tail(dir, last, &mut recovery)?;
        }
        let next = existing.last().map_or(0, |l| l + 1);
        let file = create_segment(dir, next)?;
        let at = Position {
            segment: next,
            offset: MAGIC.len() as u64,
        };
        Ok((
            Self {
                dir: dir.to_owned(),
                cfg,
                file,
                at,
                buf: Vec::with_capacity(1 << 20),
                synced_at: Instant::now(),
                committed: Arc::new(Mutex::new(at)),
                bytes_written: 0,
            },
            recovery,
        ))
    }

    /// Its directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Appends an entry to the pending batch (written by [`Journal::commit`]).
    #[inline]
    pub fn append(&mut self, entry: &Entry<'_>) {
        entry.encode(&mut self.buf);
    }

    /// Drops the pending batch (after a failed commit).
    pub fn discard(&mut self) {
        self.buf.clear();
    }

    /// Bytes appended and not yet committed.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes the pending batch (in a new segment when the current one is
    /// full), fsyncs as the policy says, and publishes the new committed
    /// position. A failed write leaves no part of the batch in the segment
    /// (it stays pending); a failed fsync leaves it written but not known
    /// to be durable.
    pub fn commit(&mut self) -> Result<(), JournalError> {
        if self.buf.is_empty() {
            return Ok(());
        }
        // Rotate first: a failure to start the next segment then leaves
        // the batch unwritten, never written and reported as failed.
        if self.at.offset >= self.cfg.segment_bytes {
            if self.cfg.fsync != FsyncPolicy::Off {
                self.sync()?;
            }
            let next = self.at.segment + 1;
            self.file = create_segment(&self.dir, next)?;
            self.at = Position {
                segment: next,
                offset: MAGIC.len() as u64,
            };
        }
        let path = segment_path(&self.dir, self.at.segment);
        if let Err(e) = self.file.write_all(&self.buf) {
            // Put the file back where the last whole batch ended, so
            // that a partly written batch leaves no torn record behind.
            let _ = self.file.set_len(self.at.offset);
            let _ = self.file.seek(SeekFrom::Start(self.at.offset));
            return Err(io("writing", &path)(e));
        }
        self.at.offset += self.buf.len() as u64;
        self.bytes_written += self.buf.len() as u64;
        self.buf.clear();
        let due = match self.cfg.fsync {
            FsyncPolicy::Batch => true,
            FsyncPolicy::Interval(every) => self.synced_at.elapsed() >= every,
            FsyncPolicy::Off => false,
        };
        if due {
            self.sync()?;
        }
        *self
            .committed
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = self.at;
        Ok(())
    }

    /// fsync of the current segment.
    pub fn sync(&mut self) -> Result<(), JournalError> {
        self.synced_at = Instant::now();
        self.file
            .sync_data()
            .map_err(io("fsync of", &segment_path(&self.dir, self.at.segment)))
    }

    /// The end of what was committed, shared with readers in this process
    /// (a reader never reads past it, so never sees a batch half written).
    pub fn committed(&self) -> Arc<Mutex<Position>> {
        self.committed.clone()
    }

    /// Bytes written since open.
    pub fn bytes_written(&self) -> u64 {
        self.bytes_written
    }
}

fn create_segment(dir: &Path, index: u64) -> Result<File, JournalError> {
    let path = segment_path(dir, index);
    let mut f = OpenOptions::new()
        .create_new(true)
        .append(true)
        .open(&path)
        .map_err(io("creating", &path))?;
    f.write_all(MAGIC).map_err(io("writing", &path))?;
    // The new name must survive a crash too.
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io("fsync of", dir))?;
    Ok(f)
}

fn read_segment(dir: &Path, index: u64) -> Result<Vec<u8>, JournalError> {
    let path = segment_path(dir, index);
    let bytes = std::fs::read(&path).map_err(io("reading", &path))?;
    if bytes.len() >= MAGIC.len() && !bytes.starts_with(MAGIC) {
        return Err(JournalError::NotAJournal { path });
    }
    Ok(bytes)
}

/// Cuts the last segment after its last whole record.
fn repair_tail(dir: &Path, index: u64, recovery: &mut Recovery) -> Result<(), JournalError> {
    let bytes = read_segment(dir, index)?;
    let mut at = MAGIC.len().min(bytes.len());
    while let Decoded::Record(_, len) = Entry::decode(&bytes[at..]) {
        at += len;
    }
    if at < bytes.len() || bytes.len() < MAGIC.len() {
        let path = segment_path(dir, index);
        let keep = at.max(MAGIC.len());
        let f = OpenOptions::new()
            .write(true)
            .open(&path)
            .map_err(io("repairing", &path))?;
        if bytes.len() < MAGIC.len() {
            // Torn before its magic was complete: rewrite the magic.
            f.set_len(0).map_err(io("repairing", &path))?;
            (&f).write_all(MAGIC).map_err(io("repairing", &path))?;
        } else {
            f.set_len(keep as u64).map_err(io("repairing", &path))?;
        }
        f.sync_all().map_err(io("fsync of", &path))?;
        recovery.note(
            Position {
                segment: index,
                offset: at as u64,
            },
            (bytes.len().saturating_sub(keep)) as u64,
        );
    }
    Ok(())
}

/// Reads entries in order from a position, across segments, tailing the
/// segment being written.
#[derive(Debug)]
pub struct Reader {
    dir: PathBuf,
    at: Position,
    /// The current segment's bytes read so far, from offset `base`.
    buf: Vec<u8>,
    base: u64,
    file: Option<File>,
    recovery: Recovery,
}

/// Bytes read from a segment at a time (the first entries are decoded
/// before the whole segment is read).
const READ_CHUNK: u64 = 4 << 20;

impl Reader {
    /// Starts at `from` (or at the first segment after it, when its segment
    /// was reclaimed).
    pub fn open(dir: &Path, from: Position) -> Self {
        Self {
            dir: dir.to_owned(),
            at: from,
            buf: Vec::new(),
            base: 0,
            file: None,
            recovery: Recovery::default(),
        }
    }

    /// Goes back to `at`, where a record starts (to read it again).
    pub fn rewind(&mut self, at: Position) {
        if at.segment != self.at.segment || at.offset < self.base {
            self.file = None;
        }
        self.at = at;
    }

    /// Bytes read from the current segment after the last whole record
    /// (a torn tail, or a batch still being written).
    pub fn leftover(&self) -> u64 {
        (self.buf.len() as u64).saturating_sub(self.at.offset.saturating_sub(self.base))
    }

    /// Where the next entry starts.
    pub fn position(&self) -> Position {
        self.at
    }

    /// Torn segments skipped so far.
    pub fn recovery(&self) -> Recovery {
        self.recovery
    }

    /// The next entry before `upto` (None: nothing more yet), and where the
    /// one after it starts.
    pub fn next(
        &mut self,
        upto: Option<Position>,
    ) -> Result<Option<(Entry<'_>, Position)>, JournalError> {
        loop {
            if upto.is_some_and(|u| self.at >= u) {
                return Ok(None);
            }
            if self.file.is_none() && !self.load()? {
                return Ok(None);
            }
            let off = self.at.offset.saturating_sub(self.base) as usize;
            match Entry::decode(self.buf.get(off..).unwrap_or_default()) {
                Decoded::Record(_, len) => {
                    self.at.offset += len as u64;
                    let next = self.at;
                    // Decoded again for the borrow checker (the entry borrows
                    // the buffer that the other arms refill).
                    return match Entry::decode(&self.buf[off..]) {
                        Decoded::Record(entry, _) => Ok(Some((entry, next))),
                        _ => Err(JournalError::Corrupt {
                            path: segment_path(&self.dir, next.segment),
                            offset: self.base + off as u64,
                        }),
                    };
                }
                Decoded::Corrupt if !self.is_last()? => {
                    return Err(JournalError::Corrupt {
                        path: segment_path(&self.dir, self.at.segment),
                        offset: self.at.offset,
                    });
                }
                Decoded::Corrupt | Decoded::Incomplete => {
                    if self.read_more()? {
                        continue;
                    }
                    if !self.is_last()? {
                        // A sealed segment that ends inside a record: skip
                        // the rest, counted.
                        let rest = (self.buf.len() - off.min(self.buf.len())) as u64;
                        if rest > 0 {
                            self.recovery.note(self.at, rest);
                        }
                        self.advance()?;
                        continue;
                    }
                    return Ok(None);
                }
            }
        }
    }

    /// Opens the segment of `self.at` (or the next existing one).
    fn load(&mut self) -> Result<bool, JournalError> {
        let Some(&index) = segments(&self.dir)?.iter().find(|&&i| i >= self.at.segment) else {
            return Ok(false);
        };
        if index != self.at.segment {
            self.at = Position {
                segment: index,
                offset: MAGIC.len() as u64,
            };
        }
        let path = segment_path(&self.dir, index);
        let mut file = File::open(&path).map_err(io("opening", &path))?;
        let mut magic = [0u8; MAGIC.len()];
        match file.read_exact(&mut magic) {
            Ok(()) if magic != *MAGIC => return Err(JournalError::NotAJournal { path }),
            // Shorter than its magic: a segment torn at creation, empty.
            Ok(()) | Err(_) => {}
        }
        // Read from where the entries wanted start, not from the top.
        self.at.offset = self.at.offset.max(MAGIC.len() as u64);
        file.seek(SeekFrom::Start(self.at.offset))
            .map_err(io("reading", &path))?;
        self.base = self.at.offset;
        self.file = Some(file);
        self.buf.clear();
        self.read_more()?;
        Ok(true)
    }

    fn read_more(&mut self) -> Result<bool, JournalError> {
        let Some(f) = &mut self.file else {
            return Ok(false);
        };
        let before = self.buf.len();
        f.take(READ_CHUNK)
            .read_to_end(&mut self.buf)
            .map_err(io("reading", &segment_path(&self.dir, self.at.segment)))?;
        Ok(self.buf.len() > before)
    }

    fn is_last(&self) -> Result<bool, JournalError> {
        Ok(segments(&self.dir)?
            .last()
            .is_none_or(|&l| l <= self.at.segment))
    }

    fn advance(&mut self) -> Result<(), JournalError> {
        self.file = None;
        self.at = Position {
            segment: self.at.segment + 1,
            offset: MAGIC.len() as u64,
        };
        Ok(())
    }
}

/// What the store acknowledged: everything before `acked`, and the batch
/// that was being sent when it was written (resent or confirmed at restart).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AckState {
    /// Everything before this position is in the store.
    pub acked: Position,
    /// The sealed batch in flight: it ends at this position.
    pub pending: Option<Position>,
}

fn ack_path(dir: &Path) -> PathBuf {
    dir.join("acked")
}

impl AckState {
    /// Reads `DIR/acked` (the default when there is none).
    pub fn load(dir: &Path) -> Result<Self, JournalError> {
        let path = ack_path(dir);
        let bytes = match std::fs::read(&path) {
            Ok(b) => b,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(e) => return Err(io("reading", &path)(e)),
        };
        let bad = || JournalError::BadAck { path: path.clone() };
        if bytes.len() != 8 + 5 * 8 + 4 || !bytes.starts_with(ACK_MAGIC) {
            return Err(bad());
        }
        let (body, crc) = bytes.split_at(bytes.len() - 4);
        if crc32fast::hash(body).to_le_bytes() != crc {
            return Err(bad());
        }
        let word = |i: usize| {
            u64::from_le_bytes(body[8 + i * 8..16 + i * 8].try_into().unwrap_or_default())
        };
        Ok(Self {
            acked: Position {
                segment: word(0),
                offset: word(1),
            },
            pending: (word(2) == 1).then(|| Position {
                segment: word(3),
                offset: word(4),
            }),
        })
    }

    /// Writes `DIR/acked` atomically and durably.
    pub fn store(&self, dir: &Path) -> Result<(), JournalError> {
        let path = ack_path(dir);
        let tmp = dir.join("acked.tmp");
        let pending = self.pending.unwrap_or_default();
        let mut body = ACK_MAGIC.to_vec();
        for w in [
            self.acked.segment,
            self.acked.offset,
            u64::from(self.pending.is_some()),
            pending.segment,
            pending.offset,
        ] {
            body.extend_from_slice(&w.to_le_bytes());
        }
        body.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        let mut f = File::create(&tmp).map_err(io("creating", &tmp))?;
        f.write_all(&body).map_err(io("writing", &tmp))?;
        f.sync_all().map_err(io("fsync of", &tmp))?;
        std::fs::rename(&tmp, &path).map_err(io("renaming", &tmp))?;
        File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(io("fsync of", dir))
    }
}

/// Deletes the segments wholly before `acked` (never the one being written,
/// which is always at or after it).
pub fn reclaim(dir: &Path, acked: Position) -> Result<u64, JournalError> {
    let mut freed = 0;
    for i in segments(dir)?.into_iter().filter(|&i| i < acked.segment) {
        let p = segment_path(dir, i);
        freed += std::fs::metadata(&p).map(|m| m.len()).unwrap_or(0);
        std::fs::remove_file(&p).map_err(io("removing", &p))?;
    }
    Ok(freed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use ticklane_protocols::moldudp64::Session;

    fn msg(seq: u64) -> Entry<'static> {
        Entry::Message {
            session: Session::from_name(b"J").unwrap(),
            seq,
            journaled_ns: seq * 10,
            bytes: b"S\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00O",
        }
    }

    fn read_all(dir: &Path, from: Position) -> (Vec<u64>, Recovery) {
        let mut r = Reader::open(dir, from);
        let mut seqs = Vec::new();
        while let Some((e, _)) = r.next(None).unwrap() {
            if let Entry::Message { seq, .. } = e {
                seqs.push(seq);
            }
        }
        (seqs, r.recovery())
    }

    fn write(dir: &Path, seqs: std::ops::Range<u64>, segment_bytes: u64) -> Journal {
        let (mut j, _) = Journal::open(
            dir,
            JournalConfig {
                segment_bytes,
                fsync: FsyncPolicy::Batch,
            },
        )
        .unwrap();
        for s in seqs {
            j.append(&msg(s));
            if s % 7 == 0 {
                j.commit().unwrap();
            }
        }
        j.commit().unwrap();
        j
    }

    #[test]
    fn entries_come_back_in_order_across_rotations_and_reopens() {
        let dir = tempfile::tempdir().unwrap();
        drop(write(dir.path(), 0..1000, 4096));
        let first = segments(dir.path()).unwrap().len();
        assert!(first > 5, "rotated by size: {first} segments");
        drop(write(dir.path(), 1000..1100, 4096));
        let (seqs, rec) = read_all(dir.path(), Position::default());
        assert_eq!(seqs, (0..1100).collect::<Vec<_>>());
        assert_eq!(rec, Recovery::default());
    }

    #[test]
    fn a_torn_tail_is_cut_at_open_counted_and_the_rest_kept() {
        let dir = tempfile::tempdir().unwrap();
        drop(write(dir.path(), 0..10, 1 << 20));
        let last = *segments(dir.path()).unwrap().last().unwrap();
        let p = segment_path(dir.path(), last);
        let len = std::fs::metadata(&p).unwrap().len();
        // Cut the last record in the middle (a crash mid-write).
        let cut = len - 5;
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(cut)
            .unwrap();
        let (j, rec) = Journal::open(dir.path(), JournalConfig::default()).unwrap();
        assert_eq!(rec.torn_segments, 1);
        assert_eq!(rec.bytes_dropped, msg(9).encoded_len() as u64 - 5);
        drop(j);
        let (seqs, rec) = read_all(dir.path(), Position::default());
        assert_eq!(
            seqs,
            (0..9).collect::<Vec<_>>(),
            "seq 9 was torn, nothing else lost"
        );
        assert_eq!(rec, Recovery::default(), "repaired once, at open");
    }

    #[test]
    fn a_sealed_segment_truncated_mid_record_is_skipped_and_counted() {
        let dir = tempfile::tempdir().unwrap();
        drop(write(dir.path(), 0..200, 2048));
        let segs = segments(dir.path()).unwrap();
        let p = segment_path(dir.path(), segs[0]);
        let len = std::fs::metadata(&p).unwrap().len();
        OpenOptions::new()
            .write(true)
            .open(&p)
            .unwrap()
            .set_len(len - 3)
            .unwrap();
        let (seqs, rec) = read_all(dir.path(), Position::default());
        let lost = 200 - seqs.len() as u64;
        assert_eq!(lost, 1, "one record torn");
        assert_eq!(rec.torn_segments, 1);
        assert_eq!(rec.bytes_dropped, msg(0).encoded_len() as u64 - 3);
    }

    #[test]
    fn a_flipped_byte_in_a_sealed_segment_is_an_error_naming_the_place() {
        let dir = tempfile::tempdir().unwrap();
        drop(write(dir.path(), 0..200, 2048));
        let segs = segments(dir.path()).unwrap();
        let p = segment_path(dir.path(), segs[0]);
        let mut bytes = std::fs::read(&p).unwrap();
        bytes[MAGIC.len() + 20] ^= 0x40;
        std::fs::write(&p, bytes).unwrap();
        let mut r = Reader::open(dir.path(), Position::default());
        let err = r.next(None).unwrap_err();
        assert!(
            matches!(err, JournalError::Corrupt { offset: 8, .. }),
            "{err}"
        );
    }

    #[test]
    fn a_reader_never_reads_past_the_committed_position() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = write(dir.path(), 0..5, 1 << 20);
        let committed = j.committed();
        j.append(&msg(5));
        let upto = *committed.lock().unwrap();
        let mut r = Reader::open(dir.path(), Position::default());
        let mut n = 0;
        while r.next(Some(upto)).unwrap().is_some() {
            n += 1;
        }
        assert_eq!(n, 5);
        j.commit().unwrap();
        let upto = *committed.lock().unwrap();
        assert!(
            r.next(Some(upto)).unwrap().is_some(),
            "the tail is followed"
        );
    }

    #[test]
    fn ack_state_round_trips_and_damage_is_reported() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(AckState::load(dir.path()).unwrap(), AckState::default());
        let s = AckState {
            acked: Position {
                segment: 3,
                offset: 99,
            },
            pending: Some(Position {
                segment: 4,
                offset: 8,
            }),
        };
        s.store(dir.path()).unwrap();
        assert_eq!(AckState::load(dir.path()).unwrap(), s);
        let p = dir.path().join("acked");
        let mut b = std::fs::read(&p).unwrap();
        b[10] ^= 1;
        std::fs::write(&p, b).unwrap();
        assert!(matches!(
            AckState::load(dir.path()),
            Err(JournalError::BadAck { .. })
        ));
    }

    #[test]
    fn reclaim_removes_only_acknowledged_segments() {
        let dir = tempfile::tempdir().unwrap();
        drop(write(dir.path(), 0..1000, 4096));
        let segs = segments(dir.path()).unwrap();
        let acked = Position {
            segment: segs[3],
            offset: MAGIC.len() as u64,
        };
        reclaim(dir.path(), acked).unwrap();
        assert_eq!(segments(dir.path()).unwrap(), segs[3..].to_vec());
        let (seqs, _) = read_all(dir.path(), acked);
        assert_eq!(seqs.last(), Some(&999));
    }

    #[test]
    fn fsync_policies_parse_and_bad_ones_say_what_is_accepted() {
        assert_eq!("batch".parse(), Ok(FsyncPolicy::Batch));
        assert_eq!("off".parse(), Ok(FsyncPolicy::Off));
        assert_eq!(
            "interval:250".parse(),
            Ok(FsyncPolicy::Interval(Duration::from_millis(250)))
        );
        for bad in ["", "interval:", "interval:0", "interval:x", "always"] {
            let e = bad.parse::<FsyncPolicy>().unwrap_err();
            assert!(e.contains("batch, interval:MS"), "{e}");
        }
    }
}
