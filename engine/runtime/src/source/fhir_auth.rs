//! OAuth2 bearer tokens on the FHIR source (`auth: { jwt: … }`): every request must carry a
//! JWT that verifies against the configured keys and names its organisation. Checked before a
//! byte of the body is read, so nothing an unauthenticated caller sends is stored; a refusal is
//! a 401 (no valid token) or 403 (valid, not allowed) with an OperationOutcome and a
//! `WWW-Authenticate` header saying which check failed (RFC 6750).

use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use wyvern_config::JwtAuth;
use wyvern_connectors::jwt::{self, Caller, JwtError, KeysError, KeysFile};

use super::fhir_intake::outcome;

/// A source's token check.
#[derive(Debug)]
pub(crate) struct BearerAuth {
    /// Read again on SIGHUP (an issuer's key rotation).
    keys: std::sync::Arc<KeysFile>,
    expect: jwt::Expect,
}

/// Why a request was not let in.
#[derive(Debug)]
pub(crate) enum AuthRefusal {
    /// No `Authorization: Bearer …` header.
    Missing,
    Invalid(JwtError),
}

impl BearerAuth {
    /// Reads the keys now: a missing or unreadable file stops the route at start.
    pub(crate) fn load(route: &str, cfg: &JwtAuth) -> Result<BearerAuth, KeysError> {
        Ok(BearerAuth {
            keys: jwt::load_keys_file(format!("route {route} token keys"), &cfg.keys)?,
            expect: jwt::Expect {
                issuer: cfg.issuer.clone(),
                audience: cfg.audience.clone(),
                scopes: cfg.scopes.clone(),
                organisation_claim: Some(cfg.organisation_claim.clone()),
                leeway: cfg.leeway.as_secs(),
            },
        })
    }

    pub(crate) fn check(&self, headers: &HeaderMap) -> Result<Caller, AuthRefusal> {
        let token = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                v.strip_prefix("Bearer ")
                    .or_else(|| v.strip_prefix("bearer "))
            })
            .map(str::trim)
            .ok_or(AuthRefusal::Missing)?;
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        jwt::verify(token, &self.keys.get(), &self.expect, now).map_err(AuthRefusal::Invalid)
    }
}

/// The caller of a request to an endpoint that may require tokens (`auth`: `None` lets every
/// request in, anonymous). A refusal is counted against the peer's address (the audit of
/// refused connections picks it up) and logged for `endpoint`; its `response()` is the 401/403.
pub(crate) fn caller(
    auth: Option<&BearerAuth>,
    headers: &HeaderMap,
    peer: &wyvern_connectors::peers::Peer,
    refusals: &wyvern_connectors::peers::Refusals,
    endpoint: &str,
) -> Result<Option<Caller>, AuthRefusal> {
    match auth.map(|a| a.check(headers)) {
        None => Ok(None),
        Some(Ok(caller)) => Ok(Some(caller)),
        Some(Err(refusal)) => {
            refusals.token_refused(peer.addr.ip());
            tracing::warn!(endpoint, %peer, reason = %refusal.text(), "request refused: bearer token");
            Err(refusal)
        }
    }
}

impl AuthRefusal {
    pub(crate) fn text(&self) -> String {
        match self {
            AuthRefusal::Missing => {
                "this endpoint requires an OAuth2 bearer token (Authorization: Bearer …)".into()
            }
            AuthRefusal::Invalid(e) => e.to_string(),
        }
    }

    /// The 401 or 403 answer.
    pub(crate) fn response(&self) -> Response {
        let text = self.text();
        let (status, code, challenge) = match self {
            AuthRefusal::Missing => (StatusCode::UNAUTHORIZED, "login", "Bearer".to_string()),
            AuthRefusal::Invalid(e) if e.is_forbidden() => (
                StatusCode::FORBIDDEN,
                "forbidden",
                format!("Bearer error=\"insufficient_scope\", error_description=\"{text}\""),
            ),
            AuthRefusal::Invalid(_) => (
                StatusCode::UNAUTHORIZED,
                "login",
                format!("Bearer error=\"invalid_token\", error_description=\"{text}\""),
            ),
        };
        let mut r = outcome(status, "error", code, &text, None);
        if let Ok(v) = HeaderValue::from_str(&challenge.replace(['\r', '\n'], " ")) {
            r.headers_mut().insert(header::WWW_AUTHENTICATE, v);
        }
        r
    }
}
