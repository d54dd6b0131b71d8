//! The delivery workers' view of the shared store, on a real PostgreSQL (a throwaway cluster),
//! through the same `DeliveryLog` calls the runtime makes: every message passed once and in
//! its key's order across partitions, a retry that holds its key and no other, a row of a
//! transaction still open never passed over, and a node that lost its lease unable to record
//! anything, its pass sent again by the new holder.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use wyvern_store::{DeliveryLog, LaneId, OutboxItem, Pass, Settle, StoreError, Update};
use wyvern_store_pg::{CommitOptions, PgCommitter, PgDeliveryLog};
use wyvern_testpg::PgCluster;

mod support;

const NOW: i64 = 1_795_617_000_000;

/// A node's delivery log, called on a blocking thread as the runtime's workers call it.
#[derive(Clone)]
struct Node(Arc<PgDeliveryLog>);

impl Node {
    async fn open(url: &str, name: &str, ttl: Duration) -> Node {
        Node(Arc::new(
            PgDeliveryLog::open(url, name, ttl).await.expect("open"),
        ))
    }

    async fn call<T: Send + 'static>(
        &self,
        f: impl FnOnce(&PgDeliveryLog) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let log = self.0.clone();
        tokio::task::spawn_blocking(move || f(&log))
            .await
            .expect("no panic")
    }

    async fn lane(&self) -> LaneId {
        self.call(|l| l.lane("adt", "chie")).await.expect("lane")
    }

    async fn pass(&self, lane: LaneId, now: i64) -> Pass {
        self.call(move |l| l.next_pass(lane, now, 100, usize::MAX, false, None))
            .await
            .expect("pass")
    }

    async fn settle(&self, lane: LaneId, s: Settle) -> Result<(), StoreError> {
        self.call(move |l| l.settle(lane, &s)).await
    }
}

/// What the runtime's worker records for a pass whose items met `fate` (`None`: delivered):
/// a log row delivered after an earlier one of its key failed waits behind it.
fn settle_of(pass: &Pass, fate: impl Fn(&OutboxItem) -> Option<Update>) -> Settle {
    let mut outcomes = Vec::new();
    let mut waiting: Vec<(i64, String)> = pass
        .waiting
        .iter()
        .map(|(at, k)| (at.seq, k.clone()))
        .collect();
    let mut failed = std::collections::HashSet::new();
    for item in &pass.items {
        let from_log = item.position >= pass.from;
        let key = item.order_key.clone();
        match fate(item) {
            None if from_log && failed.contains(&key) => waiting.push((item.seq, key)),
            None if from_log => {}
            None => outcomes.push((item.seq, key, Update::Delivered { at_ms: NOW })),
            Some(u) => {
                failed.insert(key.clone());
                outcomes.push((item.seq, key, u));
            }
        }
    }
    Settle {
        outcomes,
        waiting,
        cursor: pass.to,
        lease: pass.lease,
    }
}

/// The control id (MSH-10) of an item.
fn control_id(item: &OutboxItem) -> String {
    let text = std::str::from_utf8(&item.payload).expect("text");
    text.split('|').nth(9).unwrap_or(text).to_string()
}

async fn commit(url: &str, records: impl IntoIterator<Item = wyvern_store::InboxRecord>) {
    let committer = PgCommitter::start(CommitOptions::new(url, "node-a"))
        .await
        .expect("committer");
    for r in records {
        committer.commit(r).await.expect("commit");
    }
}

