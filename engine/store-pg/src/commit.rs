//! Group commit into PostgreSQL: what every connection of this node submitted, written as one
//! transaction and answered together once `COMMIT` returns.
//!
//! One task owns one database connection and does one job: take the first waiting record, then
//! whatever else waits (up to `max_batch`), insert the messages and their deliveries with one
//! prepared statement (arrays through `unnest`) that commits on its own, answer every caller. With
//! `synchronous_commit` on (PostgreSQL's default) the commit returns after the WAL flush, so an
//! `Ok` is as durable as the embedded journal's fdatasync, and PostgreSQL groups the flushes
//! of several nodes itself.
//!
//! A resend committed on another node than its original (a load balancer decides where a
//! sender's connection lands) meets the messages' `messages_resend` index (schema v5): it is
//! skipped, and its caller is told whose resend it is and what that message was answered
//! ([`Stored::ResendOf`]), so it gets the original's ACK and nothing is delivered twice. The
//! nodes' own duplicate windows stay the fast path; this is what they share.
//!
//! A commit whose outcome is unknown (the connection broke before `COMMIT` answered) is
//! answered as failed: the sender gets AE and sends again, so at worst a message is stored
//! twice, never acknowledged unstored. While the database is unreachable each batch fails, the
//! committer pauses (100 ms doubling to 2 s) and the next batch tries to connect again, so
//! senders wait a moment for their AE instead of resending in a tight loop.
//!
//! Memory is bounded in bytes as the embedded store's is: a record holds its size of
//! `queue_bytes` from `submit` until it is answered.

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc, oneshot};
use tokio_postgres::Client;
use wyvern_store::{CommitError, InboxRecord, InboxStatus, PendingCommit, StoreError, Stored};

use crate::{PgStoreError, connect};

/// Partitions a new lane is split into (the unit of delivery a node leases).
pub const PARTITIONS: i16 = 16;

/// How to run the committer.
#[derive(Debug, Clone)]
pub struct CommitOptions {
    pub url: String,
    /// This node's name, written with each message (which node took it).
    pub node: String,
    /// The most records one transaction takes.
    pub max_batch: usize,
    /// Bytes of submitted records not yet answered before `submit` waits.
    pub queue_bytes: usize,
}

impl CommitOptions {
    pub fn new(url: impl Into<String>, node: impl Into<String>) -> CommitOptions {
        CommitOptions {
            url: url.into(),
            node: node.into(),
            max_batch: 1024,
            queue_bytes: 8 << 20,
        }
    }
}

type Reply = oneshot::Sender<Result<Stored, CommitError>>;

/// A handle to this node's committer; cheap to clone.
#[derive(Debug, Clone)]
pub struct PgCommitter {
    tx: mpsc::Sender<(InboxRecord, Reply, OwnedSemaphorePermit)>,
    /// How many records this committer has committed (moves after each group).
    committed: tokio::sync::watch::Receiver<u64>,
    memory: Arc<Semaphore>,
    memory_total: u32,
}

impl PgCommitter {
    /// Connects (so a wrong URL fails at start) and starts the committer task.
    pub async fn start(opts: CommitOptions) -> Result<PgCommitter, PgStoreError> {
        let client = connect(&opts.url).await?;
        let memory_total = u32::try_from(opts.queue_bytes.max(1)).unwrap_or(u32::MAX);
        let (tx, rx) = mpsc::channel(opts.max_batch.max(1) * 4);
        let (committed_tx, committed) = tokio::sync::watch::channel(0);
        tokio::spawn(run(
            Committer {
                client,
                opts,
                lanes: Lanes::default(),
                statement: None,
                committed: committed_tx,
            },
            rx,
        ));
        Ok(PgCommitter {
            tx,
            committed,
            memory: Arc::new(Semaphore::new(memory_total as usize)),
            memory_total,
        })
    }

    /// Queues a record for the next group commit; waits only for the byte budget.
    pub async fn submit(&self, record: InboxRecord) -> Result<PendingCommit, StoreError> {
        let size = record_bytes(&record).min(self.memory_total as usize);
        let permits = u32::try_from(size.max(1)).unwrap_or(self.memory_total);
        let memory = self
            .memory
            .clone()
            .acquire_many_owned(permits)
            .await
            .map_err(|_| StoreError::Closed)?;
        let (reply, rx) = oneshot::channel();
        self.tx
            .send((record, reply, memory))
            .await
            .map_err(|_| StoreError::Closed)?;
        Ok(PendingCommit::from_reply(rx))
    }

    /// Moves after each group this committer commits.
    pub fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committed.clone()
    }

    /// Submits and waits for the commit.
    pub async fn commit(&self, record: InboxRecord) -> Result<Stored, StoreError> {
        self.submit(record).await?.wait().await
    }
}

