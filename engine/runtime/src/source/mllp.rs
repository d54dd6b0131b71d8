//! The MLLP source: a listener (`wyvern_connectors::mllp`, plaintext or TLS) whose frames go
//! to the route's HL7v2 inbox, each ACK written from the stored outcome.

use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;
use wyvern_config::{MllpSource, Route};
use wyvern_connectors::mllp::{MllpListener, MllpListenerOptions};

use super::Source;
use crate::Hl7Inbox;
use crate::engine::BuildError;

impl Source for MllpListener<Hl7Inbox> {
    fn name(&self) -> String {
        format!("MLLP listener {}", self.route())
    }

    fn local_addr(&self) -> Option<std::net::SocketAddr> {
        MllpListener::local_addr(self).ok()
    }

    fn run(self: Box<Self>, shutdown: CancellationToken) -> BoxFuture<'static, ()> {
        Box::pin(MllpListener::run(*self, shutdown))
    }
}

/// Binds the listener now, so a port in use fails the build, not the run.
pub(super) async fn build(
    route: &Route,
    m: &MllpSource,
    max_frame: usize,
    inbox: Hl7Inbox,
    counters: &crate::RouteCounters,
) -> Result<Box<dyn Source>, BuildError> {
    let mut lo = MllpListenerOptions::new(&route.name, m.listen);
    lo.max_frame = max_frame;
    lo.max_connections = m.max_connections as usize;
    lo.max_connections_per_peer = m.max_connections_per_peer as usize;
    lo.allow_from = m.allow_from.clone();
    lo.refusals = counters.refusals.clone();
    if let Some(t) = &m.tls {
        let tls =
            crate::tls::server(format!("route {} MLLP listener", route.name), t).map_err(|e| {
                BuildError::Source {
                    route: route.name.clone(),
                    reason: e.to_string(),
                }
            })?;
        lo.tls = Some(tls);
        lo.allow_subjects = t.allow_subjects.clone();
    }
    lo.idle_timeout = m.idle_timeout;
    lo.frame_timeout = m.frame_timeout;
    lo.max_in_flight = m.max_in_flight as usize;
    let listener = MllpListener::bind(lo, std::sync::Arc::new(inbox))
        .await
        .map_err(|source| BuildError::Bind {
            route: route.name.clone(),
            addr: m.listen,
            source,
        })?;
    Ok(Box::new(listener))
}
