//! Shadow replay: a message the live route stored, run again through a candidate version of the
//! route — its steps, plugins and mapping — and compared with what the live route did: the
//! ACK's code, how it was kept, which destinations it was queued for, and each body. Pure
//! apart from the candidate's plugins; nothing is stored or sent (`wyvern replay --shadow`
//! reads the stored traffic and prints what this says).

use bytes::Bytes;
use wyvern_connectors::mllp::MllpFrame;
use wyvern_hl7::Message;
use wyvern_store::{InboxStatus, StoredTraffic};

use crate::body_diff::{self, SHADOW};
use crate::intake::assess::{Context, assess};
use crate::plan::RoutePlan;
use crate::source::fhir::FhirCodec;

/// Lines of difference kept for one message.
const MAX_LINES: usize = body_diff::MAX_LINES;

/// What the candidate would have done differently with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Same ACK code, same outcome, same destinations, same bytes.
    Same,
    /// Still accepted, but sent elsewhere or with other bytes.
    Changed,
    /// The live route passed it on (or refused it); the candidate filters it out.
    NewlyFiltered,
    /// The live route accepted or filtered it; the candidate refuses it (AR) or fails (AE).
    NewlyFailing,
    /// The live route filtered or refused it; the candidate passes it on.
    NewlyAccepted,
    /// Refused or failed both times, for another reason.
    OtherwiseRefused,
    /// Not compared: the live engine answered it from its duplicate window, it was larger
    /// than the listener took (only its head is kept), or refused for the connection it came
    /// on (`senders`), which a replay cannot know.
    NotCompared,
}

impl Verdict {
    pub fn as_str(self) -> &'static str {
        match self {
            Verdict::Same => "same",
            Verdict::Changed => "changed",
            Verdict::NewlyFiltered => "newly filtered",
            Verdict::NewlyFailing => "newly failing",
            Verdict::NewlyAccepted => "newly accepted",
            Verdict::OtherwiseRefused => "refused otherwise",
            Verdict::NotCompared => "not compared",
        }
    }
}

/// One message's comparison.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Comparison {
    pub verdict: Verdict,
    /// What differs, a line each (empty when the verdict is `Same`).
    pub differences: Vec<String>,
}

