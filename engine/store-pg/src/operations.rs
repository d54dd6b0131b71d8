//! [`Operations`] on the shared store: the cluster's messages searched and read, its dead
//! letters listed, put back, given up, and replays, for the operator API of any node and the
//! CLI. A retry or a replay writes a
//! `retry` exception row due now; whichever node holds the partition sends it at its next
//! pass, in its key's order. A replay locks the messages it replays (`FOR KEY SHARE`), so
//! retention on another node cannot remove one between the replay's read and its write (an
//! exception row left without its delivery would hold its key for ever); a delivery moved to
//! another store is that store's to replay.

use tokio_postgres::Row;
use wyvern_core::ContentType;
use wyvern_store::{
    InboxQuery, InboxRow, Operations, OutboxItem, OutboxState, Position, Replay, Selection,
    StatusCount, StoreFuture,
};

use crate::{PgStoreError, Session};

/// The operator's handle: one connection, made on first use and again after it breaks.
#[derive(Debug)]
pub struct PgOperations {
    session: Session,
}

impl PgOperations {
    pub fn new(url: impl Into<String>) -> PgOperations {
        PgOperations {
            session: Session::new(url),
        }
    }
}

/// The columns an [`OutboxItem`] is read from (`d` a delivery, `m` its message, `l` its lane,
/// `p` its partition, `e` its exception row if any).
const ITEM: &str = concat!(
    "d.seq, d.xid::text, d.partition, m.id, d.part, l.route, l.destination, ",
    "d.order_key, COALESCE(d.payload, m.raw), COALESCE(e.attempts, 0), m.received_at, ",
    "COALESCE(e.next_at, 0), COALESCE(e.state, CASE WHEN ",
    crate::unsettled!(),
    " THEN 'pending' ELSE 'delivered' END), e.last_error, e.retry_from, ",
    "COALESCE(d.content_type, m.content_type)"
);

/// [`crate::unsettled`], for `format!`.
const UNSETTLED: &str = crate::unsettled!();

const FROM: &str = "deliveries d JOIN messages m ON m.seq = d.message \
    JOIN lanes l ON l.lane = d.lane \
    JOIN partitions p ON p.lane = d.lane AND p.partition = d.partition \
    LEFT JOIN delivery_exceptions e ON e.seq = d.seq";

/// Dead letters of a selection (`$1` seq, `$2` route, `$3` destination, each NULL for any).
const SELECTED: &str = "state IN ('dead', 'held') AND ($1::int8 IS NULL OR seq = $1) \
    AND lane IN (SELECT lane FROM lanes WHERE ($2::text IS NULL OR route = $2) \
    AND ($3::text IS NULL OR destination = $3))";

fn item(r: &Row) -> Result<OutboxItem, PgStoreError> {
    let seq: i64 = r.get(0);
    let xid: &str = r.get(1);
    let content_type: String = r.get(15);
    Ok(OutboxItem {
        seq,
        position: Position {
            partition: r.get(2),
            xid: xid.parse().map_err(|_| PgStoreError::Corrupt {
                what: format!("a transaction id {xid:?}"),
            })?,
            seq,
        },
        message_id: r.get(3),
        part: u32::try_from(r.get::<_, i32>(4)).unwrap_or(0),
        route: r.get(5),
        destination: r.get(6),
        order_key: r.get(7),
        payload: r.get(8),
        attempts: u32::try_from(r.get::<_, i32>(9)).unwrap_or(0),
        created_at_ms: r.get(10),
        next_at_ms: r.get(11),
        state: OutboxState::parse(r.get(12)),
        last_error: r.get(13),
        retry_from_ms: r.get(14),
        content_type: ContentType::parse(&content_type).unwrap_or(ContentType::Hl7v2),
    })
}

/// The columns an [`InboxRow`] is read from (a message's summary; `raw` and `ack` follow when
/// it is read whole).
const MESSAGE: &str = "seq, id, received_at, source, peer, content_type, status, sending_app, \
    sending_facility, message_type, control_id, nhs_number, error, raw_len";

fn message(r: &Row, whole: bool) -> InboxRow {
    InboxRow {
        seq: r.get(0),
        id: r.get(1),
        received_at_ms: r.get(2),
        source: r.get(3),
        peer: r.get(4),
        content_type: r.get(5),
        status: r.get(6),
        sending_application: r.get(7),
        sending_facility: r.get(8),
        message_type: r.get(9),
        control_id: r.get(10),
        nhs_number: r.get(11),
        error: r.get(12),
        raw_len: r.get(13),
        raw: whole.then(|| r.get(14)),
        ack: if whole { r.get(15) } else { None },
    }
}

