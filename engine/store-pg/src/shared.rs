//! The PostgreSQL store as the engine sees it ([`SharedStore`]): this node's group committer,
//! a delivery log (its own connection) for each of its workers, and a heartbeat (`nodes.
//! seen_at`, every [`HEARTBEAT`]) so `wyvern cluster status` can tell a node that stopped.

use std::time::Duration;

use wyvern_store::{
    DeliveryLog, InboxRecord, Operations, PendingCommit, Pruned, SharedStore, StoreFuture,
};

use crate::{
    CommitOptions, PgCommitter, PgDeliveryLog, PgStoreError, connect, live_client, migrate,
    store_error,
};

/// How often a node says it is alive (`nodes.seen_at`).
pub const HEARTBEAT: Duration = Duration::from_secs(5);

/// One node's handle on the shared store.
#[derive(Debug)]
pub struct PgShared {
    url: String,
    node: String,
    lease: Duration,
    committer: PgCommitter,
    /// For the operator's reads (`depth`), opened on first use.
    reads: tokio::sync::Mutex<Option<tokio_postgres::Client>>,
    /// Ends the heartbeat with the handle.
    heartbeat: tokio::task::AbortHandle,
}

impl Drop for PgShared {
    fn drop(&mut self) {
        self.heartbeat.abort();
    }
}

/// Moves this node's `seen_at` every [`HEARTBEAT`] (reconnecting after an error, quietly: the
/// committer and the workers report an unreachable database).
async fn heartbeat(url: String, node: String) {
    let mut client = None;
    let mut tick = tokio::time::interval(HEARTBEAT);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        if let Ok(c) = live_client(&mut client, &url).await {
            let _ = c
                .execute("UPDATE nodes SET seen_at = now() WHERE node = $1", &[&node])
                .await;
        }
    }
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
        let heartbeat = tokio::spawn(heartbeat(url.clone(), node.clone())).abort_handle();
        Ok(PgShared {
            url,
            node,
            lease,
            committer,
            reads: tokio::sync::Mutex::new(None),
            heartbeat,
        })
    }
}

impl SharedStore for PgShared {
    fn submit(&self, record: InboxRecord) -> StoreFuture<'_, PendingCommit> {
        Box::pin(self.committer.submit(record))
    }

    fn delivery_log(&self) -> StoreFuture<'_, Box<dyn DeliveryLog>> {
        Box::pin(async {
            let log = PgDeliveryLog::open(&self.url, &self.node, self.lease)
                .await
                .map_err(store_error)?;
            Ok(Box::new(log) as Box<dyn DeliveryLog>)
        })
    }

    fn committed(&self) -> tokio::sync::watch::Receiver<u64> {
        self.committer.committed()
    }

    fn node(&self) -> &str {
        &self.node
    }

    fn depth<'a>(
        &'a self,
        route: &'a str,
        destination: &'a str,
    ) -> StoreFuture<'a, (i64, Option<i64>)> {
        Box::pin(async move {
            let mut reads = self.reads.lock().await;
            let client = live_client(&mut reads, &self.url)
                .await
                .map_err(store_error)?;
            crate::lane_depth(client, route, destination)
                .await
                .map_err(store_error)
        })
    }

    fn cluster_status(&self) -> StoreFuture<'_, wyvern_store::ClusterStatus> {
        Box::pin(async move {
            let mut reads = self.reads.lock().await;
            let client = live_client(&mut reads, &self.url)
                .await
                .map_err(store_error)?;
            crate::cluster_status(client).await.map_err(store_error)
        })
    }

    fn tokens(&self) -> std::sync::Arc<dyn wyvern_store::TokenStore> {
        std::sync::Arc::new(crate::PgTokens::new(self.url.clone()))
    }

    fn audit(&self) -> std::sync::Arc<dyn wyvern_store::AuditTrail> {
        std::sync::Arc::new(crate::PgAudit::new(
            self.url.clone(),
            Some(self.node.clone()),
        ))
    }

    fn operations(&self) -> std::sync::Arc<dyn Operations> {
        std::sync::Arc::new(crate::PgOperations::new(self.url.clone()))
    }

    fn prune(&self, before_ms: i64) -> StoreFuture<'_, Pruned> {
        Box::pin(async move {
            let mut total = Pruned::default();
            loop {
                let mut reads = self.reads.lock().await;
                let client = live_client(&mut reads, &self.url)
                    .await
                    .map_err(store_error)?;
                let p = crate::prune(client, before_ms, PRUNE_BATCH)
                    .await
                    .map_err(store_error)?;
                total.messages += p.messages;
                total.deliveries += p.deliveries;
                if p.messages < PRUNE_BATCH {
                    return Ok(total);
                }
            }
        })
    }
}

/// Messages per pruning transaction (the lock on the operator's connection is let go between
/// them, so a depth read never waits long).
const PRUNE_BATCH: usize = 1000;
