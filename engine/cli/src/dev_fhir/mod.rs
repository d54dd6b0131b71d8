//! `wyvern dev fhir-server`: a small FHIR R4 receiving server — the stand-in for CHIE and the
//! Dorset Care Record in tests and demos. It stores what it is sent (in memory) and can be
//! told to fail, stall or refuse, so delivery can be tested against a real HTTP peer.
//!
//! - `POST /fhir` (Bundle), `POST /fhir/{type}` (resource) → 201/200, stored.
//! - `GET /fhir/metadata` → a CapabilityStatement; `GET /fhir/{type}` → a searchset of what it
//!   holds, filtered by `identifier`, `patient` and `_count` ([`search`]). Transaction entries written with `PUT` are upserts: the same URL again replaces.
//! - `POST /_control` with `{"mode": "ok" | "fail" | "refuse" | "stall", "status": 503, "ms": 5000}`.
//! - `GET /_stats` → `{"stored": N, "by_type": {...}, "requests": N, "tokens_issued": N}`.
//! - With `--tls-cert`/`--tls-key`: HTTPS. With `--oauth2-public-key`: `POST /oauth2/token`
//!   (client credentials, RS512-signed JWT assertion, see [`oauth`]) and every `/fhir` call
//!   needs one of its bearer tokens (401 otherwise).

mod oauth;
mod search;

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use axum::Router;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use clap::Args;
use serde_json::{Value, json};

#[derive(Debug, Args)]
pub struct FhirServerArgs {
    /// Where to listen; the FHIR base is http://ADDR/fhir (https:// with --tls-cert).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Serve HTTPS with this certificate chain (PEM); needs --tls-key.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The certificate's private key (PEM).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// Require OAuth2: clients get tokens at /oauth2/token with a JWT signed by the private
    /// half of this RSA public key (PEM, `openssl pkey -pubout`).
    #[arg(long)]
    pub oauth2_public_key: Option<PathBuf>,
    /// With --oauth2-public-key: the only client id accepted (any, when absent).
    #[arg(long)]
    pub oauth2_client_id: Option<String>,
    /// Answer every search with everything of the type, ignoring its parameters (for testing
    /// that a client does not trust what a server gives it).
    #[arg(long)]
    pub ignore_search: bool,
    /// Answer each search only after this long (a record across a network, for benchmarks).
    #[arg(long, default_value = "0s", value_parser = humantime::parse_duration)]
    pub search_delay: Duration,
    /// With --oauth2-public-key: how long a token lives.
    #[arg(long, default_value = "10m", value_parser = humantime::parse_duration)]
    pub oauth2_token_lifetime: Duration,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Ok,
    Fail(u16),
    Refuse,
    Stall(u64),
}

#[derive(Debug)]
struct Inner {
    mode: Mode,
    stored: Vec<(String, Value)>,
    /// Transaction entries written with PUT (an upsert), by request URL → index in `stored`:
    /// the same PUT again replaces, as a real server's conditional update does.
    upserts: HashMap<String, usize>,
    requests: u64,
    oauth: Option<oauth::OAuthServer>,
    ignore_search: bool,
    search_delay: Duration,
}

type Shared = Arc<Mutex<Inner>>;

