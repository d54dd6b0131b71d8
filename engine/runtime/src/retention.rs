//! The retention sweeper: every few minutes, remove messages older than `store.retention`
//! whose destinations are all finished (see `wyvern_store::Store::prune`: first the journal is
//! emptied of them, so an unclean stop cannot bring them back). It runs on the blocking pool
//! with its own connection, in batches, so it never holds the index for long. On a node of a
//! shared store it prunes that store too (every node does; they do not wait on each other),
//! and its own local store still (what it held before it joined).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use wyvern_core::Clock;
use wyvern_store::{Pruned, SharedStore, Store, StoreError};

/// How often to look. Retention is at least an hour, so ten minutes keeps the store within
/// a sixth of it.
const EVERY: Duration = Duration::from_secs(600);

#[derive(Debug)]
pub struct RetentionSweeper {
    pub store: Store,
    /// The store several nodes share, when this node is one of them.
    pub shared: Option<Arc<dyn SharedStore>>,
    pub retention: Duration,
    pub clock: Arc<dyn Clock>,
    /// Messages removed so far (the `wyvern_retention_pruned_total` metric).
    pub pruned: Arc<AtomicU64>,
}

impl RetentionSweeper {
    pub async fn run(self, shutdown: CancellationToken) {
        // The first pass waits a little: start-up (recovery, dedup seeding) comes first.
        let mut wait = Duration::from_secs(30);
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(wait) => {}
            }
            wait = EVERY;
            let before = self.clock.now_millis()
                - i64::try_from(self.retention.as_millis()).unwrap_or(i64::MAX);
            self.report("the local store", self.store.prune(before).await);
            if let Some(shared) = &self.shared {
                self.report("the shared store", shared.prune(before).await);
            }
        }
    }

    fn report(&self, store: &str, outcome: Result<Pruned, StoreError>) {
        match outcome {
            Ok(p) if p.messages > 0 => {
                self.pruned.fetch_add(p.messages as u64, Ordering::Relaxed);
                tracing::info!(
                    store,
                    messages = p.messages,
                    deliveries = p.deliveries,
                    retention = %humantime_like(self.retention),
                    "retention: removed finished messages"
                );
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(store, error = %e, "retention pass failed; will try again"),
        }
    }
}

/// `30d`, `12h`, `90m` for the log.
fn humantime_like(d: Duration) -> String {
    let s = d.as_secs();
    match s {
        _ if s.is_multiple_of(86_400) => format!("{}d", s / 86_400),
        _ if s.is_multiple_of(3_600) => format!("{}h", s / 3_600),
        _ => format!("{}m", s / 60),
    }
}
