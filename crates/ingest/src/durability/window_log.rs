//! The window log: an append-only, checksummed record of every accepted reading, so that a
//! restarted ingest rebuilds its windows instead of starting from zero.
//!
//! # Layout
//! `data_dir/window-<seq>.log` segments, numbered upwards. A segment is an 8-byte header
//! ([`MAGIC`]) followed by frames `[body length: u32 LE][crc32 of body: u32 LE][body]`. A body is
//! a [`Record`]: a reading (event time, value, machine, scrap index and, for QoS 1/2, the packet
//! id and a digest of topic and payload, see [`crate::durability::redelivery`]) or a
//! session-start marker. A reading that carried an `id` has a kind byte of its own and the id
//! (length byte, then text) after the machine, so that duplicates are still recognised after a
//! restart; logs written before ids existed hold only the older kind and replay unchanged.
//!
//! # Writing
//! Records are buffered during one aggregation batch; [`WindowLog::commit`] writes the batch
//! and calls `fdatasync` once. The caller acknowledges the batch's MQTT messages only after
//! `commit` returned: one fsync per batch instead of one per message, at the price of a batch's
//! worth of latency before the broker may forget a message.
//!
//! # Compaction
//! The log keeps a reading for its *retention*: the window, and with the history on one
//! minute more (a reading's minute stays open until one window after its end, and a restart
//! rebuilds the open minutes from the log). The active segment is sealed and a new one
//! started every quarter retention (at least 1 s). A sealed segment is deleted once its newest
//! reading is older than the retention, oldest first, so the log holds about one and a quarter
//! retentions of readings.
//!
//! # Recovery
//! [`WindowLog::open`] reads every segment in order. The first frame that is cut short, has an
//! impossible length, a bad checksum or an unknown body ends its segment: the segment is
//! truncated there (a torn tail after a crash, or damage), the loss is logged, and reading goes
//! on with the next segment, which was started only after this one was fully synced. A file
//! with a foreign header is renamed to `*.corrupt` and skipped. Recovery never fails on content,
//! only on I/O errors (permissions, a missing disk).

use std::collections::VecDeque;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use aggregator_core::reading_id::MAX_READING_ID_BYTES;
use aggregator_core::{Reading, ReadingId, Timestamp};

use crate::durability::redelivery::Delivery;

/// First bytes of every segment: format name and version.
pub const MAGIC: &[u8; 8] = b"SPWLOG01";
/// Frame header: body length and checksum.
const FRAME_HEADER: usize = 8;
/// Longest possible body: a reading with a machine id of 65 535 bytes and the longest id.
const MAX_BODY: usize = 1 + 8 + 8 + 4 + 2 + 8 + 2 + u16::MAX as usize + 1 + MAX_READING_ID_BYTES;
const KIND_READING: u8 = 1;
const KIND_SESSION_START: u8 = 2;
/// A reading followed by its id (kind 1 stays the id-less form).
const KIND_READING_WITH_ID: u8 = 3;

/// A file system operation on the log failed.
#[derive(Debug, thiserror::Error)]
#[error("window log {path}: {action}: {source}")]
pub struct LogError {
    /// What was being done.
    pub action: &'static str,
    /// The file or directory.
    pub path: PathBuf,
    /// The OS error.
    pub source: std::io::Error,
}

fn io_error(action: &'static str, path: &Path) -> impl FnOnce(std::io::Error) -> LogError {
    let path = path.to_path_buf();
    move |source| LogError {
        action,
        path,
        source,
    }
}

/// One accepted reading as logged.
#[derive(Debug, Clone, PartialEq)]
pub struct LoggedReading {
    /// Machine id.
    pub machine: String,
    /// Scrap index.
    pub scrap_index: u32,
    /// Event time as resolved on first receipt (payload time, else time of receipt).
    pub time: Timestamp,
    /// Value.
    pub value: f64,
    /// Packet id and digest for QoS 1/2 messages.
    pub delivery: Option<Delivery>,
    /// The reading's own id, when its payload had one.
    pub id: Option<ReadingId>,
}

