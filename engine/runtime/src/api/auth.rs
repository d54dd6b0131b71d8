//! Who is calling the API: the bearer token, looked up by the hash of its secret in the store
//! (`wyvern api token create` makes them), and whether its role allows the call. A refusal is
//! written to the audit log with the caller's address and the role it lacked.

use std::net::IpAddr;

use axum::http::{HeaderMap, header};
use wyvern_store::{AuditAction, AuditEntry, TokenRole};

use super::{ApiError, ApiState};

/// The caller, once its token is known.
#[derive(Debug, Clone)]
pub struct Principal {
    pub name: String,
    pub role: TokenRole,
    pub from: IpAddr,
}

impl Principal {
    /// As the audit log names it.
    pub fn actor(&self) -> String {
        format!("token:{}", self.name)
    }
}

/// The caller if its token is valid and its role is at least `needs`.
pub async fn authorize(
    state: &ApiState,
    headers: &HeaderMap,
    from: IpAddr,
    needs: TokenRole,
    what: &str,
) -> Result<Principal, ApiError> {
    let secret = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|s| s.trim().to_string());
    let Some(secret) = secret.filter(|s| !s.is_empty()) else {
        return Err(ApiError::Unauthenticated(
            "this call needs a token: Authorization: Bearer <token> (wyvern api token create)"
                .into(),
        ));
    };
    let found = state.tokens.find(secret).await?;
    let Some(token) = found else {
        state.audit(AuditEntry {
            at_ms: state.clock.now_millis(),
            actor: format!("network:{from}"),
            action: AuditAction::Denied,
            message_id: None,
            nhs_number: None,
            from: Some(from.to_string()),
            detail: Some(format!("{what}: unknown token")),
        });
        return Err(ApiError::Unauthenticated(
            "the token is not known (revoked, or mistyped)".into(),
        ));
    };
    let who = Principal {
        name: token.name,
        role: token.role,
        from,
    };
    if who.role < needs {
        state.audit(AuditEntry {
            at_ms: state.clock.now_millis(),
            actor: who.actor(),
            action: AuditAction::Denied,
            message_id: None,
            nhs_number: None,
            from: Some(from.to_string()),
            detail: Some(format!("{what}: needs role {}", needs.as_str())),
        });
        return Err(ApiError::Forbidden(format!(
            "{what} needs the {} role; token {:?} is {}",
            needs.as_str(),
            who.name,
            who.role.as_str()
        )));
    }
    Ok(who)
}
