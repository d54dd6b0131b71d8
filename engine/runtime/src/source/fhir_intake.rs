//! What a FHIR source does with one request's body: parse it (through the [`FhirCodec`] the
//! binary supplies), check it against the URL, and commit it to the inbox — accepted with one
//! outbox row per destination, or refused and kept as `rejected` — then say so in an
//! OperationOutcome. The HTTP side is [`crate::source::fhir`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use axum::body::Bytes as AxumBytes;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use wyvern_config::OrderBy;
use wyvern_core::{Clock, ContentType, Envelope, MessageId, Metadata};
use wyvern_store::{Delivery, InboxRecord, InboxStatus};

use crate::RouteCounters;

/// A strictly parsed FHIR body.
#[derive(Debug, Clone)]
pub struct ParsedFhir {
    pub resource_type: String,
    /// `Bundle.type` when it is a Bundle.
    pub bundle_type: Option<String>,
    /// `id`, when the resource carries one.
    pub id: Option<String>,
    /// The resource as FHIR JSON (what FHIR destinations are sent).
    pub json: Vec<u8>,
    /// A valid NHS number of the patient it is about, when it says (for `order_by: patient`).
    pub nhs_number: Option<String>,
}

/// Why a body was refused: the message and, when known, where (FHIRPath-like).
#[derive(Debug, Clone)]
pub struct FhirRefusal {
    pub diagnostics: String,
    pub location: Option<String>,
}

/// Parses FHIR for the runtime; the binary implements it with the FHIR model.
pub trait FhirCodec: Send + Sync + std::fmt::Debug {
    fn parse(&self, body: &[u8], xml: bool) -> Result<ParsedFhir, FhirRefusal>;
}

#[derive(Debug)]
pub(crate) struct Inbound {
    pub(crate) route: String,
    pub(crate) store: crate::intake::ingest::Ingest,
    pub(crate) clock: Arc<dyn Clock>,
    pub(crate) codec: Arc<dyn FhirCodec>,
    pub(crate) destinations: Vec<String>,
    pub(crate) order_by: OrderBy,
    pub(crate) max_body: usize,
    pub(crate) counters: Arc<RouteCounters>,
    /// Bearer tokens required (`auth.jwt`), when they are.
    pub(crate) auth: Option<super::fhir_auth::BearerAuth>,
    /// `map: fhir-to-hl7v2`, when the route has it: the destinations are sent HL7v2.
    pub(crate) to_hl7v2: Option<Arc<dyn crate::transform::Transform>>,
}

/// An OperationOutcome response.
pub(crate) fn outcome(
    status: StatusCode,
    severity: &str,
    code: &str,
    text: &str,
    location: Option<&str>,
) -> Response {
    let mut issue = serde_json::json!({ "severity": severity, "code": code, "diagnostics": text });
    if let Some(l) = location {
        issue["expression"] = serde_json::json!([l]);
    }
    let body = serde_json::json!({ "resourceType": "OperationOutcome", "issue": [issue] });
    (
        status,
        [(header::CONTENT_TYPE, "application/fhir+json")],
        body.to_string(),
    )
        .into_response()
}

pub(crate) enum Expect {
    Bundle,
    Type(String, Option<String>),
}

/// Why a body that was read is refused.
pub(crate) struct Refused {
    pub(crate) status: StatusCode,
    pub(crate) code: &'static str,
    pub(crate) text: String,
    pub(crate) location: Option<String>,
}

fn invalid(text: String, location: Option<String>) -> Refused {
    Refused {
        status: StatusCode::BAD_REQUEST,
        code: "invalid",
        text,
        location,
    }
}

/// Parses the body and checks it against the URL: the resource and whether it creates. The
/// parse runs off the async workers (a large Bundle takes milliseconds).
pub(crate) async fn check(
    s: &Inbound,
    body: &AxumBytes,
    xml: bool,
    expect: Expect,
) -> Result<(ParsedFhir, bool), Refused> {
    let codec = s.codec.clone();
    let raw = body.clone();
    match tokio::task::spawn_blocking(move || judge(codec.as_ref(), &raw, xml, &expect)).await {
        Ok(judged) => judged,
        Err(_) => Err(Refused {
            status: StatusCode::INTERNAL_SERVER_ERROR,
            code: "exception",
            text: "the FHIR parser failed".into(),
            location: None,
        }),
    }
}

/// Parses a body and checks it against the URL ([`check`] runs it off the async workers).
pub(crate) fn judge(
    codec: &dyn FhirCodec,
    body: &[u8],
    xml: bool,
    expect: &Expect,
) -> Result<(ParsedFhir, bool), Refused> {
    let parsed = codec
        .parse(body, xml)
        .map_err(|r| invalid(r.diagnostics, r.location))?;
    let created = fits(&parsed, expect)?;
    Ok((parsed, created))
}