/// Runs `stored` through the candidate `plan` and compares. `fhir`: the parser when the route's
/// source is `fhir`.
pub fn compare(
    plan: &RoutePlan,
    fhir: Option<&dyn FhirCodec>,
    stored: &StoredTraffic,
) -> Comparison {
    let live = &stored.message;
    let live_status = InboxStatus::parse(&live.status);
    let raw = Bytes::from(live.raw.clone().unwrap_or_default());
    let sender_bound = live
        .error
        .as_deref()
        .is_some_and(|e| e.contains("the sending facility this connection is bound to"));
    if matches!(
        live_status,
        None | Some(InboxStatus::Duplicate | InboxStatus::Conflict)
    ) || (raw.len() as i64) < live.raw_len
        || sender_bound
    {
        return Comparison {
            verdict: Verdict::NotCompared,
            differences: Vec::new(),
        };
    }
    let candidate = match fhir {
        Some(codec) => {
            let xml = live.content_type == wyvern_core::ContentType::FhirXml.as_str();
            // The live message's id and time: MSH-10 and MSH-7 of an HL7v2 payload.
            let at = crate::source::fhir_intake::Stamp {
                id: &live.id,
                now_ms: live.received_at_ms,
            };
            crate::source::fhir_intake::assess_body(
                codec,
                plan,
                raw.clone(),
                xml,
                kept_id(stored),
                &at,
            )
        }
        None => {
            let cx = Context {
                max_frame: usize::MAX,
                ack_id: "SHADOW",
                now: "20260101000000",
                message_id: &live.id,
                plan,
                sender: None,
            };
            assess(MllpFrame::Message(raw.clone()), &cx)
        }
    };
    let mut out = Vec::new();
    let live_code = ack_code(live.ack.as_deref());
    let candidate_code = ack_code(candidate.ack.as_deref());
    if live_code != candidate_code {
        out.push(format!(
            "ACK: live {}, candidate {}{}",
            or_none(&live_code),
            or_none(&candidate_code),
            candidate
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    }
    if live_status != Some(candidate.status) {
        out.push(format!(
            "kept as: live {}, candidate {}{}",
            live.status,
            candidate.status.as_str(),
            candidate
                .error
                .as_deref()
                .map(|e| format!(" ({e})"))
                .unwrap_or_default()
        ));
    } else if candidate.status != InboxStatus::Accepted {
        // Refused or filtered both times: for the same reason? (The candidate may be named
        // otherwise; its reasons name the route.)
        let theirs = candidate.error.as_deref().unwrap_or_default().replace(
            &format!("route {}", plan.route),
            &format!("route {}", live.source),
        );
        let ours = live.error.as_deref().unwrap_or_default();
        if theirs != ours {
            out.push(format!("why: live {ours:?}, candidate {theirs:?}"));
        }
    }
    compare_deliveries(
        stored,
        &candidate.deliveries,
        &raw,
        fhir.is_none(),
        &mut out,
    );
    out.truncate(MAX_LINES);
    let verdict = verdict(live_status, candidate.status, out.is_empty());
    Comparison {
        verdict,
        differences: out,
    }
}

/// Destinations, ordering keys (HL7v2 routes: a FHIR source's key is made at commit) and
/// bodies, destination by destination.
fn compare_deliveries(
    stored: &StoredTraffic,
    candidate: &[wyvern_store::Delivery],
    raw: &Bytes,
    keys: bool,
    out: &mut Vec<String>,
) {
    let live_to = destinations(stored.queued.iter().map(|q| q.destination.as_str()));
    let candidate_to = destinations(candidate.iter().map(|d| d.destination.as_str()));
    if live_to != candidate_to {
        out.push(format!(
            "destinations: live [{}], candidate [{}]",
            live_to.join(", "),
            candidate_to.join(", ")
        ));
    }
    for d in live_to.iter().filter(|d| candidate_to.contains(d)) {
        let sent: Vec<(&str, Bytes)> = stored
            .queued
            .iter()
            .filter(|q| q.destination == *d)
            .map(|q| {
                let body = q.payload.clone().map_or_else(|| raw.clone(), Bytes::from);
                (q.order_key.as_str(), body)
            })
            .collect();
        let would: Vec<(&str, Bytes)> = candidate
            .iter()
            .filter(|x| x.destination == *d)
            .map(|x| {
                let body = x.payload.clone().unwrap_or_else(|| raw.clone());
                (x.order_key.as_str(), body)
            })
            .collect();
        if sent.len() != would.len() {
            out.push(format!(
                "{d}: live {} message(s), candidate {}",
                sent.len(),
                would.len()
            ));
            continue;
        }
        for (i, ((key_a, a), (key_b, b))) in sent.iter().zip(&would).enumerate() {
            let which = if sent.len() > 1 {
                format!("{d}, message {}", i + 1)
            } else {
                d.to_string()
            };
            if keys && key_a != key_b {
                out.push(format!(
                    "{which}: ordering key: live {key_a:?}, candidate {key_b:?}"
                ));
            }
            if a == b {
                continue;
            }
            out.push(format!("{which}:"));
            let lines = body_diff::body(&String::from_utf8_lossy(a), b, SHADOW);
            if lines.is_empty() {
                out.push(body_diff::unseen(SHADOW));
            }
            out.extend(lines);
        }
    }
}

/// The id a stored FHIR update kept (the body's own id, still in what was queued): the
/// candidate judges the body as that update, not as a create.
fn kept_id(stored: &StoredTraffic) -> Option<String> {
    let payload = stored.queued.first()?.payload.as_deref()?;
    let v: serde_json::Value = serde_json::from_slice(payload).ok()?;
    if v.get("resourceType")?.as_str()? == "Bundle" {
        return None;
    }
    v.get("id")?.as_str().map(str::to_string)
}

fn verdict(live: Option<InboxStatus>, candidate: InboxStatus, same: bool) -> Verdict {
    use InboxStatus::{Accepted, Failed, Filtered, Rejected};
    let refused = |s| matches!(s, Rejected | Failed);
    match (live, candidate) {
        _ if same => Verdict::Same,
        (Some(Accepted), Accepted) => Verdict::Changed,
        (Some(Accepted), Filtered) => Verdict::NewlyFiltered,
        (Some(Accepted | Filtered), c) if refused(c) => Verdict::NewlyFailing,
        (Some(Filtered | Rejected | Failed), Accepted) => Verdict::NewlyAccepted,
        (Some(l), c) if refused(l) && refused(c) => Verdict::OtherwiseRefused,
        (Some(l), Filtered) if refused(l) => Verdict::NewlyFiltered,
        _ => Verdict::Changed,
    }
}

/// The destinations, each once, sorted (a candidate may list them in another order).
fn destinations<'a>(names: impl Iterator<Item = &'a str>) -> Vec<&'a str> {
    let mut out: Vec<&str> = names.collect();
    out.sort_unstable();
    out.dedup();
    out
}

fn ack_code(ack: Option<&[u8]>) -> String {
    ack.and_then(|b| {
        Message::parse(b)
            .ok()?
            .get("MSA-1")
            .map(|v| v.as_str().into_owned())
    })
    .unwrap_or_default()
}

fn or_none(s: &str) -> &str {
    if s.is_empty() { "none" } else { s }
}
