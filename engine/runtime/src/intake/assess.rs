//! Deciding what a frame is, before anything is stored: a pure function of the bytes, the
//! ACK's control id and the time, so it is unit-testable and its ACKs are reproducible.

use bytes::Bytes;
use wyvern_connectors::mllp::MllpFrame;
use wyvern_core::Metadata;
use wyvern_hl7::{
    AckError, AckIntent, ErrorCode, Message, build_ack, build_ack_without_message, check,
};
use wyvern_store::{Delivery, InboxStatus};

use crate::plan::{Decision, RoutePlan};

/// What to store and what to answer for one frame.
#[derive(Debug, Clone)]
pub struct Assessment {
    pub status: InboxStatus,
    /// MSH facts (source and peer are filled in by the caller).
    pub meta: Metadata,
    pub error: Option<String>,
    /// The ACK to send once the record is committed; `None` when enhanced mode wants none.
    pub ack: Option<Bytes>,
    /// The bytes to keep (the head only, for an oversized frame).
    pub raw: Bytes,
    pub raw_len: usize,
    /// The outbox entries to create with the record (none unless accepted).
    pub deliveries: Vec<Delivery>,
    /// The peer is bound to a facility (`senders`) and MSH-4.1 is not it (rejected or
    /// flagged, as the route says; counted either way).
    pub sender_mismatch: bool,
    /// The step (1-based) that filtered the message out or refused it, when one did.
    pub step: Option<usize>,
}

/// Assesses one frame. `ack_id` becomes the ACK's MSH-10 and `now` its MSH-7.
/// What assessing one frame needs besides its bytes.
#[derive(Debug, Clone, Copy)]
pub struct Context<'a> {
    pub max_frame: usize,
    /// Becomes the ACK's MSH-10.
    pub ack_id: &'a str,
    /// Becomes the ACK's MSH-7 (HL7 format).
    pub now: &'a str,
    /// The id the message is stored under (ordering keys may use it).
    pub message_id: &'a str,
    pub plan: &'a RoutePlan,
    /// The facility the peer is bound to (`senders`), when one is.
    pub sender: Option<ExpectedSender<'a>>,
}

/// The sending facility a peer's messages must name in MSH-4.1, and what happens if not.
#[derive(Debug, Clone, Copy)]
pub struct ExpectedSender<'a> {
    pub facility: &'a str,
    pub mismatch: wyvern_config::SenderMismatch,
}

pub fn assess(frame: MllpFrame, cx: &Context<'_>) -> Assessment {
    let mut a = assess_frame(frame, cx);
    a.sender_mismatch = cx
        .sender
        .is_some_and(|s| a.meta.sending_facility.as_deref() != Some(s.facility));
    a
}

