//! Routes end to end: MLLP in, steps, durable outboxes, MLLP and file destinations out; retries,
//! dead letters, order per patient, and a crash in the middle of delivery.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use crate::harness::{EngineProcess, Wire, adt, frame, http_get, normalise_ack, wait_until};
use crate::receiver::Receiver;

/// An ADT for patient `p` (of a few), numbered `i`.
fn adt_for(i: usize, p: u64) -> Vec<u8> {
    adt(&format!("P{p}-{i:05}"), p)
}

fn send_all(e: &EngineProcess, msgs: &[Vec<u8>]) {
    let mut w = Wire::connect(e.addr);
    for m in msgs {
        w.write(&frame(m));
        let ack = normalise_ack(&w.read_frame());
        assert!(ack.contains("MSA|AA|"), "{ack}");
    }
}

fn files_in(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".hl7"))
                .count()
        })
        .unwrap_or(0)
}

/// Every key's control ids arrive in the order they were sent (first arrivals only).
fn out_of_order(ids: &[String]) -> usize {
    crate::harness::out_of_order_by(ids, |id| id.split('-').next().unwrap_or(""))
}

#[test]
fn filtered_routes_deliver_to_mllp_and_file_in_order() {
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    let rest = format!(
        "steps:\n  - filter: {{ message_type: ADT }}\n\
         destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n\
         order_by: patient\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let mut msgs: Vec<Vec<u8>> = (0..300).map(|i| adt_for(i, (i % 8) as u64)).collect();
    // An ORU on the same feed is filtered out: AA, stored as filtered, never delivered.
    msgs.push(
        b"MSH|^~\\&|LAB|RX1|WYV|CHIE|2026||ORU^R01|LAB1|P|2.4\rPID|1||9990000018^^^NHS^NH\r"
            .to_vec(),
    );
    send_all(&e, &msgs);
    let ids = rx.wait_for(Duration::from_secs(30), |ids| ids.len() >= 300);
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 300, "delivered to the MLLP receiver");
    assert!(
        !ids.iter().any(|i| i == "LAB1"),
        "filtered message not delivered"
    );
    assert_eq!(out_of_order(&ids), 0);
    let out = e.dir.path().join("out");
    for _ in 0..200 {
        if files_in(&out) == 300 {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(files_in(&out), 300, "one file per message");
    let reader = e.store_with(301);
    let filtered = reader
        .list(&wyvern_store::InboxQuery {
            status: Some(wyvern_store::InboxStatus::Filtered),
            limit: 10,
            ..Default::default()
        })
        .expect("list");
    assert_eq!(filtered.len(), 1);
    // The operator's view of the same run.
    assert_eq!(http_get(e.http, "/ready").0, 200);
    assert_eq!(http_get(e.http, "/health").0, 200);
    // The last batch's outcomes are recorded just after its deliveries: allow them a moment.
    let expected = [
        "wyvern_messages_total{route=\"e2e\",outcome=\"accepted\"} 300",
        "wyvern_messages_total{route=\"e2e\",outcome=\"filtered\"} 1",
        "wyvern_deliveries_total{route=\"e2e\",destination=\"dcr\",outcome=\"delivered\"} 300",
        "wyvern_deliveries_total{route=\"e2e\",destination=\"archive\",outcome=\"delivered\"} 300",
        "wyvern_outbox_depth{route=\"e2e\",destination=\"dcr\"} 0",
        "wyvern_ack_latency_seconds_count{route=\"e2e\"} 301",
    ];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        let (code, metrics) = http_get(e.http, "/metrics");
        assert_eq!(code, 200);
        let missing: Vec<&&str> = expected.iter().filter(|l| !metrics.contains(**l)).collect();
        if missing.is_empty() {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "{missing:?} not in:\n{metrics}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[test]
fn errors_are_retried_rejections_dead_lettered_and_the_key_moves_on() {
    // AE twice for every message, then AA; P0-00002 is refused outright (AR).
    let rx = Receiver::start(Box::new(|id, n| match (id, n) {
        ("P0-00002", _) => Some("AR"),
        (_, 1 | 2) => Some("AE"),
        _ => Some("AA"),
    }));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\norder_by: patient\nretry: {{ backoff: 20ms..100ms, max_attempts: 10 }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let msgs: Vec<Vec<u8>> = (0..6).map(|i| adt_for(i, 0)).collect();
    send_all(&e, &msgs);
    let ids = rx.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().filter(|i| i.as_str() == "P0-00005").count() >= 3
    });
    // Per id: AE, AE, AA → 3 arrivals; the refused one once. In order.
    for i in [0, 1, 3, 4, 5] {
        let id = format!("P0-{i:05}");
        assert_eq!(
            ids.iter().filter(|x| **x == id).count(),
            3,
            "{id} in {ids:?}"
        );
    }
    assert_eq!(ids.iter().filter(|x| x.as_str() == "P0-00002").count(), 1);
    assert_eq!(out_of_order(&ids), 0, "{ids:?}");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn", "dlq", "list", "--config"])
        .arg(e.dir.path())
        .output()
        .expect("dlq list");
    let listed = String::from_utf8_lossy(&out.stdout);
    assert!(
        listed.contains("dcr") && listed.contains("AR: test receiver"),
        "{listed}"
    );
}

#[test]
fn a_crash_during_delivery_loses_nothing() {
    // A slow receiver, so the engine is killed with much of the outbox still to deliver.
    let rx = Receiver::start(Box::new(|_, _| {
        std::thread::sleep(Duration::from_millis(2));
        Some("AA")
    }));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\norder_by: patient\n",
        rx.addr
    );
    let mut e = EngineProcess::start_route("", &rest);
    let total = 2_000;
    let msgs: Vec<Vec<u8>> = (0..total).map(|i| adt_for(i, (i % 8) as u64)).collect();
    send_all(&e, &msgs);
    rx.wait_for(Duration::from_secs(30), |ids| ids.len() >= total / 4);
    e.kill();
    let at_kill = rx.ids().len();
    e.restart();
    let ids = rx.wait_for(Duration::from_secs(60), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= total
    });
    let distinct: HashSet<&String> = ids.iter().collect();
    let lost = total - distinct.len();
    let duplicated = ids.len() - distinct.len();
    println!(
        "delivery crash test: {total} ACKed, killed after {at_kill} deliveries; lost = {lost}, duplicated = {duplicated}, out of order = {}",
        out_of_order(&ids)
    );
    assert_eq!(lost, 0);
    assert_eq!(out_of_order(&ids), 0);
}

/// Issue 11 item 9: a reused MSH-10 with other content was answered AE for ever, and most
/// senders block their queue on AE. By default it is now accepted as a new message, flagged in
/// the inbox and counted; a resend of either version is still recognised.
#[test]
fn a_reused_control_id_is_accepted_flagged_and_counted_by_default() {
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let mut w = Wire::connect(e.addr);
    let first = adt("MSG00001", 1);
    let mut second = adt("MSG00001", 2);
    second.extend_from_slice(b"NTE|1||another message, same id\r");
    assert!(w.exchange(&first).contains("MSA|AA|MSG00001"));
    w.write(&frame(&second));
    let second_ack = w.read_frame();
    assert!(
        normalise_ack(&second_ack).contains("MSA|AA|MSG00001"),
        "{}",
        normalise_ack(&second_ack)
    );
    // A resend of the second is a resend: its own ACK again (read back from the index, so
    // once it is there), not delivered twice.
    e.store_with(2);
    w.write(&frame(&second));
    assert_eq!(w.read_frame(), second_ack);
    let ids = rx.wait_for(Duration::from_secs(10), |ids| ids.len() >= 2);
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(rx.ids().len(), 2, "both versions delivered once: {ids:?}");
    let reader = e.store_with(3);
    let flagged: Vec<_> = reader
        .list(&wyvern_store::InboxQuery {
            status: Some(wyvern_store::InboxStatus::Accepted),
            limit: 10,
            ..Default::default()
        })
        .expect("list")
        .into_iter()
        .filter_map(|r| r.error)
        .collect();
    assert!(
        flagged.len() == 1 && flagged[0].contains("reused"),
        "{flagged:?}"
    );
    let (_, metrics) = crate::harness::http_get(e.http, "/metrics");
    assert!(
        metrics.contains("wyvern_control_id_reused_total{route=\"e2e\"} 1"),
        "{metrics}"
    );
}

#[test]
fn a_resend_gets_the_original_ack_and_is_delivered_once() {
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\ncontrol_id_reuse: reject\n",
        rx.addr
    );
    let mut e = EngineProcess::start_route("", &rest);
    let original = adt("DUP-1", 1);
    let mut w = Wire::connect(e.addr);
    w.write(&frame(&original));
    let first_ack = w.read_frame();
    assert!(normalise_ack(&first_ack).contains("MSA|AA|DUP-1"));
    e.store_with(1);
    // The sender missed the ACK and resends: the very same ACK bytes come back.
    w.write(&frame(&original));
    assert_eq!(w.read_frame(), first_ack, "the original ACK, byte for byte");
    // With `control_id_reuse: reject`, the same control id with other content is AE, code 205.
    let mut other = adt("DUP-1", 2);
    other.extend_from_slice(b"NTE|1||changed\r");
    w.write(&frame(&other));
    let ae = normalise_ack(&w.read_frame());
    assert!(ae.contains("MSA|AE|DUP-1|") && ae.contains("205"), "{ae}");
    // After a restart the window is seeded from the store: still a duplicate.
    e.terminate();
    e.restart();
    let mut w = Wire::connect(e.addr);
    w.write(&frame(&original));
    assert_eq!(w.read_frame(), first_ack);
    let ids = rx.wait_for(Duration::from_secs(5), |ids| !ids.is_empty());
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.ids(), ["DUP-1"], "delivered once: {ids:?}");
    let reader = e.store_with(4);
    let dups = reader
        .list(&wyvern_store::InboxQuery {
            status: Some(wyvern_store::InboxStatus::Duplicate),
            limit: 10,
            ..Default::default()
        })
        .expect("list");
    assert_eq!(dups.len(), 2);
}

