//! The audit log through the CLI: reading a patient's message leaves a record naming the
//! patient, before the message is shown; `audit verify` finds an edited record; `audit export`
//! parses as FHIR R4 AuditEvent.

use crate::harness::{EngineProcess, Wire, adt, frame, normalise_ack, wyvern_on_store};

fn wyvern(args: &[&str], store: &std::path::Path) -> (i32, String) {
    let out = wyvern_on_store(args, store);
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn viewing_a_message_is_audited_with_the_patient_and_tampering_is_found() {
    let e = EngineProcess::start("");
    let mut w = Wire::connect(e.addr);
    w.write(&frame(&adt("AUD1", 7)));
    assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|AUD1"));
    let reader = e.store_with(1);
    let row = reader
        .list(&wyvern_store::InboxQuery {
            control_id: Some("AUD1".into()),
            limit: 1,
            ..Default::default()
        })
        .expect("list")
        .remove(0);
    let nhs = row.nhs_number.clone().expect("an NHS number");
    let store = e.store_dir();

    let (code, out) = wyvern(&["inbox", "show", &row.id], &store);
    assert_eq!(code, 0, "{out}");
    let (code, out) = wyvern(&["inbox", "list", "--nhs-number", &nhs], &store);
    assert_eq!(code, 0, "{out}");

    let (code, out) = wyvern(&["audit", "verify"], &store);
    assert_eq!(code, 0, "{out}");
    // The engine's start (with its config's digest), then the two reads.
    assert!(out.contains("audit log sound: 3 records"), "{out}");

    let (code, out) = wyvern(&["audit", "export"], &store);
    assert_eq!(code, 0, "{out}");
    let events: Vec<&str> = out.lines().collect();
    assert_eq!(events.len(), 3, "{out}");
    for line in &events {
        let parsed = wyvern_fhir::model::from_json(line).expect("a FHIR R4 resource");
        assert!(format!("{parsed:?}").contains("AuditEvent"), "{line}");
    }
    let start: serde_json::Value = serde_json::from_str(events[0]).expect("json");
    assert_eq!(start["outcomeDesc"], "engine");
    let view: serde_json::Value = serde_json::from_str(events[1]).expect("json");
    assert_eq!(view["action"], "R");
    assert_eq!(
        view["entity"][0]["what"]["identifier"]["value"],
        nhs.as_str()
    );
    assert!(
        view["agent"][0]["who"]["display"]
            .as_str()
            .is_some_and(|w| w.starts_with("local:test-operator")),
        "{view}"
    );

    rusqlite::Connection::open(store.join("wyvern.db"))
        .expect("db")
        .execute(
            "UPDATE audit SET actor = 'local:someone-else' WHERE seq = 2",
            [],
        )
        .expect("tamper");
    let (code, out) = wyvern(&["audit", "verify"], &store);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("audit record 2 does not match its hash: it was edited"),
        "{out}"
    );
}
