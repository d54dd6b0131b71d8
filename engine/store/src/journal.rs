//! The inbox journal: append-only segment files in `STORE/journal/`, the point where a message
//! becomes durable and may be acknowledged.
//!
//! A group commit is one write of every queued record (framed and checksummed by
//! [`crate::frame`]) and one `fdatasync`: the cost of the simplest durable server, shared by
//! every waiting connection. A segment is written over blocks that already exist, so its
//! fdatasync flushes only data, not the file's size and block map (measured: about a third
//! cheaper than appending; see ARCHITECTURE.md). Those blocks are an indexed segment's, kept
//! for this ("recycled", as PostgreSQL and RocksDB do with their logs) when one is free, or a
//! new file zero-filled and synced on a helper thread — which cost as many bytes written again
//! as the messages. A segment's header ([`crate::segment`]) goes with its first write; what the
//! file held before names another segment, and reads as nothing written.
//!
//! Invariant: every write goes after the last one that succeeded, in the same segment or a new
//! one. After a failed write or fdatasync nothing more is written to that segment — what the
//! disk holds there is unknown (the PostgreSQL "fsyncgate" lesson: a later fsync may report
//! success for data that was lost) — and the next segment's header records where the last
//! successful write ended, so replay can tell that failed write from damage.
//!
//! The SQLite index is filled from here afterwards (`indexer.rs`), and a segment is deleted only
//! once the index holds all of it durably (`checkpoint.rs`). At start, whatever is left in the
//! journal is replayed into the index (`recovery.rs`), so a crash between the two loses nothing.

use std::fs::File;
use std::io::Write;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::mpsc;

use crate::frame;
use crate::segment::{self, HEADER_LEN, Header, Scan};

/// The folder inside a store that holds the journal.
pub(crate) const JOURNAL_DIR: &str = "journal";
const SUFFIX: &str = ".journal";
const PREPARING: &str = ".journal.tmp";
/// An indexed segment kept to be written over as a later one.
const FREE: &str = ".journal.free";
/// Indexed segments kept to be written over. Under load a segment is filled in a fraction of
/// a second and the checkpoint frees them a few at a time; a few cover that.
const KEEP_FREE: usize = 2;
/// A free segment not taken within this long is deleted: it holds messages the index has (and
/// retention will remove there), which should not linger on disk in a file nobody reads.
pub(crate) const FREE_FOR: std::time::Duration = std::time::Duration::from_secs(60);

/// The segment being appended to, and the next one being prepared.
pub(crate) struct Journal {
    dir: PathBuf,
    file: File,
    segment: u64,
    /// Where the last successful write ended.
    len: u64,
    segment_bytes: u64,
    buffered: bool,
    /// The segment's header, until a write has taken it to the disk.
    header: Option<[u8; HEADER_LEN]>,
    /// A write failed here: the next one must go to a new segment.
    failed: bool,
    spare: mpsc::Receiver<std::io::Result<File>>,
}

/// A segment's file name: its number, zero-padded so names sort in order.
pub(crate) fn segment_path(dir: &Path, segment: u64) -> PathBuf {
    dir.join(format!("{segment:016}{SUFFIX}"))
}

