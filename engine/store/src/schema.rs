//! The tables and the pragmas that make them durable; versioned with `PRAGMA user_version`.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags};

use crate::{DB_FILE, StoreError};

/// A connection to the index of the store in `dir`, for a reader or writer beside the engine's
/// own (the CLI, the sweeper, the audit log): `Missing` when the store has no index yet.
pub(crate) fn connect(
    dir: &Path,
    flags: OpenFlags,
    busy: Duration,
) -> Result<Connection, StoreError> {
    let db = dir.join(DB_FILE);
    if !db.exists() {
        return Err(StoreError::Missing { path: db });
    }
    let conn = Connection::open_with_flags(&db, flags)
        .map_err(|source| StoreError::Open { path: db, source })?;
    conn.busy_timeout(busy).map_err(StoreError::Query)?;
    Ok(conn)
}

/// How a writer waits while another holds the write lock: it tries again every 250 µs, for up
/// to `limit`. SQLite's own handler sleeps 1, 2, 5, 10, 15, 20, 25 … ms between tries, so a
/// lock held 3 ms (an index commit under load) kept a delivery worker's settle waiting 8 ms,
/// and the next pass unread meanwhile. The index thread waits the same way, so neither side
/// wins the lock by polling faster than the other.
pub(crate) fn wait_in_short_steps(
    conn: &mut Connection,
    limit: Duration,
) -> Result<(), StoreError> {
    const STEP: Duration = Duration::from_micros(250);
    let mut since = std::time::Instant::now();
    conn.busy_handler(Some(move |tries: i32| {
        if tries == 0 {
            since = std::time::Instant::now();
        }
        if since.elapsed() >= limit {
            return false;
        }
        std::thread::sleep(STEP);
        true
    }))
    .map_err(StoreError::Query)
}

pub(crate) const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Each entry moves the schema one version up; a store is brought from its `user_version`
/// to the newest in order, in one transaction. Never edit an entry once released: add one.
const MIGRATIONS: [&str; 11] = [
    V1,
    V2,
    V3,
    V4,
    V5,
    V6,
    V7,
    V8,
    V9,
    V10,
    crate::patient_index::V11,
];

const V1: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    -- No AUTOINCREMENT: it costs a page write per commit (sqlite_sequence). Rows are only
    -- ever removed oldest-first by retention, so a plain rowid never reuses a live number.
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    received_at      INTEGER NOT NULL,
    source           TEXT    NOT NULL,
    peer             TEXT,
    content_type     TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    sending_app      TEXT,
    sending_facility TEXT,
    message_type     TEXT,
    control_id       TEXT,
    nhs_number       TEXT,
    error            TEXT,
    ack              BLOB,
    raw_len          INTEGER NOT NULL,
    raw              BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS inbox_control_id ON inbox(control_id);
CREATE INDEX IF NOT EXISTS inbox_nhs_number ON inbox(nhs_number) WHERE nhs_number IS NOT NULL;
-- Partial: most rows are accepted, and every index touched is a page written per commit.
CREATE INDEX IF NOT EXISTS inbox_not_accepted ON inbox(status, seq) WHERE status <> 'accepted';
";

const V2: &str = "
-- v2: one row per message per destination; created with the inbox row, in the same commit.
-- state: pending → delivered | dead (parked) | held (dead, and its key waits for a person).
CREATE TABLE IF NOT EXISTS outbox (
    seq          INTEGER PRIMARY KEY,
    message_id   TEXT    NOT NULL,
    route        TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    order_key    TEXT    NOT NULL,
    payload      BLOB,
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    done_at      INTEGER,
    last_error   TEXT,
    receipt      TEXT,
    UNIQUE (message_id, destination)
);
CREATE INDEX IF NOT EXISTS outbox_open ON outbox(route, destination, order_key, seq)
    WHERE state IN ('pending', 'held');
CREATE INDEX IF NOT EXISTS outbox_dead ON outbox(route, destination, seq) WHERE state IN ('dead', 'held');
";

/// v3: a digest of the raw bytes, so duplicate detection can be seeded at start without
/// reading every message back. Rows written since 2026-12 hold 16 bytes of SHA-256 (a BLOB:
/// SQLite types each value, not the column); older rows hold a CRC-32 integer, which the
/// reader replaces by hashing the row's raw bytes.
const V3: &str = "ALTER TABLE inbox ADD COLUMN digest INTEGER;
CREATE INDEX IF NOT EXISTS inbox_recent ON inbox(source, seq) WHERE status IN ('accepted', 'filtered');
";

