//! Shadow replay: a message the live route stored, run again through a candidate version of the
//! route — its steps, plugins and mapping — and compared with what the live route did: the
//! ACK's code, how it was kept, which destinations it was queued for, and each body. Pure
//! apart from the candidate's plugins; nothing is stored or sent (`wyvern replay --shadow`
//! reads the stored traffic and prints what this says).

use bytes::Bytes;
use wyvern_connectors::mllp::MllpFrame;
use wyvern_hl7::Message;
use wyvern_store::{InboxStatus, StoredTraffic};

use crate::intake::assess::{Context, assess};
use crate::plan::RoutePlan;
use crate::route_test::diff::{self, SHADOW};
use crate::source::fhir::FhirCodec;

/// Lines of difference kept for one message.
const MAX_LINES: usize = 40;

/// What the candidate would have done differently with one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Verdict {
    /// Same ACK code, same outcome, same destinations, same bytes.
    Same,
    /// Still accepted, but sent elsewhere or with other bytes.
    Changed,
    /// The live route passed it on; the candidate filters it out.
    NewlyFiltered,
    /// The live route accepted or filtered it; the candidate refuses it (AR) or fails (AE).
    NewlyFailing,
    /// The live route filtered or refused it; the candidate passes it on.
    NewlyAccepted,
    /// Refused or failed both times, for another reason.
    OtherwiseRefused,
    /// Not compared: the live engine answered it from its duplicate window.
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
    if matches!(
        live_status,
        None | Some(InboxStatus::Duplicate | InboxStatus::Conflict)
    ) {
        return Comparison {
            verdict: Verdict::NotCompared,
            differences: Vec::new(),
        };
    }
    let raw = Bytes::from(live.raw.clone().unwrap_or_default());
    let candidate = match fhir {
        Some(codec) => crate::route_test::assess_fhir(codec, plan, raw.clone()),
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
    }
    let live_to = destinations(stored.queued.iter().map(|(d, _)| d.as_str()));
    let candidate_to = destinations(candidate.deliveries.iter().map(|d| d.destination.as_str()));
    if live_to != candidate_to {
        out.push(format!(
            "destinations: live [{}], candidate [{}]",
            live_to.join(", "),
            candidate_to.join(", ")
        ));
    }
    for d in live_to.iter().filter(|d| candidate_to.contains(d)) {
        let sent: Vec<Bytes> = stored
            .queued
            .iter()
            .filter(|(name, _)| name == d)
            .map(|(_, p)| p.clone().map_or_else(|| raw.clone(), Bytes::from))
            .collect();
        let would: Vec<Bytes> = candidate
            .deliveries
            .iter()
            .filter(|x| x.destination == *d)
            .map(|x| x.payload.clone().unwrap_or_else(|| raw.clone()))
            .collect();
        if sent == would {
            continue;
        }
        if sent.len() != would.len() {
            out.push(format!(
                "{d}: live {} message(s), candidate {}",
                sent.len(),
                would.len()
            ));
            continue;
        }
        for (i, (a, b)) in sent.iter().zip(&would).enumerate() {
            if a == b {
                continue;
            }
            let which = if sent.len() > 1 {
                format!("{d}, message {}", i + 1)
            } else {
                d.to_string()
            };
            out.push(format!("{which}:"));
            out.extend(diff::body(&String::from_utf8_lossy(a), b, SHADOW));
        }
    }
    out.truncate(MAX_LINES);
    let verdict = verdict(live_status, candidate.status, out.is_empty());
    Comparison {
        verdict,
        differences: out,
    }
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
