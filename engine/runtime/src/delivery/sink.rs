//! Where a delivery worker sends: one closed enum over the destination kinds, each deciding
//! what its receiver's answer means — delivered, try again later (transient), or never
//! (permanent).

use tokio_util::task::AbortOnDropHandle;
use wyvern_config::{DestinationKind, FhirAuth, TemplatePart};
use wyvern_connectors::amqp::{
    AmqpPublisher, AmqpQueueSpec, AmqpTarget, Outgoing, PublishError, Unconfirmed,
};
use wyvern_connectors::fhir::{FhirAuthSpec, FhirClient, FhirOutcome, Interaction, OAuth2Spec};
use wyvern_connectors::file::FileSink;
use wyvern_connectors::mllp::MllpOutbound;
use wyvern_core::ErrorClass;
use wyvern_hl7::{AckIntent, Message};
use wyvern_store::OutboxItem;

/// A delivery that did not succeed, and whether retrying can help.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    /// `Transient` or `Permanent`.
    pub class: ErrorClass,
    pub reason: String,
}

impl Failure {
    pub(crate) fn transient(reason: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Transient,
            reason: reason.into(),
        }
    }
    pub(crate) fn permanent(reason: impl Into<String>) -> Self {
        Failure {
            class: ErrorClass::Permanent,
            reason: reason.into(),
        }
    }
}

#[derive(Debug)]
pub enum Sink {
    /// Destinations that take one message at a time, in order.
    Serial(Serial),
    Amqp(Box<AmqpSink>),
    Fhir(FhirClient),
}

/// The in-order destinations: a file at a time, or MLLP on one connection (a message at a
/// time, or a window of them answered in order).
#[derive(Debug)]
pub enum Serial {
    File(FileSink),
    Mllp(Box<MllpOutbound>, usize),
    /// The NRL: each message's pointer made right before the next (a patient's messages in
    /// order).
    Nrl(Box<super::nrl::NrlSink>),
}

/// Requests in flight at once to one FHIR destination.
const FHIR_PARALLEL: usize = 16;

/// The FHIR interaction for a payload: a Bundle is POSTed to the base; a resource with an id
/// is an update (`PUT Type/id`: an inbound PUT stays a PUT, and a resend stays an upsert); one
/// without is a create; anything else (HL7v2) is created as a `Binary`. An id that is not a
/// FHIR id is refused rather than put in a URL.
pub fn fhir_request(payload: &[u8]) -> Result<(Interaction, Vec<u8>), Failure> {
    if let Ok(serde_json::Value::Object(o)) = serde_json::from_slice::<serde_json::Value>(payload)
        && let Some(t) = o.get("resourceType").and_then(|t| t.as_str())
    {
        let resource_type = t.to_string();
        let interaction = match o.get("id").and_then(|i| i.as_str()) {
            _ if resource_type == "Bundle" => Interaction::Bundle,
            None => Interaction::Create { resource_type },
            Some(id) if is_fhir_id(id) && is_fhir_id(&resource_type) => Interaction::Update {
                resource_type,
                id: id.to_string(),
            },
            Some(id) => {
                return Err(Failure::permanent(format!(
                    "{resource_type} id {id:?} is not a FHIR id ([A-Za-z0-9-.]{{1,64}})"
                )));
            }
        };
        return Ok((interaction, payload.to_vec()));
    }
    use base64::Engine as _;
    let binary = serde_json::json!({
        "resourceType": "Binary",
        "contentType": "x-application/hl7-v2+er7",
        "data": base64::engine::general_purpose::STANDARD.encode(payload),
    });
    Ok((
        Interaction::Create {
            resource_type: "Binary".into(),
        },
        binary.to_string().into_bytes(),
    ))
}

