//! What people do with the outboxes: look at dead letters and a message's deliveries, put
//! dead letters back, give up on them, replay what a route received, and the depth metrics.

use rusqlite::{OptionalExtension, params};

use super::{FROM, ITEM, Outbox, OutboxItem, item};
use crate::StoreError;

impl Outbox {
    /// Dead letters (dead and held), newest first; optionally of one route / destination.
    pub fn dead_letters(
        &self,
        route: Option<&str>,
        destination: Option<&str>,
        limit: usize,
    ) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!(
            "SELECT {ITEM} FROM {FROM} WHERE e.state IN ('dead', 'held') \
             AND (?1 IS NULL OR l.route = ?1) AND (?2 IS NULL OR l.destination = ?2) \
             ORDER BY e.seq DESC LIMIT ?3"
        );
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::Query)?;
        let rows = stmt
            .query_map(params![route, destination, limit as i64], item)
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    /// Every delivery of one message, one row per destination (and part), oldest first.
    pub fn of_message(&self, message_id: &str) -> Result<Vec<OutboxItem>, StoreError> {
        let sql = format!("SELECT {ITEM} FROM {FROM} WHERE i.id = ?1 ORDER BY d.seq");
        let mut stmt = self.conn.prepare(&sql).map_err(StoreError::Query)?;
        let rows = stmt
            .query_map([message_id], item)
            .map_err(StoreError::Query)?;
        rows.collect::<Result<_, _>>().map_err(StoreError::Query)
    }

    pub fn get(&self, seq: i64) -> Result<Option<OutboxItem>, StoreError> {
        let sql = format!("SELECT {ITEM} FROM {FROM} WHERE d.seq = ?1");
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
        self.run(
            "UPDATE delivery_exceptions SET state = 'retry', attempts = 0, next_at = ?4, \
             retry_from = ?4, done_at = NULL WHERE state IN ('dead', 'held') \
             AND (?1 IS NULL OR seq = ?1) AND lane IN (SELECT lane FROM lanes \
             WHERE (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR destination = ?3))",
            params![seq, route, destination, now_ms],
        )
    }

    /// Sends again what a route received between `since_ms` and `until_ms`: every delivery of
    /// those messages that the cursor has passed (delivered, dead or waiting) is due again
    /// with fresh attempts. Receivers get idempotent writes, so a replay upserts rather than
    /// duplicates. A delivery moved to another store (`wyvern store migrate`) is that store's
    /// to replay.
    pub fn replay(
        &self,
        route: &str,
        destination: Option<&str>,
        since_ms: i64,
        until_ms: i64,
        now_ms: i64,
    ) -> Result<usize, StoreError> {
        self.run(
            "INSERT INTO delivery_exceptions (seq, lane, order_key, state, attempts, next_at, retry_from) \
             SELECT d.seq, d.lane, d.order_key, 'retry', 0, ?5, ?5 \
             FROM deliveries d JOIN lanes l ON l.lane = d.lane JOIN inbox i ON i.seq = d.message \
             WHERE l.route = ?1 AND (?2 IS NULL OR l.destination = ?2) AND d.seq < l.done_below \
             AND i.received_at >= ?3 AND i.received_at < ?4 \
             ON CONFLICT (seq) DO UPDATE SET state = 'retry', attempts = 0, next_at = ?5, \
             retry_from = ?5, done_at = NULL WHERE delivery_exceptions.state <> 'moved'",
            params![route, destination, since_ms, until_ms, now_ms],
        )
    }

    /// Marks dead letters as given up (kept for audit, no longer shown or blocking).
    pub fn purge(
        &self,
        seq: Option<i64>,
        route: Option<&str>,
        destination: Option<&str>,
    ) -> Result<usize, StoreError> {
        self.run(
            "UPDATE delivery_exceptions SET state = 'purged' WHERE state IN ('dead', 'held') \
             AND (?1 IS NULL OR seq = ?1) AND lane IN (SELECT lane FROM lanes \
             WHERE (?2 IS NULL OR route = ?2) AND (?3 IS NULL OR destination = ?3))",
            params![seq, route, destination],
        )
    }

    /// Deliveries not yet made and the receipt time of the oldest, per destination (for
    /// metrics and `wyvern status`): the log past the cursor, and the exceptions waiting for
    /// a retry or behind their key.
    pub fn depth(&self, route: &str, destination: &str) -> Result<(i64, Option<i64>), StoreError> {
        self.conn
            .query_row(
                "WITH l AS (SELECT lane, done_below FROM lanes WHERE route = ?1 AND destination = ?2), \
                 ahead AS (SELECT d.message FROM deliveries d, l WHERE d.lane = l.lane AND d.seq >= l.done_below), \
                 open AS (SELECT d.message FROM delivery_exceptions e JOIN deliveries d ON d.seq = e.seq, l \
                    WHERE e.lane = l.lane AND e.state IN ('retry', 'waiting')) \
                 SELECT (SELECT COUNT(*) FROM ahead) + (SELECT COUNT(*) FROM open), \
                    (SELECT received_at FROM inbox WHERE seq = \
                        (SELECT MIN(m) FROM (SELECT MIN(message) AS m FROM ahead \
                                             UNION ALL SELECT MIN(message) FROM open)))",
                params![route, destination],
                |r| Ok((r.get(0)?, r.get(1)?)),
            )
            .map_err(StoreError::Query)
    }
}
