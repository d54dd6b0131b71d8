//! A route's stored traffic read back in order, for shadow replay (`wyvern replay --shadow`):
//! each message with its bytes, the ACK it was sent, and what was queued for each destination.
//! Read in pages from a sequence number, so a long range holds one page in memory, and from a
//! read-only connection, so a running engine is not disturbed.

use rusqlite::Connection;

use crate::{InboxRow, StoreError};

/// One page of a route's messages received in `[since_ms, until_ms)`, oldest first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TrafficQuery {
    pub route: String,
    pub since_ms: i64,
    pub until_ms: i64,
    /// Only messages after this sequence number (0: from the start).
    pub after_seq: i64,
    pub limit: usize,
}

/// A stored message and what its route queued for each destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTraffic {
    /// With its bytes and ACK.
    pub message: InboxRow,
    /// (destination, what was queued: `None` is the message as received), in queue order.
    pub queued: Vec<(String, Option<Vec<u8>>)>,
}

/// The embedded store's page.
pub(crate) fn page(conn: &Connection, q: &TrafficQuery) -> Result<Vec<StoredTraffic>, StoreError> {
    let sql = format!(
        "SELECT {}, raw, ack FROM inbox \
         WHERE source = ?1 AND received_at >= ?2 AND received_at < ?3 AND seq > ?4 \
         ORDER BY seq LIMIT ?5",
        crate::reader::COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::Query)?;
    let limit = i64::try_from(q.limit.max(1)).unwrap_or(i64::MAX);
    let rows: Vec<InboxRow> = stmt
        .query_map(
            rusqlite::params![q.route, q.since_ms, q.until_ms, q.after_seq, limit],
            crate::reader::whole,
        )
        .map_err(StoreError::Query)?
        .collect::<Result<_, _>>()
        .map_err(StoreError::Query)?;
    let mut queued = conn
        .prepare_cached(
            "SELECT l.destination, d.payload FROM deliveries d JOIN lanes l ON l.lane = d.lane \
             WHERE d.message = ?1 ORDER BY d.seq",
        )
        .map_err(StoreError::Query)?;
    rows.into_iter()
        .map(|message| {
            let sent = queued
                .query_map([message.seq], |r| Ok((r.get(0)?, r.get(1)?)))
                .map_err(StoreError::Query)?
                .collect::<Result<_, _>>()
                .map_err(StoreError::Query)?;
            Ok(StoredTraffic {
                message,
                queued: sent,
            })
        })
        .collect()
}