fn record_bytes(r: &InboxRecord) -> usize {
    r.envelope.raw.len()
        + r.deliveries
            .iter()
            .map(|d| d.payload.as_ref().map_or(0, |p| p.len()) + d.order_key.len())
            .sum::<usize>()
        + 256
}

struct Committer {
    client: Client,
    opts: CommitOptions,
    /// (route, destination) → (lane, partitions), as stored.
    lanes: Lanes,
    /// The group's statement, prepared on this connection.
    statement: Option<tokio_postgres::Statement>,
    committed: tokio::sync::watch::Sender<u64>,
}

async fn run(mut c: Committer, mut rx: mpsc::Receiver<(InboxRecord, Reply, OwnedSemaphorePermit)>) {
    let max = c.opts.max_batch.max(1);
    let mut unreachable_for = UNREACHABLE_PAUSE_FIRST;
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < max {
            match rx.try_recv() {
                Ok(more) => batch.push(more),
                Err(_) => break,
            }
        }
        let records: Vec<&InboxRecord> = batch.iter().map(|(r, _, _)| r).collect();
        let outcome = c
            .commit(&records)
            .await
            .map_err(|e| CommitError::Shared(Arc::new(e)));
        match &outcome {
            Ok(_) => c.committed.send_modify(|n| *n += batch.len() as u64),
            Err(e) => {
                tracing::warn!(error = %e, records = batch.len(), "PostgreSQL commit failed; its senders are answered AE")
            }
        }
        // One answer per record, in order (`commit` says what became of each).
        let answers: Vec<Result<Stored, CommitError>> = match &outcome {
            Ok(stored) => stored.iter().cloned().map(Ok).collect(),
            Err(e) => vec![Err(e.clone()); batch.len()],
        };
        for ((_, reply, memory), answer) in batch.into_iter().zip(answers) {
            let _ = reply.send(answer);
            drop(memory);
        }
        // While the database is unreachable, each batch would fail at once and its senders
        // resend at once: a pause (100 ms doubling to 2 s) turns that loop into back-pressure.
        if outcome.is_err() && c.client.is_closed() {
            tokio::time::sleep(unreachable_for).await;
            unreachable_for = (unreachable_for * 2).min(UNREACHABLE_PAUSE_MAX);
        } else {
            unreachable_for = UNREACHABLE_PAUSE_FIRST;
        }
    }
}

const UNREACHABLE_PAUSE_FIRST: std::time::Duration = std::time::Duration::from_millis(100);
const UNREACHABLE_PAUSE_MAX: std::time::Duration = std::time::Duration::from_secs(2);

/// A group in one statement, so one round trip and one transaction (a statement outside
/// `BEGIN` commits on its own): the messages inserted (a replayed one is skipped, and so is a
/// resend of a message another node stored: `messages_resend`), then the deliveries of those
/// that were new, joined to their stored `seq`; it returns the ids inserted. `WITH
/// ORDINALITY … ORDER BY` keeps the submission order in the sequence numbers.
const INSERT_GROUP: &str = "
WITH m AS (
    INSERT INTO messages (id, received_at, source, peer, content_type, status, sending_app,
        sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, raw,
        digest, node, resend_key, merged_nhs_number)
    SELECT id, received_at, source, peer, content_type, status, sending_app, sending_facility,
        message_type, control_id, nhs_number, error, ack, raw_len, raw, digest, $17::text,
        resend_key, merged_nhs_number
    FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
        $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[],
        $13::bytea[], $14::int8[], $15::bytea[], $16::bytea[], $25::bytea[], $26::text[])
        WITH ORDINALITY
        AS m(id, received_at, source, peer, content_type, status, sending_app,
        sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, raw,
        digest, resend_key, merged_nhs_number, n)
    ORDER BY n
    ON CONFLICT DO NOTHING
    RETURNING id, seq
), d AS (
    INSERT INTO deliveries (lane, partition, message, part, order_key, payload, content_type)
    SELECT d.lane, d.partition, m.seq, d.part, d.order_key, d.payload, d.content_type
    FROM unnest($18::text[], $19::int4[], $20::int2[], $21::int4[], $22::text[], $23::bytea[],
        $24::text[]) WITH ORDINALITY
        AS d(message_id, lane, partition, part, order_key, payload, content_type, n)
    JOIN m ON m.id = d.message_id
    ORDER BY d.n
)
SELECT id FROM m";

/// The message a skipped record is a resend of.
const ORIGINAL: &str = "SELECT id, ack FROM messages WHERE resend_key = $1";