/// v4: a `split` step turns one received batch into several messages, so one inbox row can
/// have several outbox rows per destination: `part` numbers them (0 for an unsplit message).
/// SQLite cannot change a UNIQUE constraint in place, so the table is rebuilt.
const V4: &str = "
CREATE TABLE outbox_v4 (
    seq          INTEGER PRIMARY KEY,
    message_id   TEXT    NOT NULL,
    part         INTEGER NOT NULL DEFAULT 0,
    route        TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    order_key    TEXT    NOT NULL,
    payload      BLOB,
    state        TEXT    NOT NULL DEFAULT 'pending',
    attempts     INTEGER NOT NULL DEFAULT 0,
    created_at   INTEGER NOT NULL,
    next_at      INTEGER NOT NULL,
    done_at      INTEGER,
    last_error   TEXT,
    receipt      TEXT,
    UNIQUE (message_id, destination, part)
);
INSERT INTO outbox_v4 (seq, message_id, route, destination, order_key, payload, state, attempts,
    created_at, next_at, done_at, last_error, receipt)
    SELECT seq, message_id, route, destination, order_key, payload, state, attempts,
    created_at, next_at, done_at, last_error, receipt FROM outbox;
DROP TABLE outbox;
ALTER TABLE outbox_v4 RENAME TO outbox;
CREATE INDEX outbox_open ON outbox(route, destination, order_key, seq)
    WHERE state IN ('pending', 'held');
CREATE INDEX outbox_dead ON outbox(route, destination, seq) WHERE state IN ('dead', 'held');
";

/// v5: when a dead letter was put back (`wyvern dlq retry`, `wyvern replay`): its retries
/// (`max_age`) count from then, not from the message's receipt.
const V5: &str = "ALTER TABLE outbox ADD COLUMN retry_from INTEGER;";

/// v6: what each outbox row's payload is, when not what its message was received as (NULL):
/// a mapped Bundle is FHIR JSON, FHIR received as XML is delivered as JSON.
const V6: &str = "ALTER TABLE outbox ADD COLUMN content_type TEXT;";

