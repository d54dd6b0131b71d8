//! The engine's HTTP side for operators: `/metrics` (Prometheus), `/health` (the process is
//! up) and `/ready` (listeners bound, the store open and every task running; 503 with the
//! reason while shutting down, when a task stopped unexpectedly, or while a delivery worker's
//! passes panic), and the operator API under `/api/v1` (`api/`, every call with a token). Off
//! unless `http: { listen: ... }` is in wyvern.yaml; HTTPS with `http.tls`.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use wyvern_core::Clock;

use crate::metrics::Metrics;

#[derive(Debug, Clone)]
struct App {
    metrics: Metrics,
    ready: Arc<AtomicBool>,
    clock: Arc<dyn Clock>,
}

/// A bound HTTP listener, ready to serve.
#[derive(Debug)]
pub struct OpsServer {
    listener: tokio::net::TcpListener,
    app: App,
    api: crate::api::ApiState,
    tls: Option<Arc<wyvern_connectors::tls::ServerTls>>,
}

impl OpsServer {
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        ready: Arc<AtomicBool>,
        api: crate::api::ApiState,
        tls: Option<Arc<wyvern_connectors::tls::ServerTls>>,
    ) -> std::io::Result<OpsServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(OpsServer {
            listener,
            app: App {
                metrics,
                ready,
                clock: api.clock.clone(),
            },
            api,
            tls,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let addr = self.local_addr().ok();
        let router = Router::new()
            .route("/metrics", get(metrics))
            .route("/health", get(|| async { "ok\n" }))
            .route("/ready", get(ready))
            .with_state(self.app)
            .merge(crate::api::router(self.api));
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        tracing::info!(listen = ?addr, scheme, "HTTP ready: /metrics /health /ready, the operator API at /api/v1");
        let limits = crate::http_limits::HttpLimits::operators(self.tls);
        let listener = crate::http_limits::LimitedListener::new(self.listener, limits, "(http)");
        let served = axum::serve(
            listener,
            router.into_make_service_with_connect_info::<crate::http_limits::ConnectedPeer>(),
        )
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "HTTP server stopped");
        }
    }
}

async fn metrics(State(app): State<App>) -> impl IntoResponse {
    let now = app.clock.now_millis();
    let m = app.metrics.clone();
    let body = tokio::task::spawn_blocking(move || m.render(now))
        .await
        .unwrap_or_default();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], body)
}

async fn ready(State(app): State<App>) -> impl IntoResponse {
    readiness(app.ready.load(Ordering::Relaxed), &app.metrics.destinations)
}

/// What `/ready` answers: 200, or 503 and why.
fn readiness(
    running: bool,
    destinations: &[(String, String, Arc<crate::delivery::DeliveryCounters>)],
) -> (StatusCode, String) {
    if !running {
        return (StatusCode::SERVICE_UNAVAILABLE, "not ready\n".into());
    }
    let faulted: Vec<String> = destinations
        .iter()
        .filter(|(_, _, c)| c.faulted.load(Ordering::Relaxed))
        .map(|(route, dest, _)| format!("{route}/{dest}"))
        .collect();
    if faulted.is_empty() {
        (StatusCode::OK, "ready\n".into())
    } else {
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "not ready: delivery to {} is failing on a defect (wyvern_delivery_panics_total, and the log)\n",
                faulted.join(", ")
            ),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::delivery::DeliveryCounters;

    #[test]
    fn ready_names_a_faulted_destination() {
        let c = Arc::new(DeliveryCounters::default());
        let dests = vec![("adt".to_string(), "chie".to_string(), c.clone())];
        assert_eq!(readiness(true, &dests).0, StatusCode::OK);
        c.faulted.store(true, Ordering::Relaxed);
        let (code, why) = readiness(true, &dests);
        assert_eq!(code, StatusCode::SERVICE_UNAVAILABLE);
        assert!(why.contains("adt/chie"), "{why}");
        assert_eq!(readiness(false, &[]).0, StatusCode::SERVICE_UNAVAILABLE);
    }
}