impl Committer {
    /// Commits a group; what became of each record, in order.
    async fn commit(&mut self, records: &[&InboxRecord]) -> Result<Vec<Stored>, PgStoreError> {
        if self.client.is_closed() {
            self.client = connect(&self.opts.url).await?;
            self.lanes = Lanes::default();
            self.statement = None;
        }
        self.ensure_lanes(records).await?;
        let statement = match &self.statement {
            Some(s) => s.clone(),
            None => {
                let s = self.client.prepare(INSERT_GROUP).await?;
                self.statement = Some(s.clone());
                s
            }
        };
        let m = MessageColumns::of(records);
        let d = delivery_columns(&self.lanes, records, &m.id);
        let inserted = self
            .client
            .query(
                &statement,
                &[
                    &m.id,
                    &m.received_at,
                    &m.source,
                    &m.peer,
                    &m.content_type,
                    &m.status,
                    &m.sending_app,
                    &m.sending_facility,
                    &m.message_type,
                    &m.control_id,
                    &m.nhs_number,
                    &m.error,
                    &m.ack,
                    &m.raw_len,
                    &m.raw,
                    &m.digest,
                    &self.opts.node,
                    &d.message_id,
                    &d.lane,
                    &d.partition,
                    &d.part,
                    &d.order_key,
                    &d.payload,
                    &d.content_type,
                    &m.resend_key,
                    &m.merged_nhs_number,
                ],
            )
            .await?;
        if inserted.len() == records.len() {
            return Ok(vec![Stored::New; records.len()]);
        }
        let inserted: std::collections::HashSet<&str> =
            inserted.iter().map(|r| r.get::<_, &str>(0)).collect();
        let mut stored = Vec::with_capacity(records.len());
        for (id, key) in m.id.iter().zip(&m.resend_key) {
            stored.push(match key {
                Some(key) if !inserted.contains(id.as_str()) => self.original(id, key).await?,
                _ => Stored::New,
            });
        }
        Ok(stored)
    }

    /// A record the group skipped: a resend of a message the store holds under the same key,
    /// or a replay of this very record (its id already stored). Neither: the commit did not
    /// store it and must not be answered as if it had.
    async fn original(&self, id: &str, key: &[u8]) -> Result<Stored, PgStoreError> {
        if let Some(row) = self.client.query_opt(ORIGINAL, &[&key]).await? {
            let original: String = row.get(0);
            if original != id {
                return Ok(Stored::ResendOf {
                    original,
                    ack: row.get(1),
                });
            }
            return Ok(Stored::New);
        }
        let replayed = self
            .client
            .query_opt("SELECT 1 FROM messages WHERE id = $1", &[&id])
            .await?;
        match replayed {
            Some(_) => Ok(Stored::New),
            None => Err(PgStoreError::Corrupt {
                what: format!(
                    "message {id} was skipped by the commit, yet neither it nor a message with its resend key is stored"
                ),
            }),
        }
    }

    /// Finds or makes the lanes these records name (`lanes.rs`).
    async fn ensure_lanes(&mut self, records: &[&InboxRecord]) -> Result<(), PgStoreError> {
        for r in records {
            for d in &r.deliveries {
                if self.lanes.get(&d.route, &d.destination).is_some() {
                    continue;
                }
                let (lane, partitions) =
                    crate::lanes::ensure_lane(&self.client, &d.route, &d.destination).await?;
                self.lanes
                    .0
                    .push((d.route.clone(), d.destination.clone(), lane, partitions));
            }
        }
        Ok(())
    }
}

/// The lanes this committer has made or found: (route, destination, lane, partitions).
#[derive(Default)]
struct Lanes(Vec<(String, String, i32, i16)>);

impl Lanes {
    /// A handful of lanes: a scan beats hashing two strings per delivery (as the embedded
    /// index's `LaneIds` does).
    fn get(&self, route: &str, destination: &str) -> Option<(i32, i16)> {
        self.0
            .iter()
            .find(|(r, d, _, _)| r == route && d == destination)
            .map(|&(_, _, lane, partitions)| (lane, partitions))
    }
}

/// Every record's deliveries, with their message's id (`ids`, in the records' order), lane
/// and partition (the statement keeps those of messages that were new).
fn delivery_columns<'a>(
    lanes: &Lanes,
    records: &[&'a InboxRecord],
    ids: &[String],
) -> DeliveryColumns<'a> {
    let mut d = DeliveryColumns::default();
    for (r, message) in records.iter().zip(ids) {
        // A split message has several deliveries per destination, numbered in order.
        let mut parts: HashMap<&str, i32> = HashMap::new();
        for delivery in &r.deliveries {
            let part = parts.entry(delivery.destination.as_str()).or_insert(-1);
            *part += 1;
            let Some((lane, partitions)) = lanes.get(&delivery.route, &delivery.destination) else {
                continue;
            };
            d.lane.push(lane);
            d.partition
                .push(crate::lanes::partition_of(&delivery.order_key, partitions));
            d.message_id.push(message.clone());
            d.part.push(*part);
            d.order_key.push(delivery.order_key.as_str());
            d.payload.push(delivery.payload.as_deref());
            d.content_type
                .push(delivery.content_type.map(|c| c.as_str()));
        }
    }
    d
}