impl LoggedReading {
    /// The reading as the window store takes it, at its logged event time.
    pub fn reading(&self) -> Reading<'_> {
        Reading {
            machine: &self.machine,
            scrap_index: self.scrap_index,
            value: self.value,
            event_time: self.time,
            time_from_payload: true,
        }
    }
}

/// One log record.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// An accepted reading.
    Reading(LoggedReading),
    /// The broker had no session for us: packet ids logged before mean nothing any more.
    SessionStart,
}

/// Appends a frame to `out` whose body `body` writes; length and checksum are filled in after.
fn frame(out: &mut Vec<u8>, body: impl FnOnce(&mut Vec<u8>)) {
    let start = out.len();
    out.extend_from_slice(&[0; FRAME_HEADER]);
    body(out);
    let len = (out.len() - start - FRAME_HEADER) as u32;
    let crc = crc32fast::hash(&out[start + FRAME_HEADER..]);
    out[start..start + 4].copy_from_slice(&len.to_le_bytes());
    out[start + 4..start + FRAME_HEADER].copy_from_slice(&crc.to_le_bytes());
}

/// Writes the body of a reading (borrowed fields: no allocation on the hot path).
fn encode_reading(
    out: &mut Vec<u8>,
    reading: &Reading<'_>,
    delivery: Option<Delivery>,
    id: Option<&ReadingId>,
) {
    // Machine ids are topic levels, at most 65 535 bytes by MQTT's topic limit.
    let machine = &reading.machine.as_bytes()[..reading.machine.len().min(u16::MAX as usize)];
    let delivery = delivery.unwrap_or(Delivery { pkid: 0, digest: 0 });
    out.push(id.map_or(KIND_READING, |_| KIND_READING_WITH_ID));
    out.extend_from_slice(&reading.event_time.unix_nanos().to_le_bytes());
    out.extend_from_slice(&reading.value.to_bits().to_le_bytes());
    out.extend_from_slice(&reading.scrap_index.to_le_bytes());
    out.extend_from_slice(&delivery.pkid.to_le_bytes());
    out.extend_from_slice(&delivery.digest.to_le_bytes());
    out.extend_from_slice(&(machine.len() as u16).to_le_bytes());
    out.extend_from_slice(machine);
    if let Some(id) = id {
        // At most MAX_READING_ID_BYTES (64): fits the length byte.
        out.push(id.as_bytes().len() as u8);
        out.extend_from_slice(id.as_bytes());
    }
}

impl Record {
    fn encode(&self, out: &mut Vec<u8>) {
        frame(out, |out| match self {
            Record::Reading(r) => encode_reading(out, &r.reading(), r.delivery, r.id.as_ref()),
            Record::SessionStart => out.push(KIND_SESSION_START),
        });
    }

    fn decode(body: &[u8]) -> Option<Record> {
        let (&kind, rest) = body.split_first()?;
        if kind == KIND_SESSION_START && rest.is_empty() {
            return Some(Record::SessionStart);
        }
        if kind != KIND_READING && kind != KIND_READING_WITH_ID {
            return None;
        }
        let mut cur = Cursor(rest);
        let time = Timestamp::from_unix_nanos(i64::from_le_bytes(cur.take()?));
        let value = f64::from_bits(u64::from_le_bytes(cur.take()?));
        let scrap_index = u32::from_le_bytes(cur.take()?);
        let pkid = u16::from_le_bytes(cur.take()?);
        let digest = u64::from_le_bytes(cur.take()?);
        let len = usize::from(u16::from_le_bytes(cur.take()?));
        if cur.0.len() < len || !value.is_finite() {
            return None;
        }
        let (machine, tail) = cur.0.split_at(len);
        let id = match (kind, tail.split_first()) {
            (KIND_READING, None) => None,
            (KIND_READING_WITH_ID, Some((&n, id))) if usize::from(n) == id.len() => {
                Some(ReadingId::new(std::str::from_utf8(id).ok()?).ok()?)
            }
            _ => return None,
        };
        Some(Record::Reading(LoggedReading {
            machine: std::str::from_utf8(machine).ok()?.to_owned(),
            scrap_index,
            time,
            value,
            delivery: (pkid != 0).then_some(Delivery { pkid, digest }),
            id,
        }))
    }
}