/// Whether a parsed body is what the URL says (`expect`); whether it creates.
fn fits(parsed: &ParsedFhir, expect: &Expect) -> Result<bool, Refused> {
    Ok(match expect {
        Expect::Bundle => {
            if parsed.resource_type != "Bundle" {
                return Err(invalid(
                    format!("POST /fhir takes a Bundle, not a {}", parsed.resource_type),
                    Some("resourceType".into()),
                ));
            }
            if !matches!(parsed.bundle_type.as_deref(), Some("transaction" | "batch")) {
                let t = parsed.bundle_type.as_deref().unwrap_or("");
                return Err(invalid(
                    format!("Bundle.type {t:?}: expected transaction or batch"),
                    Some("Bundle.type".into()),
                ));
            }
            false
        }
        Expect::Type(kind, id) => {
            if &parsed.resource_type != kind {
                return Err(invalid(
                    format!(
                        "the body is a {}, the URL says {kind}",
                        parsed.resource_type
                    ),
                    Some("resourceType".into()),
                ));
            }
            match (id, &parsed.id) {
                (Some(url_id), Some(body_id)) if url_id != body_id => {
                    return Err(invalid(
                        format!("the body's id {body_id:?} is not the URL's {url_id:?}"),
                        Some(format!("{kind}.id")),
                    ));
                }
                // FHIR update: "if no id element is provided … the server SHALL respond 400".
                (Some(url_id), None) => {
                    return Err(invalid(
                        format!(
                            "an update (PUT {kind}/{url_id}) needs the resource's id in the body too"
                        ),
                        Some(format!("{kind}.id")),
                    ));
                }
                _ => {}
            }
            id.is_none()
        }
    })
}

/// How a FHIR source judges a body, as an assessment (what a route test and shadow replay
/// compare): a Bundle POSTed to the base, a resource without `update` POSTed to its type (a
/// create), or PUT to `{type}/{update}`. Nothing is stored.
pub(crate) fn assess_body(
    codec: &dyn FhirCodec,
    plan: &crate::plan::RoutePlan,
    body: Bytes,
    xml: bool,
    update: Option<String>,
    at: &Stamp<'_>,
) -> crate::intake::assess::Assessment {
    let (route, destinations) = (&plan.route, &plan.destinations);
    // A fhir source's one step, when it has it: map: fhir-to-hl7v2.
    let to_hl7v2 = plan.transforms.first().and_then(Option::as_deref);
    // Parsed once: what it is says where it was sent.
    let judged = codec
        .parse(&body, xml)
        .map_err(|r| invalid(r.diagnostics, r.location))
        .and_then(|mut parsed| {
            let expect = if parsed.resource_type == "Bundle" {
                Expect::Bundle
            } else {
                Expect::Type(parsed.resource_type.clone(), update)
            };
            let created = fits(&parsed, &expect)?;
            payload(&mut parsed, created, to_hl7v2, at)
        });
    let (status, error, deliveries) = match judged {
        Ok(payload) => {
            let deliveries = destinations
                .iter()
                .map(|d| Delivery {
                    route: route.to_string(),
                    destination: d.clone(),
                    order_key: String::new(),
                    payload: Some(payload.body.clone()),
                    content_type: Some(payload.content_type),
                })
                .collect();
            (InboxStatus::Accepted, None, deliveries)
        }
        Err(r) => (InboxStatus::Rejected, Some(r.text), Vec::new()),
    };
    crate::intake::assess::Assessment {
        status,
        meta: Metadata::default(),
        error,
        ack: None,
        raw_len: body.len(),
        raw: body,
        deliveries,
        sender_mismatch: false,
        step: None,
    }
}

/// What the destinations are sent. The interaction travels with the payload: a resource with
/// an id is delivered as an update of that id, one without as a create. A create's id is
/// ignored (FHIR: "if an id is provided, the server SHALL ignore it"), so it is dropped here.
pub(crate) fn delivered(parsed: &mut ParsedFhir, created: bool) {
    if created && parsed.id.is_some() {
        parsed.json = without_id(&parsed.json);
    }
}

/// The resource JSON without its top-level `id` (member order kept).
fn without_id(json: &[u8]) -> Vec<u8> {
    match serde_json::from_slice::<serde_json::Value>(json) {
        Ok(serde_json::Value::Object(mut o)) => {
            o.retain(|k, _| k != "id");
            serde_json::Value::Object(o).to_string().into_bytes()
        }
        _ => json.to_vec(),
    }
}

/// What the destinations of an accepted body are sent.
pub(crate) struct Payload {
    pub body: Bytes,
    pub content_type: ContentType,
    /// Whether the body was a create (201) rather than an update (200).
    pub created: bool,
}

/// The message a payload is made for: MSH-10 and MSH-7 of an HL7v2 payload.
pub(crate) struct Stamp<'a> {
    pub id: &'a str,
    pub now_ms: i64,
}

