//! The bridge (`bridge.yaml`): the exchange function's federated read. A clinician's record
//! system asks one FHIR R4 base — `GET /fhir/{type}?…` for the patient's NHS number — and gets
//! one searchset holding what every member record holds, each entry tagged with its source and
//! data owner, a member that failed named in an OperationOutcome entry. Nothing is copied or
//! stored: the members stay the records; the bridge only asks and merges.
//!
//! - `wyvern_federation` (its own crate, pure): the caller's search checked, and the answers
//!   merged into one searchset.
//! - `member.rs`: asking one member, bounded in time and bytes.
//! - `index.rs`: which members to ask, from the regional patient index.
//! - `answer.rs`: a search or `$everything` asked of those members, merged, and told in the
//!   audit record.
//! - `policy.rs`: who may ask and why, the dissent list, what is never passed on.
//! - `capability.rs`: `GET /fhir/metadata`, what the members together serve.
//!
//! Every query is written to the audit log (who, from where, which patient, which members,
//! how many entries) **before** the answer goes back: a query that cannot be audited is
//! refused with 503, so no record leaves without a trace.

mod answer;
mod capability;
mod index;
mod member;
mod policy;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::{ConnectInfo, Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use tokio_util::sync::CancellationToken;
use wyvern_connectors::peers::{Peer, Refusals};
use wyvern_core::Clock;
use wyvern_store::{AuditAction, AuditEntry, AuditTrail};

use wyvern_federation::search;
use wyvern_federation::{BadSearch, Origin};

use crate::BuildError;
use crate::http_limits::{ConnectedPeer, HttpLimits};
use crate::source::fhir_auth::BearerAuth;
use crate::source::fhir_intake::outcome;
use answer::{Asked, Tally};
use index::{PatientIndex, Reach};
use member::MemberClient;
use policy::{Access, Refusal};

/// What the bridge has done, for `/metrics`.
#[derive(Debug, Default)]
pub struct BridgeCounters {
    /// Queries answered (200), partial answers included.
    pub answered: AtomicU64,
    /// Queries the access policy refused (403).
    pub refused: AtomicU64,
    /// Searches that were not valid (400, 404).
    pub bad: AtomicU64,
    /// Queries not answered because their audit record could not be written (503).
    pub unaudited: AtomicU64,
    /// Per member (in config order): asks that gave nothing (failed, timed out, too large).
    pub member_failures: Vec<(String, AtomicU64)>,
}

/// The bridge's endpoint, bound and ready to run.
#[derive(Debug)]
pub struct BridgeServer {
    listener: tokio::net::TcpListener,
    limits: HttpLimits,
    state: Arc<Federation>,
}

/// What every request shares.
#[derive(Debug)]
struct Federation {
    members: Vec<MemberClient>,
    index: PatientIndex,
    /// Where it listens and whether on TLS: its base in the links it gives.
    listen: SocketAddr,
    tls: bool,
    public_base: Option<String>,
    auth: Option<BearerAuth>,
    /// Records appended together with other queries' (each still awaited before answering).
    audit: crate::audit_group::GroupAudit,
    clock: Arc<dyn Clock>,
    refusals: Arc<Refusals>,
    access: Access,
    /// Queries asking members at once: each may hold `max_member_answer` per member while it
    /// is merged, so their number is bounded, not only the connections'.
    fan_outs: tokio::sync::Semaphore,
    counters: Arc<BridgeCounters>,
}

impl Federation {
    /// The bridge's FHIR base for the links it gives: `public_base`, else as this caller
    /// reached it (its `Host`).
    fn base(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.public_base {
            return base.clone();
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| {
                !h.is_empty()
                    && h.bytes()
                        .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
            })
            .map_or_else(|| self.listen.to_string(), str::to_string);
        let scheme = if self.tls { "https" } else { "http" };
        format!("{scheme}://{host}/fhir")
    }
}

/// Queries that ask the members at once; the rest wait their turn.
const FAN_OUTS: usize = 32;

impl BridgeServer {
    /// Binds `serve.listen` and makes each member's client (secrets resolved now).
    /// `refusals`: where connections refused at the door are counted and reported (the audit
    /// log of refused connections, as a route's are). `operations`: the store's side that
    /// reads the patient index.
    pub async fn bind(
        bridge: &wyvern_config::Bridge,
        operations: Arc<dyn wyvern_store::Operations>,
        audit: Arc<dyn AuditTrail>,
        clock: Arc<dyn Clock>,
        refusals: Arc<Refusals>,
    ) -> Result<BridgeServer, BuildError> {
        let fail = |reason: String| BuildError::Source {
            route: "(bridge)".into(),
            reason,
        };
        let members = bridge
            .members
            .iter()
            .map(|m| {
                MemberClient::build(m, bridge.max_member_answer)
                    .map_err(|e| fail(format!("member {}: {e}", m.name)))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let access = Access::load(&bridge.policy).map_err(fail)?;
        let serve = &bridge.serve;
        let tls = match &serve.tls {
            None => None,
            Some(t) => Some(
                crate::tls::server("the bridge's listener".into(), t)
                    .map_err(|e| fail(e.to_string()))?,
            ),
        };
        let auth = match &serve.auth {
            None => None,
            Some(a) => Some(BearerAuth::load("(bridge)", a).map_err(|e| fail(e.to_string()))?),
        };
        let listener = tokio::net::TcpListener::bind(serve.listen)
            .await
            .map_err(|source| BuildError::Bind {
                route: "(bridge)".into(),
                addr: serve.listen,
                source,
            })?;
        Ok(BridgeServer {
            listener,
            limits: HttpLimits {
                max_connections: serve.max_connections as usize,
                max_connections_per_peer: serve.max_connections_per_peer as usize,
                idle_timeout: serve.idle_timeout,
                allow_from: serve.allow_from.clone(),
                refusals: refusals.clone(),
                tls,
                allow_subjects: serve
                    .tls
                    .as_ref()
                    .map(|t| t.allow_subjects.clone())
                    .unwrap_or_default(),
            },
            state: Arc::new(Federation {
                members,
                listen: serve.listen,
                tls: serve.tls.is_some(),
                public_base: bridge.public_base.clone(),
                index: PatientIndex::new(
                    operations,
                    bridge.members.iter().map(|m| m.fed_by.clone()).collect(),
                ),
                auth,
                audit: crate::audit_group::GroupAudit::start(audit),
                clock,
                refusals,
                access,
                fan_outs: tokio::sync::Semaphore::new(FAN_OUTS),
                counters: Arc::new(BridgeCounters {
                    member_failures: bridge
                        .members
                        .iter()
                        .map(|m| (m.name.clone(), AtomicU64::new(0)))
                        .collect(),
                    ..BridgeCounters::default()
                }),
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn counters(&self) -> Arc<BridgeCounters> {
        self.state.counters.clone()
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let addr = self.local_addr().ok();
        let names: Vec<&str> = self.state.members.iter().map(|m| m.name.as_str()).collect();
        tracing::info!(listen = ?addr, members = ?names, "bridge ready: /fhir");
        let router = Router::new()
            .route("/fhir/metadata", get(metadata).fallback(read_only))
            .route("/fhir/{kind}", get(search).fallback(read_only))
            .route(
                "/fhir/Patient/{id}/$everything",
                get(everything).fallback(read_only),
            )
            .fallback(not_found)
            .with_state(self.state);
        let served =
            crate::http_limits::serve(self.listener, self.limits, "(bridge)", router, shutdown)
                .await;
        if let Err(e) = served {
            tracing::warn!(error = %e, "bridge endpoint stopped");
        }
    }
}

async fn metadata(State(s): State<Arc<Federation>>) -> Response {
    fhir_json(
        StatusCode::OK,
        capability::statement(&s.members).to_string(),
    )
}

async fn not_found() -> Response {
    outcome(
        StatusCode::NOT_FOUND,
        "error",
        "not-supported",
        "the bridge answers GET /fhir/metadata, GET /fhir/{type}?… searches by NHS number and GET /fhir/Patient/{nhs-number}/$everything",
        None,
    )
}

/// Anything but GET: the bridge reads; writes go to the records themselves.
async fn read_only() -> Response {
    outcome(
        StatusCode::METHOD_NOT_ALLOWED,
        "error",
        "not-supported",
        "the bridge only reads (GET); write to the member records themselves",
        None,
    )
}

async fn search(
    State(s): State<Arc<Federation>>,
    ConnectInfo(ConnectedPeer(peer)): ConnectInfo<ConnectedPeer>,
    Path(kind): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let parsed = search::parse(&kind, &query_pairs(raw.as_deref())).map(Asked::Search);
    answer(&s, &peer, &headers, parsed).await
}

/// `GET /fhir/Patient/{nhs-number}/$everything`: every type for one patient, from every
/// member that holds them, in one searchset.
async fn everything(
    State(s): State<Arc<Federation>>,
    ConnectInfo(ConnectedPeer(peer)): ConnectInfo<ConnectedPeer>,
    Path(id): Path<String>,
    RawQuery(raw): RawQuery,
    headers: HeaderMap,
) -> Response {
    let parsed = search::parse_everything(&id, &query_pairs(raw.as_deref())).map(Asked::Everything);
    answer(&s, &peer, &headers, parsed).await
}

/// A query string's decoded name/value pairs.
fn query_pairs(raw: Option<&str>) -> Vec<(String, String)> {
    raw.map(|q| {
        form_urlencoded::parse(q.as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect()
    })
    .unwrap_or_default()
}

/// The caller checked, the request (already read: a bad one is a 4xx that names no record, and
/// a refusal's audit record says whose record was sought) admitted by the policy, the members
/// asked and merged, the audit record written, then the answer.
async fn answer(
    s: &Federation,
    peer: &Peer,
    headers: &HeaderMap,
    parsed: Result<Asked, BadSearch>,
) -> Response {
    let caller = match crate::source::fhir_auth::caller(
        s.auth.as_ref(),
        headers,
        peer,
        &s.refusals,
        "(bridge)",
    ) {
        Ok(caller) => caller,
        Err(refused) => return refused.response(),
    };
    let actor = actor(caller.as_ref(), peer);
    let asked = match parsed {
        Ok(asked) => asked,
        Err(bad) => {
            s.counters.bad.fetch_add(1, Ordering::Relaxed);
            let status = match bad {
                BadSearch::UnknownType(_) => StatusCode::NOT_FOUND,
                _ => StatusCode::BAD_REQUEST,
            };
            return outcome(status, "error", bad.code(), &bad.to_string(), None);
        }
    };
    let patient = asked.patient();
    if let Err(refusal) = s
        .access
        .admit(caller.as_ref())
        .and_then(|()| s.access.shares(&patient))
    {
        return refuse(s, actor, peer, &asked, &refusal).await;
    }
    let (bundle, detail) = {
        // The members' answers are held only while they are asked and merged: the turns are
        // given back before the audit record is awaited.
        let Ok(_turns) = s.fan_outs.acquire_many(asked.searches()).await else {
            return outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                "transient",
                "the bridge is stopping",
                None,
            );
        };
        let serves: Vec<bool> = s.members.iter().map(|m| asked.served_by(m)).collect();
        let mut reach = s.index.reach(patient.as_str(), &serves).await;
        for (r, m) in reach.iter_mut().zip(&s.members) {
            if asked.offset(&m.name).is_none() {
                *r = Reach::PagedPast;
            }
        }
        let (answers, took) = asked.ask(&s.members, &reach).await;
        let origins: Vec<Origin<'_>> = s.members.iter().map(MemberClient::origin).collect();
        let what = asked.what();
        let mut parts = Vec::with_capacity(answers.len());
        for (((o, a), r), (_, failures)) in origins
            .iter()
            .zip(&answers)
            .zip(&reach)
            .zip(&s.counters.member_failures)
        {
            let tally = Tally::of(a);
            if let Some(why) = &tally.failed {
                failures.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(member = %o.member, request = %what, reason = %why, "a bridge member gave nothing for part or all of a request; the answer went without it");
            }
            parts.push(tally.describe(o.member, *r, &what));
        }
        let next = asked.next_link(|| s.base(headers), &s.members, &answers, &took);
        let mut bundle = asked.bundle(&origins, answers);
        if let Some(url) = next {
            bundle["link"] = serde_json::json!([{ "relation": "next", "url": url }]);
        }
        let entries = bundle["total"].as_u64().unwrap_or(0);
        let detail = audit_detail(&what, &parts, entries, caller.as_ref());
        (bundle, detail)
    };
    let record = AuditEntry {
        at_ms: s.clock.now_millis(),
        actor,
        action: AuditAction::Access,
        message_id: None,
        nhs_number: Some(patient.as_str().to_string()),
        from: Some(peer.addr.to_string()),
        detail: Some(detail),
    };
    if let Err(e) = s.audit.append(record).await {
        s.counters.unaudited.fetch_add(1, Ordering::Relaxed);
        tracing::error!(error = %e, "bridge query refused: the audit log cannot be written");
        let mut r = outcome(
            StatusCode::SERVICE_UNAVAILABLE,
            "error",
            "transient",
            "this query cannot be audited just now, so it is not answered; try again later",
            None,
        );
        r.headers_mut().insert(
            header::RETRY_AFTER,
            axum::http::HeaderValue::from_static("5"),
        );
        return r;
    }
    s.counters.answered.fetch_add(1, Ordering::Relaxed);
    fhir_json(StatusCode::OK, bundle.to_string())
}

/// A policy refusal: audited (who, which rule, whose record was sought), then 403 with the
/// rule's words.
async fn refuse(
    s: &Federation,
    actor: String,
    peer: &Peer,
    asked: &Asked,
    refusal: &Refusal,
) -> Response {
    s.counters.refused.fetch_add(1, Ordering::Relaxed);
    tracing::warn!(%peer, %actor, reason = %refusal, "bridge query refused by the access policy");
    let record = AuditEntry {
        at_ms: s.clock.now_millis(),
        actor,
        action: AuditAction::Denied,
        message_id: None,
        nhs_number: Some(asked.patient().as_str().to_string()),
        from: Some(peer.addr.to_string()),
        detail: Some(format!("bridge GET {}: refused: {refusal}", asked.what())),
    };
    if let Err(e) = s.audit.append(record).await {
        tracing::error!(error = %e, "the audit log cannot be written (a refused bridge query)");
    }
    outcome(
        StatusCode::FORBIDDEN,
        "error",
        "forbidden",
        &refusal.to_string(),
        None,
    )
}

/// Who asked, as the audit log names callers.
fn actor(caller: Option<&wyvern_connectors::jwt::Caller>, peer: &Peer) -> String {
    match (caller, &peer.certificate) {
        (Some(c), _) => format!("token:{}", c.client.as_deref().unwrap_or("(no client id)")),
        (None, Some(cert)) => format!("cert:{}", cert.subject),
        (None, None) => format!("peer:{}", peer.addr.ip()),
    }
}

/// The audit record's detail: what was asked, of whom, and what came back (no clinical data).
fn audit_detail(
    what: &str,
    members: &[String],
    entries: u64,
    caller: Option<&wyvern_connectors::jwt::Caller>,
) -> String {
    let organisation = caller
        .and_then(|c| c.organisation.as_deref())
        .unwrap_or("(none)");
    let purpose = caller
        .and_then(|c| c.purpose.as_deref())
        .unwrap_or("(none)");
    format!(
        "bridge GET {what}: organisation {organisation}; purpose {purpose}; members {}; {entries} entries returned",
        members.join(", ")
    )
}

fn fhir_json(status: StatusCode, body: String) -> Response {
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use wyvern_store::{AuditRow, StoreError, StoreFuture};

    /// An audit log that cannot be written (a full disk, a lost database).
    #[derive(Debug)]
    struct Unwritable;

    impl AuditTrail for Unwritable {
        fn append(&self, _: AuditEntry) -> StoreFuture<'_, i64> {
            Box::pin(async { Err(StoreError::Closed) })
        }
        fn page(&self, _: i64, _: usize) -> StoreFuture<'_, Vec<AuditRow>> {
            Box::pin(async { Ok(Vec::new()) })
        }
    }

    fn bridge(member: SocketAddr) -> wyvern_config::Bridge {
        let text = format!(
            "version: 1\nserve:\n  listen: 127.0.0.1:0\nmembers:\n  - name: chie\n    ods: XCH01\n    fhir: {{ base: \"http://{member}/fhir\", timeout: 1s }}\n"
        );
        let dir = std::path::Path::new("/nonexistent");
        let files = [wyvern_config::SourceFile {
            path: dir.join(wyvern_config::BRIDGE_FILE),
            text,
        }];
        wyvern_config::validate(dir, &files)
            .expect("a valid bridge.yaml")
            .bridge
            .expect("a bridge")
    }

    #[tokio::test]
    async fn a_query_that_cannot_be_audited_is_not_answered() {
        // The member is down, so the answer would be a 200 with an outcome entry: the audit
        // failure must still win.
        let down = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("port");
        let server = BridgeServer::bind(
            &bridge(down),
            // No member names its feeds, so the index is never read.
            Arc::new(wyvern_store::EmbeddedOperations {
                dir: "/nonexistent".into(),
            }),
            Arc::new(Unwritable),
            Arc::new(wyvern_core::SystemClock),
            Arc::default(),
        )
        .await
        .expect("bind");
        let addr = server.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let running = tokio::spawn(server.run(stop.clone()));
        let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
        s.write_all(b"GET /fhir/Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
            .await
            .expect("write");
        let mut answer = String::new();
        s.read_to_string(&mut answer).await.expect("read");
        stop.cancel();
        let _ = running.await;
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert!(answer.to_lowercase().contains("retry-after: 5"), "{answer}");
        assert!(answer.contains("cannot be audited"), "{answer}");
        assert!(!answer.contains("searchset"), "{answer}");
    }
}
