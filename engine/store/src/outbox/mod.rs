//! The outboxes: what each destination still has to deliver, kept as a log with a cursor.
//!
//! Every destination of every route is a *lane*. Its deliveries are appended to one table by
//! the index thread, in the same transaction as their message, so a message that was
//! acknowledged always has its deliveries once it is indexed (and the journal replays both
//! after a crash). A lane's cursor (`done_below`) says how far its worker has settled the log:
//! every delivery below it was delivered or is in `delivery_exceptions` — waiting for a retry,
//! waiting behind an earlier message of its key, dead-lettered or held. Delivering a message
//! writes nothing per message; the cursor moves once per pass. Only what goes wrong costs a row.
//!
//! The worker's path is `lane.rs` (read a pass, settle it); what people do with dead letters,
//! replays and a message's history is `ops.rs`; retention is `retention.rs`.
//!
//! Updates here are not fsync'd: if a crash forgets that the cursor moved, what it covered is
//! delivered again — at-least-once, never skipped.

mod fence;
mod lane;
mod ops;

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, params};

use crate::StoreError;

pub use fence::Fence;
pub use lane::{Ahead, Pass, PassBudget, Settle};

/// A lane's id: one destination of one route.
pub type LaneId = i64;

/// A place in a lane's log: passes are read, and cursors move, in this order. The embedded
/// store has one partition and numbers its log by `seq` alone (`partition` and `xid` are 0).
/// A shared PostgreSQL store splits a lane into partitions by key, and orders each by the
/// writing transaction's id, then `seq`: sequence numbers from concurrent transactions
/// become visible out of order, their transactions' ids below the readers' horizon do not.
/// Positions of different partitions are never compared.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Position {
    pub partition: i16,
    pub xid: u64,
    pub seq: i64,
}

impl Position {
    /// A place in the embedded store's log.
    pub fn at(seq: i64) -> Position {
        Position {
            partition: 0,
            xid: 0,
            seq,
        }
    }
}

/// One message waiting for (or failed at, or delivered to) one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    /// Its number in the delivery log (`wyvern dlq` names it).
    pub seq: i64,
    /// Where it is in its lane's log (the embedded store's: `Position::at(seq)`).
    pub position: Position,
    pub message_id: String,
    /// Which of the message's parts (after a `split` step); 0 for an unsplit message.
    pub part: u32,
    pub route: String,
    pub destination: String,
    pub order_key: String,
    pub payload: Vec<u8>,
    pub attempts: u32,
    pub created_at_ms: i64,
    pub next_at_ms: i64,
    pub state: OutboxState,
    pub last_error: Option<String>,
    /// When a person last put it back (`dlq retry`, `replay`): its retries count from then.
    pub retry_from_ms: Option<i64>,
    /// What `payload` is.
    pub content_type: wyvern_core::ContentType,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OutboxState {
    /// Not delivered yet: new, waiting for a retry, or waiting behind its key.
    Pending,
    Delivered,
    /// Dead-lettered; its key went on.
    Dead,
    /// Dead-lettered; its key waits until a person retries or purges it.
    Held,
    /// A dead letter a person gave up on: kept for the record, no longer shown or blocking.
    Purged,
    /// Moved to another store to be delivered from there (`wyvern store migrate`).
    Moved,
}

impl OutboxState {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
            OutboxState::Held => "held",
            OutboxState::Purged => "purged",
            OutboxState::Moved => "moved",
        }
    }

    /// An exception row's state, or what the cursor says of a row without one.
    pub fn parse(s: &str) -> OutboxState {
        match s {
            "delivered" => OutboxState::Delivered,
            "dead" => OutboxState::Dead,
            "held" => OutboxState::Held,
            "purged" => OutboxState::Purged,
            "moved" => OutboxState::Moved,
            _ => OutboxState::Pending,
        }
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Delivered {
        at_ms: i64,
    },
    RetryAt {
        next_at_ms: i64,
        error: String,
    },
    /// Dead-lettered; `hold` stops its key.
    Dead {
        hold: bool,
        error: String,
        at_ms: i64,
    },
}

/// A read-write handle on the outboxes (one per worker or command).
#[derive(Debug)]
pub struct Outbox {
    pub(crate) conn: Connection,
}

/// The columns every [`OutboxItem`] is read from (`d` a delivery, `i` its message, `l` its
/// lane, `e` its exception row if any).
pub(crate) const ITEM: &str = "d.seq, i.id, l.route, l.destination, d.order_key, \
    COALESCE(d.payload, i.raw), \
    COALESCE(e.attempts, CASE WHEN d.seq < l.done_below THEN 1 ELSE 0 END), i.received_at, \
    COALESCE(e.next_at, 0), \
    COALESCE(e.state, CASE WHEN d.seq < l.done_below THEN 'delivered' ELSE 'pending' END), \
    e.last_error, d.part, e.retry_from, COALESCE(d.content_type, i.content_type)";

