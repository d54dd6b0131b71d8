//! The cluster's audit log ([`AuditTrail`]): one hash chain for every node, so who read which
//! patient through any node is in one place, verified as a whole. An append takes a
//! transaction-scoped advisory lock, reads the newest hash and inserts after it, so appends
//! from several nodes chain in the order of their sequence numbers; it returns after the
//! commit (`synchronous_commit` as the database is set: on by default).

use wyvern_store::{
    AuditEntry, AuditEntryText, AuditRow, AuditTrail, StoreError, StoreFuture, audit_hash,
};

use crate::{PgStoreError, live_client};

/// The advisory lock appends take ("audit" in ASCII).
const AUDIT_LOCK: i64 = 0x61_7564_6974;

/// A node's handle on the shared audit log: one connection, made on first use.
#[derive(Debug)]
pub struct PgAudit {
    url: String,
    /// Written with each record: the node the actor came through.
    node: Option<String>,
    client: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
}

impl PgAudit {
    pub fn new(url: impl Into<String>, node: Option<String>) -> PgAudit {
        PgAudit {
            url: url.into(),
            node,
            client: tokio::sync::Mutex::new(None),
        }
    }
}

fn shared(e: PgStoreError) -> StoreError {
    StoreError::Shared(Box::new(e))
}

impl AuditTrail for PgAudit {
    fn append(&self, e: AuditEntry) -> StoreFuture<'_, i64> {
        Box::pin(async move {
            let mut guard = self.client.lock().await;
            live_client(&mut guard, &self.url).await.map_err(shared)?;
            let client = guard.as_mut().expect("connected above");
            let appended: Result<i64, PgStoreError> = async {
                let tx = client.transaction().await?;
                tx.execute("SELECT pg_advisory_xact_lock($1)", &[&AUDIT_LOCK])
                    .await?;
                let prev: [u8; 32] = tx
                    .query_opt("SELECT hash FROM audit ORDER BY seq DESC LIMIT 1", &[])
                    .await?
                    .and_then(|r| r.get::<_, Vec<u8>>(0).try_into().ok())
                    .unwrap_or(wyvern_store::AUDIT_GENESIS);
                let hash = audit_hash(&prev, &e);
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
                tx.commit().await?;
                Ok(seq)
            }
            .await;
            appended.map_err(shared)
        })
    }

    fn page(&self, after_seq: i64, limit: usize) -> StoreFuture<'_, Vec<AuditRow>> {
        Box::pin(async move {
            let mut guard = self.client.lock().await;
            let client = live_client(&mut guard, &self.url).await.map_err(shared)?;
            let rows = client
                .query(
                    "SELECT seq, at, actor, action, message_id, nhs_number, source, detail, \
                     hash, prev_hash FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2",
                    &[&after_seq, &i64::try_from(limit).unwrap_or(i64::MAX)],
                )
                .await
                .map_err(|e| shared(e.into()))?;
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
        })
    }
}
