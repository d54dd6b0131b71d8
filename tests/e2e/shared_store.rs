//! Several nodes on one PostgreSQL (`store.shared`): each takes messages, the destination's
//! deliveries are leased to one node at a time, and when that node is killed another takes
//! its leases over once they expire. Counted against what was acknowledged: nothing lost,
//! each patient's messages in order (first arrivals), duplicates only around the takeover.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use wyvern_testpg::PgCluster;

use crate::harness::{EngineProcess, Wire, adt, frame, normalise_ack};
use crate::receiver::Receiver;

/// A node of the shared store, delivering to `rx`.
fn node(pg: &PgCluster, name: &str, rx: &Receiver) -> EngineProcess {
    let store = format!(
        "  shared:\n    postgres: {}\n    node: {name}\n    lease: 3s\n",
        pg.url("postgres")
    );
    let rest = format!(
        "destinations:\n  - name: dcr\n    mllp: {{ connect: \"{}\" }}\norder_by: patient\n",
        rx.addr
    );
    EngineProcess::start_with_store(None, &store, "", "", &rest, &[])
}

/// Sends `ids` (patient `p` of each in its name) stop-and-wait; returns those answered AA.
fn send(e: &EngineProcess, ids: &[(String, u64)]) -> Vec<String> {
    let mut w = Wire::connect(e.addr);
    ids.iter()
        .filter(|(id, p)| {
            w.write(&frame(&adt(id, *p)));
            normalise_ack(&w.read_frame()).contains("MSA|AA|")
        })
        .map(|(id, _)| id.clone())
        .collect()
}

fn batch(node: &str, from: usize, n: usize) -> Vec<(String, u64)> {
    (from..from + n)
        .map(|i| {
            let p = (i % 7) as u64;
            (format!("P{p}-{node}{i:05}"), p)
        })
        .collect()
}

/// Messages of one sender and patient that first arrived out of their sending order.
fn out_of_order(ids: &[String]) -> usize {
    let mut last: HashMap<String, &str> = HashMap::new();
    let mut seen = HashSet::new();
    let mut bad = 0;
    for id in ids {
        if !seen.insert(id.as_str()) {
            continue;
        }
        // P{patient}-{node}{n}: order holds per patient and per node that took them.
        let key = id[..id.len() - 5].to_string();
        if let Some(prev) = last.insert(key, id.as_str())
            && prev > id.as_str()
        {
            bad += 1;
        }
    }
    bad
}

#[test]
fn two_nodes_share_the_work_and_one_takes_over_when_the_other_is_killed() {
    let pg = PgCluster::start();
    // A receiver that takes 3 ms a message, so the killed node still has deliveries to make.
    let rx = Receiver::start(Box::new(|_, _| {
        std::thread::sleep(Duration::from_millis(3));
        Some("AA")
    }));
    let mut a = node(&pg, "node-a", &rx);
    let mut b = node(&pg, "node-b", &rx);
    let mut acked = send(&a, &batch("a", 0, 150));
    acked.extend(send(&b, &batch("b", 0, 150)));
    assert_eq!(acked.len(), 300, "both nodes take messages");
    rx.wait_for(Duration::from_secs(30), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 300
    });

    // The node that holds the destination's partitions takes 200 more and is killed at once,
    // its deliveries still going: the other takes its leases over once they expire, and
    // delivers what the dead node acknowledged and what it takes itself meanwhile.
    let holders = pg.sql(
        "postgres",
        "SELECT DISTINCT owner FROM partitions WHERE owner IS NOT NULL",
    );
    assert_eq!(
        holders.lines().count(),
        1,
        "one node delivers a lane: {holders}"
    );
    let (holder, survivor, name) = match holders.as_str() {
        "node-a" => (&mut a, &b, "b"),
        _ => (&mut b, &a, "a"),
    };
    let dying = if name == "a" { "b" } else { "a" };
    acked.extend(send(holder, &batch(dying, 150, 200)));
    holder.kill();
    let before_kill = rx.wait_for(Duration::ZERO, |_| true).len();
    assert!(
        before_kill < 500,
        "the killed node had deliveries left ({before_kill} of 500 arrived)"
    );
    acked.extend(send(survivor, &batch(name, 150, 200)));
    assert_eq!(acked.len(), 700);
    let ids = rx.wait_for(Duration::from_secs(60), |ids| {
        ids.iter().collect::<HashSet<_>>().len() >= 700
    });
    let delivered: HashSet<&String> = ids.iter().collect();
    let lost: Vec<&String> = acked.iter().filter(|id| !delivered.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "lost {} acknowledged, among them {:?}",
        lost.len(),
        &lost[..lost.len().min(10)]
    );
    assert_eq!(out_of_order(&ids), 0, "each patient's messages in order");
    assert_eq!(
        pg.sql("postgres", "SELECT count(*) FROM messages"),
        "700",
        "every message is in the shared store, once"
    );
    let holders = pg.sql(
        "postgres",
        "SELECT DISTINCT owner FROM partitions WHERE owner IS NOT NULL",
    );
    assert_eq!(
        holders,
        format!("node-{name}"),
        "the survivor holds every partition"
    );
    eprintln!(
        "shared store: {} acknowledged, {} delivered ({} duplicates), 0 lost, 0 out of order",
        acked.len(),
        ids.len(),
        ids.len() - delivered.len()
    );
}
