//! The shared store's side of `wyvern store migrate`: whether any node is still running, and
//! the import of what the embedded store still owes its destinations.
//!
//! An import is one transaction per batch, so each batch's deliveries take one transaction id
//! and sequence numbers in the batch's order: the log order `(xid, seq)` every partition is
//! read in keeps each key's order across batches. It adds a message unless the store holds
//! its id (or a resend of it: `messages_resend`), and a delivery unless its message already
//! has one for that lane and part other than one moved away, so a re-run after a crash adds
//! nothing twice.

use std::time::Duration;

use tokio_postgres::Client;
use wyvern_store::{Imported, MoveBatch};

use crate::commit::resend_key_of;
use crate::lanes::{ensure_lane, partition_of};
use crate::{HEARTBEAT, PgStoreError};

/// How long after its last heartbeat a stopped node no longer counts as running.
pub const QUIET: Duration = Duration::from_secs(HEARTBEAT.as_secs() * 3);

/// Nodes heard within three heartbeats, or holding a lease that has not expired: while any
/// is, the store is in use and a migration must not run.
pub async fn live_nodes(client: &Client) -> Result<Vec<String>, PgStoreError> {
    let rows = client
        .query(
            "SELECT node FROM nodes WHERE seen_at > now() - make_interval(secs => $1) \
             UNION SELECT owner FROM partitions WHERE owner IS NOT NULL AND expires_at > now() \
             ORDER BY 1",
            &[&QUIET.as_secs_f64()],
        )
        .await?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

const INSERT_MESSAGES: &str = "
INSERT INTO messages (id, received_at, source, peer, content_type, status, sending_app,
    sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, raw, digest,
    node, resend_key)
SELECT id, received_at, source, peer, content_type, status, sending_app, sending_facility,
    message_type, control_id, nhs_number, error, ack, raw_len, raw, digest, 'migrated',
    CASE WHEN EXISTS (SELECT 1 FROM messages x WHERE x.resend_key = m.resend_key) THEN NULL
         ELSE m.resend_key END
FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[], $5::text[], $6::text[],
    $7::text[], $8::text[], $9::text[], $10::text[], $11::text[], $12::text[], $13::bytea[],
    $14::int8[], $15::bytea[], $16::bytea[], $17::bytea[]) WITH ORDINALITY
    AS m(id, received_at, source, peer, content_type, status, sending_app, sending_facility,
    message_type, control_id, nhs_number, error, ack, raw_len, raw, digest, resend_key, n)
ORDER BY n
ON CONFLICT (id) DO NOTHING";

/// How many of a batch's deliveries the store now owes (added, or held already and not moved
/// away): all of them, or the import is rolled back before the source is touched.
const OWED_NOW: &str = "
SELECT count(*) FROM unnest($1::text[], $2::int4[], $3::int4[]) AS d(message_id, lane, part)
WHERE EXISTS (
    SELECT 1 FROM messages m JOIN deliveries x ON x.message = m.seq
    LEFT JOIN delivery_exceptions e ON e.seq = x.seq
    WHERE m.id = d.message_id AND x.lane = d.lane AND x.part = d.part
      AND e.state IS DISTINCT FROM 'moved')";

const INSERT_DELIVERIES: &str = "
INSERT INTO deliveries (lane, partition, message, part, order_key, payload, content_type)
SELECT d.lane, d.partition, m.seq, d.part, d.order_key, d.payload, d.content_type
FROM unnest($1::text[], $2::int4[], $3::int2[], $4::int4[], $5::text[], $6::bytea[],
    $7::text[]) WITH ORDINALITY
    AS d(message_id, lane, partition, part, order_key, payload, content_type, n)
JOIN messages m ON m.id = d.message_id
WHERE NOT EXISTS (
    SELECT 1 FROM deliveries x LEFT JOIN delivery_exceptions e ON e.seq = x.seq
    WHERE x.message = m.seq AND x.lane = d.lane AND x.part = d.part
      AND e.state IS DISTINCT FROM 'moved')