/// The tables [`ITEM`] reads.
pub(crate) const FROM: &str = "deliveries d JOIN inbox i ON i.seq = d.message \
    JOIN lanes l ON l.lane = d.lane LEFT JOIN delivery_exceptions e ON e.seq = d.seq";

pub(crate) fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    let seq = r.get(0)?;
    Ok(OutboxItem {
        seq,
        position: Position::at(seq),
        message_id: r.get(1)?,
        route: r.get(2)?,
        destination: r.get(3)?,
        order_key: r.get(4)?,
        payload: r.get::<_, Option<Vec<u8>>>(5)?.unwrap_or_default(),
        attempts: r.get(6)?,
        created_at_ms: r.get(7)?,
        next_at_ms: r.get(8)?,
        state: OutboxState::parse(&r.get::<_, String>(9)?),
        last_error: r.get(10)?,
        part: r.get(11)?,
        retry_from_ms: r.get(12)?,
        content_type: wyvern_core::ContentType::parse(&r.get::<_, String>(13)?)
            .unwrap_or(wyvern_core::ContentType::Hl7v2),
    })
}

impl OutboxItem {
    /// Where its retries' age (`max_age`) counts from: its receipt, or when a person last put
    /// it back.
    pub fn retries_since_ms(&self) -> i64 {
        self.retry_from_ms.unwrap_or(self.created_at_ms)
    }

    /// The id a receiver sees (file name, AMQP message id): the message id, with `.N` for
    /// part N of a split batch.
    pub fn delivery_id(&self) -> String {
        if self.part == 0 {
            self.message_id.clone()
        } else {
            format!("{}.{}", self.message_id, self.part)
        }
    }
}

impl Outbox {
    /// Opens the store's database (it must exist: the engine creates it).
    pub fn open(dir: &Path) -> Result<Outbox, StoreError> {
        // How long a worker waits for the write lock before its call fails as busy.
        const LOCK_WAIT: Duration = Duration::from_secs(10);
        let mut conn = crate::schema::connect(dir, OpenFlags::default(), LOCK_WAIT)?;
        // Checkpoints belong to the store's checkpoint thread: left automatic here, every
        // worker's commit past 1,000 WAL pages checkpointed (and fsync'd) the whole index on
        // the delivery path.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA wal_autocheckpoint = 0;")
            .map_err(StoreError::Query)?;
        // The same bound, waited in short steps rather than SQLite's growing sleeps.
        crate::schema::wait_in_short_steps(&mut conn, LOCK_WAIT)?;
        Ok(Outbox { conn })
    }
}

/// What a delivery worker needs of the store, and all it may use: the seam a shared backend
/// (several engines on one PostgreSQL) implements beside the embedded one. Blocking calls: a
/// worker makes them off its async task.
pub trait DeliveryLog: Send + std::fmt::Debug {
    /// The lane of one route destination, made if it is new.
    fn lane(&self, route: &str, destination: &str) -> Result<LaneId, StoreError>;
    /// What to send now: the due exception heads, then the log from the cursor (`lane.rs`).
    fn next_pass(
        &self,
        lane: LaneId,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
        one_per_key: bool,
        ahead: Option<&Ahead>,
    ) -> Result<Pass, StoreError>;
    /// Records a pass's outcomes and moves the cursor, all or nothing.
    fn settle(&self, lane: LaneId, settle: &Settle) -> Result<(), StoreError>;
    /// The worker is stopping: gives back what it holds, so that other nodes take over at
    /// once rather than when its leases expire. The embedded store holds nothing.
    fn release(&self) -> Result<(), StoreError> {
        Ok(())
    }
}

/// The id of a lane, made (with its cursor at the start) if it is new.
pub(crate) fn lane_id(
    conn: &Connection,
    route: &str,
    destination: &str,
) -> Result<LaneId, StoreError> {
    conn.prepare_cached("INSERT OR IGNORE INTO lanes (route, destination) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(params![route, destination]))
        .map_err(StoreError::Write)?;
    conn.prepare_cached("SELECT lane FROM lanes WHERE route = ?1 AND destination = ?2")
        .and_then(|mut s| s.query_row(params![route, destination], |r| r.get(0)))
        .map_err(StoreError::Query)
}

/// Lane ids the index thread has looked up during one transaction.
#[derive(Default)]
pub(crate) struct LaneIds(Vec<(String, String, LaneId)>);

impl LaneIds {
    pub(crate) fn get(
        &mut self,
        conn: &Connection,
        route: &str,
        destination: &str,
    ) -> Result<LaneId, StoreError> {
        // A handful of lanes: a scan beats hashing two strings per delivery.
        if let Some((_, _, id)) = self
            .0
            .iter()
            .find(|(r, d, _)| r == route && d == destination)
        {
            return Ok(*id);
        }
        let id = lane_id(conn, route, destination)?;
        self.0.push((route.to_owned(), destination.to_owned(), id));
        Ok(id)
    }
}
