//! Running a route's tests (`NAME.test.yaml`, validated by wyvern-config). Each case's message
//! goes through the same [`assess`] the MLLP, folder and queue sources call — the route's
//! filters, edits, plugins and mapping run for real — with the ACK's control id, its time and
//! the message id fixed, so an answer and a body are the same on every run. Nothing is stored
//! and nothing is sent: what a destination "receives" is the delivery the commit would have
//! written for it. Pure apart from the plugins the plan holds.

pub(crate) mod diff;

use bytes::Bytes;
use serde_json::Value;
use wyvern_config::{DeliveryCheck, Expectation, ExpectedBody, Input, Outcome, TestCase};
use wyvern_connectors::mllp::MllpFrame;
use wyvern_core::{ContentType, MessageId};
use wyvern_hl7::Message;
use wyvern_store::{Delivery, InboxStatus};

use crate::intake::assess::{Assessment, Context, assess};
use crate::plan::RoutePlan;
use crate::source::fhir::FhirCodec;
use crate::source::fhir_intake::{Expect, delivered, judge as judge_fhir};

/// The ACK's MSH-10 in a test.
pub const ACK_ID: &str = "WYVERN-TEST";
/// The ACK's MSH-7 in a test: the time plugins see in test mode (2026-01-01T00:00:00Z).
pub const NOW: &str = "20260101000000";
const NOW_MS: u64 = 1_767_225_600_000;
/// A failure's details are cut off after this many lines.
const MAX_DETAIL: usize = 40;

/// What one case made, and where it differs from what its test expects.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    /// Each difference: a headline and its detail lines (a diff).
    pub failures: Vec<Failure>,
    /// What each destination received, in the route's order (for `--update`).
    pub received: Vec<(String, Vec<Bytes>)>,
}