impl Operations for PgOperations {
    fn messages(&self, q: InboxQuery) -> StoreFuture<'_, Vec<InboxRow>> {
        Box::pin(self.session.run(async move |c| {
            let limit = if q.limit == 0 { 50 } else { q.limit };
            let status = q.status.map(|s| s.as_str());
            let rows = c
                .query(
                    &format!(
                        "SELECT {MESSAGE} FROM messages \
                         WHERE ($1::text IS NULL OR control_id = $1) \
                           AND ($2::text IS NULL OR nhs_number = $2) \
                           AND ($3::text IS NULL OR status = $3) \
                           AND ($4::text IS NULL OR source = $4) \
                           AND ($5::int8 IS NULL OR seq < $5) \
                         ORDER BY seq DESC LIMIT $6"
                    ),
                    &[
                        &q.control_id,
                        &q.nhs_number,
                        &status,
                        &q.source,
                        &q.before_seq,
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
            Ok(rows.iter().map(|r| message(r, false)).collect())
        }))
    }

    fn message(&self, id_or_seq: String) -> StoreFuture<'_, Option<InboxRow>> {
        Box::pin(self.session.run(async move |c| {
            let sql = format!("SELECT {MESSAGE}, raw, ack FROM messages WHERE ");
            let row = match id_or_seq.parse::<i64>() {
                Ok(seq) => c.query_opt(&(sql + "seq = $1"), &[&seq]).await?,
                Err(_) => {
                    c.query_opt(&(sql + "id = $1"), &[&id_or_seq.to_ascii_uppercase()])
                        .await?
                }
            };
            Ok(row.map(|r| message(&r, true)))
        }))
    }

