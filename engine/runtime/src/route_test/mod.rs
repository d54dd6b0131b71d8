//! Running a route's tests (`NAME.test.yaml`, validated by wyvern-config). Each case's message
//! goes through the same [`assess`] the MLLP, folder and queue sources call — the route's
//! filters, edits, plugins and mapping run for real — with the ACK's control id, its time and
//! the message id fixed, so an answer and a body are the same on every run. Nothing is stored
//! and nothing is sent: what a destination "receives" is the delivery the commit would have
//! written for it. `judge.rs` compares that with what the case expects. Pure apart from the
//! plugins the plan holds.

mod judge;

use bytes::Bytes;
use serde_json::Value;
use wyvern_config::{Input, TestCase};
use wyvern_connectors::mllp::MllpFrame;
use wyvern_core::MessageId;

use crate::intake::assess::{Context, assess};
use crate::plan::RoutePlan;
use crate::source::fhir::FhirCodec;

/// The ACK's MSH-10 in a test.
pub const ACK_ID: &str = "WYVERN-TEST";
/// The ACK's MSH-7 in a test: the time plugins see in test mode (2026-01-01T00:00:00Z).
pub const NOW: &str = "20260101000000";
const NOW_MS: u64 = 1_767_225_600_000;

/// What one case made, and where it differs from what its test expects.
#[derive(Debug, Clone)]
pub struct CaseReport {
    pub name: String,
    /// Each difference: a headline and its detail lines (a diff).
    pub failures: Vec<Failure>,
    /// What each destination received, in the route's order (for `--update`).
    pub received: Vec<(String, Vec<Bytes>)>,
    /// The destinations whose exact body differs from the expected one, and that received
    /// something (what `--update` may rewrite).
    pub body_differs: Vec<String>,
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
    let body = frame(&case.input);
    let a = match fhir {
        None => assess(MllpFrame::Message(body), &cx),
        Some(codec) => {
            let xml = body.iter().find(|b| !b.is_ascii_whitespace()) == Some(&b'<');
            let at = crate::source::fhir_intake::Stamp {
                id: &message_id,
                now_ms: NOW_MS as i64,
            };
            crate::source::fhir_intake::assess_body(codec, plan, body, xml, None, &at)
        }
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
    let (failures, body_differs) = judge::judge(&case.expect, &a, &received);
    CaseReport {
        name: case.name.clone(),
        failures,
        received,
        body_differs,
    }
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
            // Segment for segment as sent, so the file reads back as exactly this body.
            Err(_) => {
                let text = String::from_utf8_lossy(b);
                for seg in text.strip_suffix('\r').unwrap_or(&text).split('\r') {
                    out.push_str(seg);
                    out.push('\n');
                }
            }
        }
    }
    out
}