struct Cursor<'a>(&'a [u8]);

impl Cursor<'_> {
    fn take<const N: usize>(&mut self) -> Option<[u8; N]> {
        let (head, rest) = self.0.split_first_chunk::<N>()?;
        self.0 = rest;
        Some(*head)
    }
}

/// What [`WindowLog::open`] found.
#[derive(Debug, Default)]
pub struct Recovery {
    /// Every good record, oldest first.
    pub records: Vec<Record>,
    /// Segments read.
    pub segments: usize,
    /// Bytes cut off after the last good record of a segment (torn or damaged frames).
    pub truncated_bytes: u64,
    /// Segments in which a bad frame was found.
    pub damaged_segments: usize,
    /// Files with a foreign header, renamed to `*.corrupt`.
    pub foreign_files: usize,
}

/// A segment on disk.
struct Segment {
    seq: u64,
    path: PathBuf,
    /// Newest event time of its readings; None while it holds none.
    newest: Option<Timestamp>,
}

/// The open log: sealed segments waiting to expire and the active segment.
pub struct WindowLog {
    dir: PathBuf,
    /// How long a reading is kept: at least the window.
    retention: Duration,
    rotate_every: Duration,
    sealed: VecDeque<Segment>,
    active: Segment,
    file: File,
    /// When the active segment was started, and how many records it holds.
    opened: Timestamp,
    records: u64,
    /// Records of the batch, not yet written.
    pending: Vec<u8>,
}

fn segment_name(seq: u64) -> String {
    format!("window-{seq:020}.log")
}

fn segment_seq(name: &str) -> Option<u64> {
    name.strip_prefix("window-")?
        .strip_suffix(".log")?
        .parse()
        .ok()
}

fn sync_dir(dir: &Path) -> Result<(), LogError> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io_error("sync directory", dir))
}

impl WindowLog {
    /// Opens (creating it if needed) the log in `dir`, recovers what it holds and starts a new
    /// active segment. `retention` (at least the window) decides rotation and when segments
    /// expire; `now` is the ingest clock.
    ///
    /// # Errors
    /// Only on I/O errors; damaged content is truncated and reported in [`Recovery`].
    pub fn open(
        dir: &Path,
        retention: Duration,
        now: Timestamp,
    ) -> Result<(Self, Recovery), LogError> {
        std::fs::create_dir_all(dir).map_err(io_error("create directory", dir))?;
        let mut seqs = Vec::new();
        for entry in std::fs::read_dir(dir).map_err(io_error("list directory", dir))? {
            let entry = entry.map_err(io_error("list directory", dir))?;
            seqs.extend(entry.file_name().to_str().and_then(segment_seq));
        }
        seqs.sort_unstable();
        let mut recovery = Recovery::default();
        let mut sealed = VecDeque::new();
        for &seq in &seqs {
            sealed.extend(recover_segment(dir, seq, &mut recovery)?);
        }
        let (file, active) = create_segment(dir, seqs.last().map_or(1, |s| s + 1))?;
        let log = WindowLog {
            dir: dir.to_path_buf(),
            retention,
            rotate_every: (retention / 4).max(Duration::from_secs(1)),
            sealed,
            active,
            file,
            opened: now,
            records: 0,
            pending: Vec::new(),
        };
        Ok((log, recovery))
    }

    /// Buffers `record` for the next [`WindowLog::commit`].
    pub fn append(&mut self, record: &Record) {
        if let Record::Reading(r) = record {
            self.active.newest = self.active.newest.max(Some(r.time));
        }
        self.records += 1;
        record.encode(&mut self.pending);
    }

