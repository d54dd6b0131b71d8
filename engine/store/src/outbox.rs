//! The outboxes: what each destination still has to deliver, read and updated by its delivery
//! worker, and the dead letters people look at with `wyvern dlq`.
//!
//! Rows are created by the index thread in the same transaction as their inbox row, so a
//! message that was acknowledged always has its outbox entries once it is indexed (and the
//! journal replays both after a crash). Updates here are not fsync'd: if a crash forgets that a
//! row was delivered, it is delivered again — at-least-once, never lost.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::StoreError;

/// One message waiting for (or failed at) one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxItem {
    pub seq: i64,
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
    Pending,
    Delivered,
    /// Dead-lettered; its key went on.
    Dead,
    /// Dead-lettered; its key waits until a person retries or purges it.
    Held,
}

impl OutboxState {
    pub fn as_str(&self) -> &'static str {
        match self {
            OutboxState::Pending => "pending",
            OutboxState::Delivered => "delivered",
            OutboxState::Dead => "dead",
            OutboxState::Held => "held",
        }
    }

    fn parse(s: &str) -> OutboxState {
        match s {
            "delivered" => OutboxState::Delivered,
            "dead" => OutboxState::Dead,
            "held" => OutboxState::Held,
            _ => OutboxState::Pending,
        }
    }
}

/// What became of one delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Update {
    Delivered {
        receipt: String,
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

/// The heads a worker can send now, and when the next waiting one falls due.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DueHeads {
    pub due: Vec<OutboxItem>,
    /// The earliest `next_at` of a head waiting for its retry; `None` when none waits, or when
    /// something is due (the worker does not sleep then).
    pub next_at_ms: Option<i64>,
}

/// A read-write handle on the outbox tables (one per worker or command).
#[derive(Debug)]
pub struct Outbox {
    pub(crate) conn: Connection,
}

const ITEM: &str = "o.seq, o.message_id, o.route, o.destination, o.order_key, COALESCE(o.payload, i.raw), \
    o.attempts, o.created_at, o.next_at, o.state, o.last_error, o.part, o.retry_from, \
    COALESCE(o.content_type, i.content_type)";

/// The oldest open row of every key of destination (?1, ?2): a key's head, held or not.
const HEADS: &str = "SELECT MIN(seq) FROM outbox WHERE route = ?1 AND destination = ?2 \
    AND state IN ('pending', 'held') GROUP BY order_key";

