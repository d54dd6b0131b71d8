//! Assessing a batch on a route whose first step is `split`: the batch is stored as received
//! and acknowledged as a whole (against its `BHS`, so MSA-2 is the batch control id), and each
//! message in it becomes its own deliveries. All or nothing: one bad message rejects the batch
//! (AR naming which message), so a sender never has to work out which half was taken.

use bytes::Bytes;
use wyvern_core::Metadata;
use wyvern_hl7::{
    AckError, AckIntent, Message, batch_header_msh, build_ack, build_ack_without_message, check,
    split_batch, with_cr_segments,
};
use wyvern_store::InboxStatus;

use super::assess::{Assessment, Context, metadata};
use crate::plan::Decision;

pub(crate) fn assess_batch(raw: Bytes, cx: &Context<'_>) -> Assessment {
    let raw_len = raw.len();
    let (owned, warnings): (Vec<Vec<u8>>, Vec<String>) = split_batch(&raw)
        .map(|b| {
            (
                b.messages.iter().map(|m| with_cr_segments(m)).collect(),
                b.warnings,
            )
        })
        .unwrap_or_default();
    for w in &warnings {
        tracing::warn!(route = %cx.plan.route, id = cx.message_id, "batch: {w}");
    }
    let mut problems: Vec<AckError> = Vec::new();
    let mut messages = Vec::with_capacity(owned.len());
    for (n, bytes) in owned.iter().enumerate() {
        let found = match Message::parse(bytes) {
            Err(e) => vec![check::parse_error_problem(&e)],
            Ok(m) => {
                let found = check::acceptance_problems(&m);
                messages.push(m);
                found
            }
        };
        problems.extend(found.into_iter().map(|mut p| {
            p.text = format!("message {} of the batch: {}", n + 1, p.text);
            p
        }));
    }
    let version = messages
        .first()
        .map(|m| {
            m.get("MSH-12")
                .map(|v| v.as_str().into_owned())
                .unwrap_or_default()
        })
        .unwrap_or_else(|| "2.5".to_string());
    // The header that answers for the batch: its BHS/FHS, else its first message.
    let header_bytes = batch_header_msh(&raw, &version).or_else(|| owned.first().cloned());
    let header = header_bytes.as_deref().and_then(|h| Message::parse(h).ok());
    let mut meta = header.as_ref().map(metadata).unwrap_or_default();
    // A batch is many patients: its record names none (nor a merge).
    meta.nhs_number = None;
    meta.merged_nhs_number = None;
    let ack = |intent: AckIntent, problem: Option<&AckError>| -> Option<Bytes> {
        match &header {
            Some(h) => build_ack(h, intent, problem, cx.ack_id, cx.now),
            None => Some(build_ack_without_message(
                intent, problem, cx.ack_id, cx.now,
            )),
        }
        .map(Bytes::from)
    };
    let mut decided_by = None;
    let (status, error, ack, deliveries) = if let Some(first) = problems.first() {
        let text = join(&problems);
        (
            InboxStatus::Rejected,
            Some(text),
            ack(AckIntent::Reject, Some(first)),
            Vec::new(),
        )
    } else if messages.is_empty() {
        let text = "the batch holds no messages".to_string();
        (
            InboxStatus::Filtered,
            Some(text),
            ack(AckIntent::Accept, None),
            Vec::new(),
        )
    } else {
        let a = ack(AckIntent::Accept, None);
        match cx.plan.decide_split(&messages, cx.message_id) {
            Decision::Filtered { step } => {
                decided_by = Some(step);
                (
                    InboxStatus::Filtered,
                    Some(format!(
                        "every message of the batch was filtered out (step {step} of route {})",
                        cx.plan.route
                    )),
                    a,
                    Vec::new(),
                )
            }
            // A trailer count that does not match is kept with the message for people to see.
            Decision::Deliver(d) => {
                let note = (!warnings.is_empty()).then(|| warnings.join("; "));
                (InboxStatus::Accepted, note, a, d)
            }
            Decision::Refused {
                step,
                reject,
                reason,
            } => {
                decided_by = Some(step);
                match &header {
                    Some(h) => {
                        let (status, text, ack) =
                            super::assess::refused(h, cx, step, reject, &reason);
                        (status, Some(text), ack.map(Bytes::from), Vec::new())
                    }
                    None => (
                        InboxStatus::Failed,
                        Some(reason),
                        Some(Bytes::from(build_ack_without_message(
                            AckIntent::Error,
                            None,
                            cx.ack_id,
                            cx.now,
                        ))),
                        Vec::new(),
                    ),
                }
            }
        }
    };
    Assessment {
        status,
        meta: Metadata { ..meta },
        error,
        ack,
        raw,
        raw_len,
        deliveries,
        sender_mismatch: false,
        step: decided_by,
    }
}

