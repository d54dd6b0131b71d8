//! The index: every journalled record inserted into SQLite, where `wyvern inbox`, the console
//! and later the routes search it by control id, NHS number and status.
//!
//! It runs behind the journal, off the ACK path, in transactions as large as the backlog
//! allows. After each commit it says how far it has got; the checkpoint thread makes that
//! durable and deletes the journal segments it covers. Inserts are `INSERT OR IGNORE` by message id, so
//! replaying a segment that was partly indexed before a crash stores nothing twice. When SQLite
//! fails (a full disk), the batch is retried with backoff; the journal still holds it and the
//! store's byte budget (`queue_bytes`, held by each record until it is indexed) pushes back on
//! the senders. The queue in front of this thread is bounded by that budget, not by a count,
//! so the journal thread never waits on the index: a full disk under SQLite cannot stall the
//! ACK path, and once the budget is spent while inserts fail, `submit` answers an error (the
//! sender gets AE and resends later) instead of waiting on an index that does not move.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use rusqlite::{Connection, TransactionBehavior, params};

use crate::checkpoint::{Checkpointer, sync_wal};
use crate::writer::CommitStats;
use crate::{InboxRecord, StoreError};

/// Records committed to the journal together, and the segment they are in.
pub(crate) struct IndexBatch {
    pub segment: u64,
    pub records: Vec<InboxRecord>,
    /// Their share of the store's memory budget, given back once they are indexed.
    pub memory: Vec<tokio::sync::OwnedSemaphorePermit>,
}

/// The handle the journal thread keeps.
pub(crate) struct Indexer {
    tx: mpsc::Sender<IndexBatch>,
    thread: JoinHandle<bool>,
    closing: Arc<AtomicBool>,
    /// Set while inserts fail (a full disk), cleared by the next that succeeds.
    pub failing: Arc<AtomicBool>,
}

/// Records per index transaction at most.
const MAX_RECORDS: usize = 4096;
/// How long the index waits for more records before it commits what it has.
const LINGER: Duration = Duration::from_millis(5);
/// How long the index is idle before it merges pending NHS numbers (`nhs_index.rs`).
const IDLE_MERGE: Duration = Duration::from_secs(2);

impl Indexer {
    pub(crate) fn start(
        conn: Connection,
        checkpointer: Checkpointer,
        db: PathBuf,
        indexed_below: Arc<AtomicU64>,
        stats: Arc<CommitStats>,
        notify: tokio::sync::watch::Sender<u64>,
        index_at_risk: Arc<AtomicBool>,
    ) -> std::io::Result<Indexer> {
        let (tx, rx) = mpsc::channel();
        let closing = Arc::new(AtomicBool::new(false));
        let flag = closing.clone();
        let failing = Arc::new(AtomicBool::new(false));
        let health = Health {
            failing: failing.clone(),
            at_risk: index_at_risk.clone(),
        };
        let thread = std::thread::Builder::new()
            .name("wyvern-store-index".into())
            .spawn(move || {
                let all_indexed = run(conn, &rx, &indexed_below, &stats, &flag, &notify, &health);
                checkpointer.close();
                // The journal may be emptied only once the index is on disk, and never after an
                // fsync of it has failed (see checkpoint.rs).
                all_indexed && !index_at_risk.load(Ordering::Acquire) && sync_wal(&db).is_ok()
            })?;
        Ok(Indexer {
            tx,
            thread,
            closing,
            failing,
        })
    }

    /// Queues a journalled batch (never waits: see the module doc).
    pub(crate) fn send(&self, batch: IndexBatch) {
        if self.tx.send(batch).is_err() {
            tracing::error!(
                "the store's index thread has stopped; the journal keeps the records for the next start"
            );
        }
    }

    /// Indexes everything queued, then stops. False when something could not be indexed (it
    /// stays in the journal and is indexed at the next start).
    pub(crate) fn close(self) -> bool {
        self.closing.store(true, Ordering::Relaxed);
        drop(self.tx);
        self.thread.join().unwrap_or(false)
    }
}

/// What the journal thread may read of the index's progress.
struct Health {
    failing: Arc<AtomicBool>,
    /// Set on an I/O error (not a full disk): SQLite may have met a failed fsync.
    at_risk: Arc<AtomicBool>,
}

