//! What people do with deliveries, on whichever store holds them: list and look at dead
//! letters, put them back, give them up, replay a time range. The operator API and the CLI
//! call [`Operations`]; the embedded store ([`EmbeddedOperations`], over `outbox/ops.rs`) and
//! the shared PostgreSQL store (`wyvern-store-pg`) implement it, so a node of a cluster shows
//! and changes the cluster's dead letters, not only what its own folder holds.

use std::path::PathBuf;

use crate::{Outbox, OutboxItem, StoreError, StoreFuture};

/// Which dead letters a retry or purge acts on: one by number, or all of a route and
/// destination (`None`: any).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    pub seq: Option<i64>,
    pub route: Option<String>,
    pub destination: Option<String>,
}

/// A time range of a route to deliver again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Replay {
    pub route: String,
    pub destination: Option<String>,
    pub since_ms: i64,
    pub until_ms: i64,
}

/// The operator's side of a store.
pub trait Operations: Send + Sync + std::fmt::Debug {
    /// Dead letters (dead and held), newest first; optionally of one route / destination.
    fn dead_letters(
        &self,
        route: Option<String>,
        destination: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<OutboxItem>>;
    /// One delivery by its number, in whatever state.
    fn delivery(&self, seq: i64) -> StoreFuture<'_, Option<OutboxItem>>;
    /// Puts dead letters back with fresh attempts; how many.
    fn requeue(&self, which: Selection, now_ms: i64) -> StoreFuture<'_, usize>;
    /// Gives dead letters up (kept for the record); how many.
    fn purge(&self, which: Selection) -> StoreFuture<'_, usize>;
    /// Makes every delivery of the range that was settled due again; how many.
    fn replay(&self, replay: Replay, now_ms: i64) -> StoreFuture<'_, usize>;
}

/// [`Operations`] on the embedded store in `dir`: each call opens its own connection on the
/// blocking pool.
#[derive(Debug, Clone)]
pub struct EmbeddedOperations {
    pub dir: PathBuf,
}

impl EmbeddedOperations {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Outbox) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let dir = self.dir.clone();
        Box::pin(async move {
            tokio::task::spawn_blocking(move || f(Outbox::open(&dir)?))
                .await
                .map_err(|e| StoreError::Commit(format!("a store task failed: {e}")))?
        })
    }
}

impl Operations for EmbeddedOperations {
    fn dead_letters(
        &self,
        route: Option<String>,
        destination: Option<String>,
        limit: usize,
    ) -> StoreFuture<'_, Vec<OutboxItem>> {
        self.run(move |o| o.dead_letters(route.as_deref(), destination.as_deref(), limit))
    }

    fn delivery(&self, seq: i64) -> StoreFuture<'_, Option<OutboxItem>> {
        self.run(move |o| o.get(seq))
    }

    fn requeue(&self, which: Selection, now_ms: i64) -> StoreFuture<'_, usize> {
        self.run(move |o| {
            o.requeue(
                which.seq,
                which.route.as_deref(),
                which.destination.as_deref(),
                now_ms,
            )
        })
    }

    fn purge(&self, which: Selection) -> StoreFuture<'_, usize> {
        self.run(move |o| {
            o.purge(
                which.seq,
                which.route.as_deref(),
                which.destination.as_deref(),
            )
        })
    }

    fn replay(&self, r: Replay, now_ms: i64) -> StoreFuture<'_, usize> {
        self.run(move |o| {
            o.replay(
                &r.route,
                r.destination.as_deref(),
                r.since_ms,
                r.until_ms,
                now_ms,
            )
        })
    }
}