fn outcome(status: StatusCode, severity: &str, code: &str, text: &str) -> Response {
    let body = json!({"resourceType": "OperationOutcome", "issue": [{"severity": severity, "code": code, "diagnostics": text}]});
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

/// Checks the token (when OAuth2 is on) and applies the current mode; `Some(response)` when
/// the request must not be stored.
async fn gate(state: &Shared, headers: &HeaderMap) -> Option<Response> {
    let mode = {
        let mut s = state.lock().ok()?;
        s.requests += 1;
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        if let Some(o) = &s.oauth
            && !o.allows(auth)
        {
            return Some(outcome(
                StatusCode::UNAUTHORIZED,
                "error",
                "login",
                "a bearer token from /oauth2/token is required",
            ));
        }
        s.mode
    };
    match mode {
        Mode::Ok => None,
        Mode::Fail(code) => {
            let status = StatusCode::from_u16(code).unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            Some(outcome(
                status,
                "error",
                "transient",
                "the stand-in was told to fail",
            ))
        }
        Mode::Refuse => Some(outcome(
            StatusCode::UNPROCESSABLE_ENTITY,
            "error",
            "invalid",
            "the stand-in was told to refuse",
        )),
        Mode::Stall(ms) => {
            tokio::time::sleep(Duration::from_millis(ms)).await;
            None
        }
    }
}

/// The body as FHIR JSON, or why it is not.
fn parse(body: &[u8]) -> Result<Value, String> {
    let v: Value = serde_json::from_slice(body).map_err(|e| format!("not JSON: {e}"))?;
    if v.get("resourceType").and_then(Value::as_str).is_none() {
        return Err("resourceType is missing".into());
    }
    Ok(v)
}

async fn post_bundle(
    State(state): State<Shared>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = gate(&state, &headers).await {
        return r;
    }
    let bundle = match parse(&body) {
        Ok(v) => v,
        Err(why) => return outcome(StatusCode::BAD_REQUEST, "error", "structure", &why),
    };
    let entries: Vec<Value> = bundle
        .get("entry")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    let mut responses = Vec::new();
    if let Ok(mut s) = state.lock() {
        for e in entries {
            if let Some(res) = e.get("resource") {
                let t = res
                    .get("resourceType")
                    .and_then(Value::as_str)
                    .unwrap_or("Unknown")
                    .to_string();
                let put = (e["request"]["method"] == "PUT")
                    .then(|| e["request"]["url"].as_str().map(str::to_string))
                    .flatten();
                let existing = put.as_ref().and_then(|u| s.upserts.get(u).copied());
                let (status, at) = match existing {
                    Some(i) => {
                        s.stored[i] = (t.clone(), res.clone());
                        ("200 OK", i + 1)
                    }
                    None => {
                        s.stored.push((t.clone(), res.clone()));
                        let at = s.stored.len();
                        if let Some(u) = put {
                            s.upserts.insert(u, at - 1);
                        }
                        ("201 Created", at)
                    }
                };
                responses
                    .push(json!({"response": {"status": status, "location": format!("{t}/{at}")}}));
            }
        }
    }
    let reply =
        json!({"resourceType": "Bundle", "type": "transaction-response", "entry": responses});
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        reply.to_string(),
    )
        .into_response()
}

async fn post_resource(
    State(state): State<Shared>,
    Path(kind): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Some(r) = gate(&state, &headers).await {
        return r;
    }
    let res = match parse(&body) {
        Ok(v) => v,
        Err(why) => return outcome(StatusCode::BAD_REQUEST, "error", "structure", &why),
    };
    if res.get("resourceType").and_then(Value::as_str) != Some(kind.as_str()) {
        return outcome(
            StatusCode::BAD_REQUEST,
            "error",
            "invalid",
            &format!("resourceType does not match /{kind}"),
        );
    }
    let n = match state.lock() {
        Ok(mut s) => {
            s.stored.push((kind.clone(), res));
            s.stored.len()
        }
        Err(_) => 0,
    };
    let mut headers = HeaderMap::new();
    if let Ok(v) = format!("/fhir/{kind}/{n}").parse() {
        headers.insert(header::LOCATION, v);
    }
    (StatusCode::CREATED, headers, "").into_response()
}

async fn search(
    State(state): State<Shared>,
    Path(kind): Path<String>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
    headers: HeaderMap,
) -> Response {
    // Reads need a token too when OAuth2 is on (a record's search is no less private).
    let refused = state.lock().ok().and_then(|s| {
        let auth = headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok());
        s.oauth.as_ref().filter(|o| !o.allows(auth)).map(|_| ())
    });
    if refused.is_some() {
        return outcome(
            StatusCode::UNAUTHORIZED,
            "error",
            "login",
            "a bearer token from /oauth2/token is required",
        );
    }
    let params: Vec<(String, String)> = query
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default();
    let delay = state.lock().map(|s| s.search_delay).unwrap_or_default();
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let (total, found): (usize, Vec<Value>) = state
        .lock()
        .map(|s| {
            let all = s.ignore_search;
            let limit = search::count(&params)
                .filter(|_| !all)
                .unwrap_or(usize::MAX);
            let skip = search::offset(&params).filter(|_| !all).unwrap_or(0);
            let matching: Vec<&Value> = s
                .stored
                .iter()
                .filter(|(t, r)| *t == kind && (all || search::matches(r, &params)))
                .map(|(_, r)| r)
                .collect();
            let page: Vec<Value> = matching
                .iter()
                .skip(skip)
                .take(limit)
                .map(|r| json!({ "resource": r }))
                .collect();
            (matching.len(), page)
        })
        .unwrap_or_default();
    let reply =
        json!({"resourceType": "Bundle", "type": "searchset", "total": total, "entry": found});
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        reply.to_string(),
    )
        .into_response()
}

async fn metadata() -> Response {
    let cs = json!({"resourceType": "CapabilityStatement", "status": "active", "kind": "instance", "fhirVersion": "4.0.1",
        "format": ["json"], "software": {"name": "wyvern dev fhir-server (stand-in)"}});
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        cs.to_string(),
    )
        .into_response()
}

