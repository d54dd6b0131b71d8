//! A case's expectations held against what the route made of its message: the ACK's code, the
//! text of its refusal, how the message is kept, the step that filtered it, the exact set of
//! destinations, and for each destination its HL7 fields, FHIR elements and exact body. Only
//! what the case writes is checked, and a check that cannot be made (an HL7 path on a JSON
//! body) fails rather than passes.

use bytes::Bytes;
use serde_json::Value;
use wyvern_config::{DeliveryCheck, Expectation, ExpectedBody, Outcome};
use wyvern_hl7::Message;
use wyvern_store::InboxStatus;

use super::Failure;
use crate::body_diff::{self, TEST};
use crate::intake::assess::Assessment;

fn fail(headline: String) -> Failure {
    Failure {
        headline,
        detail: Vec::new(),
    }
}

/// The failures, and the destinations whose exact body differs (and received something).
pub(super) fn judge(
    e: &Expectation,
    a: &Assessment,
    received: &[(String, Vec<Bytes>)],
) -> (Vec<Failure>, Vec<String>) {
    let mut out = Vec::new();
    let ack = a.ack.as_deref().and_then(|b| Message::parse(b).ok());
    let ack_code = ack
        .as_ref()
        .and_then(|m| m.get("MSA-1").map(|v| v.as_str().into_owned()))
        .unwrap_or_default();
    let why = a
        .error
        .as_deref()
        .map(|e| format!(" ({e})"))
        .unwrap_or_default();
    if let Some(want) = e.ack
        && want.as_str() != ack_code
    {
        let ack_text = a
            .ack
            .as_deref()
            .map(|b| String::from_utf8_lossy(b).replace('\r', "\n"))
            .unwrap_or_default();
        out.push(Failure {
            headline: format!(
                "ACK: expected {}, got {}{why}",
                want.as_str(),
                or_nothing(&ack_code)
            ),
            detail: ack_text.lines().map(|l| format!("  {l}")).collect(),
        });
    }
    if let Some(text) = &e.error {
        // What the answer says of the refusal: the reason kept with the message, MSA-3 and the
        // ERR segments — not the ACK's header, which echoes the sender's own fields.
        let mut said: Vec<String> = a.error.iter().cloned().collect();
        if let Some(m) = &ack {
            said.extend(m.get("MSA-3").map(|v| v.as_str().into_owned()));
            said.extend(
                m.segments_named("ERR")
                    .map(|s| String::from_utf8_lossy(s.raw()).into_owned()),
            );
        }
        if !said.iter().any(|s| s.contains(text.as_str())) {
            out.push(fail(format!(
                "the answer does not say {text:?}: it says {:?}",
                or_nothing(&said.join(" | "))
            )));
        }
    }
    if let Some(want) = e.outcome
        && outcome(a.status) != Some(want)
    {
        out.push(fail(format!(
            "kept as {}, expected {}{why}",
            a.status.as_str(),
            outcome_name(want)
        )));
    }
    if let Some(step) = e.filtered_by_step
        && (a.status != InboxStatus::Filtered || a.step != Some(step))
    {
        out.push(fail(format!(
            "expected step {step} to filter it out; it was {}{}",
            a.status.as_str(),
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
                "delivered to [{}], expected [{}]{why}",
                got.join(", "),
                to.join(", ")
            )));
        }
    }
    let mut body_differs = Vec::new();
    for check in &e.at {
        let bodies = received
            .iter()
            .find(|(d, _)| *d == check.destination)
            .map(|(_, b)| b.as_slice())
            .unwrap_or_default();
        let (failures, differs) = destination(check, bodies);
        out.extend(failures);
        if differs {
            body_differs.push(check.destination.clone());
        }
    }
    (out, body_differs)
}

/// One destination's checks; and whether its exact body differs from a non-empty delivery.
fn destination(c: &DeliveryCheck, bodies: &[Bytes]) -> (Vec<Failure>, bool) {
    let d = &c.destination;
    let mut out = Vec::new();
    let count = c.count.unwrap_or(1);
    if bodies.len() != count {
        out.push(fail(format!(
            "{d}: received {} message(s), expected {count}",
            bodies.len()
        )));
        if c.count.is_some() || bodies.is_empty() {
            return (out, false);
        }
    }
    for (i, body) in bodies.iter().enumerate() {
        let which = if bodies.len() > 1 {
            format!("{d}, message {}", i + 1)
        } else {
            d.clone()
        };
        fields(c, body, &which, &mut out);
    }
    let mut differs = false;
    if let Some(body) = &c.body
        && let Some(f) = exact(d, body, bodies)
    {
        differs = !bodies.is_empty();
        out.push(f);
    }
    (out, differs)
}

/// The `hl7` and `fhir` checks on one body. A path that selects several values (`OBX(*)-5`)
/// must find the expected value in every one.
fn fields(c: &DeliveryCheck, body: &[u8], which: &str, out: &mut Vec<Failure>) {
    if !c.hl7.is_empty() {
        let Ok(msg) = Message::parse(body) else {
            out.push(fail(format!(
                "{which}: not HL7v2, so its fields cannot be checked"
            )));
            return;
        };
        for (text, path, want) in &c.hl7 {
            let found: Vec<String> = msg
                .query(path)
                .map(|v| v.as_str().into_owned())
                .filter(|v| !v.is_empty())
                .collect();
            let want = want.as_deref().filter(|w| !w.is_empty());
            let holds = match want {
                None => found.is_empty(),
                Some(w) => !found.is_empty() && found.iter().all(|f| f == w),
            };
            if !holds {
                out.push(fail(format!(
                    "{which}: {text}: expected {}, got {}",
                    shown(want),
                    match found.as_slice() {
                        [] => "nothing".to_string(),
                        [one] => format!("{one:?}"),
                        many => format!("{many:?}"),
                    }
                )));
            }
        }
    }
    if !c.fhir.is_empty() {
        let Ok(json) = serde_json::from_slice::<Value>(body) else {
            out.push(fail(format!(
                "{which}: not JSON, so its FHIR elements cannot be checked"
            )));
            return;
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

/// The exact body check: every message the destination received, in order.
fn exact(d: &str, body: &ExpectedBody, bodies: &[Bytes]) -> Option<Failure> {
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
    let expected: Vec<String> = body_diff::messages(expected);
    let mut detail = Vec::new();
    if expected.len() != bodies.len() {
        detail.push(format!(
            "  the expected body holds {} message(s), the route sent {}",
            expected.len(),
            bodies.len()
        ));
    }
    for (i, (want, got)) in expected.iter().zip(bodies).enumerate() {
        if body_diff::same(want, got) {
            continue;
        }
        if bodies.len() > 1 {
            detail.push(format!("  message {}:", i + 1));
        }
        let lines = body_diff::body(want, got, TEST);
        if lines.is_empty() {
            detail.push(body_diff::unseen(TEST));
        }
        detail.extend(lines);
    }
    if detail.is_empty() {
        return None;
    }
    detail.truncate(body_diff::MAX_LINES);
    Some(Failure {
        headline: format!("{d}: the body differs (- expected, + received)"),
        detail,
    })
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

fn or_nothing(s: &str) -> &str {
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

fn outcome_name(o: Outcome) -> &'static str {
    match o {
        Outcome::Accepted => "accepted",
        Outcome::Filtered => "filtered",
        Outcome::Rejected => "rejected",
        Outcome::Failed => "failed",
    }
}
