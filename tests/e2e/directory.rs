//! The directory source: files in, every message stored and routed, the file moved to done/
//! only after that; partial files (`.part`, `.tmp`, hidden) left alone until renamed.

use std::time::{Duration, Instant};

use crate::harness::{EngineProcess, wait_until};

fn count(dir: &std::path::Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(suffix))
                .count()
        })
        .unwrap_or(0)
}

#[test]
fn files_are_taken_routed_and_moved_to_done() {
    let e = EngineProcess::start_with_route_file(
        "version: 1\nroute: e2e\nsource:\n  directory: { path: in, poll: 100ms }\n\
         destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
    );
    let inbox = e.dir.path().join("in");
    std::fs::create_dir_all(&inbox).expect("in");
    std::fs::write(
        inbox.join("01-one.hl7"),
        "MSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A28|D1|P|2.5.1\nPID|1||9990000018^^^NHS^NH\n",
    )
    .expect("write");
    std::fs::write(
        inbox.join("02-batch.hl7"),
        "FHS|^~\\&|GPSYS\rBHS|^~\\&|GPSYS\rMSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A31|D2|P|2.5.1\rPID|1\rMSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A31|D3|P|2.5.1\rPID|1\rBTS|2\rFTS|1\r",
    )
    .expect("write");
    std::fs::write(inbox.join("03-garbage.txt"), "this is not HL7").expect("write");
    std::fs::write(
        inbox.join("04-incoming.hl7.part"),
        "MSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A28|D4|P|2.5.1\r",
    )
    .expect("write");
    let done = inbox.join("done");
    let deadline = Instant::now() + Duration::from_secs(20);
    while (count(&done, "") < 3 || count(&e.dir.path().join("out"), ".hl7") < 3)
        && Instant::now() < deadline
    {
        std::thread::sleep(Duration::from_millis(50));
    }
    assert_eq!(count(&done, ""), 3, "three files taken");
    assert_eq!(
        count(&e.dir.path().join("out"), ".hl7"),
        3,
        "three messages delivered (the garbage is rejected and kept)"
    );
    assert!(
        inbox.join("04-incoming.hl7.part").exists(),
        "a file still being written is left alone"
    );
    let reader = e.store_with(4);
    let counts = reader.counts().expect("counts");
    let by: Vec<(String, i64)> = counts.into_iter().map(|c| (c.status, c.count)).collect();
    assert_eq!(
        by,
        [("accepted".to_string(), 3), ("rejected".to_string(), 1)]
    );
    // The writer finishes and renames: now it is taken.
    std::fs::rename(
        inbox.join("04-incoming.hl7.part"),
        inbox.join("04-incoming.hl7"),
    )
    .expect("rename");
    wait_until(Duration::from_secs(10), || count(&done, "") >= 4);
    assert_eq!(count(&done, ""), 4);
}

/// Issue 11 item 3: a file whose message was not accepted (here a reused control id on a route
/// that rejects reuse; a failing plugin is the same AE) was moved to done/ as if taken, and never
/// delivered. Now it stays for the next pass and, after a bounded number of attempts, is moved
/// to failed/ (its messages are kept in the inbox with the reason); the next file goes on.
#[test]
fn a_file_that_is_not_accepted_is_not_moved_to_done() {
    let e = EngineProcess::start_with_route_file(
        "version: 1\nroute: e2e\nsource:\n  directory: { path: in, poll: 100ms }\n\
         destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\ncontrol_id_reuse: reject\n",
    );
    let inbox = e.dir.path().join("in");
    std::fs::create_dir_all(&inbox).expect("in");
    let msg = |note: &str| {
        format!(
            "MSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A28|R1|P|2.5.1\rPID|1||9990000018^^^NHS^NH\rNTE|1||{note}\r"
        )
    };
    std::fs::write(inbox.join("01-first.hl7"), msg("first")).expect("write");
    let done = inbox.join("done");
    wait_until(Duration::from_secs(10), || count(&done, "") == 1);
    std::fs::write(inbox.join("02-reused.hl7"), msg("other content")).expect("write");
    std::fs::write(
        inbox.join("03-next.hl7"),
        "MSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A28|R3|P|2.5.1\rPID|1\r",
    )
    .expect("write");
    let failed = inbox.join("failed");
    wait_until(Duration::from_secs(20), || {
        count(&failed, "") == 1 && count(&done, "") == 2
    });
    assert!(
        !done.join("02-reused.hl7").exists(),
        "not accepted, so not done; log:\n{}",
        e.log()
    );
    assert!(failed.join("02-reused.hl7").exists(), "{}", e.log());
    assert!(done.join("03-next.hl7").exists(), "{}", e.log());
    assert!(e.log().contains("moved to failed/"), "{}", e.log());
}

/// Issue 11 item 8: the directory source read any file whole into memory. Now a file over
/// `max_file` is moved to failed/ unread (kept, with an error in the log) and the rest go on.
#[test]
fn a_file_over_max_file_is_set_aside_unread() {
    let e = EngineProcess::start_with_route_file(
        "version: 1\nroute: e2e\nsource:\n  directory: { path: in, poll: 100ms, max_file: 1KiB }\n\
         destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
    );
    let inbox = e.dir.path().join("in");
    std::fs::create_dir_all(&inbox).expect("in");
    let big = format!(
        "MSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A28|B1|P|2.5.1\rPID|1\rNTE|1||{}\r",
        "x".repeat(2048)
    );
    std::fs::write(inbox.join("01-big.hl7"), big).expect("write");
    std::fs::write(
        inbox.join("02-small.hl7"),
        "MSH|^~\\&|GPSYS|Y99999|WYV|DCR|2026||ADT^A28|B2|P|2.5.1\rPID|1\r",
    )
    .expect("write");
    wait_until(Duration::from_secs(10), || {
        count(&inbox.join("done"), "") == 1 && count(&inbox.join("failed"), "") == 1
    });
    assert!(inbox.join("failed/01-big.hl7").exists(), "{}", e.log());
    assert!(inbox.join("done/02-small.hl7").exists(), "{}", e.log());
    assert!(e.log().contains("larger than max_file"), "{}", e.log());
}