/// Passes until `rounds` in a row bring nothing, delivering everything; the control ids in
/// the order they were sent.
async fn drain(node: &Node, lane: LaneId, now: i64) -> Vec<(String, String)> {
    let mut sent = Vec::new();
    let mut quiet = 0;
    while quiet < 3 {
        let pass = node.pass(lane, now).await;
        if pass.items.is_empty() && pass.waiting.is_empty() {
            quiet += 1;
            continue;
        }
        quiet = 0;
        sent.extend(
            pass.items
                .iter()
                .map(|i| (i.order_key.clone(), control_id(i))),
        );
        node.settle(lane, settle_of(&pass, |_| None))
            .await
            .expect("settle");
    }
    sent
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_message_goes_once_and_in_its_keys_order_across_partitions() {
    let pg = PgCluster::start();
    let (url, _client) = support::database(&pg).await;
    commit(
        &url,
        (0..300).map(|n| support::record(0, n, format!("key-{}", n % 23))),
    )
    .await;
    let node = Node::open(&url, "node-a", Duration::from_secs(30)).await;
    let lane = node.lane().await;
    let sent = drain(&node, lane, NOW).await;
    assert_eq!(sent.len(), 300, "each once: {sent:?}");
    let mut last: HashMap<String, usize> = HashMap::new();
    for (key, id) in &sent {
        let n: usize = id.trim_start_matches("S0-").parse().expect("n");
        if let Some(prev) = last.insert(key.clone(), n) {
            assert!(prev < n, "{key}: {prev} before {n}");
        }
    }
    assert_eq!(drain(&node, lane, NOW).await, vec![], "nothing twice");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retry_holds_its_key_and_no_other() {
    let pg = PgCluster::start();
    let (url, _client) = support::database(&pg).await;
    commit(
        &url,
        [
            support::record(0, 1, "A".into()),
            support::record(0, 2, "A".into()),
            support::record(0, 3, "B".into()),
        ],
    )
    .await;
    let node = Node::open(&url, "node-a", Duration::from_secs(30)).await;
    let lane = node.lane().await;
    let retry = Update::RetryAt {
        next_at_ms: NOW + 1_000,
        error: "503".into(),
    };
    let mut sent = Vec::new();
    for _ in 0..20 {
        let pass = node.pass(lane, NOW).await;
        if pass.items.is_empty() && pass.waiting.is_empty() {
            continue;
        }
        sent.extend(pass.items.iter().map(control_id));
        let s = settle_of(&pass, |i| (control_id(i) == "S0-1").then(|| retry.clone()));
        node.settle(lane, s).await.expect("settle");
    }
    let mut sorted = sent.clone();
    sorted.sort();
    assert_eq!(
        sorted,
        ["S0-1", "S0-2", "S0-3"],
        "each once until the retry is due: A's second, sent beside its failed first, \
         waits behind it; B went"
    );
    let later = drain(&node, lane, NOW + 1_000).await;
    let ids: Vec<&str> = later.iter().map(|(_, id)| id.as_str()).collect();
    assert_eq!(
        ids,
        ["S0-1", "S0-2"],
        "the retry, then what waited behind it"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_row_of_a_transaction_still_open_is_never_passed_over() {
    let pg = PgCluster::start();
    let (url, mut slow) = support::database(&pg).await;
    commit(&url, [support::record(0, 0, "K".into())]).await;
    let node = Node::open(&url, "node-a", Duration::from_secs(30)).await;
    let lane = node.lane().await;
    assert_eq!(drain(&node, lane, NOW).await.len(), 1);

    // A transaction takes its id, then another commits a row of the same partition. It stays
    // open as long as the test needs (the store's sessions end an idle one after a second).
    slow.batch_execute("SET idle_in_transaction_session_timeout = 0")
        .await
        .expect("no idle timeout");
    let tx = slow.transaction().await.expect("begin");
    tx.query_one("SELECT pg_current_xact_id()::text", &[])
        .await
        .expect("xid");
    commit(&url, [support::record(0, 2, "K".into())]).await;
    assert_eq!(
        drain(&node, lane, NOW).await,
        vec![],
        "the later commit waits for the open one"
    );
    // The open transaction writes a delivery of its own, with its earlier id.
    tx.execute(
        "INSERT INTO deliveries (lane, partition, message, part, order_key) \
         SELECT lane, partition, message, 1, order_key FROM deliveries ORDER BY seq LIMIT 1",
        &[],
    )
    .await
    .expect("insert");
    tx.commit().await.expect("commit");
    let sent: Vec<String> = drain(&node, lane, NOW)
        .await
        .into_iter()
        .map(|(_, id)| id)
        .collect();
    assert_eq!(
        sent,
        ["S0-0", "S0-2"],
        "the open transaction's row first, nothing skipped"
    );
}

/// A slow destination: sending a pass takes longer than a lease lasts. The node's leases are
/// renewed meanwhile, and the pass is recorded (the database's token decides, not the node's
/// clock at the moment of recording) — it is not sent again, and the lane moves on.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pass_that_takes_longer_than_a_lease_to_send_is_recorded() {
    let pg = PgCluster::start();
    let (url, _client) = support::database(&pg).await;
    commit(&url, (0..3).map(|n| support::record(0, n, "K".into()))).await;
    let node = Node::open(&url, "node-a", Duration::from_secs(2)).await;
    let lane = node.lane().await;
    let pass = node.pass(lane, NOW).await;
    assert_eq!(pass.items.len(), 3);
    tokio::time::sleep(Duration::from_millis(3_000)).await; // "sending"
    node.settle(lane, settle_of(&pass, |_| None))
        .await
        .expect("recorded after a long send");
    assert_eq!(drain(&node, lane, NOW).await, vec![], "not sent again");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_stops_gives_its_partitions_back_at_once() {
    let pg = PgCluster::start();
    let (url, _client) = support::database(&pg).await;
    commit(&url, (0..5).map(|n| support::record(0, n, format!("k{n}")))).await;
    let ttl = Duration::from_secs(60);
    let a = Node::open(&url, "node-a", ttl).await;
    let lane = a.lane().await;
    assert!(
        !a.pass(lane, NOW).await.items.is_empty(),
        "a holds the partitions"
    );
    let b = Node::open(&url, "node-b", ttl).await;
    assert_eq!(b.lane().await, lane);
    assert!(
        b.pass(lane, NOW).await.items.is_empty(),
        "b waits while a holds them"
    );
    a.call(|l| l.release()).await.expect("release");
    // b looks for free partitions at most once a second.
    tokio::time::sleep(Duration::from_millis(1100)).await;
    assert_eq!(
        drain(&b, lane, NOW).await.len(),
        5,
        "b takes over without waiting a minute"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_that_lost_its_lease_records_nothing_and_the_new_holder_sends_again() {
    let pg = PgCluster::start();
    let (url, client) = support::database(&pg).await;
    commit(&url, (0..10).map(|n| support::record(0, n, "K".into()))).await;
    let a = Node::open(&url, "node-a", Duration::from_secs(30)).await;
    let lane = a.lane().await;
    let pass = a.pass(lane, NOW).await;
    assert_eq!(pass.items.len(), 10);

    // Another node takes the partition over (as it would once a's lease expired in the
    // database while a was paused): a new token.
    client
        .execute(
            "UPDATE partitions SET owner = 'node-b', token = token + 1",
            &[],
        )
        .await
        .expect("take over");
    let err = a
        .settle(lane, settle_of(&pass, |_| None))
        .await
        .expect_err("fenced off");
    assert!(
        err.to_string().contains("another node took it over"),
        "{err}"
    );
    let cursor: i64 = client
        .query_one("SELECT max(done_seq) FROM partitions", &[])
        .await
        .expect("cursor")
        .get(0);
    assert_eq!(cursor, 0, "the stale holder moved no cursor");

    // Its lease expired in the database: node b takes it and sends everything again.
    client
        .execute("UPDATE partitions SET expires_at = '-infinity'", &[])
        .await
        .expect("expire");
    let b = Node::open(&url, "node-b", Duration::from_secs(30)).await;
    let lane_b = b.lane().await;
    assert_eq!(lane_b, lane);
    assert_eq!(drain(&b, lane, NOW).await.len(), 10, "at least once");
    assert_eq!(
        drain(&a, lane, NOW).await,
        vec![],
        "nothing is left for a to send"
    );
}