    /// As [`WindowLog::append`] for an accepted reading, without building a [`Record`].
    pub fn append_reading(
        &mut self,
        reading: &Reading<'_>,
        delivery: Option<Delivery>,
        id: Option<&ReadingId>,
    ) {
        self.active.newest = self.active.newest.max(Some(reading.event_time));
        self.records += 1;
        frame(&mut self.pending, |out| {
            encode_reading(out, reading, delivery, id);
        });
    }

    /// Writes the buffered records and waits until they are on disk (`fdatasync`).
    ///
    /// # Errors
    /// When the write or the sync fails: the records' durability is then unknown, and the
    /// caller must not acknowledge them.
    pub fn commit(&mut self) -> Result<(), LogError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let path = &self.active.path;
        self.file
            .write_all(&self.pending)
            .map_err(io_error("write", path))?;
        self.file.sync_data().map_err(io_error("sync", path))?;
        self.pending.clear();
        Ok(())
    }

    /// Compaction at `now`: seals the active segment when it is due (and nothing waits for a
    /// commit) and starts a new one, then deletes the oldest sealed segments whose readings
    /// are all older than the retention.
    ///
    /// # Errors
    /// When a segment cannot be created or deleted.
    pub fn maintain(&mut self, now: Timestamp) -> Result<(), LogError> {
        if self.pending.is_empty()
            && self.records > 0
            && now.duration_since(self.opened) >= self.rotate_every
        {
            let (file, next) = create_segment(&self.dir, self.active.seq + 1)?;
            self.file = file;
            self.sealed
                .push_back(std::mem::replace(&mut self.active, next));
            self.opened = now;
            self.records = 0;
        }
        let cutoff = now.saturating_sub(self.retention);
        let sealed = self.sealed.len();
        while let Some(oldest) = self.sealed.front()
            && oldest.newest.is_none_or(|t| t <= cutoff)
        {
            std::fs::remove_file(&oldest.path).map_err(io_error("delete", &oldest.path))?;
            tracing::debug!(segment = oldest.seq, "window log: expired segment deleted");
            self.sealed.pop_front();
        }
        if self.sealed.len() < sealed {
            sync_dir(&self.dir)?;
        }
        Ok(())
    }

    /// Segments on disk, the active one included.
    pub fn segment_count(&self) -> usize {
        self.sealed.len() + 1
    }
}

fn create_segment(dir: &Path, seq: u64) -> Result<(File, Segment), LogError> {
    let path = dir.join(segment_name(seq));
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(true)
        .write(true)
        .open(&path)
        .map_err(io_error("create segment", &path))?;
    file.write_all(MAGIC)
        .and_then(|()| file.sync_all())
        .map_err(io_error("write segment header", &path))?;
    // The new name must survive a crash too, or the records written into it would vanish.
    sync_dir(dir)?;
    Ok((
        file,
        Segment {
            seq,
            path,
            newest: None,
        },
    ))
}

/// Reads segment `seq` into `recovery`, truncating it after its last good frame; `None` when
/// nothing is left of it (no record, or a foreign file moved aside).
fn recover_segment(
    dir: &Path,
    seq: u64,
    recovery: &mut Recovery,
) -> Result<Option<Segment>, LogError> {
    let path = dir.join(segment_name(seq));
    let bytes = std::fs::read(&path).map_err(io_error("read segment", &path))?;
    recovery.segments += 1;
    // A file shorter than the header was created just before a crash: empty, deleted below.
    if bytes.len() >= MAGIC.len() && !bytes.starts_with(MAGIC) {
        let aside = path.with_extension("corrupt");
        tracing::error!(path = %path.display(), moved_to = %aside.display(), "window log: not a segment of this format; moved aside");
        std::fs::rename(&path, &aside).map_err(io_error("move aside", &path))?;
        recovery.foreign_files += 1;
        return Ok(None);
    }
    let first = recovery.records.len();
    let (good, problem) = read_frames(&bytes, &mut recovery.records);
    if let Some(problem) = problem {
        let cut = (bytes.len() - good) as u64;
        tracing::warn!(
            path = %path.display(),
            offset = good,
            truncated_bytes = cut,
            good_records = recovery.records.len() - first,
            problem,
            "window log: recovered up to the last good record; the rest of the segment is cut off"
        );
        OpenOptions::new()
            .write(true)
            .open(&path)
            .and_then(|f| {
                f.set_len(good as u64)?;
                f.sync_all()
            })
            .map_err(io_error("truncate segment", &path))?;
        recovery.truncated_bytes += cut;
        recovery.damaged_segments += 1;
    }
    let records = &recovery.records[first..];
    if records.is_empty() {
        std::fs::remove_file(&path).map_err(io_error("delete empty segment", &path))?;
        return Ok(None);
    }
    let newest = records
        .iter()
        .filter_map(|r| match r {
            Record::Reading(r) => Some(r.time),
            Record::SessionStart => None,
        })
        .max();
    Ok(Some(Segment { seq, path, newest }))
}

