//! The operator API (`/api/v1`, JSON): routes and their counters, message search and detail,
//! deliveries, dead letters (list, retry, purge), replay, and tokens. Served on the engine's
//! `http:` listener beside /metrics, /health and /ready, and described by the OpenAPI document
//! at `/api/v1/openapi.json` (`openapi.json` here: the contract the tests hold it to).
//!
//! Invariants:
//! - Every call needs a bearer token whose role allows it (`auth.rs`): `viewer` reads
//!   metadata, `operator` also reads bodies and acts (retry, purge, replay), `admin` also
//!   manages tokens. Refusals are audited.
//! - Anything that shows a patient's message or changes what is delivered is written to the
//!   audit log *before* it happens; if the record cannot be written, the call fails (503) and
//!   nothing is shown or changed — as with the CLI.
//! - The store is read and written on blocking threads; a handler never holds a connection
//!   across an await.

mod auth;
mod cluster;
mod dead_letters;
mod error;
mod messages;
mod routes;
mod tokens;

use std::net::IpAddr;
use std::sync::Arc;

use axum::Router;
use axum::http::header;
use axum::response::IntoResponse;
use axum::routing::{delete, get, post};
use wyvern_core::Clock;
use wyvern_store::AuditEntry;

pub use auth::Principal;
pub use error::ApiError;
pub use routes::RouteView;
pub use tokens::{new_secret as new_token_secret, valid_name as valid_token_name};

/// The OpenAPI document (3.0) of this API.
pub const OPENAPI: &str = include_str!("openapi.json");

/// What the handlers share.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// Messages, dead letters and replays: the shared store's on a node of one, else the
    /// embedded.
    pub operations: Arc<dyn wyvern_store::Operations>,
    /// The audit log: the cluster's on a node of one, else the store folder's.
    pub audit: Arc<dyn wyvern_store::AuditTrail>,
    /// The API's tokens: the cluster's on a node of one, else the store folder's.
    pub tokens: Arc<dyn wyvern_store::TokenStore>,
    /// The store this node shares with others, if it does (`/api/v1/cluster`).
    pub shared: Option<Arc<dyn wyvern_store::SharedStore>>,
    pub clock: Arc<dyn Clock>,
    pub routes: Arc<Vec<RouteView>>,
    /// Refusals being written to the audit log (bounded), and those counted instead.
    pub refusals: Arc<RefusalWriter>,
}

/// Refusal records in flight to the audit log: at most [`RefusalWriter::IN_FLIGHT`], so a flood
/// of bad tokens cannot queue without bound (nor hold the cluster's audit lock for long).
/// Past that, refusals are counted, and the next one written carries the count.
#[derive(Debug)]
pub struct RefusalWriter {
    in_flight: Arc<tokio::sync::Semaphore>,
    uncounted: std::sync::atomic::AtomicU64,
}

impl RefusalWriter {
    pub const IN_FLIGHT: usize = 64;
}

impl Default for RefusalWriter {
    fn default() -> Self {
        RefusalWriter {
            in_flight: Arc::new(tokio::sync::Semaphore::new(Self::IN_FLIGHT)),
            uncounted: std::sync::atomic::AtomicU64::new(0),
        }
    }
}

impl ApiState {
    /// Writes `entry` to the audit log; the call fails if it cannot be written.
    pub async fn record(&self, entry: AuditEntry) -> Result<(), ApiError> {
        self.audit.append(entry).await?;
        Ok(())
    }

