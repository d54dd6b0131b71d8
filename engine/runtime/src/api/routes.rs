//! `GET /api/v1/routes`: each route, its source, its counters and each destination's queue.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Json;
use axum::extract::State;
use axum::http::HeaderMap;
use serde_json::{Value, json};
use wyvern_store::TokenRole;

use super::{ApiError, ApiState, Caller, auth};
use crate::RouteCounters;

/// What the API says about a route (built once, when the engine is).
#[derive(Debug, Clone)]
pub struct RouteView {
    pub name: String,
    /// `mllp`, `fhir`, `directory` or `amqp`.
    pub source: &'static str,
    /// Where it listens or reads, for people.
    pub from: String,
    pub destinations: Vec<String>,
    pub counters: Arc<RouteCounters>,
}

impl RouteView {
    pub fn of(route: &wyvern_config::Route, counters: Arc<RouteCounters>) -> RouteView {
        use wyvern_config::Source;
        let (source, from) = match &route.source {
            Source::Mllp(m) => ("mllp", m.listen.to_string()),
            Source::Fhir(f) => ("fhir", f.listen.to_string()),
            Source::Directory(d) => ("directory", d.path.display().to_string()),
            Source::Amqp(a) => ("amqp", a.queue.clone()),
        };
        RouteView {
            name: route.name.clone(),
            source,
            from,
            destinations: route.destinations.iter().map(|d| d.name.clone()).collect(),
            counters,
        }
    }
}

/// `POST /api/v1/routes/{name}/{stop|start|pause|resume}` (operator; audited).
pub async fn switch(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    axum::extract::Path((name, action)): axum::extract::Path<(String, String)>,
) -> Result<Json<Value>, ApiError> {
    let who = auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Operator,
        "switching a route",
    )
    .await?;
    let switch = crate::control::Switch::parse(&action).ok_or_else(|| {
        ApiError::NotFound(format!(
            "no action {action:?}: expected stop, start, pause or resume"
        ))
    })?;
    let route = s
        .routes
        .iter()
        .find(|r| r.name == name)
        .ok_or_else(|| ApiError::NotFound(format!("no route named {name:?}")))?;
    s.record(super::entry(
        &s,
        &who,
        wyvern_store::AuditAction::Control,
        None,
        None,
        Some(format!("route {name}: {}", switch.as_str())),
    ))
    .await?;
    route.counters.control.apply(switch);
    tracing::warn!(route = %name, action = switch.as_str(), by = %who.actor(), state = route.counters.control.state(), "route switched by an operator");
    Ok(Json(
        json!({ "name": name, "state": route.counters.control.state() }),
    ))
}

pub async fn list(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &headers, peer.0, TokenRole::Viewer, "listing routes").await?;
    let mut depths = Vec::with_capacity(s.routes.len());
    for r in s.routes.iter() {
        let mut ds = Vec::new();
        for d in &r.destinations {
            let depth = s.operations.depth(r.name.clone(), d.clone()).await?;
            ds.push((d.clone(), depth));
        }
        depths.push(ds);
    }
    let get = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let body: Vec<Value> = s
        .routes
        .iter()
        .zip(depths)
        .map(|(r, ds)| {
            let c = &r.counters;
            json!({
                "name": r.name,
                "state": c.control.state(),
                "source": { "kind": r.source, "from": r.from },
                "received": get(&c.received),
                "accepted": get(&c.accepted),
                "rejected": get(&c.rejected),
                "failed": get(&c.failed),
                "duplicates": get(&c.duplicates),
                "destinations": ds.into_iter().map(|(name, (pending, oldest))| json!({
                    "name": name, "pending": pending, "oldest_pending_ms": oldest,
                })).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(Json(json!({ "routes": body })))
}
