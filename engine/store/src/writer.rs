//! The store handle and its journal thread: group commit.
//!
//! Callers `submit` a record and get a [`PendingCommit`]; the journal thread blocks for the
//! first queued request, drains whatever else is queued (up to `max_batch`), appends them all
//! to the journal with one write and, with `durability: fsync`, one fdatasync, then answers
//! every caller at once: throughput grows with the number of concurrent senders while each
//! caller still waits for its own record to be durable. The batch then goes to the index
//! (`indexer.rs`), off the ACK path. Queue order is journal order is index order: a connection
//! that submits in arrival order gets its records stored in arrival order.
//!
//! Memory is bounded in bytes, not only in records: a record takes its size from a budget
//! (`queue_bytes`) when it is submitted and gives it back once it is indexed, so however many
//! senders and however large their messages, what waits for the journal and the index is at
//! most `queue_bytes` (plus one record larger than the whole budget, which goes alone).

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

use rusqlite::Connection;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};

use crate::checkpoint::{CheckpointPlan, Checkpointer};
use crate::indexer::{IndexBatch, Indexer};
use crate::journal::{JOURNAL_DIR, Journal, expire_free, remove_segments_before};
use crate::recovery::{OnDamage, Recovered, recover};
use crate::{CommitError, DB_FILE, InboxRecord, LOCK_FILE, StoreError, codec, schema};

/// Whether a commit waits for the disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// fdatasync at every (group) commit: an ACKed message survives power loss. The default.
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
    /// A journal segment is closed and a new one started past this size.
    pub segment_bytes: u64,
    /// Bytes of submitted records that may wait for the journal and the index before
    /// `submit` waits (back-pressure in bytes; 8,192 records of 8 MiB would be 64 GiB).
    pub queue_bytes: usize,
    /// What to do at open when the journal holds damage a crash does not explain.
    pub on_damage: OnDamage,
}

impl StoreOptions {
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        StoreOptions {
            dir: dir.into(),
            durability: Durability::Fsync,
            max_batch: 2048,
            queue: 8192,
            segment_bytes: 16 << 20,
            queue_bytes: 8 << 20,
            on_damage: OnDamage::Refuse,
        }
    }
}

/// Where a caller waits for its record: `Ok` once durable.
type Reply = oneshot::Sender<Result<Stored, CommitError>>;

// Records travel by value: boxing would cost an allocation per message for a few hundred
// bytes of queue slot.
#[allow(clippy::large_enum_variant)]
enum Request {
    Write(InboxRecord, Reply, OwnedSemaphorePermit),
    /// Move to a new journal segment; answers with its number.
    Seal(oneshot::Sender<Result<u64, CommitError>>),
    Close(oneshot::Sender<()>),
}

/// Group-commit counters, for logs and the benchmark.
#[derive(Debug, Default)]
pub struct CommitStats {
    pub commits: AtomicU64,
    pub records: AtomicU64,
    pub largest_batch: AtomicU64,
    /// fdatasyncs of the journal (one per group commit with `durability: fsync`).
    pub syncs: AtomicU64,
    /// Records inserted into the index (searchable).
    pub indexed: AtomicU64,
    /// Group commits whose journal write or fdatasync failed (their senders were told AE).
    pub failed_commits: AtomicU64,
    /// Set after an fsync of the index failed: the journal is kept until a restart replays it.
    pub index_at_risk: Arc<AtomicBool>,
}

/// A handle to an open store; cheap to clone, shared by every listener.
#[derive(Debug, Clone)]
pub struct Store {
    tx: mpsc::Sender<Request>,
    /// Bytes of records submitted and not yet indexed may not pass this budget.
    memory: Arc<Semaphore>,
    memory_total: u32,
    stats: Arc<CommitStats>,
    dir: PathBuf,
    recovered: Recovered,
    indexed: tokio::sync::watch::Receiver<u64>,
    /// Journal segments below this number are gone (the index holds them on disk).
    removed_below: tokio::sync::watch::Receiver<u64>,
    /// Set while the index's inserts fail.
    index_failing: Arc<AtomicBool>,
    _lock: Arc<File>,
}

/// A submitted record whose commit has not been confirmed yet.
#[derive(Debug)]
pub struct PendingCommit(oneshot::Receiver<Result<Stored, CommitError>>);