ORDER BY d.n";

/// Adds a batch from another store (see the module doc), in one transaction.
pub async fn import(client: &mut Client, batch: &MoveBatch) -> Result<Imported, PgStoreError> {
    let mut lanes: Vec<(&str, &str, i32, i16)> = Vec::new();
    for d in &batch.deliveries {
        if !lanes
            .iter()
            .any(|(r, dst, _, _)| *r == d.route && *dst == d.destination)
        {
            let (lane, partitions) = ensure_lane(client, &d.route, &d.destination).await?;
            lanes.push((&d.route, &d.destination, lane, partitions));
        }
    }
    let ms = &batch.messages;
    // A message the store holds as a resend of another (the embedded store keeps two copies
    // an operator let through, or whose window had passed) goes in without the key: a key is
    // unique, and the copy must not be dropped. The same within the batch.
    let mut seen = std::collections::HashSet::new();
    let resend_keys: Vec<Option<Vec<u8>>> = ms
        .iter()
        .map(|m| {
            resend_key_of(
                &m.source,
                m.sending_app.as_deref(),
                m.sending_facility.as_deref(),
                m.control_id.as_deref()?,
                matches!(m.status.as_str(), "accepted" | "filtered"),
                &m.digest,
            )
            .filter(|key| seen.insert(key.clone()))
        })
        .collect();
    let tx = client.transaction().await?;
    let messages = tx
        .execute(
            INSERT_MESSAGES,
            &[
                &ms.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
                &ms.iter().map(|m| m.received_at_ms).collect::<Vec<_>>(),
                &ms.iter().map(|m| m.source.as_str()).collect::<Vec<_>>(),
                &ms.iter().map(|m| m.peer.as_deref()).collect::<Vec<_>>(),
                &ms.iter()
                    .map(|m| m.content_type.as_str())
                    .collect::<Vec<_>>(),
                &ms.iter().map(|m| m.status.as_str()).collect::<Vec<_>>(),
                &ms.iter()
                    .map(|m| m.sending_app.as_deref())
                    .collect::<Vec<_>>(),
                &ms.iter()
                    .map(|m| m.sending_facility.as_deref())
                    .collect::<Vec<_>>(),
                &ms.iter()
                    .map(|m| m.message_type.as_deref())
                    .collect::<Vec<_>>(),
                &ms.iter()
                    .map(|m| m.control_id.as_deref())
                    .collect::<Vec<_>>(),
                &ms.iter()
                    .map(|m| m.nhs_number.as_deref())
                    .collect::<Vec<_>>(),
                &ms.iter().map(|m| m.error.as_deref()).collect::<Vec<_>>(),
                &ms.iter().map(|m| m.ack.as_deref()).collect::<Vec<_>>(),
                &ms.iter().map(|m| m.raw_len).collect::<Vec<_>>(),
                &ms.iter().map(|m| m.raw.as_slice()).collect::<Vec<_>>(),
                &ms.iter().map(|m| &m.digest[..]).collect::<Vec<_>>(),
                &resend_keys,
            ],
        )
        .await?;
    let ds = &batch.deliveries;
    let lane_of = |route: &str, destination: &str| {
        lanes
            .iter()
            .find(|(r, d, _, _)| *r == route && *d == destination)
            .map(|&(_, _, lane, partitions)| (lane, partitions))
            .expect("every lane of the batch was made above")
    };
    let message_ids: Vec<&str> = ds.iter().map(|d| ms[d.message].id.as_str()).collect();
    let lane_ids: Vec<i32> = ds
        .iter()
        .map(|d| lane_of(&d.route, &d.destination).0)
        .collect();
    let parts: Vec<i32> = ds.iter().map(|d| d.part).collect();
    let deliveries = tx
        .execute(
            INSERT_DELIVERIES,
            &[
                &message_ids,
                &lane_ids,
                &ds.iter()
                    .map(|d| partition_of(&d.order_key, lane_of(&d.route, &d.destination).1))
                    .collect::<Vec<_>>(),
                &parts,
                &ds.iter().map(|d| d.order_key.as_str()).collect::<Vec<_>>(),
                &ds.iter().map(|d| d.payload.as_deref()).collect::<Vec<_>>(),
                &ds.iter()
                    .map(|d| d.content_type.as_deref())
                    .collect::<Vec<_>>(),
            ],
        )
        .await?;
    let owed: i64 = tx
        .query_one(OWED_NOW, &[&message_ids, &lane_ids, &parts])
        .await?
        .get(0);
    if usize::try_from(owed).unwrap_or(0) != ds.len() {
        // Dropped with the transaction: nothing of the batch is kept, the source is untouched.
        return Err(PgStoreError::Corrupt {
            what: format!(
                "only {owed} of a batch's {} deliveries would be owed by the shared store after \
                 the import; nothing was moved",
                ds.len()
            ),
        });
    }
    tx.commit().await?;
    Ok(Imported {
        messages,
        deliveries,
    })
}

