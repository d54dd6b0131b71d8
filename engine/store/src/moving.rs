//! What the embedded store still owes its destinations, taken out to move to another store
//! (`wyvern store migrate`), and the import of what another store moves in.
//!
//! A delivery is *owed* when it is past its lane's cursor with no exception row, or its
//! exception is a retry or a wait behind its key. Those are moved, in the log's order (so each
//! key's order survives), with their message. Dead letters stay where they are; a held key
//! makes the move refuse (the rows behind it would lose their place in the key's order).
//!
//! The move is safe to interrupt: the target's import skips what it already holds, and the
//! source is settled last, in one transaction ([`EmbeddedMove::settle`]): each moved delivery
//! gets an exception row in state `moved` and its lane's cursor goes past it. A crash before
//! the settle leaves the source as it was, and a re-run imports nothing twice. Run with the
//! engine stopped; the caller holds the store's lock (an open [`crate::Store`]) throughout.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};

use crate::StoreError;

/// A message on its way to another store, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovingMessage {
    pub id: String,
    pub received_at_ms: i64,
    pub source: String,
    pub peer: Option<String>,
    pub content_type: String,
    pub status: String,
    pub sending_app: Option<String>,
    pub sending_facility: Option<String>,
    pub message_type: Option<String>,
    pub control_id: Option<String>,
    pub nhs_number: Option<String>,
    pub error: Option<String>,
    pub ack: Option<Vec<u8>>,
    pub raw_len: i64,
    pub raw: Vec<u8>,
    pub digest: wyvern_core::ContentDigest,
}

/// A delivery still owed, on its way with its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MovingDelivery {
    /// Its message: an index into [`MoveBatch::messages`].
    pub message: usize,
    pub route: String,
    pub destination: String,
    pub part: i32,
    pub order_key: String,
    /// What to send, when not the message as received.
    pub payload: Option<Vec<u8>>,
    pub content_type: Option<String>,
}

/// Some owed deliveries, in their lanes' log order, with their messages.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MoveBatch {
    pub messages: Vec<MovingMessage>,
    pub deliveries: Vec<MovingDelivery>,
}

/// A key that waits for a person: a dead letter with `on_permanent: hold`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeldKey {
    pub route: String,
    pub destination: String,
    pub order_key: String,
    /// The held delivery's number (what `wyvern dlq retry|purge` takes).
    pub seq: i64,
}

/// What an import added (the rest it already held).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub messages: u64,
    pub deliveries: u64,
}

/// The embedded store's side of a move: its own connection to the index.
#[derive(Debug)]
pub struct EmbeddedMove {
    conn: Connection,
}

/// A delivery is owed (`d` the delivery, `l` its lane, `e` its exception row if any).
const OWED: &str = "CASE WHEN e.state IS NULL THEN d.seq >= l.done_below \
    ELSE e.state IN ('retry', 'waiting') END";

impl EmbeddedMove {
    /// Opens the index of the store in `dir` (replayed: open a [`crate::Store`] first).
    pub fn open(dir: &Path) -> Result<EmbeddedMove, StoreError> {
        let conn = crate::schema::connect(dir, OpenFlags::default(), Duration::from_secs(10))?;
        conn.execute_batch("PRAGMA wal_autocheckpoint = 0;")
            .map_err(StoreError::Query)?;
        Ok(EmbeddedMove { conn })
    }

    /// The keys held for a person, oldest first.
    pub fn held(&self) -> Result<Vec<HeldKey>, StoreError> {
        let mut s = self
            .conn
            .prepare(
                "SELECT l.route, l.destination, e.order_key, e.seq FROM delivery_exceptions e \
                 JOIN lanes l ON l.lane = e.lane WHERE e.state = 'held' ORDER BY e.seq",
            )
            .map_err(StoreError::Query)?;
        s.query_map([], |r| {
            Ok(HeldKey {
                route: r.get(0)?,
                destination: r.get(1)?,
                order_key: r.get(2)?,
                seq: r.get(3)?,
            })
        })
        .and_then(Iterator::collect)
        .map_err(StoreError::Query)
    }

    /// Dead letters (they stay in this store).
    pub fn dead(&self) -> Result<u64, StoreError> {
        self.conn
            .query_row(
                "SELECT count(*) FROM delivery_exceptions WHERE state = 'dead'",
                [],
                |r| r.get::<_, i64>(0),
            )
            .map(|n| n.unsigned_abs())
            .map_err(StoreError::Query)
    }

