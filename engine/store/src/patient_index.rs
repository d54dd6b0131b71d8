//! The regional patient index: which lanes (route and destination) have carried a message
//! about each NHS number. The bridge reads it to ask only the records that hold a patient.
//!
//! Why here and not in the bridge: the engine already knows where every message went, and
//! the index must survive restarts and outlive retention (a patient admitted a year ago is
//! still held by the record it was sent to). So it is one small table, `patient_lanes`, one
//! row per (NHS number, lane), never pruned.
//!
//! It costs the ingest path nothing: rows are filled when the index thread merges its pending
//! NHS numbers (`nhs_index.rs`, every 32,768 entries or after 2 s idle), sorted, in the same
//! transaction, joined with the deliveries the messages made. A reader also reads the pending
//! entries, so a patient is found from the moment its message is indexed.
//!
//! A merge (MRG-1 of an A40, A34, A36 …) gives the surviving NHS number every lane of the one
//! merged away. The merged-away number keeps its lanes too: a record that has not applied the
//! merge yet still answers under it, and a copy never loses an entry that a move would.

use rusqlite::Connection;

use crate::StoreError;

/// v11: the table, filled from what the store already holds.
pub(crate) const V11: &str = "
CREATE TABLE patient_lanes (
    nhs_number  TEXT    NOT NULL,
    lane        INTEGER NOT NULL,
    PRIMARY KEY (nhs_number, lane)
) WITHOUT ROWID;
INSERT OR IGNORE INTO patient_lanes (nhs_number, lane)
    SELECT n.nhs_number, d.lane
    FROM (SELECT nhs_number, seq FROM nhs_index UNION ALL SELECT nhs_number, seq FROM nhs_pending) n
    JOIN deliveries d ON d.message = n.seq
    ORDER BY 1, 2;
";

/// The lanes of every pending NHS number, inside the merge's transaction (before the pending
/// entries are deleted).
pub(crate) fn add_pending(conn: &Connection) -> Result<usize, StoreError> {
    conn.execute(
        "INSERT OR IGNORE INTO patient_lanes (nhs_number, lane) \
         SELECT DISTINCT p.nhs_number, d.lane FROM nhs_pending p \
         JOIN deliveries d ON d.message = p.seq ORDER BY 1, 2",
        [],
    )
    .map_err(StoreError::Write)
}

/// Gives `survivor` every lane `merged_away` has, merged or still pending (inside the
/// transaction that indexes the merge message).
pub(crate) fn fold(conn: &Connection, merged_away: &str, survivor: &str) -> Result<(), StoreError> {
    conn.prepare_cached(
        "INSERT OR IGNORE INTO patient_lanes (nhs_number, lane) \
         SELECT ?2, lane FROM patient_lanes WHERE nhs_number = ?1 \
         UNION SELECT ?2, d.lane FROM nhs_pending p JOIN deliveries d ON d.message = p.seq \
         WHERE p.nhs_number = ?1",
    )
    .and_then(|mut s| s.execute([merged_away, survivor]))
    .map_err(StoreError::Write)?;
    Ok(())
}

/// The (route, destination) of every lane that has carried a message about `nhs_number`.
pub(crate) fn lanes_of(
    conn: &Connection,
    nhs_number: &str,
) -> Result<Vec<(String, String)>, StoreError> {
    let mut stmt = conn
        .prepare_cached(
            "SELECT route, destination FROM lanes WHERE lane IN ( \
             SELECT lane FROM patient_lanes WHERE nhs_number = ?1 \
             UNION SELECT d.lane FROM nhs_pending p JOIN deliveries d ON d.message = p.seq \
             WHERE p.nhs_number = ?1) ORDER BY route, destination",
        )
        .map_err(StoreError::Query)?;
    let rows = stmt
        .query_map([nhs_number], |r| Ok((r.get(0)?, r.get(1)?)))
        .map_err(StoreError::Query)?;
    rows.collect::<Result<_, _>>().map_err(StoreError::Query)
}