#[test]
fn one_failing_patient_holds_only_its_own_messages() {
    // Patient 3's messages get AE until the other seven patients' 350 messages have all been
    // accepted (and for at least a second); everyone else's AA. If patient 3 held the others
    // up, this would never end and the test would time out.
    let started = std::time::Instant::now();
    let others = std::sync::Arc::new(std::sync::Mutex::new(HashSet::<String>::new()));
    let seen = others.clone();
    let rx = Receiver::start(Box::new(move |id, _| {
        let mut seen = seen.lock().expect("lock");
        if !id.starts_with("P3-") {
            seen.insert(id.to_string());
            return Some("AA");
        }
        if seen.len() < 350 || started.elapsed() < Duration::from_secs(1) {
            Some("AE")
        } else {
            Some("AA")
        }
    }));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\norder_by: patient\nretry: {{ backoff: 50ms..200ms }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let msgs: Vec<Vec<u8>> = (0..400).map(|i| adt_for(i, (i % 8) as u64)).collect();
    send_all(&e, &msgs);
    let ids = rx.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 400
    });
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(distinct.len(), 400, "all delivered in the end");
    assert_eq!(
        out_of_order(&ids),
        0,
        "per-patient order kept, retries included"
    );
    // While patient 3 was failing, the other seven patients' 350 messages went through.
    let first_p3_success = ids
        .iter()
        .rposition(|i| i.starts_with("P3-00003"))
        .unwrap_or(0);
    let others_before = ids[..first_p3_success]
        .iter()
        .filter(|i| !i.starts_with("P3-"))
        .collect::<HashSet<_>>()
        .len();
    println!(
        "order test: 8 keys, 1 failing until the other 350 were accepted; {others_before} of 350 other messages delivered before its first success; out of order = 0"
    );
    assert_eq!(others_before, 350);
}

