//! Checkpoints on their own thread, so copying the WAL into the database (and the two fsyncs
//! that takes) never stalls the writer and the ACKs waiting on it.
//!
//! A PASSIVE checkpoint runs on its own connection every `interval`; it copies what it can
//! without blocking the writer, and the writer restarts the WAL from the beginning once
//! everything in it has been copied. Under load that never pauses the WAL could keep growing,
//! so past `restart_frames` the checkpoint turns RESTART: it waits (briefly blocking new
//! commits) until the WAL can start over. Memory and disk stay bounded either way.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::Connection;

use crate::StoreError;

/// A running checkpoint thread; stops when closed or dropped.
pub(crate) struct Checkpointer {
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// WAL frames (4 KiB pages) after which a checkpoint may block the writer: 64 MiB.
const RESTART_FRAMES: i64 = 16_384;

impl Checkpointer {
    pub(crate) fn start(db: &Path, interval: Duration) -> Result<Checkpointer, StoreError> {
        let conn = Connection::open(db).map_err(|source| StoreError::Open {
            path: db.to_path_buf(),
            source,
        })?;
        conn.busy_timeout(Duration::from_secs(5))
            .map_err(StoreError::Write)?;
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("wyvern-store-checkpoint".into())
            .spawn(move || run(&conn, &flag, interval))
            .map_err(|source| StoreError::CreateDir {
                path: db.to_path_buf(),
                source,
            })?;
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

fn run(conn: &Connection, stop: &AtomicBool, interval: Duration) {
    let mut mode = "PASSIVE";
    while !stop.load(Ordering::Relaxed) {
        std::thread::park_timeout(interval);
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
            Err(e) => tracing::warn!(error = %e, "store checkpoint failed; will retry"),
        }
    }
    tracing::debug!("store checkpoint thread stopped");
}
