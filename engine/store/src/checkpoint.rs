//! Checkpoints, and the moment journal segments may go: on their own thread, so copying the
//! WAL into the database (and the fsyncs that takes) never stalls the journal or the index.
//!
//! The index commits with `synchronous=NORMAL` (no fsync per commit, so it never competes with
//! the journal's fdatasync for the disk). Every `interval` this thread reads how far the index
//! has got, fdatasyncs the index's WAL — from then on those rows survive a power cut — and only
//! then retires the journal segments they came from (deleted, or kept for the journal to write
//! over; one kept a minute unused is deleted too). Then a PASSIVE checkpoint copies what it
//! can without blocking anyone; the WAL starts over once everything in it has been copied. Under
//! load that never pauses the WAL could keep growing, so past `RESTART_FRAMES` the checkpoint
//! turns RESTART: it waits (briefly blocking index commits, never ACKs) until the WAL can start
//! over.
//!
//! Invariant (the PostgreSQL "fsyncgate" lesson): once an fsync of the index has failed, what
//! it held may not be on disk, and a later fsync that succeeds does not say otherwise — the
//! kernel may have dropped the pages it could not write. So after the first failure no journal
//! segment is deleted for the rest of the run; the next start replays them all (inserts are
//! idempotent) and the index is whole again.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rusqlite::Connection;

use crate::{StoreError, journal};

/// A running checkpoint thread; stops when closed or dropped.
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// WAL frames (4 KiB pages) after which a checkpoint may block index commits: 64 MiB.
const RESTART_FRAMES: i64 = 16_384;

/// fdatasyncs the WAL of the database at `db`: every commit made before this call is durable
/// when it returns.
pub(crate) fn sync_wal(db: &Path) -> std::io::Result<()> {
    let mut wal = db.as_os_str().to_owned();
    wal.push("-wal");
    match File::open(PathBuf::from(wal)) {
        Ok(f) => f.sync_data(),
        // No WAL yet: nothing has been committed since the last checkpoint truncated it.
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// What the thread needs to know.
pub(crate) struct CheckpointPlan {
    pub db: PathBuf,
    pub journal_dir: PathBuf,
    /// The index sets this after each commit: every journal segment numbered below it is in
    /// the index (not yet necessarily on disk).
    pub indexed_below: Arc<AtomicU64>,
    pub interval: Duration,
    /// Set at the first failed fsync of the index: journal segments are kept from then on.
    pub index_at_risk: Arc<AtomicBool>,
    /// Every segment numbered below this has been deleted (the index holds it on disk).
    pub removed_below: tokio::sync::watch::Sender<u64>,
}

impl Checkpointer {
    pub(crate) fn start(plan: CheckpointPlan) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(&plan.db).map_err(|source| StoreError::Open {
            path: plan.db.clone(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(StoreError::Write)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let db = plan.db.clone();
        let thread = std::thread::Builder::new()
            .name("wyvern-store-checkpoint".into())
            .spawn(move || run(&conn, &plan, &flag))
            .map_err(|source| StoreError::CreateDir { path: db, source })?;
        Ok(Checkpointer {
            stop,
            thread: Some(thread),
        })
    }

    pub(crate) fn close(mut self) {
        self.stop_and_join();
    }

    fn stop_and_join(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            t.thread().unpark();
            let _ = t.join();
        }
    }
}

impl Drop for Checkpointer {
    fn drop(&mut self) {
        self.stop_and_join();
    }
}

fn run(conn: &Connection, plan: &CheckpointPlan, stop: &AtomicBool) {
    let mut mode = "PASSIVE";
    let mut removed_below = 0;
    let mut next_expiry = Instant::now() + journal::FREE_FOR;
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(plan.interval);
        if Instant::now() >= next_expiry {
            if let Err(e) = journal::expire_free(&plan.journal_dir, journal::FREE_FOR) {
                tracing::warn!(error = %e, "cannot remove free journal segments");
            }
            next_expiry = Instant::now() + journal::FREE_FOR / 6;
        }
        let indexed_below = plan.indexed_below.load(Ordering::Acquire);
        if indexed_below > removed_below && !plan.index_at_risk.load(Ordering::Acquire) {
            match sync_wal(&plan.db) {
                Ok(()) => match journal::remove_segments_before(&plan.journal_dir, indexed_below) {
                    Ok(_) => {
                        removed_below = indexed_below;
                        plan.removed_below.send_replace(removed_below);
                    }
                    Err(e) => tracing::warn!(error = %e, "cannot remove indexed journal segments"),
                },
                Err(e) => {
                    plan.index_at_risk.store(true, Ordering::Release);
                    tracing::error!(error = %e, "an fsync of the index failed: what it held may not be on disk, and a later fsync cannot tell. Every journal segment is kept from now on and replayed at the next start; restart the engine once the disk is sound");
                }
            }
        }
        let result = conn.query_row(&format!("PRAGMA wal_checkpoint({mode})"), [], |r| {
            Ok((
                r.get::<_, i64>(0)?,
                r.get::<_, i64>(1)?,
                r.get::<_, i64>(2)?,
            ))
        });
        match result {
            Ok((_, wal_frames, _)) => {
                mode = if wal_frames > RESTART_FRAMES {
                    "RESTART"
                } else {
                    "PASSIVE"
                };
            }
            // Busy (a reader holds the WAL) is retried; anything else is an I/O failure of
            // SQLite's own fsyncs, with the same consequence as ours.
            Err(e) if is_busy(&e) => {
                tracing::debug!(error = %e, "store checkpoint busy; will retry")
            }
            Err(e) => {
                if !plan.index_at_risk.swap(true, Ordering::AcqRel) {
                    tracing::error!(error = %e, "the index's checkpoint failed: what it held may not be on disk. Every journal segment is kept from now on and replayed at the next start; restart the engine once the disk is sound");
                }
            }
        }
    }
    tracing::debug!("store checkpoint thread stopped");
}

fn is_busy(e: &rusqlite::Error) -> bool {
    matches!(
        e.sqlite_error_code(),
        Some(rusqlite::ErrorCode::DatabaseBusy | rusqlite::ErrorCode::DatabaseLocked)
    )
}
