//! Messages: search (metadata), detail (metadata and deliveries) for a `viewer`, and the body
//! (the bytes received and the ACK sent) for an `operator` — each read written to the audit
//! log with the patient's NHS number before it is answered.

use std::collections::HashMap;

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use serde_json::{Value, json};
use wyvern_store::{AuditAction, InboxQuery, InboxRow, InboxStatus, TokenRole};

use super::{ApiError, ApiState, Caller, auth, entry};

const MAX_LIMIT: usize = 1000;

fn summary(r: &InboxRow) -> Value {
    json!({
        "seq": r.seq,
        "id": r.id,
        "received_at_ms": r.received_at_ms,
        "route": r.source,
        "peer": r.peer,
        "status": r.status,
        "content_type": r.content_type,
        "message_type": r.message_type,
        "control_id": r.control_id,
        "sending_application": r.sending_application,
        "sending_facility": r.sending_facility,
        "nhs_number": r.nhs_number,
        "error": r.error,
        "size": r.raw_len,
    })
}

/// Query parameters, each checked (an unknown one is a 400, not ignored).
fn search_query(q: &HashMap<String, String>) -> Result<InboxQuery, ApiError> {
    for k in q.keys() {
        if ![
            "route",
            "status",
            "control_id",
            "nhs_number",
            "limit",
            "before",
        ]
        .contains(&k.as_str())
        {
            return Err(ApiError::BadRequest(format!(
                "unknown parameter {k:?}: expected route, status, control_id, nhs_number, limit or before"
            )));
        }
    }
    let number = |k: &str| -> Result<Option<i64>, ApiError> {
        q.get(k)
            .map(|v| {
                v.parse::<i64>()
                    .ok()
                    .filter(|n| *n >= 0)
                    .ok_or_else(|| ApiError::BadRequest(format!("{k} {v:?} is not a whole number")))
            })
            .transpose()
    };
    let status = match q.get("status") {
        None => None,
        Some(s) => Some(InboxStatus::parse(s).ok_or_else(|| {
            ApiError::BadRequest(format!(
                "status {s:?}: expected accepted, rejected, filtered, duplicate, conflict or failed"
            ))
        })?),
    };
    Ok(InboxQuery {
        control_id: q.get("control_id").cloned(),
        nhs_number: q.get("nhs_number").cloned(),
        status,
        source: q.get("route").cloned(),
        before_seq: number("before")?,
        limit: match number("limit")? {
            None => 50,
            Some(n) if (1..=MAX_LIMIT as i64).contains(&n) => n as usize,
            Some(n) => {
                return Err(ApiError::BadRequest(format!(
                    "limit {n} is out of range: 1 to {MAX_LIMIT}"
                )));
            }
        },
    })
}

pub async fn search(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Query(q): Query<HashMap<String, String>>,
) -> Result<Json<Value>, ApiError> {
    let who = auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Viewer,
        "searching messages",
    )
    .await?;
    let query = search_query(&q)?;
    let mut detail: Vec<String> = q
        .iter()
        .filter(|(k, _)| k.as_str() != "nhs_number")
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    detail.sort();
    s.record(entry(
        &s,
        &who,
        AuditAction::Search,
        None,
        query.nhs_number.clone(),
        Some(if detail.is_empty() {
            "all".into()
        } else {
            detail.join(", ")
        }),
    ))
    .await?;
    let rows = s.operations.messages(query).await?;
    Ok(Json(
        json!({ "messages": rows.iter().map(summary).collect::<Vec<_>>() }),
    ))
}

/// The message `id` (or sequence number), or a 404.
async fn find(s: &ApiState, id: String) -> Result<InboxRow, ApiError> {
    s.operations
        .message(id.clone())
        .await?
        .ok_or_else(|| ApiError::NotFound(format!("no message with id or sequence {id:?}")))
}

pub async fn detail(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Viewer,
        "reading a message's metadata",
    )
    .await?;
    let row = find(&s, id).await?;
    s.record(entry(
        &s,
        &who,
        AuditAction::Search,
        Some(row.id.clone()),
        row.nhs_number.clone(),
        Some("metadata and deliveries".into()),
    ))
    .await?;
    let message_id = row.id.clone();
    let deliveries = s.operations.deliveries_of(message_id).await?;
    let mut body = summary(&row);
    body["deliveries"] = deliveries
        .iter()
        .map(|d| {
            json!({
                "seq": d.seq,
                "destination": d.destination,
                "part": d.part,
                "state": d.state.as_str(),
                "attempts": d.attempts,
                "next_at_ms": d.next_at_ms,
                "last_error": d.last_error,
            })
        })
        .collect();
    Ok(Json(body))
}

pub async fn body(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = auth::authorize(
        &s,
        &headers,
        peer.0,
        TokenRole::Operator,
        "reading a message's body",
    )
    .await?;
    let row = find(&s, id).await?;
    // Written before anything is shown: no record, no body.
    s.record(entry(
        &s,
        &who,
        AuditAction::View,
        Some(row.id.clone()),
        row.nhs_number.clone(),
        None,
    ))
    .await?;
    let raw = row.raw.as_deref().unwrap_or_default();
    Ok(Json(json!({
        "id": row.id,
        "content_type": row.content_type,
        "body": String::from_utf8_lossy(raw),
        "truncated": (raw.len() as i64) < row.raw_len,
        "ack": row.ack.as_deref().map(String::from_utf8_lossy),
    })))
}
