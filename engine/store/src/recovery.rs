//! Start-up recovery: whatever the journal still holds (records acknowledged before a crash or
//! kill but not yet in the index) goes into the index before the engine takes new messages.

use std::path::Path;

use rusqlite::Connection;

use crate::StoreError;
use crate::checkpoint::sync_wal;
use crate::indexer::insert;
use crate::journal::{existing_segments, read_segment, remove_segments_before, remove_unfinished};

/// What recovery found.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct Recovered {
    pub segments: usize,
    /// Records read from the journal.
    pub records: usize,
    /// Of those, records the index did not hold yet.
    pub added: usize,
    /// Bytes of a torn last frame (a write cut short by the crash; never acknowledged).
    pub torn_bytes: usize,
}

/// Replays every journal segment into the index and deletes the segments. Returns what it did
/// and the number the next segment should take.
pub(crate) fn recover(
    conn: &mut Connection,
    db: &Path,
    journal_dir: &Path,
) -> Result<(Recovered, u64), StoreError> {
    let io = |source| StoreError::Journal {
        path: journal_dir.to_path_buf(),
        source,
    };
    std::fs::create_dir_all(journal_dir).map_err(io)?;
    remove_unfinished(journal_dir).map_err(io)?;
    let segments = existing_segments(journal_dir).map_err(io)?;
    let mut found = Recovered {
        segments: segments.len(),
        ..Recovered::default()
    };
    for &segment in &segments {
        let (records, torn) = read_segment(journal_dir, segment).map_err(io)?;
        found.records += records.len();
        found.torn_bytes += torn;
        for chunk in records.chunks(4096) {
            found.added += insert(conn, chunk)?;
        }
    }
    let next = segments.last().map_or(1, |last| last + 1);
    // The index commits without fsync: make the replayed rows durable before the journal goes.
    sync_wal(db).map_err(io)?;
    remove_segments_before(journal_dir, next).map_err(io)?;
    if found.segments > 0 {
        tracing::info!(
            segments = found.segments,
            records = found.records,
            added = found.added,
            torn_bytes = found.torn_bytes,
            "journal replayed into the index"
        );
    }
    Ok((found, next))
}

#[cfg(test)]
mod tests {
    use crate::codec::{encode, tests::sample};
    use crate::journal::{JOURNAL_DIR, Journal, existing_segments, segment_path};
    use crate::{InboxReader, InboxStatus, Store, StoreOptions};

    /// What a killed engine leaves: journal segments the index never saw, the last one ending
    /// in a torn frame. The next open replays them, skips the torn tail, and empties the journal.
    #[tokio::test]
    async fn a_killed_engines_journal_is_replayed_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let journal_dir = dir.path().join(JOURNAL_DIR);
        let mut j = Journal::create(&journal_dir, 7, 600).unwrap();
        for n in 1..=12 {
            let mut buf = Vec::new();
            encode(&sample(n), &mut buf);
            j.append(&buf, true).unwrap();
        }
        let last = *existing_segments(&journal_dir).unwrap().last().unwrap();
        let mut torn = Vec::new();
        encode(&sample(99), &mut torn);
        let mut file = std::fs::OpenOptions::new()
            .append(true)
            .open(segment_path(&journal_dir, last))
            .unwrap();
        std::io::Write::write_all(&mut file, &torn[..torn.len() / 2]).unwrap();
        drop(file);

        let store = Store::open(StoreOptions::new(dir.path())).unwrap();
        let r = store.recovered();
        assert_eq!((r.records, r.added), (12, 12));
        assert!(r.segments > 1 && r.torn_bytes > 0, "{r:?}");
        store.close().await;
        drop(store);
        let reader = InboxReader::open(dir.path()).unwrap();
        let mut ids = reader.control_ids(InboxStatus::Accepted).unwrap();
        ids.extend(reader.control_ids(InboxStatus::Rejected).unwrap());
        assert_eq!(ids.len(), 12);
        assert!(existing_segments(&journal_dir).unwrap().is_empty());

        // Replaying what the index already holds adds nothing (no duplicates).
        let mut j = Journal::create(&journal_dir, 1, 1 << 20).unwrap();
        let mut buf = Vec::new();
        encode(&sample(3), &mut buf);
        j.append(&buf, true).unwrap();
        // As a real engine does before it stops: wait for the segment being prepared (the
        // test raced it: the open below removed its temporary file under it).
        j.finish();
        let store = Store::open(StoreOptions::new(dir.path())).unwrap();
        assert_eq!((store.recovered().records, store.recovered().added), (1, 0));
        store.close().await;
    }
}