impl CaseReport {
    pub fn passed(&self) -> bool {
        self.failures.is_empty()
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Failure {
    pub headline: String,
    pub detail: Vec<String>,
}

fn fail(headline: String) -> Failure {
    Failure {
        headline,
        detail: Vec::new(),
    }
}

/// The case's message as a frame: HL7v2 written one segment per line gets CR segment ends.
pub fn frame(input: &Input) -> Bytes {
    let bytes: &[u8] = match input {
        Input::Inline(text) => text.as_bytes(),
        Input::File { text, .. } => text.as_deref().unwrap_or_default(),
    };
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(0);
    let hl7 = [&b"MSH"[..], b"FHS", b"BHS"]
        .iter()
        .any(|h| bytes[start..].starts_with(h));
    if hl7 {
        Bytes::from(wyvern_hl7::with_cr_segments(&bytes[start..]))
    } else {
        Bytes::copy_from_slice(bytes)
    }
}

/// Runs case number `n` (its message id is made from it) of a route's tests. `fhir`: the
/// parser of a route whose source is `fhir` (its cases are FHIR bodies POSTed to it); `None`
/// for the sources that carry HL7v2.
pub fn run_case(
    plan: &RoutePlan,
    fhir: Option<&dyn FhirCodec>,
    n: usize,
    case: &TestCase,
) -> CaseReport {
    let mut id = [0u8; 16];
    id[..6].copy_from_slice(&NOW_MS.to_be_bytes()[2..]);
    id[8..].copy_from_slice(&(n as u64).to_be_bytes());
    let message_id = MessageId::from_bytes(id).to_string();
    let cx = Context {
        max_frame: usize::MAX,
        ack_id: ACK_ID,
        now: NOW,
        message_id: &message_id,
        plan,
        sender: None,
    };
    let a = match fhir {
        None => assess(MllpFrame::Message(frame(&case.input)), &cx),
        Some(codec) => assess_fhir(codec, plan, frame(&case.input)),
    };
    let received: Vec<(String, Vec<Bytes>)> = plan
        .destinations
        .iter()
        .map(|d| {
            let bodies = a
                .deliveries
                .iter()
                .filter(|x| &x.destination == d)
                .map(|x| x.payload.clone().unwrap_or_else(|| a.raw.clone()))
                .collect();
            (d.clone(), bodies)
        })
        .collect();
    let failures = judge(&case.expect, &a, &received);
    CaseReport {
        name: case.name.clone(),
        failures,
        received,
    }
}

/// A FHIR source's judgement of a body POSTed to it: a Bundle to the base, any other resource
/// to its type (a create), as the HTTP side would (`source/fhir_intake.rs`).
pub(crate) fn assess_fhir(codec: &dyn FhirCodec, plan: &RoutePlan, body: Bytes) -> Assessment {
    let xml = body.first() == Some(&b'<');
    let resource = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("resourceType")?.as_str().map(str::to_string));
    let expect = match resource {
        Some(t) if t != "Bundle" => Expect::Type(t, None),
        _ => Expect::Bundle,
    };
    let (status, error, deliveries) = match judge_fhir(codec, &body, xml, &expect) {
        Ok((mut parsed, created)) => {
            delivered(&mut parsed, created);
            let payload = Bytes::from(parsed.json);
            let deliveries = plan
                .destinations
                .iter()
                .map(|d| Delivery {
                    route: plan.route.clone(),
                    destination: d.clone(),
                    order_key: String::new(),
                    payload: Some(payload.clone()),
                    content_type: Some(ContentType::FhirJson),
                })
                .collect();
            (InboxStatus::Accepted, None, deliveries)
        }
        Err(r) => (InboxStatus::Rejected, Some(r.text), Vec::new()),
    };
    Assessment {
        status,
        meta: Default::default(),
        error,
        ack: None,
        raw_len: body.len(),
        raw: body,
        deliveries,
        sender_mismatch: false,
        step: None,
    }
}

fn judge(e: &Expectation, a: &Assessment, received: &[(String, Vec<Bytes>)]) -> Vec<Failure> {
    let mut out = Vec::new();
    let ack_text = a
        .ack
        .as_deref()
        .map(|b| String::from_utf8_lossy(b).replace('\r', "\n"))
        .unwrap_or_default();
    let ack_code = a
        .ack
        .as_deref()
        .and_then(|b| {
            Message::parse(b)
                .ok()?
                .get("MSA-1")
                .map(|v| v.as_str().into_owned())
        })
        .unwrap_or_default();
    if let Some(want) = e.ack
        && want.as_str() != ack_code
    {
        let why = a
            .error
            .as_deref()
            .map(|e| format!(" ({e})"))
            .unwrap_or_default();
        out.push(Failure {
            headline: format!(
                "ACK: expected {}, got {}{why}",
                want.as_str(),
                or_none(&ack_code)
            ),
            detail: ack_text.lines().map(|l| format!("  {l}")).collect(),
        });
    }
    if let Some(text) = &e.error {
        let said = a.error.as_deref().unwrap_or_default();
        if !said.contains(text.as_str()) && !ack_text.contains(text.as_str()) {
            out.push(fail(format!(
                "the answer does not say {text:?}: it says {:?}",
                or_none(said)
            )));
        }
    }
    if let Some(want) = e.outcome {
        let got = outcome(a.status);
        if got != Some(want) {
            out.push(fail(format!(
                "kept as {}, expected {}",
                status_name(a.status),
                outcome_name(want)
            )));
        }
    }
    if let Some(step) = e.filtered_by_step
        && (a.status != InboxStatus::Filtered || a.step != Some(step))
    {
        out.push(fail(format!(
            "expected step {step} to filter it out; it was {}{}",
            status_name(a.status),
            a.step.map(|s| format!(" by step {s}")).unwrap_or_default()
        )));
    }
    if let Some(to) = &e.to {
        let got: Vec<&str> = received
            .iter()
            .filter(|(_, b)| !b.is_empty())
            .map(|(d, _)| d.as_str())
            .collect();
        if got != to.iter().map(String::as_str).collect::<Vec<_>>() {
            out.push(fail(format!(
                "delivered to [{}], expected [{}]{}",
                got.join(", "),
                to.join(", "),
                a.error
                    .as_deref()
                    .map(|e| format!(" ({e})"))
                    .unwrap_or_default()
            )));
        }
    }
    for check in &e.at {
        let bodies = received
            .iter()
            .find(|(d, _)| *d == check.destination)
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        out.extend(check_destination(check, bodies));
    }
    out
}

fn check_destination(c: &DeliveryCheck, bodies: &[Bytes]) -> Vec<Failure> {
    let d = &c.destination;
    let mut out = Vec::new();
    let count = c.count.unwrap_or(1);
    if bodies.len() != count {
        out.push(fail(format!(
            "{d}: received {} message(s), expected {count}",
            bodies.len()
        )));
        if c.count.is_some() || bodies.is_empty() {
            return out;
        }
    }
    for (i, body) in bodies.iter().enumerate() {
        let which = if bodies.len() > 1 {
            format!("{d}, message {}", i + 1)
        } else {
            d.clone()
        };
        for (text, path, want) in &c.hl7 {
            let got = Message::parse(body)
                .ok()
                .and_then(|m| m.query(path).next().map(|v| v.as_str().into_owned()))
                .filter(|v| !v.is_empty());
            if got.as_deref() != want.as_deref().filter(|w| !w.is_empty()) {
                out.push(fail(format!(
                    "{which}: {text}: expected {}, got {}",
                    shown(want.as_deref()),
                    shown(got.as_deref())
                )));
            }
        }
        if !c.fhir.is_empty() {
            let Ok(json) = serde_json::from_slice::<Value>(body) else {
                out.push(fail(format!(
                    "{which}: not JSON, so its FHIR elements cannot be checked"
                )));
                continue;
            };
            for (text, path, want) in &c.fhir {
                let got = path.select(&json).and_then(scalar);
                if got.as_deref() != want.as_deref() {
                    out.push(fail(format!(
                        "{which}: {text}: expected {}, got {}",
                        shown(want.as_deref()),
                        shown(got.as_deref())
                    )));
                }
            }
        }
    }
    if let Some(body) = &c.body {
        out.extend(check_body(d, body, bodies));
    }
    out
}

fn check_body(d: &str, body: &ExpectedBody, bodies: &[Bytes]) -> Option<Failure> {
    let expected = match body {
        ExpectedBody::Inline(text) => text.as_str(),
        ExpectedBody::File {
            text: Some(text), ..
        } => text.as_str(),
        ExpectedBody::File { path, text: None } => {
            return Some(fail(format!(
                "{d}: {} does not exist yet: `wyvern test --update` writes it from what the route sends",
                path.display()
            )));
        }
    };
    let expected: Vec<String> = diff::messages(expected);
    let mut detail = Vec::new();
    if expected.len() != bodies.len() {
        detail.push(format!(
            "  the expected body holds {} message(s), the route sent {}",
            expected.len(),
            bodies.len()
        ));
    }
    for (i, (want, got)) in expected.iter().zip(bodies).enumerate() {
        let lines = diff::body(want, got, diff::TEST);
        if !lines.is_empty() && bodies.len() > 1 {
            detail.push(format!("  message {}:", i + 1));
        }
        detail.extend(lines);
    }
    if detail.is_empty() {
        return None;
    }
    detail.truncate(MAX_DETAIL);
    Some(Failure {
        headline: format!("{d}: the body differs (- expected, + received)"),
        detail,
    })
}

/// A body as `--update` writes it: HL7v2 one segment per line, JSON pretty-printed; several
/// messages with a blank line between two.
pub fn render(bodies: &[Bytes]) -> String {
    let mut out = String::new();
    for (i, b) in bodies.iter().enumerate() {
        if i > 0 {
            out.push('\n');
        }
        match serde_json::from_slice::<Value>(b) {
            Ok(v) => {
                out.push_str(&serde_json::to_string_pretty(&v).unwrap_or_default());
                out.push('\n');
            }
            Err(_) => {
                for seg in diff::segments(&String::from_utf8_lossy(b)) {
                    out.push_str(&seg);
                    out.push('\n');
                }
            }
        }
    }
    out
}

/// A JSON value as a test compares it: text as it is, numbers and booleans as written, an
/// object or list as compact JSON, null as nothing.
fn scalar(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn shown(v: Option<&str>) -> String {
    match v {
        Some(s) if !s.is_empty() => format!("{s:?}"),
        _ => "nothing".into(),
    }
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "nothing" } else { s }
}

fn outcome(s: InboxStatus) -> Option<Outcome> {
    match s {
        InboxStatus::Accepted => Some(Outcome::Accepted),
        InboxStatus::Filtered => Some(Outcome::Filtered),
        InboxStatus::Rejected => Some(Outcome::Rejected),
        InboxStatus::Failed => Some(Outcome::Failed),
        InboxStatus::Duplicate | InboxStatus::Conflict => None,
    }
}

fn status_name(s: InboxStatus) -> &'static str {
    match s {
        InboxStatus::Accepted => "accepted",
        InboxStatus::Filtered => "filtered",
        InboxStatus::Rejected => "rejected",
        InboxStatus::Failed => "failed",
        InboxStatus::Duplicate => "duplicate",
        InboxStatus::Conflict => "conflict",
    }
}

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Accepted => "accepted",
        Outcome::Filtered => "filtered",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    }
}
