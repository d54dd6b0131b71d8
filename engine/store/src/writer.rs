//! The single writer thread and its queue: group commit.
//!
//! Callers `submit` a record and get a [`PendingCommit`]; the writer blocks for the first queued
//! request, drains whatever else is queued (up to `max_batch`), inserts them all in one
//! transaction and commits once. With `durability: fsync` the [`Flusher`] then fsyncs the WAL once
//! for every batch committed since its last fsync, while this thread already inserts the next
//! batch; so throughput grows with the number of concurrent senders while each caller still
//! waits for its own row to be durable. Queue order is commit order: a connection that submits
//! in arrival order gets its rows stored in arrival order.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use rusqlite::{Connection, TransactionBehavior, params};
use tokio::sync::{mpsc, oneshot};

use crate::checkpoint::Checkpointer;
use crate::flusher::{Flusher, Reply};
use crate::{DB_FILE, InboxRecord, LOCK_FILE, StoreError, schema};

/// Whether a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fsync at every (group) commit: an ACKed message survives power loss. The default.
    #[default]
    Fsync,
    /// No fsync at commit: survives an engine crash, not a power cut. Faster; a choice of risk.
    Buffered,
}

/// How to open a store.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub dir: PathBuf,
    pub durability: Durability,
    /// The most records one transaction takes.
    pub max_batch: usize,
    /// How many submitted records may wait for the writer before `submit` waits (back-pressure).
    pub queue: usize,
}

impl StoreOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            dir: dir.into(),
            durability: Durability::Fsync,
            max_batch: 2048,
            queue: 8192,
        }
    }
}

// Records travel by value: boxing would cost an allocation per message for a few hundred
// bytes of queue slot.
#[allow(clippy::large_enum_variant)]
enum Request {
    Write(InboxRecord, Reply),
    Close(oneshot::Sender<()>),
}

/// Group-commit counters, for logs and the benchmark.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    pub records: AtomicU64,
    pub largest_batch: AtomicU64,
    /// fsyncs of the WAL (each covers one or more commits).
    pub syncs: AtomicU64,
}

/// A handle to an open store; cheap to clone, shared by every listener.
#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Request>,
    stats: Arc<CommitStats>,
    dir: PathBuf,
    _lock: Arc<File>,
}

/// A submitted record whose commit has not been confirmed yet.
#[derive(Debug)]
pub struct PendingCommit(oneshot::Receiver<Result<i64, String>>);

impl PendingCommit {
    /// Waits until the record is durable; returns its sequence number in the inbox.
    pub async fn wait(self) -> Result<i64, StoreError> {
        match self.0.await {
            Ok(Ok(seq)) => Ok(seq),
            Ok(Err(e)) => Err(StoreError::Commit(e)),
            Err(_) => Err(StoreError::Closed),
        }
    }
}

impl Store {
    /// Opens (creating if needed) the store folder, takes the engine lock and starts the writer.
    pub fn open(opts: StoreOptions) -> Result<Store, StoreError> {
        std::fs::create_dir_all(&opts.dir).map_err(|source| StoreError::CreateDir {
            path: opts.dir.clone(),
            source,
        })?;
        let lock_path = opts.dir.join(LOCK_FILE);
        let lock = File::create(&lock_path).map_err(|source| StoreError::CreateDir {
            path: lock_path.clone(),
            source,
        })?;
        match lock.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                return Err(StoreError::Locked {
                    path: opts.dir.clone(),
                    lock: lock_path,
                });
            }
            Err(TryLockError::Error(source)) => {
                return Err(StoreError::CreateDir {
                    path: lock_path,
                    source,
                });
            }
        }
        let db = opts.dir.join(DB_FILE);
        let conn = Connection::open(&db).map_err(|source| StoreError::Open {
            path: db.clone(),
            source,
        })?;
        schema::prepare_writer(&conn)?;
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let stats = Arc::new(CommitStats::default());
        let thread_stats = stats.clone();
        let max_batch = opts.max_batch.max(1);
        let flusher = match opts.durability {
            Durability::Fsync => {
                let wal = opts.dir.join(format!("{DB_FILE}-wal"));
                Some(Flusher::start(wal, stats.clone()).map_err(|source| {
                    StoreError::CreateDir {
                        path: opts.dir.clone(),
                        source,
                    }
                })?)
            }
            Durability::Buffered => None,
        };
        let checkpointer = Checkpointer::start(&db, std::time::Duration::from_millis(200))?;
        std::thread::Builder::new()
            .name("wyvern-store-writer".into())
            .spawn(move || {
                run_writer(conn, rx, max_batch, &thread_stats, flusher);
                checkpointer.close();
            })
            .map_err(|source| StoreError::CreateDir {
                path: opts.dir.clone(),
                source,
            })?;
        tracing::info!(store = %opts.dir.display(), durability = ?opts.durability, "store open");
        Ok(Store {
            tx,
            stats,
            dir: opts.dir,
            _lock: Arc::new(lock),
        })
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// Queues a record for the next group commit. Waits only when the queue is full.
    pub async fn submit(&self, record: InboxRecord) -> Result<PendingCommit, StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Write(record, reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingCommit(rx))
    }

    /// Submits and waits for durability.
    pub async fn commit(&self, record: InboxRecord) -> Result<i64, StoreError> {
        self.submit(record).await?.wait().await
    }

    /// Commits everything queued before this call, then stops the writer. Later submits fail
    /// with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Close(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