fn join(problems: &[AckError]) -> String {
    problems
        .iter()
        .map(|p| p.text.as_str())
        .collect::<Vec<_>>()
        .join("; ")
}

#[cfg(test)]
mod tests {
    use wyvern_config::{Condition, OrderBy, Step};
    use wyvern_connectors::mllp::MllpFrame;

    use super::*;
    use crate::RoutePlan;
    use crate::intake::assess::assess;

    const BATCH: &[u8] = b"FHS|^~\\&|GP\rBHS|^~\\&|EMIS|Y01234|WYV|DCR|20261125||||B77\r\
MSH|^~\\&|EMIS|Y01234|WYV|DCR|2026||ADT^A08|1|P|2.4\rPID|1||9990000018^^^NHS^NH\r\
MSH|^~\\&|EMIS|Y01234|WYV|DCR|2026||ADT^A31|2|P|2.4\rPID|1||9990000026^^^NHS^NH\r\
BTS|2\rFTS|1\r";

    fn plan(steps: Vec<Step>) -> RoutePlan {
        RoutePlan {
            transforms: vec![None; 4],
            route: "gp".into(),
            steps,
            destinations: vec!["dcr".into(), "events".into()],
            order_by: OrderBy::Patient,
        }
    }

    fn run(plan: &RoutePlan, raw: &[u8]) -> Assessment {
        let cx = Context {
            max_frame: 1 << 20,
            ack_id: "A1",
            now: "20261125",
            message_id: "01ID",
            plan,
            sender: None,
        };
        assess(MllpFrame::Message(Bytes::copy_from_slice(raw)), &cx)
    }

    fn ack(a: &Assessment) -> String {
        String::from_utf8_lossy(a.ack.as_deref().unwrap()).into_owned()
    }

    #[test]
    fn each_message_is_delivered_on_its_own_and_the_batch_is_acked_whole() {
        let a = run(&plan(vec![Step::Split]), BATCH);
        assert_eq!(a.status, InboxStatus::Accepted);
        assert!(ack(&a).contains("MSA|AA|B77"), "{}", ack(&a));
        assert_eq!(a.meta.control_id.as_deref(), Some("B77"));
        assert_eq!(a.deliveries.len(), 4);
        let first = a.deliveries[0].payload.as_deref().unwrap();
        assert!(first.starts_with(b"MSH|^~\\&|EMIS|Y01234|WYV|DCR|2026||ADT^A08|1|"));
        assert_eq!(a.deliveries[0].order_key, "nhs:9990000018");
        assert_eq!(a.deliveries[2].order_key, "nhs:9990000026");
        assert_eq!(
            a.raw.as_ref(),
            BATCH,
            "the inbox keeps the batch as received"
        );
    }

    #[test]
    fn later_steps_run_on_each_message() {
        let only_a08 = Step::Filter(Condition::MessageType {
            code: "ADT".into(),
            trigger: Some("A08".into()),
        });
        let a = run(&plan(vec![Step::Split, only_a08]), BATCH);
        assert_eq!(a.deliveries.len(), 2);
        let only_a01 = Step::Filter(Condition::MessageType {
            code: "ADT".into(),
            trigger: Some("A01".into()),
        });
        let a = run(&plan(vec![Step::Split, only_a01]), BATCH);
        assert_eq!(a.status, InboxStatus::Filtered);
        assert!(a.deliveries.is_empty());
    }

    #[test]
    fn one_bad_message_rejects_the_batch() {
        let bad = [&BATCH[..BATCH.len() - 12], b"MSH|^~\\&|X\rBTS|3\rFTS|1\r"].concat();
        let a = run(&plan(vec![Step::Split]), &bad);
        assert_eq!(a.status, InboxStatus::Rejected);
        assert!(
            ack(&a).contains("MSA|AR|B77|message 3 of the batch"),
            "{}",
            ack(&a)
        );
        assert!(a.deliveries.is_empty());
    }

    #[test]
    fn without_split_a_batch_is_not_taken_apart() {
        let a = run(&plan(vec![]), BATCH);
        assert_ne!(a.deliveries.len(), 4);
    }
}
