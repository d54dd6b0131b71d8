//! Dead letters: list (`viewer`), retry and purge one (`operator`), and replay a time range of
//! a route (`operator`). Each change is audited before it is made.

use std::collections::HashMap;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use wyvern_store::{AuditAction, Replay, Selection, TokenRole};

use super::{ApiError, ApiState, Caller, auth, entry};

pub async fn list(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Viewer,
        "listing dead letters",
    )
    .await?;
    if let Some(k) = q
        .keys()
        .find(|k| !["route", "destination", "limit"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown parameter {k:?}: expected route, destination or limit"
        )));
    }
    let limit = match q.get("limit") {
        None => 50,
        Some(v) => v
            .parse::<usize>()
            .ok()
            .filter(|n| (1..=1000).contains(n))
            .ok_or_else(|| ApiError::BadRequest(format!("limit {v:?}: expected 1 to 1000")))?,
    };
    let (route, destination) = (q.get("route").cloned(), q.get("destination").cloned());
    let rows = s.operations.dead_letters(route, destination, limit).await?;
    let body: Vec<Value> = rows
        .iter()
        .map(|d| {
            json!({
                "seq": d.seq,
                "message_id": d.message_id,
                "route": d.route,
                "destination": d.destination,
                "state": d.state.as_str(),
                "attempts": d.attempts,
                "created_at_ms": d.created_at_ms,
                "last_error": d.last_error,
            })
        })
        .collect();
    Ok(Json(json!({ "dead_letters": body })))
}

fn seq_of(text: &str) -> Result<i64, ApiError> {
    text.parse::<i64>()
        .map_err(|_| ApiError::BadRequest(format!("{text:?} is not a dead letter number")))
}

/// Retry or purge one dead letter.
async fn act(
    s: ApiState,
    peer: Caller,
    headers: HeaderMap,
    seq: String,
    action: AuditAction,
) -> Result<Json<Value>, ApiError> {
    let verb = if action == AuditAction::Retry {
        "retrying"
    } else {
        "purging"
    };
    let who = auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Operator,
        &format!("{verb} a dead letter"),
    )
    .await?;
    let seq = seq_of(&seq)?;
    let item = s
        .operations
        .delivery(seq)
        .await?
        .filter(|i| matches!(i.state.as_str(), "dead" | "held"))
        .ok_or_else(|| ApiError::NotFound(format!("no dead letter {seq}")))?;
    s.record(entry(
        &s,
        &who,
        action,
        Some(item.message_id.clone()),
        None,
        Some(format!("dead letter {seq}")),
    ))
    .await?;
    let now = s.clock.now_millis();
    let which = Selection {
        seq: Some(seq),
        ..Selection::default()
    };
    let n = if action == AuditAction::Retry {
        s.operations.requeue(which, now).await?
    } else {
        s.operations.purge(which).await?
    };
    Ok(Json(json!({ "seq": seq, "changed": n })))
}

pub async fn retry(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(s, peer, headers, seq, AuditAction::Retry).await
}

pub async fn purge(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Path(seq): Path<String>,
) -> Result<Json<Value>, ApiError> {
    act(s, peer, headers, seq, AuditAction::Purge).await
}

/// `POST /api/v1/replay {"route", "destination"?, "since_ms", "until_ms"?}`.
pub async fn replay(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Json<Value>, ApiError> {
    let who = auth::authorize(&s, &headers, peer.0, TokenRole::Operator, "replaying").await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    if let Some(k) = obj
        .keys()
        .find(|k| !["route", "destination", "since_ms", "until_ms"].contains(&k.as_str()))
    {
        return Err(ApiError::BadRequest(format!(
            "unknown field {k:?}: expected route, destination, since_ms, until_ms"
        )));
    }
    let route = obj
        .get("route")
        .and_then(Value::as_str)
        .ok_or_else(|| ApiError::BadRequest("route is required: the route's name".into()))?
        .to_string();
    if !s.routes.iter().any(|x| x.name == route) {
        return Err(ApiError::NotFound(format!("no route named {route:?}")));
    }
    let destination = match obj.get("destination") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => Some(d.clone()),
        Some(_) => return Err(ApiError::BadRequest("destination must be a string".into())),
    };
    let now = s.clock.now_millis();
    let time = |k: &str, default: Option<i64>| -> Result<i64, ApiError> {
        match obj.get(k) {
            None | Some(Value::Null) => default.ok_or_else(|| {
                ApiError::BadRequest(format!("{k} is required (milliseconds since 1970)"))
            }),
            Some(v) => v.as_i64().filter(|t| *t >= 0).ok_or_else(|| {
                ApiError::BadRequest(format!("{k} must be milliseconds since 1970"))
            }),
        }
    };
    let (since, until) = (time("since_ms", None)?, time("until_ms", Some(now + 1))?);
    if since >= until {
        return Err(ApiError::BadRequest(
            "since_ms must be before until_ms".into(),
        ));
    }
    s.record(entry(
        &s,
        &who,
        AuditAction::Replay,
        None,
        None,
        Some(format!(
            "route {route} destination {} from {} to {}",
            destination.as_deref().unwrap_or("all"),
            wyvern_core::display_timestamp(since),
            wyvern_core::display_timestamp(until)
        )),
    ))
    .await?;
    let replay = Replay {
        route: route.clone(),
        destination,
        since_ms: since,
        until_ms: until,
    };
    let n = s.operations.replay(replay, now).await?;
    Ok(Json(json!({ "route": route, "queued": n })))
}
