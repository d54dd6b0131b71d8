//! The seam for a store several nodes share (PostgreSQL, in `wyvern-store-pg`): what the engine
//! needs of it, so that the runtime and its tests never link a database driver. The binary
//! opens the shared store when `store.shared` is configured and hands it to the engine as a
//! [`SharedStore`]; everything else keeps the embedded store's types ([`PendingCommit`],
//! [`DeliveryLog`]).

use std::future::Future;
use std::pin::Pin;

use crate::{AuditTrail, DeliveryLog, InboxRecord, Operations, PendingCommit, Pruned, StoreError};

/// A boxed future of a store call.
pub type StoreFuture<'a, T> = Pin<Box<dyn Future<Output = Result<T, StoreError>> + Send + 'a>>;

/// A blocking call on the embedded store (its own SQLite connection) as a [`StoreFuture`], run
/// on the blocking pool.
pub(crate) fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> StoreFuture<'static, T> {
    Box::pin(async move {
        tokio::task::spawn_blocking(f)
            .await
            .map_err(StoreError::Task)?
    })
}

/// A store shared by several active nodes.
pub trait SharedStore: Send + Sync + std::fmt::Debug {
    /// Queues a record for this node's next group commit; waits only for the byte budget.
    fn submit(&self, record: InboxRecord) -> StoreFuture<'_, PendingCommit>;
    /// A delivery log for one worker (its own connection).
    fn delivery_log(&self) -> StoreFuture<'_, Box<dyn DeliveryLog>>;
    /// Moves after each of this node's commits, so its workers look at once; what other nodes
    /// commit is found by the workers' regular look (at most a second apart).
    fn committed(&self) -> tokio::sync::watch::Receiver<u64>;
    /// This node's name among those sharing the store.
    fn node(&self) -> &str;
    /// Deliveries waiting for `destination` of `route`, whichever node will send them, and
    /// when the oldest of their messages was received (ms since the epoch).
    fn depth<'a>(
        &'a self,
        route: &'a str,
        destination: &'a str,
    ) -> StoreFuture<'a, (i64, Option<i64>)>;
    /// Removes the messages received before `before_ms` that every destination is finished
    /// with (retention), in batches; what it removed.
    fn prune(&self, before_ms: i64) -> StoreFuture<'_, Pruned>;
    /// The operator's side of the shared store (dead letters, replay), for the API.
    fn operations(&self) -> std::sync::Arc<dyn Operations>;
    /// The cluster's audit log (one chain for every node).
    fn audit(&self) -> std::sync::Arc<dyn AuditTrail>;
    /// The operator API's tokens, the same on every node.
    fn tokens(&self) -> std::sync::Arc<dyn crate::TokenStore>;
    /// The nodes, who delivers which share of each destination, what waits.
    fn cluster_status(&self) -> StoreFuture<'_, crate::ClusterStatus>;
}
