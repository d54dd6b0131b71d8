//! The cluster's audit log ([`AuditTrail`]): one hash chain for every node, so who read which
//! patient through any node is in one place, verified as a whole. An append takes a
//! transaction-scoped advisory lock, reads the newest hash and inserts after it, so appends
//! from several nodes chain in the order of their sequence numbers; it returns after the
//! commit (`synchronous_commit` as the database is set: on by default).

use tokio_postgres::IsolationLevel;
use wyvern_store::{AuditEntry, AuditEntryText, AuditRow, AuditTrail, StoreFuture, audit_hash};

use crate::Session;

/// The advisory lock appends take ("audit" in ASCII).
const AUDIT_LOCK: i64 = 0x61_7564_6974;

/// A node's handle on the shared audit log: one connection, made on first use.
#[derive(Debug)]
pub struct PgAudit {
    session: Session,
    /// Written with each record: the node the actor came through (not part of the hash).
    node: Option<String>,
}

impl PgAudit {
    pub fn new(url: impl Into<String>, node: Option<String>) -> PgAudit {
        PgAudit {
            session: Session::new(url),
            node,
        }
    }
}

/// A record's columns, in the order [`AuditRow::new`] takes them.
const COLUMNS: &str =
    "seq, at, actor, action, message_id, nhs_number, source, detail, hash, prev_hash";

impl AuditTrail for PgAudit {
    fn append(&self, e: AuditEntry) -> StoreFuture<'_, i64> {
        let all = self.append_all(vec![e]);
        Box::pin(async move { Ok(all.await?.first().copied().unwrap_or_default()) })
    }

    /// One transaction under the cluster's audit lock: each record chained to the one before.
    fn append_all(&self, entries: Vec<AuditEntry>) -> StoreFuture<'_, Vec<i64>> {
        Box::pin(self.session.run_mut(async move |client| {
            // Read committed, whatever the database's default: the newest hash must be read
            // after the lock is taken, not from a snapshot taken before it.
            let tx = client
                .build_transaction()
                .isolation_level(IsolationLevel::ReadCommitted)
                .start()
                .await?;
            tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
                .await?;
            let mut prev: [u8; 32] = tx
                .query_opt("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
                .await?
                .and_then(|r| r.get::<_, Vec<u8>>(0).try_into().ok())
                .unwrap_or(wyvern_store::AUDIT_GENESIS);
            let mut seqs = Vec::with_capacity(entries.len());
            for e in &entries {
                let hash = audit_hash(&prev, e);
                let seq: i64 = tx
                    .query_one(
                        "INSERT INTO audit (at, actor, action, message_id, nhs_number, source, \
                         detail, prev_hash, hash, node) \
                         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10) RETURNING seq",
                        &[
                            &e.at_ms,
                            &e.actor,
                            &e.action.as_str(),
                            &e.message_id,
                            &e.nhs_number,
                            &e.from,
                            &e.detail,
                            &&prev[..],
                            &&hash[..],
                            &self.node,
                        ],
                    )
                    .await?
                    .get(0);
                seqs.push(seq);
                prev = hash;
            }
            tx.commit().await?;
            Ok(seqs)
        }))
    }

    fn page(&self, after_seq: i64, limit: usize) -> StoreFuture<'_, Vec<AuditRow>> {
        Box::pin(self.session.run(async move |client| {
            let rows = client
                .query(
                    &format!("SELECT {COLUMNS} FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2"),
                    &[&after_seq, &i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .await?;
            Ok(rows
                .iter()
                .map(|r| {
                    AuditRow::new(
                        r.get(0),
                        AuditEntryText {
                            at_ms: r.get(1),
                            actor: r.get(2),
                            action: r.get(3),
                            message_id: r.get(4),
                            nhs_number: r.get(5),
                            from: r.get(6),
                            detail: r.get(7),
                        },
                        r.get(8),
                        r.get(9),
                    )
                })
                .collect())
        }))
    }
}
