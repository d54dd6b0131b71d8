//! Tokens (`admin`): list, create (the secret is in the answer, once), revoke. Each change is
//! audited. `wyvern api token create` makes the first one, locally.

use axum::Json;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use base64::Engine as _;
use serde_json::{Value, json};
use wyvern_store::{AuditAction, TokenRole};

use super::{ApiError, ApiState, Caller, auth, entry};

/// A new secret: `wyv_` and 32 random bytes, base64url.
pub fn new_secret() -> String {
    let mut b = [0u8; 32];
    ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b)
        .expect("the system's random source");
    format!(
        "wyv_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(b)
    )
}

/// A token name: 1–64 of letters, digits, `-`, `_`, `.`, `@`.
pub fn valid_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c))
}

pub async fn list(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
) -> Result<Json<Value>, ApiError> {
    auth::authorize(&s, &headers, peer.0, TokenRole::Admin, "listing tokens").await?;
    let all = s.tokens.list().await?;
    Ok(Json(json!({ "tokens": all.iter().map(|t| json!({
        "name": t.name, "role": t.role.as_str(), "created_at_ms": t.created_ms,
    })).collect::<Vec<_>>() })))
}

pub async fn create(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    body: Bytes,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let who = auth::authorize(&s, &headers, peer.0, TokenRole::Admin, "creating a token").await?;
    let v: Value = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("the body is not JSON: {e}")))?;
    let obj = v
        .as_object()
        .ok_or_else(|| ApiError::BadRequest("the body must be a JSON object".into()))?;
    if let Some(k) = obj.keys().find(|k| !["name", "role"].contains(&k.as_str())) {
        return Err(ApiError::BadRequest(format!(
            "unknown field {k:?}: expected name and role"
        )));
    }
    let name = obj
        .get("name")
        .and_then(Value::as_str)
        .filter(|n| valid_name(n))
        .ok_or_else(|| {
            ApiError::BadRequest("name must be 1–64 letters, digits, -, _, . or @".into())
        })?
        .to_string();
    let role = obj
        .get("role")
        .and_then(Value::as_str)
        .and_then(TokenRole::parse)
        .ok_or_else(|| ApiError::BadRequest("role must be viewer, operator or admin".into()))?;
    s.record(entry(
        &s,
        &who,
        AuditAction::Token,
        None,
        None,
        Some(format!("create {name} ({})", role.as_str())),
    ))
    .await?;
    let secret = new_secret();
    let added = s
        .tokens
        .add(name.clone(), role, secret.clone(), s.clock.now_millis())
        .await?;
    if !added {
        return Err(ApiError::Conflict(format!(
            "a token named {name:?} exists: revoke it first"
        )));
    }
    Ok((
        StatusCode::CREATED,
        Json(json!({ "name": name, "role": role.as_str(), "token": secret })),
    ))
}

pub async fn revoke(
    State(s): State<ApiState>,
    peer: Caller,
    headers: HeaderMap,
    Path(name): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let who = auth::authorize(&s, &headers, peer.0, TokenRole::Admin, "revoking a token").await?;
    if who.name == name {
        // Nobody locks the last admin out by accident: another token, or the CLI, can.
        return Err(ApiError::Conflict(
            "a token cannot revoke itself: use another admin token, or wyvern api token revoke"
                .into(),
        ));
    }
    s.record(entry(
        &s,
        &who,
        AuditAction::Token,
        None,
        None,
        Some(format!("revoke {name}")),
    ))
    .await?;
    let gone = s.tokens.revoke(name.clone()).await?;
    if !gone {
        return Err(ApiError::NotFound(format!("no token named {name:?}")));
    }
    Ok(Json(json!({ "revoked": name })))
}