/// Decodes the frames after the header into `records` up to the first bad one; returns where
/// the good frames end and, when a bad one stopped the reading, what was wrong with it.
fn read_frames(bytes: &[u8], records: &mut Vec<Record>) -> (usize, Option<&'static str>) {
    let mut at = MAGIC.len();
    while at < bytes.len() {
        let mut cur = Cursor(&bytes[at..]);
        let (Some(len), Some(crc)) = (cur.take().map(u32::from_le_bytes), cur.take()) else {
            return (at, Some("frame header cut short"));
        };
        let len = len as usize;
        if len == 0 || len > MAX_BODY {
            return (at, Some("impossible frame length"));
        }
        let Some(body) = cur.0.get(..len) else {
            return (at, Some("frame body cut short"));
        };
        if crc32fast::hash(body) != u32::from_le_bytes(crc) {
            return (at, Some("checksum mismatch"));
        }
        let Some(record) = Record::decode(body) else {
            return (at, Some("undecodable record"));
        };
        records.push(record);
        at += FRAME_HEADER + len;
    }
    (at, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    const W: Duration = Duration::from_secs(60);

    fn at(secs: i64) -> Timestamp {
        Timestamp::from_unix_nanos(1_700_000_000_000_000_000 + secs * 1_000_000_000)
    }

    fn reading(i: u32, t: Timestamp) -> Record {
        Record::Reading(LoggedReading {
            machine: format!("M{}", i % 3),
            scrap_index: i % 5,
            time: t,
            value: f64::from(i) * 0.5 - 3.25,
            delivery: i.is_multiple_of(2).then_some(Delivery {
                pkid: (i as u16).wrapping_add(1),
                digest: u64::from(i).wrapping_mul(0x9E37_79B9_7F4A_7C15),
            }),
            id: None,
        })
    }

    fn segments(dir: &Path) -> Vec<PathBuf> {
        let mut files: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "log"))
            .collect();
        files.sort();
        files
    }

    #[test]
    fn records_round_trip_through_a_restart() {
        let dir = tempfile::tempdir().unwrap();
        let mut written: Vec<Record> = (0..50).map(|i| reading(i, at(i.into()))).collect();
        written.insert(10, Record::SessionStart);
        let (mut log, recovery) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        assert!(recovery.records.is_empty());
        for (n, r) in written.iter().enumerate() {
            log.append(r);
            if n % 7 == 0 {
                log.commit().unwrap();
            }
        }
        log.commit().unwrap();
        drop(log);
        let (_log, recovery) = WindowLog::open(dir.path(), W, at(100)).unwrap();
        assert_eq!(recovery.records, written);
        assert_eq!(recovery.truncated_bytes, 0);
        assert_eq!(recovery.damaged_segments, 0);
    }

    #[test]
    fn reading_ids_round_trip_beside_readings_without_id() {
        let dir = tempfile::tempdir().unwrap();
        let written: Vec<Record> = (0..20)
            .map(|i| match reading(i, at(i.into())) {
                Record::Reading(mut r) => {
                    r.id = match i % 3 {
                        0 => None,
                        1 => Some(ReadingId::from_i64(-i64::from(i))),
                        // The longest id the contract allows.
                        _ => Some(ReadingId::new(&"x".repeat(MAX_READING_ID_BYTES)).unwrap()),
                    };
                    Record::Reading(r)
                }
                other => other,
            })
            .collect();
        let (mut log, _) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        for r in &written {
            log.append(r);
        }
        log.commit().unwrap();
        drop(log);
        let (_log, recovery) = WindowLog::open(dir.path(), W, at(30)).unwrap();
        assert_eq!(recovery.records, written);
        assert_eq!(recovery.truncated_bytes, 0);
    }

    #[test]
    fn a_log_written_before_reading_ids_still_replays() {
        // A segment as the id-less version wrote it, byte by byte: kind 1, event time, value,
        // scrap index, packet id, digest, machine length, machine.
        let mut body = vec![1_u8];
        body.extend_from_slice(&at(5).unix_nanos().to_le_bytes());
        body.extend_from_slice(&2.5_f64.to_bits().to_le_bytes());
        body.extend_from_slice(&3_u32.to_le_bytes());
        body.extend_from_slice(&9_u16.to_le_bytes());
        body.extend_from_slice(&77_u64.to_le_bytes());
        body.extend_from_slice(&2_u16.to_le_bytes());
        body.extend_from_slice(b"A1");
        let mut file = b"SPWLOG01".to_vec();
        file.extend_from_slice(&(body.len() as u32).to_le_bytes());
        file.extend_from_slice(&crc32fast::hash(&body).to_le_bytes());
        file.extend_from_slice(&body);
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("window-00000000000000000001.log"), file).unwrap();
        let (_log, recovery) = WindowLog::open(dir.path(), W, at(10)).unwrap();
        assert_eq!(
            recovery.records,
            vec![Record::Reading(LoggedReading {
                machine: "A1".into(),
                scrap_index: 3,
                time: at(5),
                value: 2.5,
                delivery: Some(Delivery {
                    pkid: 9,
                    digest: 77
                }),
                id: None,
            })]
        );
        assert_eq!(recovery.truncated_bytes, 0);
    }

    #[test]
    fn uncommitted_records_are_not_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        log.append(&reading(1, at(1)));
        log.commit().unwrap();
        log.append(&reading(2, at(2)));
        assert!(!log.pending.is_empty());
        drop(log);
        let (_, recovery) = WindowLog::open(dir.path(), W, at(3)).unwrap();
        assert_eq!(recovery.records, vec![reading(1, at(1))]);
    }

    #[test]
    fn a_torn_tail_is_cut_off_after_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        for i in 0..5 {
            log.append(&reading(i, at(i.into())));
        }
        log.commit().unwrap();
        drop(log);
        let path = segments(dir.path()).pop().unwrap();
        let good_len = std::fs::metadata(&path).unwrap().len();
        // A crash in the middle of writing the sixth record: only part of its frame landed.
        let mut torn = Vec::new();
        reading(5, at(5)).encode(&mut torn);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(&torn[..torn.len() - 3]).unwrap();
        drop(file);

        let (_, recovery) = WindowLog::open(dir.path(), W, at(10)).unwrap();
        let expected: Vec<Record> = (0..5).map(|i| reading(i, at(i.into()))).collect();
        assert_eq!(recovery.records, expected);
        assert_eq!(recovery.truncated_bytes, torn.len() as u64 - 3);
        assert_eq!(recovery.damaged_segments, 1);
        assert_eq!(
            std::fs::metadata(&path).unwrap().len(),
            good_len,
            "truncated"
        );
        // A second start finds a clean log: no crash loop, nothing more cut.
        let (_, again) = WindowLog::open(dir.path(), W, at(11)).unwrap();
        assert_eq!(again.records, expected);
        assert_eq!(again.damaged_segments, 0);
    }

    #[test]
    fn a_bad_checksum_in_the_middle_stops_at_the_last_good_record() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        let mut frame_ends = Vec::new();
        let mut len = MAGIC.len();
        for i in 0..10 {
            let r = reading(i, at(i.into()));
            let mut one = Vec::new();
            r.encode(&mut one);
            len += one.len();
            frame_ends.push(len);
            log.append(&r);
        }
        log.commit().unwrap();
        drop(log);
        let path = segments(dir.path()).pop().unwrap();
        let mut bytes = std::fs::read(&path).unwrap();
        // Flip one bit in the value of record 4 (index 3's frame ends where record 4 starts).
        let flip = frame_ends[3] + FRAME_HEADER + 1 + 8 + 2;
        bytes[flip] ^= 0x10;
        std::fs::write(&path, &bytes).unwrap();

        let (_, recovery) = WindowLog::open(dir.path(), W, at(20)).unwrap();
        let expected: Vec<Record> = (0..4).map(|i| reading(i, at(i.into()))).collect();
        assert_eq!(recovery.records, expected);
        assert_eq!(recovery.damaged_segments, 1);
        assert_eq!(
            recovery.truncated_bytes,
            (frame_ends[9] - frame_ends[3]) as u64
        );
    }

    #[test]
    fn damage_in_an_older_segment_does_not_hide_later_segments() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        log.append(&reading(0, at(0)));
        log.append(&reading(1, at(1)));
        log.commit().unwrap();
        log.maintain(at(20)).unwrap(); // sealed: a quarter window has passed
        log.append(&reading(2, at(20)));
        log.commit().unwrap();
        drop(log);
        let first = segments(dir.path()).remove(0);
        let bytes = std::fs::read(&first).unwrap();
        std::fs::write(&first, &bytes[..bytes.len() - 1]).unwrap();
        let (_, recovery) = WindowLog::open(dir.path(), W, at(21)).unwrap();
        assert_eq!(
            recovery.records,
            vec![reading(0, at(0)), reading(2, at(20))]
        );
    }

    #[test]
    fn a_foreign_file_is_moved_aside_and_an_empty_segment_removed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(segment_name(1)), b"not a log at all").unwrap();
        std::fs::write(dir.path().join(segment_name(2)), b"SPW").unwrap();
        let (_, recovery) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        assert_eq!(recovery.foreign_files, 1);
        assert!(recovery.records.is_empty());
        assert!(
            dir.path()
                .join("window-00000000000000000001.corrupt")
                .exists()
        );
        assert!(!dir.path().join(segment_name(2)).exists());
    }

    #[test]
    fn compaction_deletes_segments_once_their_newest_reading_expired() {
        let dir = tempfile::tempdir().unwrap();
        let (mut log, _) = WindowLog::open(dir.path(), W, at(0)).unwrap();
        // Two minutes of one reading per second, maintained as the pipeline does.
        for s in 0..120 {
            log.append(&reading(s as u32, at(s)));
            log.commit().unwrap();
            log.maintain(at(s)).unwrap();
        }
        // Quarter-window segments: never more than one window and a half of them on disk.
        assert!(log.segment_count() <= 7, "{}", log.segment_count());
        assert_eq!(segments(dir.path()).len(), log.segment_count());
        drop(log);
        let (mut log, recovery) = WindowLog::open(dir.path(), W, at(120)).unwrap();
        let times: Vec<i64> = recovery
            .records
            .iter()
            .map(|r| match r {
                Record::Reading(r) => (r.time.unix_nanos() - at(0).unix_nanos()) / 1_000_000_000,
                Record::SessionStart => -1,
            })
            .collect();
        // Everything still in the window at 120 s (t > 60) is there; older whole segments not.
        assert!(times.iter().all(|t| *t >= 0));
        assert!((61..120).all(|t| times.contains(&t)), "{times:?}");
        assert!(times.len() < 120, "some segments were deleted: {times:?}");
        // Once all has expired, only the (empty) active segment is left.
        log.maintain(at(400)).unwrap();
        assert_eq!(segments(dir.path()).len(), 1);
    }
}