/// The messages of a batch, column by column (what `unnest` takes).
#[derive(Default)]
struct MessageColumns<'a> {
    id: Vec<String>,
    received_at: Vec<i64>,
    source: Vec<&'a str>,
    peer: Vec<Option<&'a str>>,
    content_type: Vec<&'a str>,
    status: Vec<&'a str>,
    sending_app: Vec<Option<&'a str>>,
    sending_facility: Vec<Option<&'a str>>,
    message_type: Vec<Option<&'a str>>,
    control_id: Vec<Option<&'a str>>,
    nhs_number: Vec<Option<&'a str>>,
    merged_nhs_number: Vec<Option<&'a str>>,
    error: Vec<Option<&'a str>>,
    ack: Vec<Option<&'a [u8]>>,
    raw_len: Vec<i64>,
    raw: Vec<&'a [u8]>,
    digest: Vec<Vec<u8>>,
    /// Set on accepted and filtered messages with a control id (schema v5).
    resend_key: Vec<Option<Vec<u8>>>,
}

impl<'a> MessageColumns<'a> {
    fn of(records: &[&'a InboxRecord]) -> MessageColumns<'a> {
        let mut m = MessageColumns::default();
        for r in records {
            let e = &r.envelope;
            let meta = &e.meta;
            m.id.push(e.id.to_string());
            m.received_at.push(e.received_at_ms);
            m.source.push(&meta.source);
            m.peer.push(meta.peer.as_deref());
            m.content_type.push(e.content_type.as_str());
            m.status.push(r.status.as_str());
            m.sending_app.push(meta.sending_application.as_deref());
            m.sending_facility.push(meta.sending_facility.as_deref());
            m.message_type.push(meta.message_type.as_deref());
            m.control_id.push(meta.control_id.as_deref());
            m.nhs_number.push(meta.nhs_number.as_deref());
            m.merged_nhs_number.push(meta.merged_nhs_number.as_deref());
            m.error.push(r.error.as_deref());
            m.ack.push(r.ack.as_deref());
            m.raw_len.push(i64::try_from(r.raw_len).unwrap_or(i64::MAX));
            m.raw.push(&e.raw);
            let digest = r
                .digest
                .unwrap_or_else(|| wyvern_core::content_digest(&e.raw));
            m.digest.push(digest[..].to_vec());
            m.resend_key.push(resend_key(r, &digest));
        }
        m
    }
}

/// What identifies a resend across nodes (`resend_key` of [`resend_key_of`]), for a record.
fn resend_key(r: &InboxRecord, digest: &wyvern_core::ContentDigest) -> Option<Vec<u8>> {
    let meta = &r.envelope.meta;
    resend_key_of(
        &meta.source,
        meta.sending_application.as_deref(),
        meta.sending_facility.as_deref(),
        meta.control_id.as_deref()?,
        matches!(r.status, InboxStatus::Accepted | InboxStatus::Filtered),
        digest,
    )
}

/// What identifies a resend across nodes: the route, the sender (MSH-3, MSH-4), the control
/// id and the content, for a message that was accepted or filtered (those a resend must not
/// repeat); 128 bits of SHA-256 over them, each ended by a 0 byte (none can hold one).
pub(crate) fn resend_key_of(
    source: &str,
    sending_app: Option<&str>,
    sending_facility: Option<&str>,
    control_id: &str,
    accepted_or_filtered: bool,
    digest: &wyvern_core::ContentDigest,
) -> Option<Vec<u8>> {
    if !accepted_or_filtered {
        return None;
    }
    let mut input = Vec::with_capacity(128);
    for part in [
        source,
        sending_app.unwrap_or(""),
        sending_facility.unwrap_or(""),
        control_id,
    ] {
        input.extend_from_slice(part.as_bytes());
        input.push(0);
    }
    input.extend_from_slice(digest);
    Some(wyvern_core::content_digest(&input).to_vec())
}

/// The deliveries of a batch's new messages, column by column.
#[derive(Default)]
struct DeliveryColumns<'a> {
    message_id: Vec<String>,
    lane: Vec<i32>,
    partition: Vec<i16>,
    part: Vec<i32>,
    order_key: Vec<&'a str>,
    payload: Vec<Option<&'a [u8]>>,
    content_type: Vec<Option<&'static str>>,
}