    /// The owed deliveries after log number `after`, in log order, at most `limit` of them and
    /// about `max_bytes` (at least one); with the number of the last, to go on from.
    pub fn batch(
        &self,
        after: i64,
        limit: usize,
        max_bytes: usize,
    ) -> Result<(MoveBatch, Option<i64>), StoreError> {
        let mut s = self
            .conn
            .prepare_cached(&format!(
                "SELECT d.seq, d.message, l.route, l.destination, d.part, d.order_key, \
                 d.payload, d.content_type FROM deliveries d JOIN lanes l ON l.lane = d.lane \
                 LEFT JOIN delivery_exceptions e ON e.seq = d.seq \
                 WHERE d.seq > ?1 AND {OWED} ORDER BY d.seq LIMIT ?2"
            ))
            .map_err(StoreError::Query)?;
        let mut rows = s
            .query(params![after, i64::try_from(limit).unwrap_or(i64::MAX)])
            .map_err(StoreError::Query)?;
        let mut batch = MoveBatch::default();
        let mut inbox_seqs: Vec<i64> = Vec::new();
        let (mut bytes, mut last) = (0usize, None);
        while let Some(r) = rows.next().map_err(StoreError::Query)? {
            if bytes >= max_bytes {
                break;
            }
            let seq: i64 = r.get(0).map_err(StoreError::Query)?;
            let inbox_seq: i64 = r.get(1).map_err(StoreError::Query)?;
            let message = match inbox_seqs.iter().position(|&s| s == inbox_seq) {
                Some(i) => i,
                None => {
                    let m = self.message(inbox_seq)?;
                    bytes += m.raw.len();
                    batch.messages.push(m);
                    inbox_seqs.push(inbox_seq);
                    batch.messages.len() - 1
                }
            };
            let payload: Option<Vec<u8>> = r.get(6).map_err(StoreError::Query)?;
            bytes += payload.as_ref().map_or(0, Vec::len);
            batch.deliveries.push(MovingDelivery {
                message,
                route: r.get(2).map_err(StoreError::Query)?,
                destination: r.get(3).map_err(StoreError::Query)?,
                part: r.get(4).map_err(StoreError::Query)?,
                order_key: r.get(5).map_err(StoreError::Query)?,
                payload,
                content_type: r.get(7).map_err(StoreError::Query)?,
            });
            last = Some(seq);
        }
        Ok((batch, last))
    }

    fn message(&self, seq: i64) -> Result<MovingMessage, StoreError> {
        self.conn
            .prepare_cached(
                "SELECT id, received_at, source, peer, content_type, status, sending_app, \
                 sending_facility, message_type, control_id, nhs_number, error, ack, raw_len, \
                 raw, CASE WHEN typeof(digest) = 'blob' THEN digest END FROM inbox WHERE seq = ?1",
            )
            .and_then(|mut s| {
                s.query_row([seq], |r| {
                    let raw: Vec<u8> = r.get(14)?;
                    // A row from before the SHA-256 digest holds a CRC: hash its bytes now.
                    let digest = r
                        .get::<_, Option<Vec<u8>>>(15)?
                        .and_then(|d| wyvern_core::ContentDigest::try_from(d.as_slice()).ok())
                        .unwrap_or_else(|| wyvern_core::content_digest(&raw));
                    Ok(MovingMessage {
                        id: r.get(0)?,
                        received_at_ms: r.get(1)?,
                        source: r.get(2)?,
                        peer: r.get(3)?,
                        content_type: r.get(4)?,
                        status: r.get(5)?,
                        sending_app: r.get(6)?,
                        sending_facility: r.get(7)?,
                        message_type: r.get(8)?,
                        control_id: r.get(9)?,
                        nhs_number: r.get(10)?,
                        error: r.get(11)?,
                        ack: r.get(12)?,
                        raw_len: r.get(13)?,
                        raw,
                        digest,
                    })
                })
            })
            .map_err(StoreError::Query)
    }