/// Every segment in `dir`, oldest first.
pub(crate) fn existing_segments(dir: &Path) -> std::io::Result<Vec<u64>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let name = entry?.file_name();
        let name = name.to_string_lossy();
        if let Some(n) = name
            .strip_suffix(SUFFIX)
            .and_then(|n| n.parse::<u64>().ok())
        {
            found.push(n);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Reads segment `segment`; the one after it (if any) says where its last write ended.
pub(crate) fn read_segment(dir: &Path, segment: u64) -> std::io::Result<Scan> {
    let bytes = std::fs::read(segment_path(dir, segment))?;
    let written_to = match File::open(segment_path(dir, segment + 1)) {
        Ok(next) => {
            let mut head = [0u8; HEADER_LEN];
            match next.read_exact_at(&mut head, 0) {
                Ok(()) => segment::prev_len(&head, segment + 1),
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => None,
                Err(e) => return Err(e),
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    Ok(segment::scan(&bytes, Some(segment), written_to))
}

/// Retires the segments numbered below `keep_from` (the index holds them): up to [`KEEP_FREE`]
/// are kept to be written over, the rest deleted. Returns how many were retired.
pub(crate) fn remove_segments_before(dir: &Path, keep_from: u64) -> std::io::Result<usize> {
    let mut free = free_segments(dir)?.len();
    let mut removed = 0;
    for n in existing_segments(dir)? {
        if n >= keep_from {
            continue;
        }
        let path = segment_path(dir, n);
        if free < KEEP_FREE && recyclable(&path)? {
            std::fs::rename(&path, dir.join(format!("{n:016}{FREE}")))?;
            free += 1;
        } else {
            std::fs::remove_file(path)?;
        }
        removed += 1;
    }
    if removed > 0 {
        // Durable before anyone relies on it: retention waits for a segment to be retired so
        // that a replay cannot bring back what it removes from the index.
        sync_dir(dir)?;
    }
    Ok(removed)
}

fn recyclable(path: &Path) -> std::io::Result<bool> {
    let mut head = [0u8; HEADER_LEN];
    match File::open(path)?.read_exact_at(&mut head, 0) {
        Ok(()) => Ok(segment::recyclable(&head)),
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => Ok(false),
        Err(e) => Err(e),
    }
}

/// Free segments, oldest first.
fn free_segments(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.to_string_lossy().ends_with(FREE) {
            found.push(path);
        }
    }
    found.sort_unstable();
    Ok(found)
}

/// Deletes free segments last written more than `age` ago.
pub(crate) fn expire_free(dir: &Path, age: std::time::Duration) -> std::io::Result<usize> {
    let mut removed = 0;
    for path in free_segments(dir)? {
        let written = std::fs::metadata(&path)?.modified()?;
        if written.elapsed().is_ok_and(|e| e >= age) {
            remove_if_there(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

fn remove_if_there(path: &Path) -> std::io::Result<()> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Removes segments a crash left half-prepared, and free ones. A free segment is written over
/// only within the run that retired it: segment numbers start again at 1 after a clean stop,
/// and a later run's segment of the same number must never find its frames in the file.
pub(crate) fn remove_unfinished(dir: &Path) -> std::io::Result<()> {
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let name = path.to_string_lossy();
        if name.ends_with(PREPARING) || name.ends_with(FREE) {
            remove_if_there(&path)?;
        }
    }
    Ok(())
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Makes segment `segment`, `bytes` long and durable: a free segment renamed, or a new file
/// zero-filled under a temporary name first, so a half-prepared segment is never mistaken for
/// one in use.
fn prepare(dir: &Path, segment: u64, bytes: u64) -> std::io::Result<File> {
    let gone = |e: &std::io::Error| e.kind() == std::io::ErrorKind::NotFound;
    for free in free_segments(dir)? {
        // One the checkpoint expired meanwhile is passed over.
        match std::fs::metadata(&free) {
            Ok(m) if m.len() == bytes => {}
            // Made for another segment size (the setting changed): of no use.
            Ok(_) => {
                remove_if_there(&free)?;
                continue;
            }
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        }
        let path = segment_path(dir, segment);
        match std::fs::rename(&free, &path) {
            Ok(()) => {}
            Err(e) if gone(&e) => continue,
            Err(e) => return Err(e),
        }
        sync_dir(dir)?;
        tracing::trace!(segment, "journal segment recycled");
        return File::options().read(true).write(true).open(&path);
    }
    let tmp = dir.join(format!("{segment:016}{PREPARING}"));
    zero_filled(&tmp, bytes).inspect_err(|_| {
        // A full disk: give back what the attempt took, for the index and the next attempt.
        let _ = std::fs::remove_file(&tmp);
    })?;
    let file = File::options().read(true).write(true).open(&tmp)?;
    std::fs::rename(&tmp, segment_path(dir, segment))?;
    sync_dir(dir)?;
    Ok(file)
}

fn zero_filled(tmp: &Path, bytes: u64) -> std::io::Result<()> {
    let mut file = File::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(tmp)?;
    let zeros = vec![0u8; 1 << 20];
    let mut left = bytes;
    while left > 0 {
        let n = left.min(zeros.len() as u64) as usize;
        file.write_all(&zeros[..n])?;
        left -= n as u64;
    }
    file.sync_all()
}

fn prepare_in_background(
    dir: &Path,
    segment: u64,
    bytes: u64,
) -> mpsc::Receiver<std::io::Result<File>> {
    let (tx, rx) = mpsc::sync_channel(1);
    let dir = dir.to_path_buf();
    let spawned = std::thread::Builder::new()
        .name("wyvern-journal-prepare".into())
        .spawn({
            let tx = tx.clone();
            move || {
                let _ = tx.send(prepare(&dir, segment, bytes));
            }
        });
    if let Err(e) = spawned {
        let _ = tx.send(Err(e));
    }
    rx
}

impl Journal {
    /// Starts writing at a new segment numbered `segment` (and prepares the one after it).
    /// `buffered` is recorded in each segment's header: replay then knows an acknowledged write
    /// may be missing after a power cut.
    pub(crate) fn create(
        dir: &Path,
        segment: u64,
        segment_bytes: u64,
        buffered: bool,
    ) -> std::io::Result<Journal> {
        std::fs::create_dir_all(dir)?;
        let file = prepare(dir, segment, segment_bytes)?;
        let header = Header {
            segment,
            size: segment_bytes,
            buffered,
            prev_len: None,
        };
        file.write_all_at(&header.encode(), 0)?;
        file.sync_data()?;
        Ok(Journal {
            dir: dir.to_path_buf(),
            file,
            segment,
            len: HEADER_LEN as u64,
            segment_bytes,
            buffered,
            header: None,
            failed: false,
            spare: prepare_in_background(dir, segment + 1, segment_bytes),
        })
    }

    pub(crate) fn segment(&self) -> u64 {
        self.segment
    }

    /// Writes framed records (as [`frame::encode`] left them) after the last successful write
    /// and, if `durable`, fdatasyncs. A batch that does not fit goes to the next segment, and
    /// so does the first batch after a failure.
    pub(crate) fn append(&mut self, framed: &mut [u8], durable: bool) -> std::io::Result<()> {
        let full = self.len + framed.len() as u64 > self.segment_bytes;
        if self.failed || (full && self.len > HEADER_LEN as u64) {
            self.rotate()?;
        }
        frame::stamp(framed, self.len, self.segment);
        let header = self.header;
        let result = header
            .map_or(Ok(()), |h| self.file.write_all_at(&h, 0))
            .and_then(|()| self.file.write_all_at(framed, self.len))
            .and_then(|()| {
                if durable {
                    self.file.sync_data()
                } else {
                    Ok(())
                }
            });
        match result {
            Ok(()) => {
                self.len += framed.len() as u64;
                self.header = None;
                Ok(())
            }
            Err(e) => {
                self.failed = true;
                if let Err(r) = self.rotate() {
                    tracing::warn!(error = %r, "cannot start a new journal segment after a failed write; the next commit tries again");
                }
                Err(e)
            }
        }
    }

    /// Moves to a new segment now if anything is written in this one (so that the checkpoint
    /// can delete this one once it is indexed). Returns the segment written to from now on.
    pub(crate) fn seal(&mut self) -> std::io::Result<u64> {
        if self.failed || self.len > HEADER_LEN as u64 {
            self.rotate()?;
        }
        Ok(self.segment)
    }

    /// Waits for the segment being prepared; returns the highest segment number on disk.
    pub(crate) fn finish(self) -> u64 {
        let _ = self.spare.recv();
        self.segment + 1
    }

    fn rotate(&mut self) -> std::io::Result<()> {
        let next = self.segment + 1;
        let file = match self.spare.recv() {
            Ok(Ok(file)) => file,
            // The background preparation failed (or vanished): one more try, here.
            _ => prepare(&self.dir, next, self.segment_bytes)?,
        };
        self.header = Some(
            Header {
                segment: next,
                size: self.segment_bytes,
                buffered: self.buffered,
                prev_len: Some(self.len),
            }
            .encode(),
        );
        self.file = file;
        self.segment = next;
        self.len = HEADER_LEN as u64;
        self.failed = false;
        self.spare = prepare_in_background(&self.dir, next + 1, self.segment_bytes);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codec::tests::sample;

    #[test]
    fn appends_rotate_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let mut j = Journal::create(dir.path(), 1, 400, false).unwrap();
        assert!(
            read_segment(dir.path(), 1).unwrap().records.is_empty(),
            "a fresh segment is empty"
        );
        for n in 0..6 {
            let mut buf = Vec::new();
            crate::codec::encode(&sample(n), &mut buf).unwrap();
            j.append(&mut buf, n % 2 == 0).unwrap();
        }
        let top = j.finish();
        let segments = existing_segments(dir.path()).unwrap();
        assert_eq!(
            segments,
            (1..=top).collect::<Vec<_>>(),
            "one spare prepared ahead"
        );
        assert!(segments.len() > 1, "{segments:?}");
        let mut total = 0;
        for s in &segments {
            let scan = read_segment(dir.path(), *s).unwrap();
            assert_eq!(
                (scan.torn, &scan.problems[..]),
                (None, &[][..]),
                "segment {s}"
            );
            total += scan.records.len();
        }
        assert_eq!(total, 6);
        let last = *segments.last().unwrap();
        assert_eq!(
            remove_segments_before(dir.path(), last).unwrap(),
            segments.len() - 1
        );
        assert_eq!(existing_segments(dir.path()).unwrap(), [last]);
    }
}
