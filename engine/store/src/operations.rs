//! What people do with messages and deliveries, on whichever store holds them: search and
//! read messages, see where each went, list and look at dead letters, put them back, give
//! them up, replay a time range. The operator API and the CLI call [`Operations`]; the
//! embedded store ([`EmbeddedOperations`], over `reader.rs` and `outbox/ops.rs`) and the
//! shared PostgreSQL store (`wyvern-store-pg`) implement it, so a node of a cluster shows and
//! changes the cluster's messages, not only what its own folder holds.

use std::path::PathBuf;

use crate::shared::blocking;
use crate::{
    InboxQuery, InboxReader, InboxRow, Outbox, OutboxItem, StatusCount, StoreError, StoreFuture,
};

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
    /// Messages matching a query, newest first (without their bytes).
    fn messages(&self, query: InboxQuery) -> StoreFuture<'_, Vec<InboxRow>>;
    /// One message with its bytes and ACK, by id or sequence number.
    fn message(&self, id_or_seq: String) -> StoreFuture<'_, Option<InboxRow>>;
    /// Every delivery of one message, oldest first.
    fn deliveries_of(&self, message_id: String) -> StoreFuture<'_, Vec<OutboxItem>>;
    /// How many messages have each status.
    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>>;
    /// The (route, destination) of every lane that has carried a message about this NHS
    /// number (the regional patient index), in order.
    fn lanes_of(&self, nhs_number: String) -> StoreFuture<'_, Vec<(String, String)>>;
    /// Deliveries waiting for a destination, and when the oldest's message was received.
    fn depth(&self, route: String, destination: String) -> StoreFuture<'_, (i64, Option<i64>)>;
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
    /// A page of a route's messages in a time range, oldest first, with their bytes, ACKs and
    /// what was queued for each destination (shadow replay reads; it changes nothing).
    fn traffic(&self, query: crate::TrafficQuery) -> StoreFuture<'_, Vec<crate::StoredTraffic>>;
}

/// [`Operations`] on the embedded store in `dir`: each call opens its own connection on the
/// blocking pool.
#[derive(Debug, Clone)]
pub struct EmbeddedOperations {
    pub dir: PathBuf,
}

impl EmbeddedOperations {
    fn read<T: Send + 'static>(
        &self,
        f: impl FnOnce(InboxReader) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let dir = self.dir.clone();
        blocking(move || f(InboxReader::open(&dir)?))
    }

    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Outbox) -> Result<T, StoreError> + Send + 'static,
    ) -> StoreFuture<'_, T> {
        let dir = self.dir.clone();
        blocking(move || f(Outbox::open(&dir)?))
    }
}

impl Operations for EmbeddedOperations {
    fn messages(&self, query: InboxQuery) -> StoreFuture<'_, Vec<InboxRow>> {
        self.read(move |r| r.list(&query))
    }

    fn message(&self, id_or_seq: String) -> StoreFuture<'_, Option<InboxRow>> {
        self.read(move |r| r.get(&id_or_seq))
    }

    fn traffic(&self, query: crate::TrafficQuery) -> StoreFuture<'_, Vec<crate::StoredTraffic>> {
        self.read(move |r| r.traffic(&query))
    }

    fn deliveries_of(&self, message_id: String) -> StoreFuture<'_, Vec<OutboxItem>> {
        self.run(move |o| o.of_message(&message_id))
    }

    fn counts(&self) -> StoreFuture<'_, Vec<StatusCount>> {
        self.read(|r| r.counts())
    }

    fn lanes_of(&self, nhs_number: String) -> StoreFuture<'_, Vec<(String, String)>> {
        self.read(move |r| r.lanes_of(&nhs_number))
    }

    fn depth(&self, route: String, destination: String) -> StoreFuture<'_, (i64, Option<i64>)> {
        self.run(move |o| o.depth(&route, &destination))
    }

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