fn assess_frame(frame: MllpFrame, cx: &Context<'_>) -> Assessment {
    let Context {
        max_frame,
        ack_id,
        now,
        ..
    } = *cx;
    let mut deliveries = Vec::new();
    let mut decided_by = None;
    match frame {
        MllpFrame::Message(raw) if cx.plan.splits() && wyvern_hl7::is_batch(&raw) => {
            super::batch::assess_batch(raw, cx)
        }
        MllpFrame::Message(raw) => {
            let raw_len = raw.len();
            let (status, meta, error, ack) = match Message::parse(&raw) {
                Err(e) => {
                    let problem = check::parse_error_problem(&e);
                    let ack =
                        build_ack_without_message(AckIntent::Reject, Some(&problem), ack_id, now);
                    (
                        InboxStatus::Rejected,
                        Metadata::default(),
                        Some(problem.text),
                        Some(ack),
                    )
                }
                Ok(msg) => {
                    let problems = check::acceptance_problems(&msg);
                    let meta = metadata(&msg);
                    if let Some(first) = problems.first() {
                        let text = problems
                            .iter()
                            .map(|p| p.text.as_str())
                            .collect::<Vec<_>>()
                            .join("; ");
                        let ack = build_ack(&msg, AckIntent::Reject, Some(first), ack_id, now);
                        (InboxStatus::Rejected, meta, Some(text), ack)
                    } else if let Some((problem, wyvern_config::SenderMismatch::Reject)) =
                        sender_problem(&msg, cx)
                    {
                        let ack = build_ack(&msg, AckIntent::Reject, Some(&problem), ack_id, now);
                        (InboxStatus::Rejected, meta, Some(problem.text), ack)
                    } else {
                        let ack = build_ack(&msg, AckIntent::Accept, None, ack_id, now);
                        match cx.plan.decide(&msg, cx.message_id) {
                            Decision::Filtered { step } => {
                                decided_by = Some(step);
                                (
                                    InboxStatus::Filtered,
                                    meta,
                                    Some(format!(
                                        "filtered out by step {step} of route {}",
                                        cx.plan.route
                                    )),
                                    ack,
                                )
                            }
                            Decision::Deliver(d) => {
                                deliveries = d;
                                // sender_mismatch: flag — accepted, the reason kept with it.
                                let flag = sender_problem(&msg, cx).map(|(p, _)| p.text);
                                (InboxStatus::Accepted, meta, flag, ack)
                            }
                            Decision::Refused {
                                step,
                                reject,
                                reason,
                            } => {
                                decided_by = Some(step);
                                let (status, answer, ack) =
                                    refused(&msg, cx, step, reject, &reason);
                                (status, meta, Some(answer), ack)
                            }
                        }
                    }
                }
            };
            Assessment {
                status,
                meta,
                error,
                ack: ack.map(Bytes::from),
                raw,
                raw_len,
                deliveries,
                sender_mismatch: false,
                step: decided_by,
            }
        }
        MllpFrame::Oversized { head, len } => {
            let problem = AckError {
                code: ErrorCode::ApplicationInternalError,
                location: None,
                text: format!(
                    "the message is {len} bytes, larger than this listener's max_frame of {max_frame} bytes; it was not accepted"
                ),
            };
            let (meta, ack) = match Message::parse(&head) {
                Ok(msg) => (
                    metadata(&msg),
                    build_ack(&msg, AckIntent::Reject, Some(&problem), ack_id, now),
                ),
                Err(_) => (
                    Metadata::default(),
                    Some(build_ack_without_message(
                        AckIntent::Reject,
                        Some(&problem),
                        ack_id,
                        now,
                    )),
                ),
            };
            Assessment {
                status: InboxStatus::Rejected,
                meta,
                error: Some(problem.text),
                ack: ack.map(Bytes::from),
                raw: head,
                raw_len: len,
                deliveries,
                sender_mismatch: false,
                step: None,
            }
        }
    }
}

/// The answer when step `step` refused the message: AR when the plugin rejected the input,
/// AE when it failed (the sender may resend). Returns (status, the text, the ACK).
pub(crate) fn refused(
    header: &Message<'_>,
    cx: &Context<'_>,
    step: usize,
    reject: bool,
    reason: &str,
) -> (InboxStatus, String, Option<Vec<u8>>) {
    let text = format!("step {step} of route {}: {reason}", cx.plan.route);
    let problem = AckError {
        code: ErrorCode::ApplicationInternalError,
        location: None,
        text: text.clone(),
    };
    let (status, intent) = if reject {
        (InboxStatus::Rejected, AckIntent::Reject)
    } else {
        (InboxStatus::Failed, AckIntent::Error)
    };
    let ack = build_ack(header, intent, Some(&problem), cx.ack_id, cx.now);
    (status, text, ack)
}

/// When the peer is bound to a facility and MSH-4.1 names another: the ERR to answer, and
/// what the route does about it.
fn sender_problem(
    msg: &Message<'_>,
    cx: &Context<'_>,
) -> Option<(AckError, wyvern_config::SenderMismatch)> {
    let expected = cx.sender?;
    let named = msg.sending_facility();
    if named == expected.facility {
        return None;
    }
    let text = format!(
        "MSH-4 {named:?} is not the sending facility this connection is bound to ({:?}): a sender may only send as itself",
        expected.facility
    );
    let problem = AckError {
        code: ErrorCode::UnknownKeyIdentifier,
        location: Some(wyvern_hl7::ErrorLocation::field("MSH", 1, 4)),
        text,
    };
    Some((problem, expected.mismatch))
}

