//! Pipelined group commit: making committed WAL frames durable off the writer thread.
//!
//! With `synchronous=FULL` SQLite fsyncs the WAL inside every commit, so the writer can insert
//! the next batch only after the disk has answered: throughput is batch ÷ (insert + fsync).
//! Instead the writer commits with `synchronous=NORMAL` (the frames reach the OS, no fsync) and
//! hands the batch's replies here; this thread fsyncs the WAL file and only then releases them.
//! Meanwhile the writer is already inserting the next batch, so throughput becomes
//! batch ÷ max(insert, fsync), and one fsync covers every batch committed before it started.
//!
//! Why this is as safe as FULL: a commit's frames are written to the WAL file before the
//! commit returns, and `fdatasync` on any descriptor of that file makes everything written
//! before it durable. SQLite's recovery replays every frame up to the last valid commit frame,
//! so a transaction whose frames are on disk survives a power cut. Checkpoints in NORMAL mode
//! still sync the WAL before copying it and the database after, so a WAL reset never
//! overwrites frames that exist only in the WAL.

use std::fs::File;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use tokio::sync::oneshot;

use crate::writer::CommitStats;

/// Where a caller waits for its record: `Ok(seq)` once durable.
pub(crate) type Reply = oneshot::Sender<Result<i64, String>>;

/// The handle the writer thread keeps.
pub(crate) struct Flusher {
    tx: mpsc::Sender<Vec<(Reply, i64)>>,
    thread: JoinHandle<()>,
    wal: Arc<Wal>,
}

/// The WAL file, opened lazily, shared by the flush thread and the writer.
struct Wal {
    path: PathBuf,
    file: Mutex<Option<File>>,
}

impl Flusher {
    pub(crate) fn start(path: PathBuf, stats: Arc<CommitStats>) -> std::io::Result<Flusher> {
        let (tx, rx) = mpsc::channel();
        let wal = Arc::new(Wal {
            path,
            file: Mutex::new(None),
        });
        let shared = wal.clone();
        let thread = std::thread::Builder::new()
            .name("wyvern-store-flush".into())
            .spawn(move || run(&shared, &rx, &stats))?;
        Ok(Flusher { tx, thread, wal })
    }

    /// Makes a committed batch durable and answers it: on this thread when nothing else is
    /// waiting to be written (one thread hop fewer for a lone sender), otherwise on the flush
    /// thread while the writer goes on with the next batch.
    pub(crate) fn after_commit(
        &self,
        replies: Vec<(Reply, i64)>,
        more_waiting: bool,
        stats: &CommitStats,
    ) {
        if more_waiting {
            self.hand_over(replies);
        } else {
            answer(replies, self.wal.sync(), stats);
        }
    }

    /// Hands over replies of a committed batch; they are answered after the next fsync.
    fn hand_over(&self, replies: Vec<(Reply, i64)>) {
        if let Err(mpsc::SendError(replies)) = self.tx.send(replies) {
            for (reply, _) in replies {
                let _ = reply.send(Err("the store's flush thread stopped".into()));
            }
        }
    }

    /// Answers everything handed over so far, then stops.
    pub(crate) fn close(self) {
        drop(self.tx);
        let _ = self.thread.join();
    }
}

fn run(wal: &Wal, rx: &mpsc::Receiver<Vec<(Reply, i64)>>, stats: &CommitStats) {
    while let Ok(mut waiting) = rx.recv() {
        // Everything queued now was committed before this fsync starts: one fsync for all.
        while let Ok(more) = rx.try_recv() {
            waiting.extend(more);
        }
        answer(waiting, wal.sync(), stats);
    }
}

fn answer(replies: Vec<(Reply, i64)>, result: Result<(), String>, stats: &CommitStats) {
    stats.syncs.fetch_add(1, Ordering::Relaxed);
    if let Err(e) = &result {
        tracing::error!(error = %e, records = replies.len(), "fsync of the store's WAL failed; the senders get AE and may resend");
    }
    for (reply, seq) in replies {
        let _ = reply.send(result.clone().map(|()| seq));
    }
}

impl Wal {
    /// fsyncs the WAL: everything written to it before this call is durable when it returns.
    fn sync(&self) -> Result<(), String> {
        let mut file = self
            .file
            .lock()
            .map_err(|_| "the WAL lock is poisoned".to_string())?;
        if file.is_none() {
            // SQLite creates the WAL at the first write; a commit has happened before we get here.
            let f = File::open(&self.path)
                .map_err(|e| format!("cannot open {}: {e}", self.path.display()))?;
            *file = Some(f);
        }
        match file.as_ref().map(File::sync_data) {
            Some(Ok(())) => Ok(()),
            Some(Err(e)) => {
                // After a failed fsync the kernel may have dropped the dirty pages: reopen next
                // time and report this batch as not stored.
                *file = None;
                Err(format!("fsync failed: {e}"))
            }
            None => Err("no WAL file".into()),
        }
    }
}
