//! A route's stored traffic read back in order, for shadow replay (`wyvern replay --shadow`):
//! each message with its bytes, the ACK it was sent, and what was queued for each destination.
//! Read in pages from a sequence number, each bounded in messages and in bytes, so a long
//! range holds one page in memory, and from a read-only connection, so a running engine is not
//! disturbed.

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
    /// The page stops once its messages' bytes pass this (a page holds at least one).
    pub max_bytes: usize,
}

/// What was queued for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Queued {
    pub destination: String,
    pub order_key: String,
    /// `None`: the message as received.
    pub payload: Option<Vec<u8>>,
}

/// A stored message and what its route queued for each destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredTraffic {
    /// With its bytes and ACK.
    pub message: InboxRow,
    /// In queue order.
    pub queued: Vec<Queued>,
}

/// The embedded store's page.
pub(crate) fn page(conn: &Connection, q: &TrafficQuery) -> Result<Vec<StoredTraffic>, StoreError> {
    // The running total of the bytes stops the page; the first row always fits.
    let sql = format!(
        "SELECT {c}, raw, ack FROM (SELECT {c}, raw, ack, \
            SUM(raw_len) OVER (ORDER BY seq) AS running FROM inbox \
            WHERE source = ?1 AND received_at >= ?2 AND received_at < ?3 AND seq > ?4 \
            ORDER BY seq LIMIT ?5) \
         WHERE running - raw_len < ?6 ORDER BY seq",
        c = crate::reader::COLUMNS
    );
    let mut stmt = conn.prepare_cached(&sql).map_err(StoreError::Query)?;
    let limit = i64::try_from(q.limit.max(1)).unwrap_or(i64::MAX);
    let budget = i64::try_from(q.max_bytes).unwrap_or(i64::MAX);
    let rows: Vec<InboxRow> = stmt
        .query_map(
            rusqlite::params![q.route, q.since_ms, q.until_ms, q.after_seq, limit, budget],
            crate::reader::whole,
        )
        .map_err(StoreError::Query)?
        .collect::<Result<_, _>>()
        .map_err(StoreError::Query)?;
    let mut queued = conn
        .prepare_cached(
            "SELECT l.destination, d.order_key, d.payload FROM deliveries d \
             JOIN lanes l ON l.lane = d.lane WHERE d.message = ?1 ORDER BY d.seq",
        )
        .map_err(StoreError::Query)?;
    rows.into_iter()
        .map(|message| {
            let sent = queued
                .query_map([message.seq], |r| {
                    Ok(Queued {
                        destination: r.get(0)?,
                        order_key: r.get(1)?,
                        payload: r.get(2)?,
                    })
                })
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
