//! The NHS number index, written in sorted batches instead of one entry per message.
//!
//! Why: NHS numbers arrive in no order, so an ordinary SQLite index on them puts each new
//! entry on a different leaf page, and every index commit rewrites (WAL, then checkpoint) one
//! 4 KiB page per message — measured 40 % of the index thread's CPU (`cargo bench -p
//! wyvern-store --bench index`, ARCHITECTURE.md "The store"). So the index thread appends each
//! entry to `nhs_pending` (a rowid table, written at its right edge: a page holds ~150 of
//! them), and every [`MERGE_AT`] entries — or once the index has been idle a moment — merges
//! them, sorted, into `nhs_index` in one transaction, where a leaf page is written at most once
//! per merge however many of its entries arrived. A search reads both tables.
//!
//! Nothing is lost between the two: the merge inserts and deletes in one transaction, and a
//! record replayed from the journal is stored (with its entry) once.

use rusqlite::Connection;

use crate::StoreError;

/// Entries waiting in `nhs_pending` before the index thread merges them: big enough that a
/// merge writes far fewer pages than entries, small enough that a search's scan of the
/// pending table stays around a millisecond.
pub(crate) const MERGE_AT: u64 = 32_768;

/// Records a message's NHS number (inside the transaction that inserts the message).
pub(crate) fn add(conn: &Connection, seq: i64, nhs_number: &str) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO nhs_pending (seq, nhs_number) VALUES (?1, ?2)")
        .and_then(|mut s| s.execute(rusqlite::params![seq, nhs_number]))
        .map_err(StoreError::Write)?;
    Ok(())
}

/// How many entries wait to be merged (read once when the index thread starts).
pub(crate) fn pending(conn: &Connection) -> Result<u64, StoreError> {
    conn.query_row("SELECT count(*) FROM nhs_pending", [], |r| {
        r.get::<_, i64>(0)
    })
    .map(|n| n.unsigned_abs())
    .map_err(StoreError::Query)
}

/// Moves every pending entry into the index, sorted, in one transaction (with the patient
/// index's rows for them, `patient_index.rs`); returns how many.
pub(crate) fn merge(conn: &mut Connection) -> Result<usize, StoreError> {
    let tx = conn.transaction().map_err(StoreError::Write)?;
    let merged = tx
        .execute(
            "INSERT OR IGNORE INTO nhs_index (nhs_number, seq) \
             SELECT nhs_number, seq FROM nhs_pending ORDER BY nhs_number, seq",
            [],
        )
        .map_err(StoreError::Write)?;
    crate::patient_index::add_pending(&tx)?;
    tx.execute("DELETE FROM nhs_pending", [])
        .map_err(StoreError::Write)?;
    tx.commit().map_err(StoreError::Write)?;
    Ok(merged)
}

/// A condition on `inbox.seq` that holds for the messages carrying the NHS number bound to
/// parameter `?{param}`.
pub(crate) fn matches(param: usize) -> String {
    format!(
        "seq IN (SELECT seq FROM nhs_index WHERE nhs_number = ?{param} \
         UNION ALL SELECT seq FROM nhs_pending WHERE nhs_number = ?{param})"
    )
}

/// Forgets a message's entry (retention, inside its transaction).
pub(crate) fn remove(conn: &Connection, seq: i64, nhs_number: &str) -> Result<(), StoreError> {
    conn.prepare_cached("DELETE FROM nhs_index WHERE nhs_number = ?1 AND seq = ?2")
        .and_then(|mut s| s.execute(rusqlite::params![nhs_number, seq]))
        .map_err(StoreError::Write)?;
    conn.prepare_cached("DELETE FROM nhs_pending WHERE seq = ?1")
        .and_then(|mut s| s.execute([seq]))
        .map_err(StoreError::Write)?;
    Ok(())
}