    /// Writes `entry` without waiting (refusals: the caller gets its 401/403 regardless); when
    /// too many are in flight, counts it instead (see [`RefusalWriter`]).
    pub fn audit(&self, mut entry: AuditEntry) {
        use std::sync::atomic::Ordering;
        let w = &self.refusals;
        let Ok(permit) = w.in_flight.clone().try_acquire_owned() else {
            w.uncounted.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let missed = w.uncounted.swap(0, Ordering::Relaxed);
        if missed > 0 {
            let note = format!(
                "(and {missed} more API refusal(s) before it, not itemised: too many at once)"
            );
            entry.detail = Some(match entry.detail.take() {
                Some(d) => format!("{d} {note}"),
                None => note,
            });
        }
        let audit = self.audit.clone();
        tokio::spawn(async move {
            if let Err(e) = audit.append(entry).await {
                tracing::error!(error = %e, "cannot write an API refusal to the audit log");
            }
            drop(permit);
        });
    }
}

/// An audit entry by `who`.
fn entry(
    state: &ApiState,
    who: &Principal,
    action: wyvern_store::AuditAction,
    message_id: Option<String>,
    nhs_number: Option<String>,
    detail: Option<String>,
) -> AuditEntry {
    AuditEntry {
        at_ms: state.clock.now_millis(),
        actor: who.actor(),
        action,
        message_id,
        nhs_number,
        from: Some(ip_text(who.from)),
        detail,
    }
}

fn ip_text(ip: IpAddr) -> String {
    ip.to_canonical().to_string()
}

/// The API's routes, to merge into the engine's HTTP router (whose `ConnectInfo` is a
/// [`crate::http_limits::ConnectedPeer`]).
pub fn router(state: ApiState) -> Router {
    Router::new()
        .route("/api/v1/openapi.json", get(openapi))
        .route("/api/v1/routes", get(routes::list))
        .route("/api/v1/cluster", get(cluster::status))
        .route("/api/v1/routes/{name}/{action}", post(routes::switch))
        .route("/api/v1/messages", get(messages::search))
        .route("/api/v1/messages/{id}", get(messages::detail))
        .route("/api/v1/messages/{id}/body", get(messages::body))
        .route("/api/v1/dead-letters", get(dead_letters::list))
        .route(
            "/api/v1/dead-letters/{seq}/retry",
            post(dead_letters::retry),
        )
        .route(
            "/api/v1/dead-letters/{seq}/purge",
            post(dead_letters::purge),
        )
        .route("/api/v1/replay", post(dead_letters::replay))
        .route("/api/v1/tokens", get(tokens::list).post(tokens::create))
        .route("/api/v1/tokens/{name}", delete(tokens::revoke))
        .fallback(not_found)
        .with_state(state)
}

async fn openapi(
    axum::extract::State(s): axum::extract::State<ApiState>,
    peer: Caller,
    headers: axum::http::HeaderMap,
) -> Result<impl IntoResponse, ApiError> {
    auth::authorize(
        &s,
        &headers,
        peer.0,
        wyvern_store::TokenRole::Viewer,
        "reading the API document",
    )
    .await?;
    Ok(([(header::CONTENT_TYPE, "application/json")], OPENAPI))
}

async fn not_found() -> ApiError {
    ApiError::NotFound("no such API path: see /api/v1/openapi.json".into())
}

/// The caller's address, from the listener's `ConnectInfo`.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub IpAddr);

impl<S: Send + Sync> axum::extract::FromRequestParts<S> for Caller {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        _: &S,
    ) -> Result<Self, Self::Rejection> {
        let ip = parts
            .extensions
            .get::<axum::extract::ConnectInfo<crate::http_limits::ConnectedPeer>>()
            .map_or(IpAddr::from([127, 0, 0, 1]), |c| c.0.0.addr.ip());
        Ok(Caller(ip))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An audit log that never answers: every append stays in flight.
    #[derive(Debug)]
    struct Stuck;

    impl wyvern_store::AuditTrail for Stuck {
        fn append(&self, _: AuditEntry) -> wyvern_store::StoreFuture<'_, i64> {
            Box::pin(std::future::pending())
        }
        fn page(
            &self,
            _: i64,
            _: usize,
        ) -> wyvern_store::StoreFuture<'_, Vec<wyvern_store::AuditRow>> {
            Box::pin(std::future::pending())
        }
    }

    #[tokio::test]
    async fn a_flood_of_refusals_is_counted_not_queued_without_bound() {
        let dir = tempfile::tempdir().unwrap();
        let state = ApiState {
            operations: Arc::new(wyvern_store::EmbeddedOperations {
                dir: dir.path().into(),
            }),
            audit: Arc::new(Stuck),
            tokens: Arc::new(wyvern_store::EmbeddedTokens {
                dir: dir.path().into(),
            }),
            shared: None,
            clock: Arc::new(wyvern_core::SystemClock),
            routes: Arc::default(),
            refusals: Arc::default(),
        };
        let refusal = AuditEntry {
            at_ms: 1,
            actor: "network:127.0.0.1".into(),
            action: wyvern_store::AuditAction::Denied,
            message_id: None,
            nhs_number: None,
            from: None,
            detail: None,
        };
        for _ in 0..100 {
            state.audit(refusal.clone());
        }
        let w = &state.refusals;
        assert_eq!(w.in_flight.available_permits(), 0);
        assert_eq!(
            w.uncounted.load(std::sync::atomic::Ordering::Relaxed),
            100 - RefusalWriter::IN_FLIGHT as u64,
            "the rest counted, to be written with the next refusal"
        );
    }
}