/// What a commit made of a record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Stored {
    /// Stored as a message of its own (always, in the embedded store).
    New,
    /// Not stored: a store several nodes share already holds a message of the same route,
    /// sender, control id and bytes, taken by another node — a resend. `ack` is what the
    /// original was answered.
    ResendOf {
        original: String,
        ack: Option<Vec<u8>>,
    },
}

impl PendingCommit {
    /// A commit another store backend answers through `reply` (`Err` carries the reason).
    pub fn from_reply(reply: oneshot::Receiver<Result<Stored, CommitError>>) -> PendingCommit {
        PendingCommit(reply)
    }

    /// Waits until the record is durable (or known to be a resend of one that is).
    pub async fn wait(self) -> Result<Stored, StoreError> {
        match self.0.await {
            Ok(Ok(stored)) => Ok(stored),
            Ok(Err(CommitError::Closed)) | Err(_) => Err(StoreError::Closed),
            Ok(Err(e)) => Err(StoreError::Commit(e)),
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
        // Patient data: this user's only, even if the folder was made by hand or by an older
        // version (the binary's umask covers the files created inside).
        {
            use std::os::unix::fs::PermissionsExt as _;
            let _ = std::fs::set_permissions(&opts.dir, std::fs::Permissions::from_mode(0o700));
        }
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
        let mut conn = Connection::open(&db).map_err(|source| StoreError::Open {
            path: db.clone(),
            source,
        })?;
        schema::prepare_writer(&conn)?;
        schema::wait_in_short_steps(&mut conn, std::time::Duration::from_secs(5))?;
        let journal_dir = opts.dir.join(JOURNAL_DIR);
        let (recovered, next_segment) = recover(&mut conn, &db, &opts.dir, opts.on_damage)?;
        let buffered = opts.durability == Durability::Buffered;
        let journal = Journal::create(&journal_dir, next_segment, opts.segment_bytes, buffered)
            .map_err(|source| StoreError::Journal {
                path: journal_dir.clone(),
                source,
            })?;
        let stats = Arc::new(CommitStats::default());
        let indexed_below = Arc::new(AtomicU64::new(0));
        let index_at_risk = stats.index_at_risk.clone();
        let (removed_tx, removed_below) = tokio::sync::watch::channel(next_segment);
        let checkpointer = Checkpointer::start(CheckpointPlan {
            db: db.clone(),
            journal_dir: journal_dir.clone(),
            indexed_below: indexed_below.clone(),
            interval: std::time::Duration::from_millis(250),
            index_at_risk: index_at_risk.clone(),
            removed_below: removed_tx,
        })?;
        let spawn_failed = |source| StoreError::Journal {
            path: journal_dir.clone(),
            source,
        };
        let (indexed_tx, indexed_rx) = tokio::sync::watch::channel(0);
        let indexer = Indexer::start(
            conn,
            checkpointer,
            db,
            indexed_below,
            stats.clone(),
            indexed_tx,
            index_at_risk,
        )
        .map_err(spawn_failed)?;
        let index_failing = indexer.failing.clone();
        let (tx, rx) = mpsc::channel(opts.queue.max(1));
        let max_batch = opts.max_batch.max(1);
        let group = GroupCommit {
            journal,
            indexer,
            batch: Vec::with_capacity(max_batch),
            framed: Vec::with_capacity(1 << 20),
            durable: opts.durability == Durability::Fsync,
            stats: stats.clone(),
        };
        let dir = journal_dir.clone();
        std::thread::Builder::new()
            .name("wyvern-store-journal".into())
            .spawn(move || run_journal(group, rx, &dir, max_batch))
            .map_err(spawn_failed)?;
        tracing::info!(store = %opts.dir.display(), durability = ?opts.durability, "store open");
        let memory_total = u32::try_from(opts.queue_bytes.max(1)).unwrap_or(u32::MAX);
        Ok(Store {
            tx,
            memory: Arc::new(Semaphore::new(memory_total as usize)),
            memory_total,
            stats,
            dir: opts.dir,
            recovered,
            indexed: indexed_rx,
            removed_below,
            index_failing,
            _lock: Arc::new(lock),
        })
    }

    /// Changes whenever the index has taken new records (and with them new outbox rows).
    pub fn indexed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.indexed.clone()
    }