fn item(r: &rusqlite::Row<'_>) -> rusqlite::Result<OutboxItem> {
    Ok(OutboxItem {
        seq: r.get(0)?,
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
        let conn = crate::schema::connect(dir, OpenFlags::default(), Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA synchronous = NORMAL;")
            .map_err(StoreError::Query)?;
        Ok(Outbox { conn })
    }

    /// The oldest open row of every key of one destination (a held head blocks its key and is
    /// returned so the caller can see it), oldest first.
    pub fn heads(
        &self,
        route: &str,
        destination: &str,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM} FROM outbox o JOIN inbox i ON i.id = o.message_id WHERE o.seq IN ({HEADS}) \
             ORDER BY o.seq LIMIT ?3"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(StoreError::Query)?;
        let rows = stmt
            .query_map(params![route, destination, limit as i64], item)
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    /// What a worker may send now: the head of every key that is neither held nor waiting for
    /// a retry, oldest first, at most `limit` and about `max_bytes` of payload (see
    /// [`Outbox::budgeted`]); and when the earliest waiting head falls due.
    pub fn due_heads(
        &self,
        route: &str,
        destination: &str,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<DueHeads, StoreError> {
        // Held and waiting heads are skipped *before* the limit: applied after, 512 of them
        // hid every other key for good.
        let due = self.budgeted(
            &format!("o.seq IN ({HEADS}) AND o.state = 'pending' AND o.next_at <= ?3"),
            [&route, &destination, &now_ms],
            limit,
            max_bytes,
        )?;
        // Only a worker with nothing to send sleeps, so only then does it need to know until
        // when (a second GROUP BY over the open rows on every busy pass cost throughput).
        let next_at_ms = if due.is_empty() {
            self.conn
                .prepare_cached(&format!(
                    "SELECT MIN(next_at) FROM outbox WHERE seq IN ({HEADS}) AND state = 'pending' AND next_at > ?3"
                ))
                .and_then(|mut s| s.query_row(params![route, destination, now_ms], |r| r.get(0)))
                .map_err(StoreError::Query)?
        } else {
            None
        };
        Ok(DueHeads { due, next_at_ms })
    }

    /// The open rows of one key, oldest first, within `limit` and `max_bytes` (for
    /// destinations that pipeline a key's messages).
    pub fn key_rows(
        &self,
        route: &str,
        destination: &str,
        order_key: &str,
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        self.budgeted(
            "o.route = ?1 AND o.destination = ?2 AND o.order_key = ?3 AND o.state IN ('pending', 'held')",
            [&route, &destination, &order_key],
            limit,
            max_bytes,
        )
    }

    /// The rows `filter` selects (a condition on `o`, with parameters ?1–?3), oldest first: at
    /// most `limit`, and none once `max_bytes` of payload come before it — the first always,
    /// so a message larger than the budget still goes, alone. Rows are stepped through one at
    /// a time and the rest never read, so a pass holds about `max_bytes` in memory however
    /// large the messages (2,048 × 16 MiB was possible).
    fn budgeted(
        &self,
        filter: &str,
        filter_params: [&dyn rusqlite::ToSql; 3],
        limit: usize,
        max_bytes: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM} FROM outbox o JOIN inbox i ON i.id = o.message_id WHERE {filter} ORDER BY o.seq LIMIT ?4"
        );
        let mut stmt = self.conn.prepare_cached(&sql).map_err(StoreError::Query)?;
        let [a, b, c] = filter_params;
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        let mut out = Vec::new();
        let mut taken = 0usize;
        for row in stmt
            .query_map(params![a, b, c, limit], item)
            .map_err(StoreError::Query)?
        {
            if taken >= max_bytes {
                break;
            }
            let row = row.map_err(StoreError::Query)?;
            taken = taken.saturating_add(row.payload.len());
            out.push(row);
        }
        Ok(out)
    }

    /// Records many outcomes in one transaction.
    pub fn record(&self, updates: &[(i64, Update)]) -> Result<(), StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(StoreError::Write)?;
        for (seq, u) in updates {
            match u {
                Update::Delivered { receipt, at_ms } => self.delivered(*seq, receipt, *at_ms)?,
                Update::RetryAt { next_at_ms, error } => self.retry_at(*seq, *next_at_ms, error)?,
                Update::Dead { hold, error, at_ms } => self.dead(*seq, *hold, error, *at_ms)?,
            }
        }
        tx.commit().map_err(StoreError::Write)
    }

    pub fn delivered(&self, seq: i64, receipt: &str, now_ms: i64) -> Result<(), StoreError> {
        self.update("UPDATE outbox SET state = 'delivered', attempts = attempts + 1, done_at = ?2, receipt = ?3, last_error = NULL WHERE seq = ?1", params![seq, now_ms, receipt])
    }

    pub fn retry_at(&self, seq: i64, next_at_ms: i64, error: &str) -> Result<(), StoreError> {
        self.update("UPDATE outbox SET attempts = attempts + 1, next_at = ?2, last_error = ?3 WHERE seq = ?1", params![seq, next_at_ms, error])
    }

    pub fn dead(&self, seq: i64, hold: bool, error: &str, now_ms: i64) -> Result<(), StoreError> {
        let state = if hold { "held" } else { "dead" };
        self.update("UPDATE outbox SET state = ?2, attempts = attempts + 1, done_at = ?3, last_error = ?4 WHERE seq = ?1", params![seq, state, now_ms, error])
    }

    fn update(&self, sql: &str, p: impl rusqlite::Params) -> Result<(), StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(StoreError::Write)?;
        stmt.execute(p).map_err(StoreError::Write)?;
        Ok(())
    }

    /// Dead letters (dead and held), newest first; optionally of one route / destination.
    pub fn dead_letters(
        &self,
        route: Option<&str>,
        destination: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM} FROM outbox o JOIN inbox i ON i.id = o.message_id WHERE o.state IN ('dead', 'held') \
             AND (?1 IS NULL OR o.route = ?1) AND (?2 IS NULL OR o.destination = ?2) ORDER BY o.seq DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::Query)?;
        let rows = stmt
            .query_map(params![route, destination, limit as i64], item)
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    /// Every delivery of one message, one row per destination (and part), oldest first.
    pub fn of_message(&self, message_id: &str) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM} FROM outbox o JOIN inbox i ON i.id = o.message_id WHERE o.message_id = ?1 ORDER BY o.seq"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::Query)?;
        let rows = stmt
            .query_map([message_id], item)
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    pub fn get(&self, seq: i64) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM} FROM outbox o JOIN inbox i ON i.id = o.message_id WHERE o.seq = ?1"
        );
        self.conn
            .query_row(&sql, [seq], item)
            .optional()
            .map_err(StoreError::Query)
    }

    /// Puts dead letters back in the queue with fresh attempts (one by seq, or all matching).
    pub fn requeue(
        &self,
        seq: Option<i64>,
        route: Option<&str>,
        destination: Option<&str>,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?4, retry_from = ?4, done_at = NULL \
                 WHERE state IN ('dead', 'held') AND (?1 IS NULL OR seq = ?1) AND (?2 IS NULL OR route = ?2) \
                 AND (?3 IS NULL OR destination = ?3)",
                params![seq, route, destination, now_ms],
            )
            .map_err(StoreError::Write)
    }

    /// Sends again what a route received between `since_ms` and `until_ms`: every outbox row
    /// of those messages (delivered, dead or pending) goes back to pending with fresh attempts.
    /// Receivers get idempotent writes, so a replay upserts rather than duplicates.
    pub fn replay(
        &self,
        route: &str,
        destination: Option<&str>,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'pending', attempts = 0, next_at = ?5, retry_from = ?5, done_at = NULL \
                 WHERE route = ?1 AND (?2 IS NULL OR destination = ?2) AND created_at >= ?3 AND created_at < ?4",
                params![route, destination, since_ms, until_ms, now_ms],
            )
            .map_err(StoreError::Write)
    }

    /// Marks dead letters as given up (kept for audit, no longer shown or blocking).
    pub fn purge(
        &self,
        seq: Option<i64>,
        route: Option<&str>,
        destination: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.conn
            .execute(
                "UPDATE outbox SET state = 'purged' WHERE state IN ('dead', 'held') AND (?1 IS NULL OR seq = ?1) \
                 AND (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR destination = ?3)",
                params![seq, route, destination],
            )
            .map_err(StoreError::Write)
    }

    /// Open rows and the age of the oldest, per destination (for metrics and `wyvern status`).
    pub fn depth(&self, route: &str, destination: &str) -> Result<(i64, Option<i64>), StoreError> {
        self.conn
            .query_row(
                "SELECT COUNT(*), MIN(created_at) FROM outbox WHERE route = ?1 AND destination = ?2 AND state = 'pending'",
                params![route, destination],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::Query)
    }
}
