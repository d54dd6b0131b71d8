//! Retention: messages older than the configured age leave the store, with their
//! deliveries — but only once every destination is finished with them (delivered or purged). A
//! message with a pending delivery or a dead letter stays, however old, until a person
//! retries or purges it.
//!
//! Why a floor of an hour ([`MIN_RETENTION`]): a record is in the journal until the index
//! checkpoint covers it, and a journal replay re-inserts what it holds. Checkpoints run every
//! few seconds, so an hour-old record is never still in the journal, and pruning can never be
//! undone by a replay into pending deliveries.

use std::time::Duration;

use rusqlite::params;

use crate::{Outbox, StoreError};

/// The shortest retention the store accepts.
pub const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// What one pruning pass removed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pruned {
    pub messages: usize,
    pub deliveries: usize,
}

impl Outbox {
    /// Removes up to `limit` finished messages received before `before_ms` (oldest first), in
    /// one transaction. Call again while it returns `limit` messages. A message is finished
    /// when each of its deliveries is behind its lane's cursor and delivered, purged or moved to
    /// another store.
    pub fn prune(&self, before_ms: i64, limit: usize) -> Result<Pruned, StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(StoreError::Write)?;
        let messages: Vec<(i64, Option<String>)> = {
            let mut stmt = tx
                .prepare_cached(
                    "SELECT i.seq, i.nhs_number FROM inbox i WHERE i.received_at < ?1 AND NOT EXISTS \
                     (SELECT 1 FROM deliveries d JOIN lanes l ON l.lane = d.lane \
                      LEFT JOIN delivery_exceptions e ON e.seq = d.seq WHERE d.message = i.seq \
                      AND (CASE WHEN e.seq IS NULL THEN d.seq >= l.done_below \
                           ELSE e.state NOT IN ('delivered', 'purged', 'moved') END)) \
                     ORDER BY i.seq LIMIT ?2",
                )
                .map_err(StoreError::Query)?;
            stmt.query_map(params![before_ms, limit as i64], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .map_err(StoreError::Query)?
            .collect::<Result<_, _>>()
            .map_err(StoreError::Query)?
        };
        let mut pruned = Pruned::default();
        if !messages.is_empty() {
            // The patient index outlives the messages: what is still pending goes in first.
            crate::patient_index::add_pending(&tx)?;
        }
        {
            let mut exceptions = tx
                .prepare_cached(
                    "DELETE FROM delivery_exceptions WHERE seq IN \
                     (SELECT seq FROM deliveries WHERE message = ?1)",
                )
                .map_err(StoreError::Write)?;
            let mut deliveries = tx
                .prepare_cached("DELETE FROM deliveries WHERE message = ?1")
                .map_err(StoreError::Write)?;
            let mut inbox = tx
                .prepare_cached("DELETE FROM inbox WHERE seq = ?1")
                .map_err(StoreError::Write)?;
            for (m, nhs_number) in &messages {
                if let Some(nhs) = nhs_number {
                    crate::nhs_index::remove(&tx, *m, nhs)?;
                }
                exceptions.execute([m]).map_err(StoreError::Write)?;
                pruned.deliveries += deliveries.execute([m]).map_err(StoreError::Write)?;
                pruned.messages += inbox.execute([m]).map_err(StoreError::Write)?;
            }
        }
        tx.commit().map_err(StoreError::Write)?;
        Ok(pruned)
    }

    /// Prunes in batches until nothing older is left; returns the total.
    pub fn prune_all(&self, before_ms: i64) -> Result<Pruned, StoreError> {
        const BATCH: usize = 2_000;
        let mut total = Pruned::default();
        loop {
            let p = self.prune(before_ms, BATCH)?;
            total.messages += p.messages;
            total.deliveries += p.deliveries;
            if p.messages < BATCH {
                return Ok(total);
            }
        }
    }
}
