//! Start-up recovery: whatever the journal still holds (records acknowledged before a crash or
//! kill but not yet in the index) goes into the index before the engine takes new messages.
//!
//! What it promises: every record a sender was told AA for (with `durability: fsync`) is in
//! the index afterwards, or the store does not open. A torn last write — a crash mid-commit,
//! never acknowledged — is skipped and counted. Anything a crash does not explain (bytes that
//! fail their checksum with intact records written after them, zeros where records were, a
//! truncated segment, a header or a format this build cannot read) stops the open with the
//! file, the offset and what is affected, and changes nothing: a person runs `wyvern store
//! check` and, to go on, `wyvern store repair` ([`OnDamage::Quarantine`]), which replays every
//! intact record and moves the damaged segment to `STORE/quarantine/` instead of deleting it.

use std::path::{Path, PathBuf};

use rusqlite::Connection;

use crate::StoreError;
use crate::checkpoint::sync_wal;
use crate::indexer::insert;
use crate::journal::{
    existing_segments, read_segment, remove_segments_before, remove_unfinished, segment_path,
};
use crate::segment::{Problem, Torn, Unsynced};

/// The folder inside a store where a repair moves the journal segments it could not fully read.
pub const QUARANTINE_DIR: &str = "quarantine";

/// What to do when the journal holds damage a crash does not explain.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDamage {
    /// Do not open, change nothing: a person decides. The default.
    #[default]
    Refuse,
    /// Replay every intact record, before and after the damage, and move each damaged segment to
    /// `STORE/quarantine/` (`wyvern store repair`).
    Quarantine,
}

/// What recovery found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub segments: usize,
    /// Records read from the journal.
    pub records: usize,
    /// Of those, records the index did not hold yet.
    pub added: usize,
    /// Bytes of torn writes (cut short by the crash; never acknowledged).
    pub torn_bytes: u64,
    /// Bytes lost from segments written with `durability: buffered` (acknowledged, then lost in
    /// a power cut: the risk that setting takes).
    pub unsynced_bytes: u64,
    /// Records found beyond damage and replayed (a repair, or a buffered segment).
    pub salvaged: usize,
    /// Segments moved to the quarantine folder.
    pub quarantined: usize,
}

/// One journal segment, as `wyvern store check` reports it.
#[derive(Debug, Clone)]
pub struct SegmentReport {
    pub path: PathBuf,
    /// Intact records before any damage.
    pub records: usize,
    /// Intact records after the damage, which a repair replays.
    pub salvageable: usize,
    pub torn: Option<Torn>,
    pub unsynced: Option<Unsynced>,
    pub problems: Vec<Problem>,
}

/// Every segment of a journal, read without changing anything.
#[derive(Debug, Clone, Default)]
pub struct JournalReport {
    pub journal: PathBuf,
    pub segments: Vec<SegmentReport>,
}

impl JournalReport {
    /// True when replay can go ahead without a person: no problems, only torn writes.
    pub fn is_sound(&self) -> bool {
        self.segments.iter().all(|s| s.problems.is_empty())
    }
}

impl std::fmt::Display for JournalReport {
    /// The damaged segments, one line a problem.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for s in self.segments.iter().filter(|s| !s.problems.is_empty()) {
            for p in &s.problems {
                writeln!(
                    f,
                    "  {}: {p} ({} intact records before it, {} after)",
                    s.path.display(),
                    s.records,
                    s.salvageable
                )?;
            }
        }
        Ok(())
    }
}

/// Reads every segment of the journal in `store_dir` and says what it holds; changes nothing
/// (safe while the engine runs, though the last segment may then show a write in progress).
pub fn check(store_dir: &Path) -> Result<JournalReport, StoreError> {
    let journal = store_dir.join(crate::journal::JOURNAL_DIR);
    if !store_dir.exists() {
        return Err(StoreError::Missing {
            path: store_dir.to_path_buf(),
        });
    }
    let io = |source| StoreError::Journal {
        path: journal.clone(),
        source,
    };
    let mut report = JournalReport {
        journal: journal.clone(),
        segments: Vec::new(),
    };
    if !journal.exists() {
        return Ok(report);
    }
    for segment in existing_segments(&journal).map_err(io)? {
        let scan = match read_segment(&journal, segment) {
            Ok(scan) => scan,
            // Retired by the running engine's checkpoint since it was listed: the index holds
            // it, and it is no longer part of the journal.
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(e) => return Err(io(e)),
        };
        report
            .segments
            .push(summarise(segment_path(&journal, segment), scan));
    }
    Ok(report)
}