/// A place in the shared store's log, across partitions: `(xid, seq)`, as a move reads it.
/// With every node stopped no transaction is in flight, so this order holds each key's.
pub type LogPosition = (u64, i64);

/// A delivery is owed (`d` the delivery, `p` its partition, `e` its exception row if any).
/// A partition's cursor is the first position not yet settled.
const OWED: &str = concat!(
    "CASE WHEN e.state IS NULL THEN ",
    crate::unsettled!(),
    " ELSE e.state IN ('retry', 'waiting') END"
);

const OWED_FROM: &str = "deliveries d JOIN lanes l ON l.lane = d.lane \
    JOIN partitions p ON p.lane = d.lane AND p.partition = d.partition \
    LEFT JOIN delivery_exceptions e ON e.seq = d.seq";

/// The keys held for a person, oldest first.
pub async fn held(client: &Client) -> Result<Vec<wyvern_store::HeldKey>, PgStoreError> {
    let rows = client
        .query(
            "SELECT l.route, l.destination, e.order_key, e.seq FROM delivery_exceptions e \
             JOIN lanes l ON l.lane = e.lane WHERE e.state = 'held' ORDER BY e.xid, e.seq",
            &[],
        )
        .await?;
    Ok(rows
        .iter()
        .map(|r| wyvern_store::HeldKey {
            route: r.get(0),
            destination: r.get(1),
            order_key: r.get(2),
            seq: r.get(3),
        })
        .collect())
}

/// Dead letters (they stay in this store).
pub async fn dead(client: &Client) -> Result<u64, PgStoreError> {
    let n: i64 = client
        .query_one(
            "SELECT count(*) FROM delivery_exceptions WHERE state = 'dead'",
            &[],
        )
        .await?
        .get(0);
    Ok(n.unsigned_abs())
}

