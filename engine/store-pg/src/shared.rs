//! The PostgreSQL store as the engine sees it ([`SharedStore`]): this node's group committer,
//! and a delivery log (its own connection) for each of its workers.

use std::time::Duration;

use wyvern_store::{DeliveryLog, InboxRecord, PendingCommit, SharedStore, StoreError, StoreFuture};

use crate::{CommitOptions, PgCommitter, PgDeliveryLog, PgStoreError, connect, migrate};

/// One node's handle on the shared store.
#[derive(Debug)]
pub struct PgShared {
    url: String,
    node: String,
    lease: Duration,
    committer: PgCommitter,
}

impl PgShared {
    /// Connects, brings the schema up to date (once, whatever other nodes do at the same
    /// time) and starts this node's committer. A wrong URL, a refused password or a schema
    /// newer than this build fails here, at start.
    pub async fn open(
        url: impl Into<String>,
        node: impl Into<String>,
        lease: Duration,
    ) -> Result<PgShared, PgStoreError> {
        let (url, node) = (url.into(), node.into());
        let mut client = connect(&url).await?;
        migrate(&mut client).await?;
        client
            .execute(
                "INSERT INTO nodes (node, version) VALUES ($1, $2) \
                 ON CONFLICT (node) DO UPDATE SET version = excluded.version, \
                 started_at = now(), seen_at = now()",
                &[&node, &env!("CARGO_PKG_VERSION")],
            )
            .await?;
        let committer = PgCommitter::start(CommitOptions::new(url.clone(), node.clone())).await?;
        Ok(PgShared {
            url,
            node,
            lease,
            committer,
        })
    }
}

fn shared(e: PgStoreError) -> StoreError {
    StoreError::Shared(Box::new(e))
}

impl SharedStore for PgShared {
    fn submit(&self, record: InboxRecord) -> StoreFuture<'_, PendingCommit> {
        Box::pin(self.committer.submit(record))
    }

    fn delivery_log(&self) -> StoreFuture<'_, Box<dyn DeliveryLog>> {
        Box::pin(async {
            let log = PgDeliveryLog::open(&self.url, &self.node, self.lease)
                .await
                .map_err(shared)?;
            Ok(Box::new(log) as Box<dyn DeliveryLog>)
        })
    }

    fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committer.committed()
    }

    fn node(&self) -> &str {
        &self.node
    }
}