fn run(
    mut conn: Connection,
    rx: &mpsc::Receiver<IndexBatch>,
    indexed_below: &AtomicU64,
    stats: &CommitStats,
    closing: &AtomicBool,
    notify: &tokio::sync::watch::Sender<u64>,
    health: &Health,
) -> bool {
    let mut nhs_pending = crate::nhs_index::pending(&conn).unwrap_or(0);
    loop {
        let first = match rx.recv_timeout(IDLE_MERGE) {
            Ok(first) => first,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                if nhs_pending > 0 {
                    merge_nhs(&mut conn, &mut nhs_pending);
                }
                continue;
            }
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
        };
        let mut segment = first.segment;
        let mut records = first.records;
        let mut memory = first.memory;
        // Lingers a moment for more: each commit rewrites the pages it touched (the table's
        // last leaf, one page per index), so 8 records a commit wrote about as many pages as
        // 200 do. Off the ACK path, a few milliseconds cost nothing but delivery latency. It
        // sleeps through the linger rather than waiting on the queue: a wait is woken by every
        // group commit (hundreds a second under load), and each wake-up is a context switch.
        // A backlog already queued is taken at once, without the pause.
        let mut take_queued = |records: &mut Vec<InboxRecord>| {
            while records.len() < MAX_RECORDS {
                let Ok(more) = rx.try_recv() else { break };
                segment = more.segment;
                records.extend(more.records);
                memory.extend(more.memory);
            }
        };
        take_queued(&mut records);
        if records.len() < MAX_RECORDS {
            std::thread::sleep(LINGER);
            take_queued(&mut records);
        }
        let mut backoff = Duration::from_millis(100);
        let mut attempts = 0;
        let started = std::time::Instant::now();
        while let Err(e) = insert(&mut conn, &records) {
            attempts += 1;
            if e.is_io_failure() && !health.at_risk.swap(true, Ordering::AcqRel) {
                tracing::error!(error = %e, "the index met an I/O error: what it held may not be on disk. Every journal segment is kept from now on and replayed at the next start");
            }
            // A moment's failure is waited out (back-pressure); from the third in a row, about
            // 0.7 s of retries, the journal may refuse (see `Indexer::stuck`).
            if attempts >= 3 {
                health.failing.store(true, Ordering::Release);
            }
            if closing.load(Ordering::Relaxed) && attempts >= 3 {
                tracing::error!(error = %e, "shutting down with records not indexed; they stay in the journal for the next start");
                return false;
            }
            tracing::error!(error = %e, records = records.len(), retry_in = ?backoff, "cannot index journalled records; they are safe in the journal");
            std::thread::sleep(backoff);
            backoff = (backoff * 2).min(Duration::from_secs(10));
        }
        health.failing.store(false, Ordering::Release);
        let n = records.len() as u64;
        // `took` includes any retries' pauses.
        tracing::debug!(records = n, took = ?started.elapsed(), "indexed");
        nhs_pending += records
            .iter()
            .filter(|r| r.envelope.meta.nhs_number.is_some())
            .count() as u64;
        drop((records, memory));
        let total = stats.indexed.fetch_add(n, Ordering::Relaxed) + n;
        // Wakes the delivery workers: their outbox rows exist now.
        notify.send_replace(total);
        // Batches arrive in journal order: every segment before this one is now fully indexed.
        indexed_below.store(segment, Ordering::Release);
        if nhs_pending >= crate::nhs_index::MERGE_AT {
            merge_nhs(&mut conn, &mut nhs_pending);
        }
    }
    tracing::debug!("store index thread stopped");
    true
}

/// Merges the NHS numbers waiting in `nhs_pending` (`nhs_index.rs`). A failure (a full disk)
/// leaves them pending, where searches still find them, until the next try.
fn merge_nhs(conn: &mut Connection, pending: &mut u64) {
    match crate::nhs_index::merge(conn) {
        Ok(merged) => {
            tracing::debug!(merged, "NHS number index merged");
            *pending = 0;
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot merge the NHS number index yet; searches still find the pending entries")
        }
    }
}

const INSERT: &str = "INSERT OR IGNORE INTO inbox (id, received_at, source, peer, content_type, status, \
    sending_app, sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, raw, digest) \
    VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)";

const INSERT_DELIVERY: &str = "INSERT INTO deliveries (lane, message, part, order_key, payload, \
    content_type) VALUES (?1, ?2, ?3, ?4, ?5, ?6)";

/// Inserts records and their deliveries in one transaction; returns how many were new. A
/// record already in the index (a journal replay) brings no deliveries: they were inserted
/// with it.
pub(crate) fn insert(conn: &mut Connection, records: &[InboxRecord]) -> Result<usize, StoreError> {
    let tx = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(StoreError::Write)?;
    let mut added = 0;
    {
        let mut stmt = tx.prepare_cached(INSERT).map_err(StoreError::Write)?;
        let mut delivery = tx
            .prepare_cached(INSERT_DELIVERY)
            .map_err(StoreError::Write)?;
        let mut lanes = crate::outbox::LaneIds::default();
        for r in records {
            let e = &r.envelope;
            let m = &e.meta;
            let new = stmt
                .execute(params![
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
                    &r.digest
                        .unwrap_or_else(|| wyvern_core::content_digest(&e.raw))[..],
                ])
                .map_err(StoreError::Write)?;
            if new == 0 {
                continue;
            }
            added += 1;
            let message = tx.last_insert_rowid();
            if let Some(nhs) = &m.nhs_number {
                crate::nhs_index::add(&tx, message, nhs)?;
                if let Some(old) = m.merged_nhs_number.as_ref().filter(|o| *o != nhs) {
                    crate::patient_index::fold(&tx, old, nhs)?;
                }
            }
            // A split message has several deliveries per destination: they are numbered in
            // the order the record lists them, so a journal replay numbers them the same.
            let mut parts: Vec<(&str, u32)> = Vec::new();
            for d in &r.deliveries {
                let part = match parts.iter_mut().find(|(dest, _)| *dest == d.destination) {
                    Some((_, n)) => {
                        *n += 1;
                        *n
                    }
                    None => {
                        parts.push((&d.destination, 0));
                        0
                    }
                };
                let lane = lanes.get(&tx, &d.route, &d.destination)?;
                delivery
                    .execute(params![
                        lane,
                        message,
                        part,
                        d.order_key,
                        d.payload.as_deref(),
                        d.content_type.map(|c| c.as_str()),
                    ])
                    .map_err(StoreError::Write)?;
            }
        }
    }
    tx.commit().map_err(StoreError::Write)?;
    Ok(added)
}
