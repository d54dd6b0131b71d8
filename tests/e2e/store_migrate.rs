//! `wyvern store migrate`: what an embedded store still owes its destinations — new, retrying
//! and waiting behind their key — moved to the shared PostgreSQL store with every engine
//! stopped, then delivered by a node once each, in each patient's order. Dead letters stay
//! behind; a second run moves nothing; a running node makes it refuse.

use std::collections::HashSet;
use std::time::Duration;

use wyvern_testpg::PgCluster;

use crate::harness::EngineProcess;
use crate::receiver::Receiver;
use crate::shared_store::{batch, out_of_order, send, to_receiver};

fn migrate(config: &std::path::Path, to: &str) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn", "store", "migrate", "--config"])
        .arg(config)
        .args(["--to", to])
        .output()
        .expect("run wyvern store migrate")
}

/// The shared store's log of the messages a test sends as `b` (for a failure's message).
const LOG: &str = "SELECT m.control_id, d.xid, d.seq, d.partition, p.done_xid, p.done_seq, \
    e.state FROM deliveries d JOIN messages m ON m.seq = d.message \
    JOIN partitions p ON p.lane = d.lane AND p.partition = d.partition \
    LEFT JOIN delivery_exceptions e ON e.seq = d.seq \
    WHERE m.control_id LIKE '%-b%' ORDER BY d.xid, d.seq";

#[test]
fn what_an_embedded_store_owes_moves_to_the_shared_store_and_is_delivered_once_in_order() {
    let pg = PgCluster::start();
    // The destination answers AE to everything (retries build up, keys wait behind their
    // heads) and AR to the first message of patient 0 (a dead letter, parked).
    let failing = Receiver::start(Box::new(|id, _| {
        Some(if id == "P0-a00000" { "AR" } else { "AE" })
    }));
    let rest = format!(
        "{}retry: {{ backoff: 50ms..200ms }}\n",
        to_receiver(&failing)
    );
    let mut embedded = EngineProcess::start_route("", &rest);
    let acked = send(&embedded, &batch("a", 0, 70));
    assert_eq!(acked.len(), 70);
    // Patient 0's second message is tried only once its first is dead.
    failing.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().any(|id| id == "P0-a00007")
    });
    embedded.terminate();
    failing.stop();
    let store = embedded.store_dir();
    let states = {
        let db = rusqlite::Connection::open(store.join(wyvern_store::DB_FILE)).expect("open");
        let mut s = db
            .prepare(
                "SELECT e.state, count(*) FROM deliveries d JOIN lanes l ON l.lane = d.lane \
                 LEFT JOIN delivery_exceptions e ON e.seq = d.seq \
                 WHERE e.seq IS NOT NULL OR d.seq >= l.done_below GROUP BY 1 ORDER BY 1",
            )
            .expect("prepare");
        s.query_map([], |r| {
            Ok(format!(
                "{}={}",
                r.get::<_, Option<String>>(0)?.unwrap_or("new".into()),
                r.get::<_, i64>(1)?
            ))
        })
        .expect("query")
        .collect::<Result<Vec<_>, _>>()
        .expect("rows")
        .join(" ")
    };
    assert!(
        states.contains("dead=1") && states.contains("new=") && states.contains("retry="),
        "the embedded store owes new and retrying deliveries and holds a dead letter: {states}"
    );

    // A node of the shared store on the same local folder, not started yet.
    let good = Receiver::start(Box::new(|_, _| Some("AA")));
    let shared = format!(
        "  shared:\n    postgres: {}?application_name=node-a\n    node: node-a\n    lease: 3s\n",
        pg.url("postgres")
    );
    let mut node = EngineProcess::configure_with_store(
        Some(&store),
        &shared,
        "",
        "",
        &to_receiver(&good),
        &["--log", "info"],
    );
    let out = migrate(node.config_dir(), "shared");
    let report =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{report}");
    assert!(
        report.contains("69 deliveries of 69 messages moved")
            && report.contains("1 dead letter stays"),
        "{report}"
    );
    let audited = pg.sql(
        "postgres",
        "SELECT count(*) FROM audit WHERE action = 'export' \
         AND detail LIKE '69 deliveries of 69 messages moved to the shared store%'",
    );
    assert_eq!(audited, "1", "the move is in the cluster's audit log");
    let again = migrate(node.config_dir(), "shared");
    let report = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(again.status.success(), "{report}");
    assert!(report.contains("nothing to move"), "a second run: {report}");

    node.restart();
    let expected: HashSet<&String> = acked.iter().filter(|id| *id != "P0-a00000").collect();
    good.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= expected.len()
    });
    // Anything delivered twice would arrive about now.
    std::thread::sleep(Duration::from_millis(500));
    let ids_now = good.ids();
    let delivered: HashSet<&String> = ids_now.iter().collect();
    assert_eq!(
        delivered, expected,
        "every owed message, and not the dead one"
    );
    assert_eq!(ids_now.len(), expected.len(), "each once: {ids_now:?}");
    assert_eq!(
        out_of_order(&ids_now),
        0,
        "each patient's messages in order"
    );

    // With a node running, the store is in use: nothing is moved.
    let refused = migrate(node.config_dir(), "shared");
    let report = String::from_utf8_lossy(&refused.stderr).to_string();
    assert!(!refused.status.success());
    assert!(
        report.contains("node-a"),
        "names the running node: {report}"
    );

    // And back: what the node owes while its destination is down moves to the embedded store.
    good.stop();
    // Its open connections end within their 200 ms read timeout.
    std::thread::sleep(Duration::from_millis(400));
    let owed = send(&node, &batch("b", 0, 14));
    assert_eq!(owed.len(), 14);
    std::thread::sleep(Duration::from_millis(500));
    node.terminate();
    // Three heartbeats pass (the node counts as running until then).
    pg.sql(
        "postgres",
        "UPDATE nodes SET seen_at = now() - interval '1 minute'",
    );
    let before = pg.sql("postgres", LOG);
    let back = migrate(node.config_dir(), "embedded");
    let report =
        String::from_utf8_lossy(&back.stdout).to_string() + &String::from_utf8_lossy(&back.stderr);
    assert!(back.status.success(), "{report}");
    assert!(
        report.contains("14 deliveries of 14 messages moved"),
        "{report}\nthe shared store's log before:\n{before}"
    );
    let again = migrate(node.config_dir(), "embedded");
    let report = String::from_utf8_lossy(&again.stdout).to_string();
    assert!(report.contains("nothing to move"), "a second run: {report}");
    let last = Receiver::start(Box::new(|_, _| Some("AA")));
    let _embedded_again = EngineProcess::start_with_store(
        Some(&store),
        "",
        "",
        "",
        &to_receiver(&last),
        &["--log", "info"],
    );
    last.wait_for(Duration::from_secs(30), |ids| ids.len() >= owed.len());
    std::thread::sleep(Duration::from_millis(500));
    let ids = last.ids();
    assert_eq!(
        ids, owed,
        "what the node owed, once each, in order (and nothing else)"
    );
}