#[test]
fn replay_sends_a_time_range_again() {
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let msgs: Vec<Vec<u8>> = (0..5).map(|i| adt_for(i, 1)).collect();
    send_all(&e, &msgs);
    rx.wait_for(Duration::from_secs(10), |ids| ids.len() >= 5);
    // Replay what has been recorded as delivered (the outcomes follow the deliveries closely).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !http_get(e.http, "/metrics")
        .1
        .contains("wyvern_outbox_depth{route=\"e2e\",destination=\"dcr\"} 0")
    {
        assert!(std::time::Instant::now() < deadline, "outbox never drained");
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args([
            "--log", "warn", "replay", "--route", "e2e", "--since", "1h", "--config",
        ])
        .arg(e.dir.path())
        .output()
        .expect("replay");
    assert!(
        String::from_utf8_lossy(&out.stdout).starts_with("5 deliveries"),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
    let ids = rx.wait_for(Duration::from_secs(10), |ids| ids.len() >= 10);
    assert_eq!(ids.len(), 10, "{ids:?}");
    assert_eq!(out_of_order(&ids[5..]), 0);
}

#[test]
fn set_and_remove_steps_change_what_is_delivered_not_what_is_kept() {
    let e = EngineProcess::start_route(
        "",
        "steps:\n  - set: { PV1-3.4: RHX01, MSH-5: DCR }\n  - remove: [NK1, PID-13]\n  - filter: { hl7: PV1-3.4, equals: RHX01 }\n\
         destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
    );
    let original = b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|S1|P|2.4\rPID|1||9990000018^^^NHS^NH||TEST^ALEX||||||||01632 960000\rNK1|1|TESTRELATIVE^SAM\rPV1|1|I|WARD7\r";
    send_all(&e, &[original.to_vec()]);
    let out = e.dir.path().join("out");
    wait_until(Duration::from_secs(10), || files_in(&out) >= 1);
    let file = std::fs::read_dir(&out)
        .expect("out")
        .filter_map(Result::ok)
        .find(|f| f.file_name().to_string_lossy().ends_with(".hl7"))
        .expect("a file");
    let delivered = String::from_utf8(std::fs::read(file.path()).expect("read")).expect("utf8");
    assert_eq!(
        delivered,
        "MSH|^~\\&|PAS|RX1|DCR|CHIE|2026||ADT^A01|S1|P|2.4\rPID|1||9990000018^^^NHS^NH||TEST^ALEX||||||||\rPV1|1|I|WARD7^^^RHX01\r"
    );
    let reader = e.store_with(1);
    let row = reader
        .list(&wyvern_store::InboxQuery {
            limit: 1,
            ..Default::default()
        })
        .expect("list")
        .remove(0);
    let kept = reader
        .get(&row.id)
        .expect("get")
        .expect("row")
        .raw
        .expect("raw");
    assert_eq!(kept, original, "the inbox keeps the message as received");
}

#[test]
fn a_split_batch_is_acked_whole_and_each_message_delivered_on_its_own() {
    let e = EngineProcess::start_route(
        "",
        "steps:\n  - split: batch\n  - filter: { message_type: ADT }\n\
         destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
    );
    let mut batch = b"FHS|^~\\&|GP\rBHS|^~\\&|EMIS|Y01234|WYV|DCR|20261125||||B77\r".to_vec();
    for i in 0..3 {
        batch.extend_from_slice(
            format!(
                "MSH|^~\\&|EMIS|Y01234|WYV|DCR|2026||ADT^A31|M{i}|P|2.4\rPID|1||{}^^^NHS^NH\r",
                wyvern_hl7::synthetic::nhs_number(i)
            )
            .as_bytes(),
        );
    }
    batch
        .extend_from_slice(b"MSH|^~\\&|EMIS|Y01234|WYV|DCR|2026||MFN^M02|M3|P|2.4\rBTS|4\rFTS|1\r");
    let mut wire = Wire::connect(e.addr);
    let ack = wire.exchange(&batch);
    assert!(ack.contains("MSA|AA|B77"), "{ack}");
    let out = e.dir.path().join("out");
    wait_until(Duration::from_secs(10), || files_in(&out) >= 3);
    let mut delivered: Vec<String> = std::fs::read_dir(&out)
        .expect("out")
        .filter_map(Result::ok)
        .map(|f| String::from_utf8(std::fs::read(f.path()).expect("read")).expect("utf8"))
        .collect();
    delivered.sort();
    assert_eq!(delivered.len(), 3, "the MFN was filtered: {delivered:?}");
    for (i, m) in delivered.iter().enumerate() {
        assert!(
            m.starts_with(&format!(
                "MSH|^~\\&|EMIS|Y01234|WYV|DCR|2026||ADT^A31|M{i}|"
            )),
            "{m}"
        );
    }
    // The same batch again is a resend: the original ACK, nothing delivered twice.
    let again = wire.exchange(&batch);
    assert!(again.contains("MSA|AA|B77"), "{again}");
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(files_in(&out), 3);
}

#[test]
fn one_message_id_follows_a_message_from_receipt_to_delivery_in_the_logs() {
    let e = EngineProcess::start_route_logging(
        "",
        "destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
        &["--log", "debug", "--log-format", "json"],
    );
    send_all(&e, &[adt_for(1, 1)]);
    let out = e.dir.path().join("out");
    wait_until(Duration::from_secs(10), || files_in(&out) >= 1);
    std::thread::sleep(Duration::from_millis(200));
    let log = e.log();
    let lines: Vec<serde_json::Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str(l).ok())
        .collect();
    let received = lines
        .iter()
        .find(|l| l["fields"]["message"] == "message received")
        .unwrap_or_else(|| panic!("a receipt line: {log}"));
    let id = received["span"]["id"]
        .as_str()
        .expect("the message span's id");
    let delivered = lines
        .iter()
        .find(|l| l["fields"]["message"] == "delivered")
        .unwrap_or_else(|| panic!("a delivery line: {log}"));
    assert_eq!(delivered["span"]["id"], id, "{delivered}");
    assert_eq!(delivered["span"]["destination"], "archive");
}

/// Issue 11 item 7: `wyvern dlq retry` kept the message's receipt time, so with `max_age` long
/// past, the first failure after the retry dead-lettered it again at once. Now a retried dead
/// letter gets its retries afresh (counted from the retry).
#[test]
fn a_dead_letter_put_back_gets_its_retries_afresh() {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    // 0: refuse with AE for ever; then the first arrival after the retry AE, the rest AA.
    let after_retry = Arc::new(AtomicUsize::new(0));
    let retrying = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let (a, r) = (after_retry.clone(), retrying.clone());
    let rx = Receiver::start(Box::new(move |_, _| {
        if !r.load(Ordering::SeqCst) {
            return Some("AE");
        }
        Some(if a.fetch_add(1, Ordering::SeqCst) == 0 {
            "AE"
        } else {
            "AA"
        })
    }));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\nretry: {{ backoff: 100ms..200ms, max_age: 1s }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let mut w = Wire::connect(e.addr);
    assert!(w.exchange(&adt("DL-1", 1)).contains("MSA|AA|DL-1"));
    let dead = || {
        wyvern_store::Outbox::open(&e.store_dir())
            .and_then(|o| o.dead_letters(None, None, 10))
            .unwrap_or_default()
    };
    crate::harness::wait_until(Duration::from_secs(10), || !dead().is_empty());
    assert_eq!(dead().len(), 1, "gave up after max_age");
    // Well past max_age now; a person fixes the receiver's problem and retries.
    std::thread::sleep(Duration::from_millis(1_200));
    retrying.store(true, Ordering::SeqCst);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn", "dlq", "retry", "--all", "--config"])
        .arg(e.dir.path())
        .output()
        .expect("dlq retry");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    crate::harness::wait_until(Duration::from_secs(10), || {
        after_retry.load(Ordering::SeqCst) >= 2
    });
    assert!(
        after_retry.load(Ordering::SeqCst) >= 2 && dead().is_empty(),
        "retried after the AE that followed the retry, then delivered; dead letters: {:?}\nlog:\n{}",
        dead()
            .iter()
            .map(|d| d.last_error.clone())
            .collect::<Vec<_>>(),
        e.log()
    );
}

/// Issue 11 item 4: when delivery outcomes could not be recorded (a full disk), the worker sent
/// the same batch again at once, in a loop: a duplicate storm at the receiver. Now it pauses
/// (100 ms doubling to 30 s) before the next pass. A trigger makes every outcome write fail.
#[test]
fn outcomes_that_cannot_be_recorded_pause_the_worker_instead_of_resending_in_a_loop() {
    let rx = Receiver::start(Box::new(|_, _| Some("AA")));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let db = rusqlite::Connection::open(e.store_dir().join("wyvern.db")).expect("open the index");
    db.busy_timeout(Duration::from_secs(10)).expect("timeout");
    db.execute_batch(
        "CREATE TRIGGER outcomes_fail BEFORE UPDATE ON lanes BEGIN SELECT RAISE(ABORT, 'disk full (test)'); END;",
    )
    .expect("trigger");
    let mut w = Wire::connect(e.addr);
    assert!(w.exchange(&adt("STORM1", 1)).contains("MSA|AA|STORM1"));
    rx.wait_for(Duration::from_secs(10), |ids| !ids.is_empty());
    std::thread::sleep(Duration::from_secs(3));
    let sent = rx.ids().len();
    assert!(
        (1..=12).contains(&sent),
        "a few resends while the store fails (backoff), not a storm: {sent} in 3 s"
    );
    assert!(
        e.log().contains("cannot record delivery outcomes"),
        "{}",
        e.log()
    );
    // The store recovers: the next pass records the delivery and the resends stop.
    db.execute_batch("DROP TRIGGER outcomes_fail;")
        .expect("drop");
    let recorded = || {
        db.query_row(
            "SELECT COUNT(*) FROM lanes WHERE done_below > (SELECT MAX(seq) FROM deliveries)",
            [],
            |r| r.get::<_, i64>(0),
        )
        .unwrap_or(0)
            == 1
    };
    crate::harness::wait_until(Duration::from_secs(40), recorded);
    assert!(recorded(), "recorded once the store works again");
    let settled = rx.ids().len();
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(rx.ids().len(), settled, "no more resends");
}

/// Each key's control ids, by the place of their *last* arrival, are in the order they were
/// sent: what a receiver that keeps the latest copy ends up with.
fn last_copies_out_of_order(ids: &[String]) -> usize {
    let mut last_at: HashMap<&str, usize> = HashMap::new();
    for (at, id) in ids.iter().enumerate() {
        last_at.insert(id.as_str(), at);
    }
    let mut by_key: HashMap<&str, Vec<(&str, usize)>> = HashMap::new();
    for (id, at) in &last_at {
        let key = id.split('-').next().unwrap_or("");
        by_key.entry(key).or_default().push((id, *at));
    }
    by_key
        .values_mut()
        .map(|v| {
            v.sort();
            v.windows(2).filter(|w| w[0].1 > w[1].1).count()
        })
        .sum()
}

/// A receiver's gate: it holds every answer until the test opens it (`go`), so the engine has
/// a backlog, and a full window on the wire, when answers start.
fn gate() -> (
    std::sync::Arc<std::sync::atomic::AtomicBool>,
    impl Fn() + Send + Sync + 'static,
) {
    let go = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let open = go.clone();
    (go, move || {
        while !open.load(std::sync::atomic::Ordering::Relaxed) {
            std::thread::sleep(Duration::from_millis(5));
        }
    })
}

/// Issue 16: an MLLP destination with `window: 8` keeps several messages on the wire ahead of
/// their ACKs (the receiver reads several frames at once; with the default one at a time it
/// never does), and each patient's messages still arrive in order.
#[test]
fn a_window_keeps_several_messages_in_flight_in_order() {
    // The receiver answers nothing until every message is in, so a backlog is waiting.
    let (go, gate) = gate();
    let rx = Receiver::start(Box::new(move |_, _| {
        gate();
        Some("AA")
    }));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\", window: 8 }}\norder_by: patient\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let msgs: Vec<Vec<u8>> = (0..200).map(|i| adt_for(i, (i % 4) as u64)).collect();
    send_all(&e, &msgs);
    go.store(true, std::sync::atomic::Ordering::Relaxed);
    let ids = rx.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 200
    });
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        200,
        "all delivered"
    );
    assert_eq!(out_of_order(&ids), 0, "each patient's in order");
    let most = rx.most_at_once.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        most > 1,
        "never more than {most} frame in flight; log:\n{}",
        e.log()
    );
}

