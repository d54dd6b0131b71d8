//! The engine's HTTP side for operators: `/metrics` (Prometheus), `/health` (the process is
//! up) and `/ready` (listeners bound and the store open; 503 while shutting down). Off unless
//! `http: { listen: ... }` is in wyvern.yaml.

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
}

impl OpsServer {
    pub async fn bind(
        addr: SocketAddr,
        metrics: Metrics,
        ready: Arc<AtomicBool>,
        clock: Arc<dyn Clock>,
    ) -> std::io::Result<OpsServer> {
        let listener = tokio::net::TcpListener::bind(addr).await?;
        Ok(OpsServer {
            listener,
            app: App {
                metrics,
                ready,
                clock,
            },
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
            .with_state(self.app);
        tracing::info!(listen = ?addr, "HTTP ready: /metrics /health /ready");
        let served = axum::serve(self.listener, router)
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
    if app.ready.load(Ordering::Relaxed) {
        (StatusCode::OK, "ready\n")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
    }
}
