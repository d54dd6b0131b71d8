//! Reading a partition's deliveries as a log, from its cursor, without ever skipping a row a
//! slower transaction has yet to commit.
//!
//! Sequence numbers are handed out when rows are inserted, not when they commit: with several
//! nodes (or two groups of one) in flight, seq 105 can be visible while 103 is not yet. A
//! cursor on seq alone would pass 103 and never come back. So each row carries the id of the
//! transaction that wrote it, and a read takes only rows whose transaction is older than the
//! reading snapshot's `xmin` — every such transaction has ended, so nothing below the cursor
//! can still appear — in `(xid, seq)` order (PgQ's technique). A transaction left open on the
//! database holds `xmin`, and so delivery, back: that shows as lag, never as a gap.

use tokio_postgres::Client;

use crate::{Lease, PgStoreError};

/// The condition every read of the log uses (`d` a delivery row): written by a transaction
/// older than the oldest one still running, so nothing before it can still appear.
pub(crate) const ENDED: &str = "d.xid < pg_snapshot_xmin(pg_current_snapshot())";

/// One delivery read from the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogRow {
    /// The cursor position just past this row is `(xid, seq)`.
    pub xid: u64,
    pub seq: i64,
    /// The message's `seq` in `messages`, and which of its deliveries to this lane.
    pub message: i64,
    pub part: i32,
    pub order_key: String,
    /// What to send: the delivery's own payload, or the message as received.
    pub payload: Vec<u8>,
    pub content_type: String,
}

/// Up to `limit` deliveries of the lease's partition after `after = (xid, seq)`, oldest first,
/// only from transactions that have ended.
pub async fn read_log(
    client: &Client,
    lease: &Lease,
    after: (u64, i64),
    limit: i64,
) -> Result<Vec<LogRow>, PgStoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT d.xid::text, d.seq, d.message, d.part, d.order_key,
                        COALESCE(d.payload, m.raw), COALESCE(d.content_type, m.content_type)
                 FROM deliveries d JOIN messages m ON m.seq = d.message
                 WHERE d.lane = $1 AND d.partition = $2
                   AND (d.xid, d.seq) > ($3::text::xid8, $4) AND {ENDED}
                 ORDER BY d.xid, d.seq
                 LIMIT $5"
            ),
            &[
                &lease.lane,
                &lease.partition,
                &after.0.to_string(),
                &after.1,
                &limit,
            ],
        )
        .await?;
    rows.iter()
        .map(|r| {
            let xid: String = r.get(0);
            Ok(LogRow {
                xid: xid.parse().map_err(|_| PgStoreError::Corrupt {
                    what: format!("a transaction id {xid:?}"),
                })?,
                seq: r.get(1),
                message: r.get(2),
                part: r.get(3),
                order_key: r.get(4),
                payload: r.get(5),
                content_type: r.get(6),
            })
        })
        .collect()
}
