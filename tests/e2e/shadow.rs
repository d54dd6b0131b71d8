//! `wyvern replay --shadow`: a candidate version of a route run over the live route's stored
//! traffic while the engine runs, naming exactly the messages (and fields) it would change and
//! sending nothing anywhere.

use std::net::TcpListener;
use std::process::{Command, Output};
use std::time::Duration;

use crate::harness::{EngineProcess, wait_until};

const MESSAGES: u64 = 2_000;

/// Message `n`: every seventh a result (the route filters it out), every third of the rest an
/// update without PV1, the others admissions with PV1.
fn message(n: u64) -> (String, &'static str) {
    let nhs = wyvern_hl7::synthetic::nhs_number(n);
    let id = format!("SH{n:06}");
    if n.is_multiple_of(7) {
        let m = format!(
            "MSH|^~\\&|LAB|RXX|WYVERN|CHIE|20261125143000||ORU^R01^ORU_R01|{id}|P|2.4\n\
             PID|1||{nhs}^^^NHS^NH\nOBR|1||L{n}|FBC\n"
        );
        (m, "result")
    } else if n.is_multiple_of(3) {
        let m = format!(
            "MSH|^~\\&|PAS|RXX|WYVERN|CHIE|20261125143000||ADT^A08^ADT_A01|{id}|P|2.4\n\
             PID|1||{nhs}^^^NHS^NH||TESTPATIENT^SAM\n"
        );
        (m, "no PV1")
    } else {
        let m = format!(
            "MSH|^~\\&|PAS|RXX|WYVERN|CHIE|20261125143000||ADT^A01^ADT_A01|{id}|P|2.4\n\
             PID|1||{nhs}^^^NHS^NH||TESTPATIENT^ALEX\nPV1|1|I|W12^BAY2^BED1\n"
        );
        (m, "PV1")
    }
}

fn shadow(e: &EngineProcess, candidate: &std::path::Path, json: bool) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_wyvern"));
    c.args(["--log", "warn", "replay", "--config"])
        .arg(e.config_dir())
        .args(["--since", "1h", "--shadow"])
        .arg(candidate)
        .env("USER", "test-operator");
    if json {
        c.arg("--json");
    }
    c.output().expect("wyvern runs")
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0)
}

#[test]
fn a_candidate_is_replayed_over_stored_traffic_naming_exactly_the_messages_and_fields_it_changes() {
    let route = "steps:\n  - filter: { message_type: ADT }\n  - set: { PV1-3.4: RXX01 }\n\
                 destinations:\n  - name: archive\n    file: { dir: {dir}/out }\n";
    let e = EngineProcess::start_route("", route);
    let mut all = String::new();
    let mut with_pv1 = Vec::new();
    for n in 0..MESSAGES {
        let (m, kind) = message(n);
        all.push_str(&m);
        if kind == "PV1" {
            with_pv1.push(format!("SH{n:06}"));
        }
    }
    let input = e.config_dir().join("traffic.hl7");
    std::fs::write(&input, all).unwrap();
    let sent = Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn", "send", "--window", "32", "--to"])
        .arg(e.addr.to_string())
        .arg(&input)
        .output()
        .unwrap();
    assert!(
        sent.status.success(),
        "{}",
        String::from_utf8_lossy(&sent.stderr)
    );
    let adt = (0..MESSAGES).filter(|n| !n.is_multiple_of(7)).count();
    let out = e.config_dir().join("out");
    wait_until(Duration::from_secs(60), || files_in(&out) == adt);

    // The candidate's destination is a live socket: it must hear nothing.
    let receiver = TcpListener::bind("127.0.0.1:0").unwrap();
    receiver.set_nonblocking(true).unwrap();
    let candidates = tempfile::tempdir().unwrap();
    let live_text = std::fs::read_to_string(e.config_dir().join("e2e.yaml")).unwrap();
    let same = candidates.path().join("same.yaml");
    std::fs::write(&same, &live_text).unwrap();
    let changed = candidates.path().join("changed.yaml");
    let changed_text = live_text
        .replace("PV1-3.4: RXX01", "PV1-3.4: RXX02")
        .replace(
            &format!("file: {{ dir: {}/out }}", e.config_dir().display()),
            &format!(
                "mllp: {{ connect: \"{}\" }}",
                receiver.local_addr().unwrap()
            ),
        );
    assert_ne!(changed_text, live_text);
    std::fs::write(&changed, changed_text).unwrap();

    // A candidate identical to the live route changes nothing.
    let o = shadow(&e, &same, false);
    let said = String::from_utf8_lossy(&o.stdout);
    assert!(
        o.status.success(),
        "{said}{}",
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(
        said.contains(&format!("{MESSAGES} message(s)"))
            && said.contains(&format!("{MESSAGES} same")),
        "{said}"
    );

    // One field mapping changed: exactly the messages with a PV1 are named, each with the field.
    let o = shadow(&e, &changed, true);
    assert_eq!(
        o.status.code(),
        Some(1),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let mut named = Vec::new();
    let mut summary = None;
    for line in String::from_utf8_lossy(&o.stdout).lines() {
        let v: serde_json::Value = serde_json::from_str(line).unwrap();
        if let Some(s) = v.get("summary") {
            summary = Some(s.clone());
            continue;
        }
        if v["verdict"] == "same" {
            continue;
        }
        assert_eq!(v["verdict"], "changed", "{v}");
        let diffs: Vec<&str> = v["differences"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|d| d.as_str())
            .collect();
        assert!(
            diffs.contains(&"  PV1-3.4: live \"RXX01\", candidate \"RXX02\""),
            "{diffs:?}"
        );
        named.push(v["control_id"].as_str().unwrap().to_string());
    }
    named.sort();
    assert_eq!(
        named, with_pv1,
        "the messages named are exactly those with a PV1"
    );
    let summary = summary.expect("a summary line");
    assert_eq!(summary["messages"], MESSAGES);
    assert_eq!(summary["differ"], with_pv1.len());

    // Nothing was sent anywhere: the candidate's socket heard nothing, the archive holds what
    // the live route delivered and no more.
    assert!(
        receiver.accept().is_err(),
        "the candidate's destination was connected to"
    );
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_in(&out), adt);
}
