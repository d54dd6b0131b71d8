//! Retention on the shared store: messages older than `store.retention` that every destination
//! is finished with — each delivery behind its partition's cursor and delivered, purged or
//! moved to another store — go with their deliveries and exception rows (the patient index
//! keeps which lanes carried each patient, `patient_lanes`). Dead letters and
//! held keys keep their message (a person may still retry them). Every node's sweeper runs
//! it; `SKIP LOCKED` lets two nodes prune at once without waiting on each other.

use tokio_postgres::Client;
use wyvern_store::Pruned;

use crate::PgStoreError;

/// One batch: the finished messages received before `$1`, oldest first, at most `$2`, and
/// everything that hangs off them, in one statement (one transaction).
const PRUNE: &str = concat!(
    "
WITH doomed AS (
    SELECT m.seq FROM messages m
    WHERE m.received_at < $1 AND NOT EXISTS (
        SELECT 1 FROM deliveries d
        JOIN partitions p ON p.lane = d.lane AND p.partition = d.partition
        LEFT JOIN delivery_exceptions e ON e.seq = d.seq
        WHERE d.message = m.seq
          AND CASE WHEN e.seq IS NULL THEN ",
    crate::unsettled!(),
    "
                   ELSE e.state NOT IN ('delivered', 'purged', 'moved') END)
    ORDER BY m.seq LIMIT $2
    FOR UPDATE SKIP LOCKED
), kept AS (
    -- The patient index outlives the messages (schema v8): the lanes that carried each
    -- patient. Sorted, so two nodes pruning at once take the same keys in the same order.
    INSERT INTO patient_lanes (nhs_number, lane)
    SELECT DISTINCT m.nhs_number, d.lane FROM messages m JOIN doomed ON doomed.seq = m.seq
    JOIN deliveries d ON d.message = m.seq WHERE m.nhs_number IS NOT NULL
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
), merges AS (
    -- And each merge, so the survivor is still found under the number merged away.
    INSERT INTO patient_merges (survivor, merged_away)
    SELECT DISTINCT m.nhs_number, m.merged_nhs_number FROM messages m
    JOIN doomed ON doomed.seq = m.seq
    WHERE m.nhs_number IS NOT NULL AND m.merged_nhs_number IS NOT NULL
    ORDER BY 1, 2
    ON CONFLICT DO NOTHING
), exceptions AS (
    DELETE FROM delivery_exceptions WHERE seq IN (
        SELECT d.seq FROM deliveries d JOIN doomed ON d.message = doomed.seq)
), gone_deliveries AS (
    DELETE FROM deliveries WHERE message IN (SELECT seq FROM doomed) RETURNING 1
), gone_messages AS (
    DELETE FROM messages WHERE seq IN (SELECT seq FROM doomed) RETURNING 1
)
SELECT (SELECT count(*) FROM gone_messages), (SELECT count(*) FROM gone_deliveries)"
);

/// Removes up to `limit` finished messages received before `before_ms`; call again while it
/// returns `limit`.
pub async fn prune(client: &Client, before_ms: i64, limit: usize) -> Result<Pruned, PgStoreError> {
    let row = client
        .query_one(
            PRUNE,
            &[&before_ms, &i64::try_from(limit).unwrap_or(i64::MAX)],
        )
        .await?;
    let (messages, deliveries): (i64, i64) = (row.get(0), row.get(1));
    Ok(Pruned {
        messages: usize::try_from(messages).unwrap_or(0),
        deliveries: usize::try_from(deliveries).unwrap_or(0),
    })
}