fn run_writer(
    mut conn: Connection,
    mut rx: mpsc::Receiver<Request>,
    max_batch: usize,
    stats: &CommitStats,
    flusher: Option<Flusher>,
) {
    let mut batch = Vec::with_capacity(max_batch);
    while let Some(first) = rx.blocking_recv() {
        let mut close = None;
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                Request::Write(rec, reply) => batch.push((rec, reply)),
                Request::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            let more_waiting = !rx.is_empty();
            commit_batch(&mut conn, &mut batch, stats, flusher.as_ref(), more_waiting);
        }
        if let Some(done) = close {
            rx.close();
            while let Ok(req) = rx.try_recv() {
                if let Request::Write(_, reply) = req {
                    let _ = reply.send(Err("the store is closed".into()));
                }
            }
            if let Some(f) = flusher {
                f.close();
            }
            let _ = done.send(());
            tracing::debug!("store writer stopped");
            return;
        }
    }
    if let Some(f) = flusher {
        f.close();
    }
    tracing::debug!("store writer stopped");
}

const INSERT: &str = "INSERT INTO inbox (id, received_at, source, peer, content_type, status, sending_app, \
    sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, raw) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15)";

fn commit_batch(
    conn: &mut Connection,
    batch: &mut Vec<(InboxRecord, Reply)>,
    stats: &CommitStats,
    flusher: Option<&Flusher>,
    more_waiting: bool,
) {
    let result = (|| -> rusqlite::Result<Vec<i64>> {
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let mut seqs = Vec::with_capacity(batch.len());
        {
            let mut stmt = tx.prepare_cached(INSERT)?;
            for (r, _) in batch.iter() {
                let e = &r.envelope;
                let m = &e.meta;
                stmt.execute(params![
                    e.id.to_string(),
                    e.received_at_ms,
                    m.source,
                    m.peer,
                    e.content_type.as_str(),
                    r.status.as_str(),
                    m.sending_application,
                    m.sending_facility,
                    m.message_type,
                    m.control_id,
                    m.nhs_number,
                    r.error,
                    r.ack.as_deref(),
                    i64::try_from(r.raw_len).unwrap_or(i64::MAX),
                    &e.raw[..],
                ])?;
                seqs.push(tx.last_insert_rowid());
            }
        }
        tx.commit()?;
        Ok(seqs)
    })();
    let n = batch.len() as u64;
    match result {
        Ok(seqs) => {
            stats.commits.fetch_add(1, Ordering::Relaxed);
            stats.records.fetch_add(n, Ordering::Relaxed);
            stats.largest_batch.fetch_max(n, Ordering::Relaxed);
            let replies = batch.drain(..).map(|(_, reply)| reply).zip(seqs);
            match flusher {
                Some(f) => f.after_commit(replies.collect(), more_waiting, stats),
                None => {
                    for (reply, seq) in replies {
                        let _ = reply.send(Ok(seq));
                    }
                }
            }
        }
        Err(e) => {
            tracing::error!(error = %e, records = n, "store commit failed; the senders get AE and may resend");
            let msg = e.to_string();
            for (_, reply) in batch.drain(..) {
                let _ = reply.send(Err(msg.clone()));
            }
        }
    }
}