/// What one segment's bytes hold, read on their own (without the next segment's header): the
/// reader `check` and recovery use, for tools and the fuzzer. Never panics, whatever the bytes.
pub fn scan_segment(bytes: &[u8]) -> SegmentReport {
    summarise(PathBuf::new(), crate::segment::scan(bytes, None, None))
}

fn summarise(path: PathBuf, scan: crate::segment::Scan) -> SegmentReport {
    SegmentReport {
        path,
        records: scan.records.len(),
        salvageable: scan.salvage.len(),
        torn: scan.torn,
        unsynced: scan.unsynced,
        problems: scan.problems,
    }
}

/// Replays every journal segment into the index and deletes the segments (or, with
/// [`OnDamage::Quarantine`], moves the damaged ones aside). Returns what it did and the number
/// the next segment should take.
pub(crate) fn recover(
    conn: &mut Connection,
    db: &Path,
    store_dir: &Path,
    on_damage: OnDamage,
) -> Result<(Recovered, u64), StoreError> {
    let journal_dir = store_dir.join(crate::journal::JOURNAL_DIR);
    let io = |source| StoreError::Journal {
        path: journal_dir.clone(),
        source,
    };
    std::fs::create_dir_all(&journal_dir).map_err(io)?;
    remove_unfinished(&journal_dir).map_err(io)?;
    // First read everything, so that a refusal changes nothing.
    let report = check(store_dir)?;
    if !report.is_sound() && on_damage == OnDamage::Refuse {
        return Err(StoreError::Damaged { report });
    }
    let segments = existing_segments(&journal_dir).map_err(io)?;
    let mut found = Recovered {
        segments: segments.len(),
        ..Recovered::default()
    };
    let mut damaged = Vec::new();
    for &segment in &segments {
        let scan = read_segment(&journal_dir, segment).map_err(io)?;
        found.records += scan.records.len();
        found.torn_bytes += scan.torn.map_or(0, |t| t.bytes);
        found.unsynced_bytes += scan.unsynced.map_or(0, |u| u.bytes);
        for chunk in scan.records.chunks(4096) {
            found.added += insert(conn, chunk)?;
        }
        // Beyond damage: kept by a repair, and from a buffered segment (what it acknowledged
        // and still has); otherwise the open was refused above.
        for chunk in scan.salvage.chunks(4096) {
            found.salvaged += chunk.len();
            found.added += insert(conn, chunk)?;
        }
        if !scan.problems.is_empty() {
            damaged.push(segment);
        }
    }
    let next = segments.last().map_or(1, |last| last + 1);
    // The index commits without fsync: make the replayed rows durable before the journal goes.
    sync_wal(db).map_err(io)?;
    if !damaged.is_empty() {
        let quarantine = store_dir.join(QUARANTINE_DIR);
        std::fs::create_dir_all(&quarantine).map_err(io)?;
        for segment in damaged {
            let from = segment_path(&journal_dir, segment);
            let to = unused_name(&quarantine, &from);
            std::fs::rename(&from, &to).map_err(io)?;
            tracing::warn!(from = %from.display(), to = %to.display(), "damaged journal segment moved to quarantine after replaying every intact record");
            found.quarantined += 1;
        }
        std::fs::File::open(&quarantine)
            .and_then(|d| d.sync_all())
            .map_err(io)?;
    }
    remove_segments_before(&journal_dir, next).map_err(io)?;
    if found.segments > 0 {
        tracing::info!(
            segments = found.segments,
            records = found.records,
            added = found.added,
            torn_bytes = found.torn_bytes,
            salvaged = found.salvaged,
            quarantined = found.quarantined,
            "journal replayed into the index"
        );
    }
    if found.unsynced_bytes > 0 {
        tracing::error!(
            bytes = found.unsynced_bytes,
            "acknowledged messages were lost: the journal was written with durability: buffered, which does not survive a power cut"
        );
    }
    Ok((found, next))
}

/// `dir/NAME`, or `dir/NAME.1`, `.2` … if a earlier repair left one of that name.
fn unused_name(dir: &Path, from: &Path) -> PathBuf {
    let name = from.file_name().unwrap_or_default().to_string_lossy();
    let mut to = dir.join(&*name);
    let mut n = 1;
    while to.exists() {
        to = dir.join(format!("{name}.{n}"));
        n += 1;
    }
    to
}

#[cfg(test)]
mod tests;