    /// What start-up recovery replayed from the journal.
    pub fn recovered(&self) -> Recovered {
        self.recovered
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    pub fn stats(&self) -> &CommitStats {
        &self.stats
    }

    /// The same counters, shared (for a metrics endpoint).
    pub fn stats_handle(&self) -> Arc<CommitStats> {
        self.stats.clone()
    }

    /// Queues a record for the next group commit. Waits only when the queue is full.
    pub async fn submit(&self, record: InboxRecord) -> Result<PendingCommit, StoreError> {
        // Its size, capped at the whole budget: a record larger than that waits for the rest
        // to drain and then goes alone.
        let size = record_bytes(&record).min(self.memory_total as usize);
        let permits = u32::try_from(size).unwrap_or(self.memory_total);
        // The budget is spent on records the index has not taken yet. Waiting is back-pressure
        // while the index moves; while its inserts fail, waiting would hang the sender, who
        // gets an error (AE) instead and resends later.
        let memory = loop {
            let wait = self.memory.clone().acquire_many_owned(permits);
            match tokio::time::timeout(std::time::Duration::from_millis(100), wait).await {
                Ok(memory) => break memory.map_err(|_| StoreError::Closed)?,
                Err(_) if self.index_failing.load(Ordering::Acquire) => {
                    return Err(StoreError::Commit(CommitError::IndexCannotWrite));
                }
                Err(_) => {}
            }
        };
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Write(record, reply, memory))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingCommit(rx))
    }

    /// Bytes of submitted records not yet indexed (at most `queue_bytes`, or one record).
    pub fn queued_bytes(&self) -> usize {
        (self.memory_total as usize).saturating_sub(self.memory.available_permits())
    }

    /// Submits and waits for durability.
    pub async fn commit(&self, record: InboxRecord) -> Result<(), StoreError> {
        self.submit(record).await?.wait().await.map(|_| ())
    }

    /// Waits until every record committed before this call is in the index on disk and no
    /// longer in the journal — so that nothing a caller deletes from the index afterwards can
    /// come back from a journal replay. Fails after `timeout` (the index cannot keep up, or an
    /// fsync of it failed and the journal is being kept: see checkpoint.rs).
    pub async fn seal_journal(&self, timeout: std::time::Duration) -> Result<(), StoreError> {
        let (reply, rx) = oneshot::channel();
        self.tx
            .send(Request::Seal(reply))
            .await
            .map_err(|_| StoreError::Closed)?;
        let sealed = rx
            .await
            .map_err(|_| StoreError::Closed)?
            .map_err(StoreError::Commit)?;
        let mut removed = self.removed_below.clone();
        match tokio::time::timeout(timeout, removed.wait_for(|&below| below >= sealed)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(_)) => Err(StoreError::Closed),
            Err(_) => Err(StoreError::Commit(CommitError::NotEmptied {
                segment: sealed,
                waited: timeout,
            })),
        }
    }

    /// Removes messages received before `before_ms` whose destinations are all finished (see
    /// [`crate::Outbox::prune`]), once the journal no longer holds them ([`Store::seal_journal`]):
    /// a pruned message never comes back after an unclean stop.
    pub async fn prune(&self, before_ms: i64) -> Result<crate::Pruned, StoreError> {
        self.seal_journal(std::time::Duration::from_secs(60))
            .await?;
        let dir = self.dir.clone();
        tokio::task::spawn_blocking(move || crate::Outbox::open(&dir)?.prune_all(before_ms))
            .await
            .map_err(StoreError::Task)?
    }

    /// Commits everything queued before this call, indexes it, then stops. Later submits fail
    /// with [`StoreError::Closed`].
    pub async fn close(&self) {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Request::Close(reply)).await.is_ok() {
            let _ = rx.await;
        }
    }
}

/// What a record holds in memory, near enough: its bytes, its deliveries' own payloads, and
/// a little for the rest.
fn record_bytes(r: &InboxRecord) -> usize {
    let payloads: usize = r
        .deliveries
        .iter()
        .map(|d| d.payload.as_ref().map_or(0, |p| p.len()) + d.order_key.len() + 64)
        .sum();
    r.envelope.raw.len() + r.ack.as_ref().map_or(0, |a| a.len()) + payloads + 512
}