async fn control(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    let v: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mode = match v.get("mode").and_then(Value::as_str) {
        Some("ok") => Mode::Ok,
        Some("fail") => Mode::Fail(
            v.get("status")
                .and_then(Value::as_u64)
                .and_then(|s| u16::try_from(s).ok())
                .unwrap_or(503),
        ),
        Some("refuse") => Mode::Refuse,
        Some("stall") => Mode::Stall(v.get("ms").and_then(Value::as_u64).unwrap_or(5000)),
        _ => {
            return (
                StatusCode::BAD_REQUEST,
                "expected {\"mode\": \"ok\" | \"fail\" | \"refuse\" | \"stall\"}\n",
            )
                .into_response();
        }
    };
    if let Ok(mut s) = state.lock() {
        s.mode = mode;
    }
    tracing::info!(?mode, "stand-in mode changed");
    (StatusCode::OK, format!("{mode:?}\n")).into_response()
}

async fn stats(State(state): State<Shared>) -> Response {
    let (stored, by_type, requests, tokens) = match state.lock() {
        Ok(s) => {
            let mut by: BTreeMap<String, usize> = BTreeMap::new();
            for (t, _) in &s.stored {
                *by.entry(t.clone()).or_default() += 1;
            }
            let tokens = s.oauth.as_ref().map_or(0, |o| o.issued);
            (s.stored.len(), by, s.requests, tokens)
        }
        Err(_) => (0, BTreeMap::new(), 0, 0),
    };
    (
        [(header::CONTENT_TYPE, "application/json")],
        json!({"stored": stored, "by_type": by_type, "requests": requests, "tokens_issued": tokens})
            .to_string(),
    )
        .into_response()
}

async fn token(State(state): State<Shared>, body: axum::body::Bytes) -> Response {
    let form: HashMap<String, String> = form_urlencoded(&body);
    let granted = match state.lock() {
        Ok(mut s) => match s.oauth.as_mut() {
            Some(o) => o.grant(&form),
            None => Err("OAuth2 is off (start with --oauth2-public-key)".into()),
        },
        Err(_) => Err("state poisoned".into()),
    };
    match granted {
        Ok(v) => ([(header::CONTENT_TYPE, "application/json")], v.to_string()).into_response(),
        Err(why) => {
            tracing::info!(%why, "token request refused");
            (
                StatusCode::BAD_REQUEST,
                [(header::CONTENT_TYPE, "application/json")],
                json!({"error": "invalid_request", "error_description": why}).to_string(),
            )
                .into_response()
        }
    }
}

/// `a=1&b=x%2By` as pairs (the token request's body).
fn form_urlencoded(body: &[u8]) -> HashMap<String, String> {
    let decode = |s: &str| -> String {
        let s = s.replace('+', " ");
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            let hex = b
                .get(i + 1..i + 3)
                .and_then(|h| std::str::from_utf8(h).ok())
                .and_then(|h| u8::from_str_radix(h, 16).ok());
            match (b[i], hex) {
                (b'%', Some(v)) => {
                    out.push(v);
                    i += 3;
                }
                (c, _) => {
                    out.push(c);
                    i += 1;
                }
            }
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter_map(|pair| pair.split_once('='))
        .map(|(k, v)| (decode(k), decode(v)))
        .collect()
}

pub async fn serve(args: FhirServerArgs) -> anyhow::Result<ExitCode> {
    let oauth = match &args.oauth2_public_key {
        None => None,
        Some(path) => {
            let pem = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
            Some(
                oauth::OAuthServer::new(
                    &pem,
                    args.oauth2_client_id.clone(),
                    args.oauth2_token_lifetime,
                )
                .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )
        }
    };
    let state: Shared = Arc::new(Mutex::new(Inner {
        mode: Mode::Ok,
        stored: Vec::new(),
        upserts: HashMap::new(),
        requests: 0,
        oauth,
        ignore_search: args.ignore_search,
        search_delay: args.search_delay,
    }));
    let app = Router::new()
        .route("/fhir", post(post_bundle))
        .route("/fhir/metadata", get(metadata))
        .route("/fhir/{kind}", post(post_resource).get(search))
        .route("/_control", post(control))
        .route("/_stats", get(stats))
        .route("/oauth2/token", post(token))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => {
            let tls = wyvern_connectors::tls::ServerTls::load(
                "FHIR stand-in",
                wyvern_connectors::tls::ServerTlsSettings {
                    cert: cert.clone(),
                    key: key.clone(),
                    client_ca: None,
                },
            )?;
            let limits = wyvern_runtime::http_limits::HttpLimits::local(Some(tls));
            let listener =
                wyvern_runtime::http_limits::LimitedListener::new(listener, limits, "stand-in");
            tracing::info!(base = %format!("https://{}/fhir", args.listen), "FHIR stand-in ready (TLS)");
            axum::serve(listener, app).await?;
        }
        _ => {
            tracing::info!(base = %format!("http://{}/fhir", args.listen), "FHIR stand-in ready");
            axum::serve(listener, app).await?;
        }
    }
    Ok(ExitCode::SUCCESS)
}
