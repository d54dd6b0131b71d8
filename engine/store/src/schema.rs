//! The tables and the pragmas that make them durable; versioned with `PRAGMA user_version`.

use rusqlite::Connection;

use crate::{StoreError, writer::Durability};

pub(crate) const SCHEMA_VERSION: i64 = 1;

const SCHEMA_V1: &str = "
CREATE TABLE IF NOT EXISTS inbox (
    seq              INTEGER PRIMARY KEY AUTOINCREMENT,
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
CREATE INDEX IF NOT EXISTS inbox_status ON inbox(status, seq);
";

/// Applies the pragmas for the writer connection and creates or checks the schema.
pub(crate) fn prepare_writer(conn: &Connection, durability: Durability) -> Result<(), StoreError> {
    let sync = match durability {
        // FULL in WAL mode: the WAL is fsync'd at every commit, so a committed row survives
        // power loss, not only a process crash.
        Durability::Fsync => "FULL",
        // NORMAL in WAL mode: no fsync at commit (only at checkpoints). Survives a crash of the
        // engine; the last moments may be lost if the machine itself loses power.
        Durability::Buffered => "NORMAL",
    };
    conn.execute_batch(&format!(
        "PRAGMA journal_mode = WAL; PRAGMA synchronous = {sync}; PRAGMA foreign_keys = ON; \
         PRAGMA wal_autocheckpoint = 4000; PRAGMA journal_size_limit = 67108864;"
    ))
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
    conn.execute_batch(SCHEMA_V1).map_err(StoreError::Write)?;
    conn.execute_batch(&format!("PRAGMA user_version = {SCHEMA_VERSION}"))
        .map_err(StoreError::Write)?;
    Ok(())
}