/// The payload of an accepted body: its JSON as [`delivered`] leaves it, or, on a route with
/// `map: fhir-to-hl7v2`, the HL7v2 message made from it (a body that cannot be made into one
/// is refused with 422, saying why).
pub(crate) fn payload(
    parsed: &mut ParsedFhir,
    created: bool,
    to_hl7v2: Option<&dyn crate::transform::Transform>,
    at: &Stamp<'_>,
) -> Result<Payload, Refused> {
    delivered(parsed, created);
    let Some(t) = to_hl7v2 else {
        return Ok(Payload {
            body: Bytes::from(std::mem::take(&mut parsed.json)),
            content_type: ContentType::FhirJson,
            created,
        });
    };
    let input = crate::transform::TransformMessage {
        content_type: "fhir+json".into(),
        body: parsed.json.clone(),
        metadata: vec![("received-at-ms".into(), at.now_ms.to_string())],
    };
    match t.process(at.id, input) {
        Ok(mut out) if !out.is_empty() => Ok(Payload {
            body: Bytes::from(out.swap_remove(0).body),
            content_type: ContentType::Hl7v2,
            created,
        }),
        Ok(_) => Err(Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "processing",
            text: "the route's map: fhir-to-hl7v2 made no message from this body".into(),
            location: None,
        }),
        Err(
            crate::transform::TransformError::Reject(why)
            | crate::transform::TransformError::Error(why),
        ) => Err(Refused {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            code: "processing",
            text: why,
            location: None,
        }),
    }
}

/// What is stored: an accepted resource with its payload, or a refusal's reason.
pub(crate) enum Stored {
    Accepted(ParsedFhir, Payload),
    Rejected(String),
}

pub(crate) async fn commit(
    s: &Inbound,
    (id, now): (MessageId, i64),
    peer: &wyvern_connectors::peers::Peer,
    caller: Option<&wyvern_connectors::jwt::Caller>,
    raw: AxumBytes,
    xml: bool,
    what: Stored,
) -> Response {
    let (status, error, deliveries, resource, nhs_number, created) = match what {
        Stored::Accepted(parsed, payload) => {
            let order_key = match (s.order_by, &parsed.nhs_number) {
                (OrderBy::Patient, Some(n)) => format!("nhs:{n}"),
                (OrderBy::Sender, _) => format!("sender:{}", peer.addr.ip()),
                _ => format!("id:{id}"),
            };
            let deliveries = s
                .destinations
                .iter()
                .map(|d| Delivery {
                    route: s.route.clone(),
                    destination: d.clone(),
                    order_key: order_key.clone(),
                    payload: Some(payload.body.clone()),
                    // Received as JSON or XML: delivered as JSON, or as HL7v2 made from it.
                    content_type: Some(payload.content_type),
                })
                .collect();
            (
                InboxStatus::Accepted,
                None,
                deliveries,
                Some(parsed.resource_type),
                parsed.nhs_number,
                payload.created,
            )
        }
        Stored::Rejected(reason) => (
            InboxStatus::Rejected,
            Some(reason),
            Vec::new(),
            None,
            None,
            false,
        ),
    };
    let accepted = status == InboxStatus::Accepted;
    let record = InboxRecord {
        envelope: Envelope {
            id,
            received_at_ms: now,
            content_type: if xml {
                ContentType::FhirXml
            } else {
                ContentType::FhirJson
            },
            raw: Bytes::copy_from_slice(&raw),
            meta: Metadata {
                source: s.route.clone(),
                peer: Some(peer.to_string()),
                // The calling organisation from its token, kept as MSH-4 is for HL7v2.
                sending_facility: caller.and_then(|c| c.organisation.clone()),
                sending_application: caller.and_then(|c| c.client.clone()),
                message_type: resource.clone(),
                nhs_number,
                ..Metadata::default()
            },
            parent: None,
        },
        status,
        error,
        ack: None,
        raw_len: raw.len(),
        deliveries,
        digest: None,
    };
    let stored = match s.store.submit(record).await {
        Ok(pending) => pending.wait().await.map(|_| ()),
        Err(e) => Err(e),
    };
    match stored {
        Ok(()) if accepted => {
            s.counters.accepted.fetch_add(1, Ordering::Relaxed);
            let resource = resource.unwrap_or_default();
            tracing::info!(route = %s.route, %peer, %id, %resource, "FHIR message accepted");
            let code = if created {
                StatusCode::CREATED
            } else {
                StatusCode::OK
            };
            let text = format!(
                "accepted as message {id}: stored, and queued for {} destination(s)",
                s.destinations.len()
            );
            let mut r = outcome(code, "information", "informational", &text, None);
            if let Ok(v) = format!("/fhir/{resource}/{id}").parse() {
                r.headers_mut().insert(header::LOCATION, v);
            }
            r
        }
        Ok(()) => outcome(
            StatusCode::OK,
            "information",
            "informational",
            "kept as rejected",
            None,
        ),
        Err(e) => {
            s.counters.store_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(route = %s.route, %id, error = %e, "FHIR message not stored; answering 503");
            outcome(
                StatusCode::SERVICE_UNAVAILABLE,
                "error",
                "transient",
                &format!("not stored ({e}); send it again"),
                None,
            )
        }
    }
}