    /// Marks every owed delivery up to log number `through` as moved and moves each lane's
    /// cursor past them, in one transaction: what [`EmbeddedMove::batch`] handed out is no
    /// longer this store's to deliver. Returns how many were marked.
    pub fn settle(&mut self, through: i64, now_ms: i64) -> Result<u64, StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::Write)?;
        let moved = tx
            .execute(
                &format!(
                    "INSERT INTO delivery_exceptions (seq, lane, order_key, state, done_at) \
                     SELECT d.seq, d.lane, d.order_key, 'moved', ?2 FROM deliveries d \
                     JOIN lanes l ON l.lane = d.lane \
                     LEFT JOIN delivery_exceptions e ON e.seq = d.seq \
                     WHERE d.seq <= ?1 AND {OWED} \
                     ON CONFLICT (seq) DO UPDATE SET state = 'moved', done_at = excluded.done_at"
                ),
                params![through, now_ms],
            )
            .map_err(StoreError::Write)?;
        // Below the new cursor every delivery now has an exception row or was delivered.
        tx.execute(
            "UPDATE lanes SET done_below = max(done_below, \
             coalesce((SELECT max(seq) + 1 FROM deliveries d \
                       WHERE d.lane = lanes.lane AND d.seq <= ?1), 0))",
            [through],
        )
        .map_err(StoreError::Write)?;
        tx.commit().map_err(StoreError::Write)?;
        Ok(moved as u64)
    }

    /// Adds a batch moved from another store: each message unless this store holds its id,
    /// each delivery unless its message already has one for that lane and part (other than
    /// one moved away), appended to its lane's log in the batch's order.
    pub fn import(&mut self, batch: &MoveBatch) -> Result<Imported, StoreError> {
        let tx = self.conn.transaction().map_err(StoreError::Write)?;
        let mut imported = Imported::default();
        let mut seqs = Vec::with_capacity(batch.messages.len());
        for m in &batch.messages {
            let found: Option<i64> = tx
                .query_row("SELECT seq FROM inbox WHERE id = ?1", [&m.id], |r| r.get(0))
                .optional()
                .map_err(StoreError::Query)?;
            let seq = match found {
                Some(seq) => seq,
                None => {
                    tx.execute(
                        "INSERT INTO inbox (id, received_at, source, peer, content_type, status, \
                         sending_app, sending_facility, message_type, control_id, nhs_number, \
                         error, ack, raw_len, raw, digest) \
                         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14, ?15, ?16)",
                        params![
                            m.id,
                            m.received_at_ms,
                            m.source,
                            m.peer,
                            m.content_type,
                            m.status,
                            m.sending_app,
                            m.sending_facility,
                            m.message_type,
                            m.control_id,
                            m.nhs_number,
                            m.error,
                            m.ack,
                            m.raw_len,
                            m.raw,
                            &m.digest[..],
                        ],
                    )
                    .map_err(StoreError::Write)?;
                    let seq = tx.last_insert_rowid();
                    if let Some(nhs) = &m.nhs_number {
                        crate::nhs_index::add(&tx, seq, nhs)?;
                    }
                    imported.messages += 1;
                    seq
                }
            };
            seqs.push(seq);
        }
        let mut lanes = crate::outbox::LaneIds::default();
        for d in &batch.deliveries {
            let lane = lanes.get(&tx, &d.route, &d.destination)?;
            let message = seqs[d.message];
            let held: bool = tx
                .query_row(
                    "SELECT EXISTS (SELECT 1 FROM deliveries d \
                     LEFT JOIN delivery_exceptions e ON e.seq = d.seq \
                     WHERE d.message = ?1 AND d.lane = ?2 AND d.part = ?3 \
                     AND e.state IS NOT 'moved')",
                    params![message, lane, d.part],
                    |r| r.get(0),
                )
                .map_err(StoreError::Query)?;
            if held {
                continue;
            }
            tx.execute(
                "INSERT INTO deliveries (lane, message, part, order_key, payload, content_type) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
                params![
                    lane,
                    message,
                    d.part,
                    d.order_key,
                    d.payload,
                    d.content_type
                ],
            )
            .map_err(StoreError::Write)?;
            imported.deliveries += 1;
        }
        tx.commit().map_err(StoreError::Write)?;
        Ok(imported)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A store whose lane `r -> d` holds: 1 delivered, 2 dead, 3 retrying, 4 waiting behind 3,
    /// 5 new; and whose lane `r -> h` holds a held key.
    fn store() -> (tempfile::TempDir, EmbeddedMove) {
        let dir = tempfile::tempdir().unwrap();
        let conn = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
        crate::schema::prepare_writer(&conn).unwrap();
        for n in 1..=6 {
            conn.execute(
                "INSERT INTO inbox (seq, id, received_at, source, content_type, status, raw_len, \
                 raw, digest) VALUES (?1, ?2, 1, 'r', 'hl7v2', 'accepted', 1, X'00', NULL)",
                params![n, format!("M{n}")],
            )
            .unwrap();
        }
        conn.execute_batch(
            "INSERT INTO lanes (lane, route, destination, done_below) VALUES (1, 'r', 'd', 5), \
                 (2, 'r', 'h', 7);
             INSERT INTO deliveries (seq, lane, message, part, order_key) VALUES \
                 (1, 1, 1, 0, 'a'), (2, 1, 2, 0, 'b'), (3, 1, 3, 0, 'k'), (4, 1, 4, 0, 'k'), \
                 (5, 1, 5, 0, 'c'), (6, 2, 6, 0, 'z');
             INSERT INTO delivery_exceptions (seq, lane, order_key, state) VALUES \
                 (2, 1, 'b', 'dead'), (3, 1, 'k', 'retry'), (4, 1, 'k', 'waiting'), \
                 (6, 2, 'z', 'held');",
        )
        .unwrap();
        let m = EmbeddedMove::open(dir.path()).unwrap();
        (dir, m)
    }

    #[test]
    fn what_is_owed_moves_in_log_order_once_and_what_is_not_stays() {
        let (_dir, mut source) = store();
        let held = source.held().unwrap();
        assert_eq!(held.len(), 1, "a held key is named: {held:?}");
        assert_eq!((held[0].order_key.as_str(), held[0].seq), ("z", 6));
        source
            .conn
            .execute(
                "UPDATE delivery_exceptions SET state = 'purged' WHERE seq = 6",
                [],
            )
            .unwrap();

        let (batch, last) = source.batch(0, 2, usize::MAX).unwrap();
        let ids = |b: &MoveBatch| -> Vec<String> {
            b.deliveries
                .iter()
                .map(|d| b.messages[d.message].id.clone())
                .collect()
        };
        assert_eq!(
            ids(&batch),
            ["M3", "M4"],
            "retrying, then waiting behind it"
        );
        let (rest, through) = source.batch(last.unwrap(), 10, usize::MAX).unwrap();
        assert_eq!(ids(&rest), ["M5"]);
        assert_eq!(source.dead().unwrap(), 1, "the dead letter stays");
        assert_eq!(batch.messages[0].digest, wyvern_core::content_digest(&[0]));

        let (_target_dir, mut target) = {
            let dir = tempfile::tempdir().unwrap();
            let conn = Connection::open(dir.path().join(crate::DB_FILE)).unwrap();
            crate::schema::prepare_writer(&conn).unwrap();
            let m = EmbeddedMove::open(dir.path()).unwrap();
            (dir, m)
        };
        let first = target.import(&batch).unwrap();
        assert_eq!((first.messages, first.deliveries), (2, 2));
        let again = target.import(&batch).unwrap();
        assert_eq!(again, Imported::default(), "a re-run adds nothing twice");
        let (owed, _) = target.batch(0, 10, usize::MAX).unwrap();
        assert_eq!(ids(&owed), ["M3", "M4"], "owed by the target, in order");

        assert_eq!(source.settle(through.unwrap(), 9).unwrap(), 3);
        let (left, _) = source.batch(0, 10, usize::MAX).unwrap();
        assert!(left.deliveries.is_empty(), "nothing owed after the settle");
        let cursor: i64 = source
            .conn
            .query_row("SELECT done_below FROM lanes WHERE lane = 1", [], |r| {
                r.get(0)
            })
            .unwrap();
        assert_eq!(cursor, 6);
        let states: Vec<String> = source
            .conn
            .prepare("SELECT state FROM delivery_exceptions WHERE lane = 1 ORDER BY seq")
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(states, ["dead", "moved", "moved", "moved"]);

        // A replay here leaves what moved to the other store alone: it is that store's.
        let outbox = crate::Outbox::open(_dir.path()).unwrap();
        outbox.replay("r", None, 0, i64::MAX, 10).unwrap();
        let moved: i64 = source
            .conn
            .query_row(
                "SELECT count(*) FROM delivery_exceptions WHERE state = 'moved'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(moved, 3, "a replay does not bring moved deliveries back");

        // Moved back, a delivery moved away is owed here again.
        let back = source.import(&batch).unwrap();
        assert_eq!((back.messages, back.deliveries), (0, 2));
    }
}