/// v7: the audit log, append-only and hash-chained (`audit.rs`). `source` is where the actor
/// was (a peer address, `cli`).
const V7: &str = "
CREATE TABLE IF NOT EXISTS audit (
    seq         INTEGER PRIMARY KEY,
    at          INTEGER NOT NULL,
    actor       TEXT    NOT NULL,
    action      TEXT    NOT NULL,
    message_id  TEXT,
    nhs_number  TEXT,
    source      TEXT,
    detail      TEXT,
    prev_hash   BLOB    NOT NULL,
    hash        BLOB    NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_nhs_number ON audit(nhs_number) WHERE nhs_number IS NOT NULL;
";

const V8: &str = "
-- v8: the operator API's tokens, by the SHA-256 of their secret (the secret is never kept).
CREATE TABLE IF NOT EXISTS api_tokens (
    name        TEXT    PRIMARY KEY,
    role        TEXT    NOT NULL,
    hash        BLOB    NOT NULL UNIQUE,
    created_at  INTEGER NOT NULL
);
";

/// v9: delivery as a log with a cursor per destination (ARCHITECTURE.md, "Delivery"). A
/// destination is a `lane` with a small integer id and a cursor, `done_below`: every delivery
/// of the lane below it is settled — delivered, or recorded in `delivery_exceptions` (waiting
/// for a retry, waiting behind its key, dead-lettered, held). `deliveries` is append-only:
/// nothing is updated when a message is delivered, so a delivered message costs one row and
/// two right-edge index entries instead of a row with three indexes updated and deleted.
/// `AUTOINCREMENT` because a cursor must never meet a reused number (a plain rowid restarts
/// after the table is emptied by retention).
///
/// The v8 outbox moves over as it stands: each lane's cursor goes to its oldest row never
/// tried; what is not plainly delivered below it, and what is not plainly pending above it,
/// becomes an exception row.
const V9: &str = "
CREATE TABLE lanes (
    lane         INTEGER PRIMARY KEY,
    route        TEXT    NOT NULL,
    destination  TEXT    NOT NULL,
    done_below   INTEGER NOT NULL DEFAULT 0,
    UNIQUE (route, destination)
);
CREATE TABLE deliveries (
    seq          INTEGER PRIMARY KEY AUTOINCREMENT,
    lane         INTEGER NOT NULL,
    message      INTEGER NOT NULL,
    part         INTEGER NOT NULL,
    order_key    TEXT    NOT NULL,
    payload      BLOB,
    content_type TEXT
);
CREATE INDEX deliveries_lane ON deliveries(lane, seq);
CREATE INDEX deliveries_message ON deliveries(message);
-- state: retry (waits for next_at) | waiting (behind an earlier message of its key) | held
-- (dead, its key waits for a person) | dead | purged | delivered (after being an exception).
CREATE TABLE delivery_exceptions (
    seq          INTEGER PRIMARY KEY,
    lane         INTEGER NOT NULL,
    order_key    TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL DEFAULT 0,
    next_at      INTEGER NOT NULL DEFAULT 0,
    last_error   TEXT,
    retry_from   INTEGER,
    done_at      INTEGER
);
CREATE INDEX exceptions_open ON delivery_exceptions(lane, order_key, seq)
    WHERE state IN ('retry', 'waiting', 'held');
CREATE INDEX exceptions_dead ON delivery_exceptions(lane, seq) WHERE state IN ('dead', 'held');

INSERT INTO lanes (route, destination, done_below)
    SELECT route, destination,
        COALESCE(MIN(seq) FILTER (WHERE state = 'pending' AND attempts = 0), MAX(seq) + 1)
    FROM outbox GROUP BY route, destination;
INSERT INTO deliveries (seq, lane, message, part, order_key, payload, content_type)
    SELECT o.seq, l.lane, i.seq, o.part, o.order_key, o.payload, o.content_type
    FROM outbox o JOIN lanes l ON l.route = o.route AND l.destination = o.destination
    JOIN inbox i ON i.id = o.message_id;
INSERT INTO delivery_exceptions (seq, lane, order_key, state, attempts, next_at, last_error,
        retry_from, done_at)
    SELECT o.seq, l.lane, o.order_key,
        CASE WHEN o.state <> 'pending' THEN o.state WHEN o.attempts > 0 THEN 'retry'
             ELSE 'waiting' END,
        o.attempts, o.next_at, o.last_error, o.retry_from, o.done_at
    FROM outbox o JOIN lanes l ON l.route = o.route AND l.destination = o.destination
    JOIN inbox i ON i.id = o.message_id
    WHERE (o.seq < l.done_below AND o.state <> 'delivered')
       OR (o.seq >= l.done_below AND NOT (o.state = 'pending' AND o.attempts = 0));
DROP TABLE outbox;
";

/// v10: the NHS number index, merged in sorted batches (`nhs_index.rs`): SQLite's own index on
/// `inbox(nhs_number)` wrote a page per message, since NHS numbers arrive in no order.
const V10: &str = "
CREATE TABLE nhs_index (
    nhs_number  TEXT    NOT NULL,
    seq         INTEGER NOT NULL,
    PRIMARY KEY (nhs_number, seq)
) WITHOUT ROWID;
CREATE TABLE nhs_pending (
    seq         INTEGER PRIMARY KEY,
    nhs_number  TEXT    NOT NULL
);
INSERT INTO nhs_index (nhs_number, seq)
    SELECT nhs_number, seq FROM inbox WHERE nhs_number IS NOT NULL ORDER BY nhs_number, seq;
DROP INDEX inbox_nhs_number;
";

/// Applies the pragmas for the index connection and creates or checks the schema.
///
/// `synchronous=NORMAL` in WAL mode: an index commit writes its frames without an fsync, so it
/// never competes with the journal's fdatasync (the ACK's durability) for the disk. The
/// checkpoint thread fsyncs the WAL before it deletes the journal segments those rows came
/// from, and SQLite syncs around every checkpoint. Checkpoints run on that thread, so automatic
/// checkpoints are off.
pub(crate) fn prepare_writer(conn: &Connection) -> Result<(), StoreError> {
    conn.execute_batch(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 0; PRAGMA journal_size_limit = 67108864;",
    )
    .map_err(StoreError::Write)?;
    let found: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(StoreError::Write)?;
    if found > SCHEMA_VERSION {
        return Err(StoreError::SchemaTooNew {
            found,
            known: SCHEMA_VERSION,
        });
    }
    if found < SCHEMA_VERSION {
        let mut sql = String::from("BEGIN;");
        for m in &MIGRATIONS[usize::try_from(found).unwrap_or(0)..] {
            sql.push_str(m);
        }
        sql.push_str(&format!("PRAGMA user_version = {SCHEMA_VERSION}; COMMIT;"));
        conn.execute_batch(&sql).map_err(StoreError::Write)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_v8_outbox_becomes_a_log_with_a_cursor_and_its_exceptions() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "{V1}{V2}{V3}{V4}{V5}{V6}{V7}{V8} PRAGMA user_version = 8;"
        ))
        .unwrap();
        for n in 1..=6 {
            conn.execute(
                "INSERT INTO inbox (id, received_at, source, content_type, status, raw_len, raw) \
                 VALUES (?1, 1, 's', 'hl7v2', 'accepted', 1, X'00')",
                [format!("M{n}")],
            )
            .unwrap();
        }
        // seq: 1 delivered, 2 dead, 3 retrying, 4 delivered, 5 new, 6 new behind 3 (key k).
        for (seq, state, attempts, key) in [
            (1, "delivered", 1, "a"),
            (2, "dead", 3, "b"),
            (3, "pending", 2, "k"),
            (4, "delivered", 1, "c"),
            (5, "pending", 0, "d"),
            (6, "pending", 0, "k"),
        ] {
            conn.execute(
                "INSERT INTO outbox (seq, message_id, route, destination, order_key, state, \
                 attempts, created_at, next_at) VALUES (?1, ?2, 'r', 'd', ?3, ?4, ?5, 1, 7)",
                rusqlite::params![seq, format!("M{seq}"), key, state, attempts],
            )
            .unwrap();
        }
        prepare_writer(&conn).unwrap();
        let cursor: i64 = conn
            .query_row("SELECT done_below FROM lanes", [], |r| r.get(0))
            .unwrap();
        assert_eq!(cursor, 5, "the oldest row never tried");
        let exceptions: Vec<(i64, String)> = conn
            .prepare("SELECT seq, state FROM delivery_exceptions ORDER BY seq")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [(2, "dead"), (3, "retry")].map(|(s, t)| (s, t.to_string()));
        assert_eq!(exceptions, expected);
        let rows: i64 = conn
            .query_row("SELECT COUNT(*) FROM deliveries", [], |r| r.get(0))
            .unwrap();
        assert_eq!(rows, 6, "every row kept, delivered ones for the record");
        conn.execute(
            "INSERT INTO deliveries (lane, message, part, order_key) VALUES (1, 1, 0, 'e')",
            [],
        )
        .unwrap();
        assert_eq!(
            conn.last_insert_rowid(),
            7,
            "numbers go on after the old ones"
        );
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        assert_eq!(version, SCHEMA_VERSION);
    }

    #[test]
    fn v10_moves_existing_nhs_numbers_into_the_merged_index() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "{V1}{V2}{V3}{V4}{V5}{V6}{V7}{V8}{V9} PRAGMA user_version = 9;"
        ))
        .unwrap();
        for (n, nhs) in [(1, Some("9990000026")), (2, None), (3, Some("9990000018"))] {
            conn.execute(
                "INSERT INTO inbox (id, received_at, source, content_type, status, raw_len, raw, \
                 nhs_number) VALUES (?1, 1, 's', 'hl7v2', 'accepted', 1, X'00', ?2)",
                rusqlite::params![format!("M{n}"), nhs],
            )
            .unwrap();
        }
        prepare_writer(&conn).unwrap();
        let entries: Vec<(String, i64)> = conn
            .prepare("SELECT nhs_number, seq FROM nhs_index")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        assert_eq!(
            entries,
            [("9990000018".to_string(), 3), ("9990000026".to_string(), 1)]
        );
        let old_index: i64 = conn
            .query_row(
                "SELECT count(*) FROM sqlite_master WHERE name = 'inbox_nhs_number'",
                [],
                |r| r.get(0),
            )
            .unwrap();
        assert_eq!(old_index, 0, "the per-message index is gone");
    }

    #[test]
    fn v11_fills_the_patient_index_from_the_messages_held() {
        let conn = Connection::open_in_memory().unwrap();
        conn.execute_batch(&format!(
            "{V1}{V2}{V3}{V4}{V5}{V6}{V7}{V8}{V9}{V10} PRAGMA user_version = 10;"
        ))
        .unwrap();
        conn.execute_batch(
            "INSERT INTO lanes (lane, route, destination) VALUES (1, 'r', 'chie'), (2, 'r', 'dcr');
             INSERT INTO nhs_index (nhs_number, seq) VALUES ('9990000018', 1);
             INSERT INTO nhs_pending (seq, nhs_number) VALUES (2, '9990000026');
             INSERT INTO deliveries (lane, message, part, order_key) VALUES
                 (1, 1, 0, 'k'), (2, 1, 0, 'k'), (2, 2, 0, 'k'), (2, 3, 0, 'k');",
        )
        .unwrap();
        prepare_writer(&conn).unwrap();
        let rows: Vec<(String, i64)> = conn
            .prepare("SELECT nhs_number, lane FROM patient_lanes")
            .unwrap()
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected = [("9990000018", 1), ("9990000018", 2), ("9990000026", 2)]
            .map(|(n, l)| (n.to_string(), l));
        assert_eq!(rows, expected);
    }
}