/// With a window, an AE for one message arrives after later messages are already on the wire:
/// it is retried, and a later message of its patient that was accepted meanwhile is sent again
/// after it, so the receiver's last copy of each is in the patient's order. Nothing is lost.
#[test]
fn an_error_inside_a_window_is_retried_and_last_copies_stay_in_order() {
    let (go, gate) = gate();
    let rx = Receiver::start(Box::new(move |id, n| {
        gate();
        if id == "P1-00041" && n == 1 {
            Some("AE")
        } else {
            Some("AA")
        }
    }));
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\", window: 8 }}\norder_by: patient\nretry: {{ backoff: 100ms..1s }}\n",
        rx.addr
    );
    let e = EngineProcess::start_route("", &rest);
    let msgs: Vec<Vec<u8>> = (0..120).map(|i| adt_for(i, (i % 4) as u64)).collect();
    send_all(&e, &msgs);
    go.store(true, std::sync::atomic::Ordering::Relaxed);
    let ids = rx.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 120
            && ids.iter().filter(|i| *i == "P1-00041").count() >= 2
            && last_copies_out_of_order(ids) == 0
    });
    assert_eq!(
        ids.iter().collect::<HashSet<_>>().len(),
        120,
        "nothing lost"
    );
    assert!(
        ids.iter().filter(|i| *i == "P1-00041").count() >= 2,
        "the message answered AE went again"
    );
    // Everything was waiting, so the window behind P1-00041 was full: its patient's next
    // message was on the wire, accepted, and had to go again after it.
    assert!(
        ids.iter().filter(|i| *i == "P1-00045").count() >= 2,
        "P1-00045, accepted before P1-00041's retry, went again after it: {ids:?}"
    );
    assert_eq!(
        last_copies_out_of_order(&ids),
        0,
        "last copies in each patient's order; arrivals: {ids:?}\nlog:\n{}",
        e.log()
    );
}