/// The owed deliveries after `after`, in log order, at most `limit` and about `max_bytes` (at
/// least one); with the position of the last, to go on from.
pub async fn batch(
    client: &Client,
    after: LogPosition,
    limit: usize,
    max_bytes: usize,
) -> Result<(MoveBatch, Option<LogPosition>), PgStoreError> {
    let rows = client
        .query(
            &format!(
                "SELECT d.xid::text, d.seq, d.message, l.route, l.destination, d.part, \
                 d.order_key, d.payload, d.content_type FROM {OWED_FROM} \
                 WHERE (d.xid, d.seq) > ($1::text::xid8, $2) AND {OWED} \
                 ORDER BY d.xid, d.seq LIMIT $3"
            ),
            &[
                &after.0.to_string(),
                &after.1,
                &i64::try_from(limit).unwrap_or(i64::MAX),
            ],
        )
        .await?;
    let mut batch = MoveBatch::default();
    let mut message_seqs: Vec<i64> = Vec::new();
    let (mut bytes, mut last) = (0usize, None);
    for r in &rows {
        if bytes >= max_bytes {
            break;
        }
        let xid: &str = r.get(0);
        let xid: u64 = xid.parse().map_err(|_| PgStoreError::Corrupt {
            what: format!("a transaction id {xid:?}"),
        })?;
        let message_seq: i64 = r.get(2);
        let message = match message_seqs.iter().position(|&s| s == message_seq) {
            Some(i) => i,
            None => {
                let m = message(client, message_seq).await?;
                bytes += m.raw.len();
                batch.messages.push(m);
                message_seqs.push(message_seq);
                batch.messages.len() - 1
            }
        };
        let payload: Option<Vec<u8>> = r.get(7);
        bytes += payload.as_ref().map_or(0, Vec::len);
        batch.deliveries.push(wyvern_store::MovingDelivery {
            message,
            route: r.get(3),
            destination: r.get(4),
            part: r.get(5),
            order_key: r.get(6),
            payload,
            content_type: r.get(8),
        });
        last = Some((xid, r.get(1)));
    }
    Ok((batch, last))
}

async fn message(client: &Client, seq: i64) -> Result<wyvern_store::MovingMessage, PgStoreError> {
    let r = client
        .query_one(
            "SELECT id, received_at, source, peer, content_type, status, sending_app, \
             sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, raw, \
             digest FROM messages WHERE seq = $1",
            &[&seq],
        )
        .await?;
    let raw: Vec<u8> = r.get(14);
    let digest: Vec<u8> = r.get(15);
    Ok(wyvern_store::MovingMessage {
        id: r.get(0),
        received_at_ms: r.get(1),
        source: r.get(2),
        peer: r.get(3),
        content_type: r.get(4),
        status: r.get(5),
        sending_app: r.get(6),
        sending_facility: r.get(7),
        message_type: r.get(8),
        control_id: r.get(9),
        nhs_number: r.get(10),
        error: r.get(11),
        ack: r.get(12),
        raw_len: r.get(13),
        digest: wyvern_core::ContentDigest::try_from(digest.as_slice())
            .unwrap_or_else(|_| wyvern_core::content_digest(&raw)),
        raw,
    })
}

/// Marks every owed delivery up to `through` as moved and moves each partition's cursor past
/// them, in one transaction. Returns how many were marked.
pub async fn settle(
    client: &mut Client,
    through: LogPosition,
    now_ms: i64,
) -> Result<u64, PgStoreError> {
    let xid = through.0.to_string();
    let tx = client.transaction().await?;
    let moved = tx
        .execute(
            &format!(
                "INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, state, \
                 done_at) SELECT d.seq, d.xid, d.lane, d.partition, d.order_key, 'moved', $3 \
                 FROM {OWED_FROM} WHERE (d.xid, d.seq) <= ($1::text::xid8, $2) AND {OWED} \
                 ON CONFLICT (seq) DO UPDATE SET state = 'moved', done_at = excluded.done_at"
            ),
            &[&xid, &through.1, &now_ms],
        )
        .await?;
    // Each cursor goes just past its partition's last delivery up to `through`: below it,
    // every delivery now has an exception row or was delivered.
    tx.execute(
        "UPDATE partitions p SET done_xid = x.xid, done_seq = x.seq + 1 FROM ( \
             SELECT DISTINCT ON (lane, partition) lane, partition, xid, seq FROM deliveries \
             WHERE (xid, seq) <= ($1::text::xid8, $2) \
             ORDER BY lane, partition, xid DESC, seq DESC) x \
         WHERE p.lane = x.lane AND p.partition = x.partition \
           AND (x.xid, x.seq + 1) > (p.done_xid, p.done_seq)",
        &[&xid, &through.1],
    )
    .await?;
    tx.commit().await?;
    Ok(moved)
}