fn run_journal(
    mut group: GroupCommit,
    mut rx: mpsc::Receiver<Request>,
    journal_dir: &Path,
    max_batch: usize,
) {
    let mut close = None;
    while close.is_none() {
        let Some(first) = rx.blocking_recv() else {
            break;
        };
        let mut next = Some(first);
        while let Some(req) = next.take() {
            match req {
                Request::Write(rec, reply, memory) => group.batch.push((rec, reply, memory)),
                Request::Seal(reply) => {
                    let _ = reply.send(group.seal());
                }
                Request::Close(done) => {
                    close = Some(done);
                    break;
                }
            }
            if group.batch.len() < max_batch {
                next = rx.try_recv().ok();
            }
        }
        group.commit();
    }
    rx.close();
    while let Ok(req) = rx.try_recv() {
        if let Request::Write(_, reply, _) = req {
            let _ = reply.send(Err(CommitError::Closed));
        }
    }
    // Once everything journalled is indexed, the journal can start empty next time.
    let GroupCommit {
        journal, indexer, ..
    } = group;
    if indexer.close()
        && let Err(e) = remove_segments_before(journal_dir, journal.finish() + 1)
            .and_then(|_| expire_free(journal_dir, std::time::Duration::ZERO))
    {
        tracing::warn!(error = %e, "cannot remove indexed journal segments");
    }
    if let Some(done) = close {
        let _ = done.send(());
    }
    tracing::debug!("store journal thread stopped");
}

type Queued = (InboxRecord, Reply, OwnedSemaphorePermit);

/// What the journal thread owns: the journal, the index behind it, and the batch being
/// gathered.
struct GroupCommit {
    journal: Journal,
    indexer: Indexer,
    batch: Vec<Queued>,
    /// The batch's frames, reused from one commit to the next.
    framed: Vec<u8>,
    durable: bool,
    stats: Arc<CommitStats>,
}

impl GroupCommit {
    /// One group commit: frames the batch, appends it with one write (and fdatasync), answers
    /// every caller, and hands the records to the index.
    fn commit(&mut self) {
        let GroupCommit {
            journal,
            indexer,
            batch,
            framed,
            durable,
            stats,
        } = self;
        if batch.is_empty() {
            return;
        }
        framed.clear();
        let mut i = 0;
        while i < batch.len() {
            match codec::encode(&batch[i].0, framed) {
                Ok(()) => i += 1,
                // Larger than a frame holds: that sender is told AE, the others go on.
                Err(e) => {
                    let (_, reply, _) = batch.remove(i);
                    let _ = reply.send(Err(e.into()));
                }
            }
        }
        if batch.is_empty() {
            return;
        }
        let result = journal.append(framed, *durable).map_err(CommitError::from);
        let segment = journal.segment();
        let n = batch.len() as u64;
        if *durable {
            stats.syncs.fetch_add(1, Ordering::Relaxed);
        }
        match &result {
            Ok(()) => {
                stats.commits.fetch_add(1, Ordering::Relaxed);
                stats.records.fetch_add(n, Ordering::Relaxed);
                stats.largest_batch.fetch_max(n, Ordering::Relaxed);
            }
            // Not journalled: the senders are told AE and keep their messages.
            Err(e) => {
                stats.failed_commits.fetch_add(1, Ordering::Relaxed);
                tracing::error!(error = %e, records = n, "journal write failed; the senders get AE and may resend")
            }
        }
        let mut records = Vec::with_capacity(batch.len());
        let mut memory = Vec::with_capacity(batch.len());
        for (rec, reply, permit) in batch.drain(..) {
            let _ = reply.send(result.clone().map(|()| Stored::New));
            records.push(rec);
            memory.push(permit);
        }
        if result.is_ok() {
            indexer.send(IndexBatch {
                segment,
                records,
                memory,
            });
        }
    }

    /// Commits what is queued ahead, then moves the journal to a new segment: its number.
    fn seal(&mut self) -> Result<u64, CommitError> {
        self.commit();
        let segment = self.journal.seal()?;
        // Tells the checkpoint every earlier segment is indexed, once it is.
        self.indexer.send(IndexBatch {
            segment,
            records: Vec::new(),
            memory: Vec::new(),
        });
        Ok(segment)
    }
}