/// FHIR's `id` type: 1 to 64 of `A-Z a-z 0-9 - .`.
pub(crate) fn is_fhir_id(s: &str) -> bool {
    (1..=64).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

/// The client of a FHIR server (a `fhir` destination, a bridge's member), its secrets
/// resolved and its extra roots read now.
pub fn fhir_client(f: &wyvern_config::FhirDestination) -> Result<FhirClient, String> {
    let auth = match &f.auth {
        FhirAuth::None => FhirAuthSpec::None,
        FhirAuth::Bearer(b) => FhirAuthSpec::Bearer(b.resolve()?),
        FhirAuth::OAuth2(o) => FhirAuthSpec::OAuth2(OAuth2Spec {
            token_url: o.token_url.clone(),
            client_id: o.client_id.resolve()?,
            key_pem: o.key.resolve()?,
            kid: o.kid.clone(),
            scope: o.scope.clone(),
        }),
    };
    let ca = match &f.ca {
        None => None,
        Some(path) => Some(
            std::fs::read(path)
                .map_err(|e| format!("cannot read tls.ca {}: {e}", path.display()))?,
        ),
    };
    FhirClient::new(&f.base.resolve()?, auth, f.timeout, ca.as_deref())
}

/// A publisher and the routing key template of one AMQP destination.
#[derive(Debug)]
pub struct AmqpSink {
    publisher: AmqpPublisher,
    routing_key: Vec<TemplatePart>,
}

impl AmqpSink {
    /// Publishes the items back to back, each key's on one channel (in order), and returns
    /// without waiting for their confirms.
    async fn start(&mut self, items: &[OutboxItem]) -> Sending {
        let keys: Vec<String> = items
            .iter()
            .map(|i| render(&self.routing_key, &i.payload))
            .collect();
        let ids: Vec<String> = items.iter().map(OutboxItem::delivery_id).collect();
        let batch: Vec<Outgoing<'_>> = items
            .iter()
            .zip(&keys)
            .zip(&ids)
            .map(|((i, k), id)| Outgoing {
                routing_key: k.clone(),
                body: i.payload.as_slice(),
                message_id: id.as_str(),
                content_type: i.content_type.mime(),
                lane: u64::from(crc32fast::hash(i.order_key.as_bytes())),
            })
            .collect();
        let unconfirmed = self.publisher.start_many(&batch).await;
        Sending::Amqp(unconfirmed, keys)
    }
}

/// A batch on its way: sent and awaiting the receiver's word (a streaming destination), or
/// already answered.
#[derive(Debug)]
pub enum Sending {
    /// Published; the confirms, and the routing key each message went with, to come.
    Amqp(Unconfirmed, Vec<String>),
    /// Requests on their way (a task of their own, aborted if this is dropped: a pass whose
    /// lease lapsed must stop sending); the answers to come, in the batch's order.
    Http(AbortOnDropHandle<Vec<Result<String, Failure>>>),
    /// Every result is in.
    Done(Vec<Result<String, Failure>>),
}

/// Each item's FHIR request, or why it cannot be made.
fn requests(items: &[OutboxItem]) -> Vec<Result<(Interaction, Vec<u8>), Failure>> {
    items.iter().map(|i| fhir_request(&i.payload)).collect()
}

/// Sends the requests, up to `FHIR_PARALLEL` at once. A batch holds one message per key, so
/// they may go in parallel: HTTP has no connection-level order to keep. Results come back in
/// the batch's order.
async fn post_jobs(
    client: FhirClient,
    jobs: Vec<Result<(Interaction, Vec<u8>), Failure>>,
) -> Vec<Result<String, Failure>> {
    use futures_util::StreamExt as _;
    futures_util::stream::iter(jobs)
        .map(|job| {
            let client = client.clone();
            async move {
                let (interaction, body) = job?;
                match client.send(&interaction, body).await {
                    FhirOutcome::Stored(where_) => Ok(where_),
                    FhirOutcome::Transient(why) => Err(Failure::transient(why)),
                    FhirOutcome::Refused(why) => Err(Failure::permanent(why)),
                }
            }
        })
        .buffered(FHIR_PARALLEL)
        .collect()
        .await
}

/// Fills `{PATH}` parts from the message (empty when absent; bytes that would change the
/// meaning of a topic key become `_`).
pub fn render(parts: &[TemplatePart], payload: &[u8]) -> String {
    let msg = Message::parse(payload).ok();
    let mut out = String::new();
    for p in parts {
        match p {
            TemplatePart::Text(t) => out.push_str(t),
            TemplatePart::Field(path) => {
                let v = msg
                    .as_ref()
                    .and_then(|m| m.query(path).next())
                    .map(|v| v.as_str().into_owned())
                    .unwrap_or_default();
                out.extend(v.chars().map(|c| {
                    if c == '.' || c == '#' || c == '*' || c.is_whitespace() {
                        '_'
                    } else {
                        c
                    }
                }));
            }
        }
    }
    out
}

impl Sink {
    /// Builds the sink; resolves secrets (`${VAR}`, `file:`) now, so a missing one stops the
    /// engine at start with a clear message instead of failing every delivery.
    pub fn build(kind: &DestinationKind) -> Result<Sink, String> {
        Ok(match kind {
            DestinationKind::Amqp(a) => Sink::Amqp(Box::new(AmqpSink {
                publisher: AmqpPublisher::new(AmqpTarget {
                    url: a.url.resolve()?,
                    exchange: a.exchange.clone(),
                    queue: a.queue.as_ref().map(|q| AmqpQueueSpec {
                        name: q.name.clone(),
                        bind: q.bind.clone(),
                        quorum: q.quorum,
                    }),
                }),
                routing_key: a.routing_key.clone(),
            })),
            DestinationKind::File(f) => {
                Sink::Serial(Serial::File(FileSink::new(&f.dir, f.extension.clone())))
            }
            DestinationKind::Fhir(f) => Sink::Fhir(fhir_client(f)?),
            DestinationKind::Nrl(n) => {
                Sink::Serial(Serial::Nrl(Box::new(super::nrl::NrlSink::build(n)?)))
            }
            DestinationKind::Mllp(m) => {
                let mut out = MllpOutbound::new(&m.connect, m.ack_timeout, m.max_frame);
                if let Some(t) = &m.tls {
                    let owner = format!("MLLP destination {}", m.connect);
                    out = out.with_tls(crate::tls::client(owner, t).map_err(|e| e.to_string())?);
                }
                Sink::Serial(Serial::Mllp(Box::new(out), m.window))
            }
        })
    }

    /// Drops whatever connection state the sink keeps, so the next delivery starts afresh
    /// (after a delivery that panicked, the state of its connection is unknown).
    pub fn reset(&mut self) {
        match self {
            Sink::Amqp(a) => a.publisher.reset(),
            Sink::Serial(Serial::Mllp(m, _)) => m.reset(),
            Sink::Serial(Serial::File(_) | Serial::Nrl(_)) | Sink::Fhir(_) => {}
        }
    }

    /// Whether this destination takes many messages of one key at once and keeps their order
    /// (AMQP: one channel, confirms in order).
    pub fn pipelines(&self) -> bool {
        matches!(self, Sink::Amqp(_))
    }

    /// Whether the worker may read and send the next batch while this one is answered
    /// ([`Sink::start`], then [`Sink::confirmed`]): AMQP (confirms come later on the same
    /// channels, in order) and FHIR (requests are independent; the next batch holds none of
    /// this one's keys). One-at-a-time destinations wait for each answer.
    pub fn streams(&self) -> bool {
        matches!(self, Sink::Amqp(_) | Sink::Fhir(_))
    }

    /// Puts a batch on the wire; a destination that does not stream delivers it now.
    pub async fn start(&mut self, items: &[OutboxItem]) -> Sending {
        match self {
            Sink::Amqp(a) => a.start(items).await,
            Sink::Fhir(client) => {
                let posting = tokio::spawn(post_jobs(client.clone(), requests(items)));
                Sending::Http(AbortOnDropHandle::new(posting))
            }
            Sink::Serial(_) => Sending::Done(self.deliver_many(items).await),
        }
    }

    /// The outcomes of a batch from [`Sink::start`], one per item tried, in order.
    pub async fn confirmed(&mut self, sending: Sending) -> Vec<Result<String, Failure>> {
        let (unconfirmed, keys) = match sending {
            Sending::Amqp(unconfirmed, keys) => (unconfirmed, keys),
            Sending::Done(results) => return results,
            Sending::Http(task) => {
                return match task.await {
                    Ok(results) => results,
                    // The caller's guard catches it, as if it had panicked here.
                    Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                    // Cancelled (the runtime is stopping): nothing counts as tried.
                    Err(_) => Vec::new(),
                };
            }
        };
        let results = unconfirmed.confirmed().await;
        if let Sink::Amqp(a) = self {
            a.publisher.settled(&results).await;
        }
        results
            .into_iter()
            .zip(keys)
            .map(|(r, k)| {
                r.map(|()| format!("confirmed, routing key {k}"))
                    .map_err(|e| match e {
                        PublishError::Transient(why) => Failure::transient(why),
                        PublishError::Permanent(why) => Failure::permanent(why),
                    })
            })
            .collect()
    }

    /// Whether this destination sends a pass's messages in parallel (FHIR: HTTP keeps no order
    /// between requests), so a pass may hold only one message per key.
    pub fn parallel(&self) -> bool {
        matches!(self, Sink::Fhir(_))
    }

    /// Delivers items in the order given; one result each, for as many as were tried. Any
    /// failure of a one-at-a-time destination stops the batch there: after a transient one the
    /// receiver is probably down (the others wait their turn without spending an attempt), and
    /// after either, later messages of the same key must wait until the failure is recorded
    /// (their key may now be held).
    pub async fn deliver_many(&mut self, items: &[OutboxItem]) -> Vec<Result<String, Failure>> {
        match self {
            Sink::Amqp(a) => {
                let sending = a.start(items).await;
                self.confirmed(sending).await
            }
            Sink::Fhir(client) => post_jobs(client.clone(), requests(items)).await,
            Sink::Serial(Serial::Mllp(m, window)) if *window > 1 => {
                mllp_window(m, *window, items).await
            }
            Sink::Serial(serial) => {
                let mut out = Vec::with_capacity(items.len());
                for item in items {
                    let r = serial.deliver(item).await;
                    let stop = r.is_err();
                    out.push(r);
                    if stop {
                        break;
                    }
                }
                out
            }
        }
    }
}

impl Serial {
    /// Delivers one item; `Ok` carries a receipt to keep (a file path, an ACK code).
    async fn deliver(&mut self, item: &OutboxItem) -> Result<String, Failure> {
        match self {
            Serial::File(f) => f
                .write(
                    &item.delivery_id(),
                    item.content_type.extension(),
                    &item.payload,
                )
                .await
                .map(|p| p.display().to_string())
                .map_err(|e| {
                    Failure::transient(format!("cannot write to {}: {e}", f.dir().display()))
                }),
            Serial::Mllp(m, _) => {
                let ack = m
                    .exchange(&item.payload)
                    .await
                    .map_err(|e| Failure::transient(e.to_string()))?;
                let verdict = judge_ack(&item.payload, &ack);
                if verdict.is_err() {
                    // Whatever came back, the next message starts on a fresh connection.
                    m.reset();
                }
                verdict
            }
            Serial::Nrl(n) => n.deliver(item).await,
        }
    }
}

/// Sends items over one MLLP connection with up to `window` awaiting their ACKs, answers read
/// in order. After a failure nothing more is sent; the answers of what is already on the wire
/// still count (a later message of the failed one's key that was accepted goes again after
/// it: the worker records it as waiting), and what was not sent is not tried.
async fn mllp_window(
    m: &mut MllpOutbound,
    window: usize,
    items: &[OutboxItem],
) -> Vec<Result<String, Failure>> {
    let payloads: Vec<&[u8]> = items.iter().map(|i| i.payload.as_slice()).collect();
    // Each answer is judged once, as it comes (whether to go on sending); the verdicts are
    // the results of the answers that came, in order.
    let mut verdicts = Vec::with_capacity(items.len());
    let answers = m
        .exchange_window(&payloads, window, |i, ack| {
            let verdict = judge_ack(&items[i].payload, ack);
            let accepted = verdict.is_ok();
            verdicts.push(verdict);
            accepted
        })
        .await;
    let mut verdicts = verdicts.into_iter();
    answers
        .into_iter()
        .map(|answer| match answer {
            Ok(_) => verdicts
                .next()
                .unwrap_or_else(|| Err(Failure::transient("an answer without a verdict"))),
            Err(e) => Err(Failure::transient(e.to_string())),
        })
        .collect()
}

/// What an HL7 ACK says about the message it answers: AA/CA delivered; AE/CE try again; AR/CR
/// never (the receiver refuses the content). An ACK for another message (MSA-2 ≠ MSH-10) or
/// one that cannot be read is a transient failure: the message may not have arrived.
pub fn judge_ack(sent: &[u8], ack: &[u8]) -> Result<String, Failure> {
    let expected = Message::parse(sent)
        .map(|m| m.control_id().into_owned())
        .unwrap_or_default();
    let a = wyvern_hl7::read_ack(ack)
        .map_err(|e| Failure::transient(format!("unreadable ACK: {e}")))?;
    let (code, msa2, text) = (a.code_text, a.control_id, a.text);
    if msa2 != expected {
        return Err(Failure::transient(format!(
            "ACK for {msa2:?} while waiting for {expected:?}"
        )));
    }
    match wyvern_hl7::AckCode::parse(&code).map(|c| c.intent()) {
        Some(AckIntent::Accept) => Ok(code),
        Some(AckIntent::Error) => Err(Failure::transient(format!("{code}: {text}"))),
        Some(AckIntent::Reject) => Err(Failure::permanent(format!("{code}: {text}"))),
        None => Err(Failure::transient(format!("ACK with MSA-1 {code:?}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SENT: &[u8] = b"MSH|^~\\&|WYVERN|HUB|DCR|DCR|2026||ADT^A01|M1|P|2.4\r";

    fn ack(code: &str, id: &str) -> Vec<u8> {
        format!("MSH|^~\\&|DCR|DCR|WYVERN|HUB|2026||ACK|X|P|2.4\rMSA|{code}|{id}|why\r")
            .into_bytes()
    }

    #[test]
    fn fhir_interaction_follows_the_payload() {
        let update = br#"{"resourceType":"Patient","id":"p-1.a"}"#;
        assert_eq!(
            fhir_request(update).unwrap().0,
            Interaction::Update {
                resource_type: "Patient".into(),
                id: "p-1.a".into()
            }
        );
        let create = br#"{"resourceType":"Patient"}"#;
        assert_eq!(
            fhir_request(create).unwrap().0,
            Interaction::Create {
                resource_type: "Patient".into()
            }
        );
        let bundle = br#"{"resourceType":"Bundle","id":"b","type":"transaction"}"#;
        assert_eq!(fhir_request(bundle).unwrap().0, Interaction::Bundle);
        let hostile = br#"{"resourceType":"Patient","id":"../metadata"}"#;
        assert_eq!(
            fhir_request(hostile).unwrap_err().class,
            ErrorClass::Permanent
        );
        let (i, body) = fhir_request(SENT).unwrap();
        assert_eq!(
            i,
            Interaction::Create {
                resource_type: "Binary".into()
            }
        );
        let body: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(body["resourceType"], "Binary");
    }

    #[test]
    fn acks_are_classified() {
        assert_eq!(judge_ack(SENT, &ack("AA", "M1")), Ok("AA".into()));
        assert_eq!(judge_ack(SENT, &ack("CA", "M1")), Ok("CA".into()));
        assert_eq!(
            judge_ack(SENT, &ack("AE", "M1")).unwrap_err().class,
            ErrorClass::Transient
        );
        assert_eq!(
            judge_ack(SENT, &ack("AR", "M1")).unwrap_err().class,
            ErrorClass::Permanent
        );
        assert_eq!(
            judge_ack(SENT, &ack("AA", "M2")).unwrap_err().class,
            ErrorClass::Transient
        );
        assert_eq!(
            judge_ack(SENT, b"garbage").unwrap_err().class,
            ErrorClass::Transient
        );
    }
}