    fn traffic(
        &self,
        q: wyvern_store::TrafficQuery,
    ) -> StoreFuture<'_, Vec<wyvern_store::StoredTraffic>> {
        Box::pin(self.session.run(async move |c| {
            let limit = i64::try_from(q.limit.max(1)).unwrap_or(i64::MAX);
            let budget = i64::try_from(q.max_bytes).unwrap_or(i64::MAX);
            // Sequence numbers are taken at insert, and transactions commit in any order: a
            // message of the last seconds may still be committing below a number already
            // read. Those seconds are left to a later run (the database's clock).
            let rows = c
                .query(
                    &format!(
                        "SELECT {MESSAGE}, raw, ack FROM (SELECT {MESSAGE}, raw, ack, \
                            (SUM(raw_len) OVER (ORDER BY seq))::bigint AS running FROM messages \
                            WHERE source = $1 AND received_at >= $2 \
                            AND received_at < LEAST($3, (EXTRACT(EPOCH FROM now()) * 1000)::bigint - 5000) \
                            AND seq > $4 ORDER BY seq LIMIT $5) t \
                         WHERE running - raw_len < $6 ORDER BY seq"
                    ),
                    &[&q.route, &q.since_ms, &q.until_ms, &q.after_seq, &limit, &budget],
                )
                .await?;
            let mut out = Vec::with_capacity(rows.len());
            for r in &rows {
                let message = message(r, true);
                let queued = c
                    .query(
                        "SELECT l.destination, d.order_key, d.payload FROM deliveries d \
                         JOIN lanes l ON l.lane = d.lane WHERE d.message = $1 \
                         ORDER BY d.part, d.xid, d.seq",
                        &[&message.seq],
                    )
                    .await?
                    .iter()
                    .map(|d| wyvern_store::Queued {
                        destination: d.get(0),
                        order_key: d.get(1),
                        payload: d.get(2),
                    })
                    .collect();
                out.push(wyvern_store::StoredTraffic { message, queued });
            }
            Ok(out)
        }))
    }

    fn deliveries_of(&self, message_id: String) -> StoreFuture<'_, Vec<OutboxItem>> {
        Box::pin(self.session.run(async move |c| {
            let rows = c
                .query(
                    &format!("SELECT {ITEM} FROM {FROM} WHERE m.id = $1 ORDER BY d.xid, d.seq"),
                    &[&message_id],
                )
                .await?;
            rows.iter().map(item).collect()
        }))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        Box::pin(self.session.run(async move |c| {
            let rows = c
                .query(
                    "SELECT status, count(*) FROM messages GROUP BY status ORDER BY status",
                    &[],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| StatusCount {
                    status: r.get(0),
                    count: r.get(1),
                })
                .collect())
        }))
    }

    fn lanes_of(&self, nhs_number: String) -> StoreFuture<'_, Vec<(String, String)>> {
        Box::pin(self.session.run(async move |c| {
            let rows = c
                .query(
                    // The patient, and every patient merges folded into it, however many
                    // merges back (UNION ends a cycle), from the merges kept and those
                    // retention noted; then their lanes, likewise (schema v8).
                    "WITH RECURSIVE n(nhs) AS ( \
                         SELECT $1::text \
                         UNION SELECT x.merged_away FROM n JOIN ( \
                             SELECT nhs_number AS survivor, merged_nhs_number AS merged_away \
                             FROM messages WHERE merged_nhs_number IS NOT NULL \
                             UNION ALL SELECT survivor, merged_away FROM patient_merges) x \
                         ON x.survivor = n.nhs) \
                     SELECT route, destination FROM lanes WHERE lane IN ( \
                         SELECT d.lane FROM messages m JOIN deliveries d ON d.message = m.seq \
                         WHERE m.nhs_number IN (SELECT nhs FROM n) \
                         UNION SELECT lane FROM patient_lanes \
                         WHERE nhs_number IN (SELECT nhs FROM n)) \
                     ORDER BY route, destination",
                    &[&nhs_number],
                )
                .await?;
            Ok(rows.iter().map(|r| (r.get(0), r.get(1))).collect())
        }))
    }

    fn depth(&self, route: String, destination: String) -> StoreFuture<'_, (i64, Option<i64>)> {
        Box::pin(
            self.session
                .run(async move |c| crate::lane_depth(c, &route, &destination).await),
        )
    }

    fn dead_letters(
        &self,
        route: Option<String>,
        destination: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<OutboxItem>> {
        Box::pin(self.session.run(async move |c| {
            let rows = c
                .query(
                    &format!(
                        "SELECT {ITEM} FROM {FROM} WHERE e.state IN ('dead', 'held') \
                         AND ($1::text IS NULL OR l.route = $1) \
                         AND ($2::text IS NULL OR l.destination = $2) \
                         ORDER BY e.seq DESC LIMIT $3"
                    ),
                    &[
                        &route,
                        &destination,
                        &i64::try_from(limit).unwrap_or(i64::MAX),
                    ],
                )
                .await?;
            rows.iter().map(item).collect()
        }))
    }

    fn delivery(&self, seq: i64) -> StoreFuture<'_, Option<OutboxItem>> {
        Box::pin(self.session.run(async move |c| {
            c.query_opt(
                &format!("SELECT {ITEM} FROM {FROM} WHERE d.seq = $1"),
                &[&seq],
            )
            .await?
            .as_ref()
            .map(item)
            .transpose()
        }))
    }

    fn requeue(&self, which: Selection, now_ms: i64) -> StoreFuture<'_, usize> {
        Box::pin(self.session.run(async move |c| {
            let n = c
                .execute(
                    &format!(
                        "UPDATE delivery_exceptions SET state = 'retry', attempts = 0, \
                         next_at = $4, retry_from = $4, done_at = NULL WHERE {SELECTED}"
                    ),
                    &[&which.seq, &which.route, &which.destination, &now_ms],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        }))
    }

    fn purge(&self, which: Selection) -> StoreFuture<'_, usize> {
        Box::pin(self.session.run(async move |c| {
            let n = c
                .execute(
                    &format!("UPDATE delivery_exceptions SET state = 'purged' WHERE {SELECTED}"),
                    &[&which.seq, &which.route, &which.destination],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        }))
    }

    fn replay(&self, r: Replay, now_ms: i64) -> StoreFuture<'_, usize> {
        Box::pin(self.session.run(async move |c| {
            let n = c
                .execute(
                    &format!(
                        "INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, state, \
                         attempts, next_at, retry_from) \
                     SELECT d.seq, d.xid, d.lane, d.partition, d.order_key, 'retry', 0, $5, $5 \
                     FROM deliveries d JOIN lanes l ON l.lane = d.lane \
                     JOIN partitions p ON p.lane = d.lane AND p.partition = d.partition \
                     JOIN messages m ON m.seq = d.message \
                     WHERE l.route = $1 AND ($2::text IS NULL OR l.destination = $2) \
                       AND NOT {UNSETTLED} \
                       AND m.received_at >= $3 AND m.received_at < $4 \
                     FOR KEY SHARE OF m \
                     ON CONFLICT (seq) DO UPDATE SET state = 'retry', attempts = 0, \
                         next_at = $5, retry_from = $5, done_at = NULL \
                     WHERE delivery_exceptions.state <> 'moved'"
                    ),
                    &[&r.route, &r.destination, &r.since_ms, &r.until_ms, &now_ms],
                )
                .await?;
            Ok(usize::try_from(n).unwrap_or(usize::MAX))
        }))
    }
}
