//! Sources: where a route's messages come from — an MLLP listener, a folder, a queue, a FHIR
//! endpoint. [`build`] turns a route's source config into the one shape the engine runs, a
//! [`Source`]: started, supervised and stopped the same way whatever its kind, so what applies
//! to every source (limits, peer rules, audit) has one place to go, and a new kind is a file
//! here plus its config.
//!
//! Invariant (every kind): a source hands each message to the route's intake and acknowledges
//! it to its sender — ACK, broker ack, file moved, HTTP answer — only from the outcome the
//! store gave; at shutdown it stops taking new messages and answers the ones it already took.

mod amqp;
pub(crate) mod directory;
pub mod fhir;
pub(crate) mod fhir_auth;
pub(crate) mod fhir_intake;
mod mllp;

use std::net::SocketAddr;
use std::sync::Arc;

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use wyvern_config::{Route, Source as SourceConfig};
use wyvern_core::Clock;
use wyvern_store::Store;

use crate::engine::{BuildError, seeded_window};
use crate::transform::TransformLoader;
use crate::{Hl7Inbox, RouteCounters, RoutePlan};

/// A route's source, built and ready to run.
pub trait Source: Send + std::fmt::Debug + 'static {
    /// What logs and readiness call it, e.g. `MLLP listener adt-in`.
    fn name(&self) -> String;
    /// The address it listens on, for a kind that listens.
    fn local_addr(&self) -> Option<SocketAddr> {
        None
    }
    /// Takes messages until `shutdown`; then stops taking new ones and answers those it took.
    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, ()>;
}

/// What building any source needs.
pub(crate) struct SourceContext<'a> {
    pub store: &'a Store,
    /// Where received messages are committed (the embedded store, or a shared one).
    pub ingest: &'a crate::intake::ingest::Ingest,
    pub clock: Arc<dyn Clock>,
    pub plugins: &'a dyn TransformLoader,
}

/// Builds (and for a listener, binds) the source of `route`; its counters go to /metrics.
pub(crate) async fn build(
    route: &Route,
    ctx: &SourceContext<'_>,
) -> Result<(Box<dyn Source>, Arc<RouteCounters>), BuildError> {
    Ok(match &route.source {
        // No HL7v2 inbox: no steps, no duplicate window (resources are upserts).
        SourceConfig::Fhir(f) => fhir::build(route, f, ctx).await?,
        SourceConfig::Mllp(m) => {
            let max_frame = usize::try_from(m.max_frame).unwrap_or(usize::MAX);
            let (inbox, counters) = hl7_inbox(route, ctx, max_frame)?;
            // Only a connection has a peer to bind to a sending facility.
            let inbox = inbox.with_senders(m.senders.clone(), m.sender_mismatch);
            (
                mllp::build(route, m, max_frame, inbox, &counters).await?,
                counters,
            )
        }
        // A message from a file or a queue can be as large as it is: no frame limit there.
        SourceConfig::Directory(d) => {
            let (inbox, counters) = hl7_inbox(route, ctx, usize::MAX)?;
            (directory::build(route, d, inbox), counters)
        }
        SourceConfig::Amqp(a) => {
            let (inbox, counters) = hl7_inbox(route, ctx, usize::MAX)?;
            (amqp::build(route, a, inbox)?, counters)
        }
    })
}

/// The intake of an HL7v2 route: its steps, its duplicate window (seeded from the store) and
/// the store.
fn hl7_inbox(
    route: &Route,
    ctx: &SourceContext<'_>,
    max_frame: usize,
) -> Result<(Hl7Inbox, Arc<RouteCounters>), BuildError> {
    let plan = RoutePlan::load(route, ctx.plugins).map_err(|reason| BuildError::Plugin {
        route: route.name.clone(),
        reason,
    })?;
    let dedup = Arc::new(seeded_window(ctx.store, &route.name));
    let inbox = Hl7Inbox::new(
        plan,
        ctx.ingest.clone(),
        ctx.clock.clone(),
        max_frame,
        dedup,
    )
    .with_control_id_reuse(route.control_id_reuse);
    let counters = inbox.counters();
    Ok((inbox, counters))
}
