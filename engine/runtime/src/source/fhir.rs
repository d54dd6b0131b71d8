//! FHIR REST inbound (`source: { fhir: … }`): `POST /fhir` (a transaction or batch Bundle),
//! `POST /fhir/{type}`, `PUT /fhir/{type}/{id}` and `GET /fhir/metadata`. A body is read up to
//! `max_body`, parsed strictly (JSON or XML, by Content-Type) by the [`FhirCodec`] the binary
//! supplies (the runtime never links the FHIR model), stored with one outbox row per
//! destination carrying its JSON form, and answered 200/201 only after the commit. Anything
//! wrong is a 4xx with an OperationOutcome saying what and where; a refused body that was read
//! is kept as `rejected` (no deliveries), as an MLLP AR is.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::Router;
use axum::body::{Body, Bytes as AxumBytes};
use axum::extract::{ConnectInfo, Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use tokio_util::sync::CancellationToken;
use wyvern_config::OrderBy;
use wyvern_core::Clock;

use crate::RouteCounters;
use crate::http_limits::ConnectedPeer;
use crate::source::fhir_intake::{Expect, Inbound, Stored, check, commit, outcome};
use wyvern_connectors::peers::Peer;

pub use crate::source::fhir_intake::{FhirCodec, FhirRefusal, ParsedFhir};

/// One route's FHIR endpoint.
#[derive(Debug)]
pub struct FhirSource {
    listener: tokio::net::TcpListener,
    limits: crate::http_limits::HttpLimits,
    inbound: Arc<Inbound>,
}

/// What [`FhirSource::bind`] needs from the route.
#[derive(Debug)]
pub struct FhirSourceSpec {
    pub route: String,
    pub listen: SocketAddr,
    pub max_body: u64,
    pub limits: crate::http_limits::HttpLimits,
    pub destinations: Vec<String>,
    pub order_by: OrderBy,
    /// Bearer tokens every request must carry (`auth.jwt`).
    pub(crate) auth: Option<super::fhir_auth::BearerAuth>,
    /// `map: fhir-to-hl7v2`: the destinations are sent HL7v2 made from the resources.
    pub(crate) to_hl7v2: Option<Arc<dyn crate::transform::Transform>>,
}

impl FhirSource {
    pub async fn bind(
        spec: FhirSourceSpec,
        store: crate::intake::ingest::Ingest,
        clock: Arc<dyn Clock>,
        codec: Arc<dyn FhirCodec>,
        counters: Arc<RouteCounters>,
    ) -> std::io::Result<FhirSource> {
        let listener = tokio::net::TcpListener::bind(spec.listen).await?;
        Ok(FhirSource {
            listener,
            limits: spec.limits,
            inbound: Arc::new(Inbound {
                route: spec.route,
                store,
                clock,
                codec,
                destinations: spec.destinations,
                order_by: spec.order_by,
                max_body: usize::try_from(spec.max_body).unwrap_or(usize::MAX),
                counters,
                auth: spec.auth,
                to_hl7v2: spec.to_hl7v2,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The route this endpoint serves.
    pub fn route(&self) -> &str {
        &self.inbound.route
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let addr = self.local_addr().ok();
        let route = self.inbound.route.clone();
        let router = Router::new()
            .route("/fhir", post(post_bundle))
            .route("/fhir/metadata", get(metadata))
            .route("/fhir/{kind}", post(post_resource))
            .route("/fhir/{kind}/{id}", put(put_resource))
            .with_state(self.inbound);
        let scheme = if self.limits.tls.is_some() {
            "https"
        } else {
            "http"
        };
        tracing::info!(route = %route, listen = ?addr, scheme, "FHIR endpoint ready: /fhir");
        let served =
            crate::http_limits::serve(self.listener, self.limits, &route, router, shutdown).await;
        if let Err(e) = served {
            tracing::warn!(route = %route, error = %e, "FHIR endpoint stopped");
        }
    }
}

async fn metadata() -> Response {
    let types = [
        "Bundle",
        "Patient",
        "Encounter",
        "Observation",
        "DiagnosticReport",
        "AllergyIntolerance",
        "Condition",
        "RelatedPerson",
        "Practitioner",
        "Organization",
        "Location",
    ];
    let resources: Vec<serde_json::Value> = types
        .iter()
        .map(|t| serde_json::json!({ "type": t, "interaction": [{ "code": "create" }, { "code": "update" }] }))
        .collect();
    let body = serde_json::json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-26",
        "kind": "instance",
        "software": { "name": "Wyvern", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Wyvern FHIR inbound: accepted resources are stored and forwarded to the route's destinations" },
        "fhirVersion": "4.0.1",
        "format": ["json", "xml"],
        "rest": [{ "mode": "server", "resource": resources, "interaction": [{ "code": "transaction" }, { "code": "batch" }] }],
    });
    (
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

async fn post_bundle(
    State(s): State<Arc<Inbound>>,
    ConnectInfo(ConnectedPeer(peer)): ConnectInfo<ConnectedPeer>,
    req: Request,
) -> Response {
    receive(s, peer, req, Expect::Bundle).await
}

async fn post_resource(
    State(s): State<Arc<Inbound>>,
    ConnectInfo(ConnectedPeer(peer)): ConnectInfo<ConnectedPeer>,
    Path(kind): Path<String>,
    req: Request,
) -> Response {
    receive(s, peer, req, Expect::Type(kind, None)).await
}

async fn put_resource(
    State(s): State<Arc<Inbound>>,
    ConnectInfo(ConnectedPeer(peer)): ConnectInfo<ConnectedPeer>,
    Path((kind, id)): Path<(String, String)>,
    req: Request,
) -> Response {
    receive(s, peer, req, Expect::Type(kind, Some(id))).await
}

async fn receive(s: Arc<Inbound>, peer: Peer, req: Request, expect: Expect) -> Response {
    // Who is calling, before anything else: an unauthenticated body is never read or stored.
    let caller = match super::fhir_auth::caller(
        s.auth.as_ref(),
        req.headers(),
        &peer,
        &s.counters.refusals,
        &s.route,
    ) {
        Ok(caller) => caller,
        Err(refused) => return refused.response(),
    };
    if s.counters.control.intake_stopped() {
        // Not stored: the caller keeps the resource and sends it again later.
        let mut r = outcome(
            StatusCode::SERVICE_UNAVAILABLE,
            "error",
            "transient",
            "this route is stopped by an operator; send it again later",
            None,
        );
        r.headers_mut().insert(
            axum::http::header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("60"),
        );
        return r;
    }
    s.counters.received.fetch_add(1, Ordering::Relaxed);
    let refuse = |status: StatusCode, code: &str, text: &str, location: Option<&str>| {
        s.counters.rejected.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(route = %s.route, %peer, status = status.as_u16(), reason = text, "FHIR request refused");
        outcome(status, "error", code, text, location)
    };
    let xml = match content_type(req.headers()) {
        Ok(xml) => xml,
        Err(ct) => {
            return refuse(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "not-supported",
                &format!(
                    "Content-Type {ct:?}: expected application/fhir+json or application/fhir+xml"
                ),
                None,
            );
        }
    };
    let declared = req
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok());
    if declared.is_some_and(|n| n > s.max_body) {
        // Refused before a byte of it is read.
        return refuse(
            StatusCode::PAYLOAD_TOO_LARGE,
            "too-long",
            &format!(
                "the body is {} bytes; this endpoint takes at most {}",
                declared.unwrap_or(0),
                s.max_body
            ),
            None,
        );
    }
    let body: AxumBytes = match axum::body::to_bytes(Body::new(req.into_body()), s.max_body).await {
        Ok(b) => b,
        Err(_) => {
            return refuse(
                StatusCode::PAYLOAD_TOO_LARGE,
                "too-long",
                &format!(
                    "the body is larger than this endpoint's limit of {} bytes",
                    s.max_body
                ),
                None,
            );
        }
    };
    // The message's id and time, made once: the record, and MSH-10/MSH-7 of what
    // map: fhir-to-hl7v2 makes of it, say the same.
    let now = s.clock.now_millis();
    let id = wyvern_core::MessageId::new(now);
    let judged = check(&s, &body, xml, expect)
        .await
        .and_then(|(mut parsed, created)| {
            let at = super::fhir_intake::Stamp {
                id: &id.to_string(),
                now_ms: now,
            };
            let payload =
                super::fhir_intake::payload(&mut parsed, created, s.to_hl7v2.as_deref(), &at)?;
            Ok((parsed, payload))
        });
    match judged {
        Ok((parsed, payload)) => {
            commit(
                &s,
                (id, now),
                &peer,
                caller.as_ref(),
                body,
                xml,
                Stored::Accepted(parsed, payload),
            )
            .await
        }
        Err(r) => {
            // Kept, as an MLLP AR is: what was refused and why can be looked up later.
            let text = r.text.clone();
            let _ = commit(
                &s,
                (id, now),
                &peer,
                caller.as_ref(),
                body,
                xml,
                Stored::Rejected(text),
            )
            .await;
            refuse(r.status, r.code, &r.text, r.location.as_deref())
        }
    }
}

/// `Ok(true)` for XML; the offending Content-Type otherwise. No Content-Type means JSON.
fn content_type(h: &HeaderMap) -> Result<bool, String> {
    let Some(ct) = h.get(header::CONTENT_TYPE) else {
        return Ok(false);
    };
    let ct = ct.to_str().unwrap_or("").to_ascii_lowercase();
    let media = ct.split(';').next().unwrap_or("").trim();
    match media {
        "application/fhir+json" | "application/json" | "application/json+fhir" => Ok(false),
        "application/fhir+xml" | "application/xml" | "text/xml" | "application/xml+fhir" => {
            Ok(true)
        }
        _ => Err(ct),
    }
}

impl super::Source for FhirSource {
    fn name(&self) -> String {
        format!("FHIR source {}", self.route())
    }

    fn local_addr(&self) -> Option<SocketAddr> {
        FhirSource::local_addr(self).ok()
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(FhirSource::run(*self, shutdown))
    }
}

/// The FHIR endpoint of `route`, bound now (a port in use fails the build).
pub(super) async fn build(
    route: &wyvern_config::Route,
    f: &wyvern_config::FhirSource,
    ctx: &super::SourceContext<'_>,
) -> Result<(Box<dyn super::Source>, Arc<RouteCounters>), crate::engine::BuildError> {
    use crate::engine::BuildError;
    let counters = Arc::new(RouteCounters::default());
    let codec = ctx
        .plugins
        .fhir_codec()
        .map_err(|reason| BuildError::Source {
            route: route.name.clone(),
            reason,
        })?;
    let tls = match &f.tls {
        None => None,
        Some(t) => Some(
            crate::tls::server(format!("route {} FHIR listener", route.name), t).map_err(|e| {
                BuildError::Source {
                    route: route.name.clone(),
                    reason: e.to_string(),
                }
            })?,
        ),
    };
    let spec =
        FhirSourceSpec {
            route: route.name.clone(),
            listen: f.listen,
            max_body: f.max_body,
            limits: crate::http_limits::HttpLimits {
                max_connections: f.max_connections as usize,
                max_connections_per_peer: f.max_connections_per_peer as usize,
                idle_timeout: f.idle_timeout,
                allow_from: f.allow_from.clone(),
                refusals: counters.refusals.clone(),
                tls,
                allow_subjects: f
                    .tls
                    .as_ref()
                    .map(|t| t.allow_subjects.clone())
                    .unwrap_or_default(),
            },
            destinations: route.destinations.iter().map(|d| d.name.clone()).collect(),
            order_by: route.order_by,
            to_hl7v2: if route.steps.iter().any(|s| {
                matches!(
                    s,
                    wyvern_config::Step::Map(wyvern_config::MapKind::FhirToHl7v2)
                )
            }) {
                Some(
                    ctx.plugins
                        .mapper(wyvern_config::MapKind::FhirToHl7v2)
                        .map_err(|reason| BuildError::Source {
                            route: route.name.clone(),
                            reason,
                        })?,
                )
            } else {
                None
            },
            auth: match &f.auth {
                None => None,
                Some(a) => Some(super::fhir_auth::BearerAuth::load(&route.name, a).map_err(
                    |e| BuildError::Source {
                        route: route.name.clone(),
                        reason: e.to_string(),
                    },
                )?),
            },
        };
    let source = FhirSource::bind(
        spec,
        ctx.ingest.clone(),
        ctx.clock.clone(),
        codec,
        counters.clone(),
    )
    .await
    .map_err(|source| BuildError::Bind {
        route: route.name.clone(),
        addr: f.listen,
        source,
    })?;
    Ok((Box::new(source), counters))
}
