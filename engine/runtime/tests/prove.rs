//! Proving a route before it goes live, on plans without plugins: a route test's checks that
//! must fail (the `error` text only in the ACK's header), and shadow replay's comparisons that
//! must not say "same" (bytes that differ only in segment ends, another reason for a refusal,
//! another ordering key).

use wyvern_config::{Expectation, Input, Line, OrderBy, TestCase};
use wyvern_runtime::RoutePlan;
use wyvern_runtime::route_test::run_case;
use wyvern_runtime::shadow::{Verdict, compare};
use wyvern_store::{InboxRow, Queued, StoredTraffic};

const A01: &str = "MSH|^~\\&|PAS|RX1|WYVERN|CHIE|20261125090000||ADT^A01^ADT_A01|C1|P|2.4\rPID|1||9990000018^^^NHS^NH\r";

fn plan(order_by: OrderBy) -> RoutePlan {
    RoutePlan {
        route: "adt".into(),
        steps: vec![],
        transforms: vec![],
        destinations: vec!["chie".into()],
        order_by,
    }
}

fn case(expect: Expectation) -> TestCase {
    TestCase {
        name: "a case".into(),
        at: Line { line: 1, column: 1 },
        input: Input::Inline(A01.into()),
        expect,
    }
}

#[test]
fn an_error_text_found_only_in_the_acks_header_does_not_pass() {
    // "PAS" and "RX1" are the sender's own fields, echoed in the ACK's MSH: an accepted
    // message says nothing of them.
    for text in ["PAS", "RX1", "A01"] {
        let r = run_case(
            &plan(OrderBy::Patient),
            None,
            0,
            &case(Expectation {
                error: Some(text.into()),
                ..Expectation::default()
            }),
        );
        assert!(!r.passed(), "{text} passed on an AA");
    }
    let refused = TestCase {
        input: Input::Inline(A01.replace("ADT^A01^ADT_A01", "")),
        ..case(Expectation {
            error: Some("MSH-9".into()),
            ..Expectation::default()
        })
    };
    assert!(run_case(&plan(OrderBy::Patient), None, 0, &refused).passed());
}

fn stored(status: &str, error: Option<&str>, raw: &str, queued: Vec<Queued>) -> StoredTraffic {
    let code = if status == "accepted" { "AA" } else { "AR" };
    let ack =
        format!("MSH|^~\\&|WYVERN|CHIE|PAS|RX1|20260101||ACK^A01^ACK|X|P|2.4\rMSA|{code}|C1\r");
    StoredTraffic {
        message: InboxRow {
            seq: 1,
            id: "01KDVDNA000000000000000000".into(),
            received_at_ms: 0,
            source: "adt".into(),
            peer: None,
            content_type: "hl7v2".into(),
            status: status.into(),
            sending_application: None,
            sending_facility: None,
            message_type: None,
            control_id: None,
            nhs_number: None,
            error: error.map(str::to_string),
            raw_len: raw.len() as i64,
            raw: Some(raw.as_bytes().to_vec()),
            ack: Some(ack.into_bytes()),
        },
        queued,
    }
}

fn queued(order_key: &str, payload: Option<&str>) -> Vec<Queued> {
    vec![Queued {
        destination: "chie".into(),
        order_key: order_key.into(),
        payload: payload.map(|p| p.as_bytes().to_vec()),
    }]
}

#[test]
fn shadow_replay_does_not_call_a_difference_the_text_hides_the_same() {
    let p = plan(OrderBy::Patient);
    let key = "nhs:9990000018";
    let same = compare(&p, None, &stored("accepted", None, A01, queued(key, None)));
    assert_eq!(same.verdict, Verdict::Same, "{:?}", same.differences);

    // The live route sent LF segment ends; the candidate sends the message as received.
    let lf = A01.replace('\r', "\n");
    let c = compare(
        &p,
        None,
        &stored("accepted", None, A01, queued(key, Some(&lf))),
    );
    assert_eq!(c.verdict, Verdict::Changed);
    assert!(
        c.differences.iter().any(|d| d.contains("segment ends")),
        "{:?}",
        c.differences
    );

    // Another ordering key: the candidate orders by nothing.
    let c = compare(
        &plan(OrderBy::None),
        None,
        &stored("accepted", None, A01, queued(key, None)),
    );
    assert_eq!(c.verdict, Verdict::Changed);
    assert!(
        c.differences.iter().any(|d| d.contains("ordering key")),
        "{:?}",
        c.differences
    );

    // Refused both times, for different reasons.
    let no_type = A01.replace("ADT^A01^ADT_A01", "");
    let c = compare(
        &p,
        None,
        &stored(
            "rejected",
            Some("step 2 of route adt: no ward"),
            &no_type,
            vec![],
        ),
    );
    assert_eq!(c.verdict, Verdict::OtherwiseRefused, "{:?}", c.differences);

    // A frame the listener cut short is not compared.
    let mut cut = stored(
        "rejected",
        Some("larger than max_frame"),
        "MSH|^~\\&|PAS",
        vec![],
    );
    cut.message.raw_len = 10_000;
    assert_eq!(compare(&p, None, &cut).verdict, Verdict::NotCompared);
}