pub(crate) fn metadata(msg: &Message<'_>) -> Metadata {
    let some = |s: std::borrow::Cow<'_, str>| (!s.is_empty()).then(|| s.into_owned());
    let t = msg.message_type();
    let message_type = match (t.code.is_empty(), t.trigger.is_empty()) {
        (true, _) => None,
        (false, true) => Some(t.code.into_owned()),
        (false, false) => Some(format!("{}^{}", t.code, t.trigger)),
    };
    Metadata {
        source: String::new(),
        peer: None,
        sending_application: some(msg.sending_application()),
        sending_facility: some(msg.sending_facility()),
        message_type,
        control_id: some(msg.control_id()),
        nhs_number: msg
            .nhs_number()
            .and_then(Result::ok)
            .map(|n| n.as_str().to_string()),
        merged_nhs_number: msg
            .merged_nhs_number()
            .and_then(Result::ok)
            .map(|n| n.as_str().to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan() -> RoutePlan {
        RoutePlan {
            transforms: vec![None; 4],
            route: "r".into(),
            steps: vec![],
            destinations: vec!["chie".into()],
            order_by: wyvern_config::OrderBy::Patient,
        }
    }

    fn cx<'a>(plan: &'a RoutePlan, now: &'a str) -> Context<'a> {
        Context {
            max_frame: 1024,
            ack_id: "A1",
            now,
            message_id: "01ID",
            sender: None,
            plan,
        }
    }

    fn run(raw: &[u8]) -> Assessment {
        assess(
            MllpFrame::Message(Bytes::copy_from_slice(raw)),
            &cx(&plan(), "20261125143000"),
        )
    }

    fn ack(a: &Assessment) -> String {
        String::from_utf8(a.ack.clone().unwrap().to_vec()).unwrap()
    }

    #[test]
    fn accepted_message_carries_metadata() {
        let a =
            run(b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|C1|P|2.4\rPID|1||9990000018^^^NHS^NH\r");
        assert_eq!(a.status, InboxStatus::Accepted);
        assert_eq!(a.meta.control_id.as_deref(), Some("C1"));
        assert_eq!(a.meta.message_type.as_deref(), Some("ADT^A01"));
        assert_eq!(a.meta.nhs_number.as_deref(), Some("9990000018"));
        assert!(ack(&a).contains("MSA|AA|C1"));
    }

    #[test]
    fn invalid_nhs_number_is_not_recorded_as_one() {
        let a =
            run(b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|C1|P|2.4\rPID|1||9990000017^^^NHS^NH\r");
        assert_eq!(a.status, InboxStatus::Accepted);
        assert_eq!(a.meta.nhs_number, None);
    }

    #[test]
    fn rejections_say_why() {
        let a = run(b"garbage");
        assert_eq!(a.status, InboxStatus::Rejected);
        assert!(ack(&a).starts_with("MSH|^~\\&|WYVERN|"));
        assert!(ack(&a).contains("MSA|AR||"), "{}", ack(&a));
        let a = run(b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026|||C2|P|2.5");
        assert!(
            ack(&a).contains("MSA|AR|C2|MSH-9 (message type) is empty"),
            "{}",
            ack(&a)
        );
        assert!(
            ack(&a).contains("ERR||MSH^1^9|101^Required field missing^HL70357|E"),
            "{}",
            ack(&a)
        );
    }

    #[test]
    fn oversized_keeps_head_and_echoes_control_id() {
        let a = assess(
            MllpFrame::Oversized {
                head: Bytes::from_static(
                    b"MSH|^~\\&|PAS|RX1|||2026||ADT^A01|BIG1|P|2.5\rOBX|1|ED|",
                ),
                len: 5000,
            },
            &cx(&plan(), "2026"),
        );
        assert_eq!(a.status, InboxStatus::Rejected);
        assert_eq!(a.raw_len, 5000);
        assert!(ack(&a).contains("MSA|AR|BIG1|the message is 5000 bytes, larger than this listener's max_frame of 1024 bytes"), "{}", ack(&a));
    }
}
