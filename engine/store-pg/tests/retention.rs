//! Retention on the shared store: a message older than the cutoff goes once every destination
//! is finished with it (delivered, purged or moved away); one still owed, or dead-lettered,
//! stays; one with no deliveries (rejected) goes.

mod support;

use wyvern_store::InboxStatus;
use wyvern_store_pg::{CommitOptions, PgCommitter};
use wyvern_testpg::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn finished_messages_go_and_owed_or_dead_ones_stay() {
    let pg = PgCluster::start();
    let (url, client) = support::database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(&url, "node-a"))
        .await
        .expect("start");
    // S1-1 delivered, S1-2 dead, S1-3 owed, S1-4 purged, S1-5 rejected (no deliveries).
    for n in 1..=5 {
        let mut r = support::record(1, n, format!("key-{n}"));
        if n == 5 {
            r.status = InboxStatus::Rejected;
            r.deliveries.clear();
        }
        committer.commit(r).await.expect("commit");
    }
    client
        .batch_execute(
            "UPDATE partitions p SET done_xid = d.xid, done_seq = d.seq + 1 \
             FROM deliveries d JOIN messages m ON m.seq = d.message \
             WHERE p.lane = d.lane AND p.partition = d.partition AND m.control_id <> 'S1-3';
             INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, state) \
             SELECT d.seq, d.xid, d.lane, d.partition, d.order_key, \
                 CASE m.control_id WHEN 'S1-2' THEN 'dead' ELSE 'purged' END \
             FROM deliveries d JOIN messages m ON m.seq = d.message \
             WHERE m.control_id IN ('S1-2', 'S1-4');",
        )
        .await
        .expect("settle");

    let none = wyvern_store_pg::prune(&client, 0, 100)
        .await
        .expect("prune");
    assert_eq!(none.messages, 0, "nothing is older than the cutoff");
    let pruned = wyvern_store_pg::prune(&client, i64::MAX, 100)
        .await
        .expect("prune");
    assert_eq!((pruned.messages, pruned.deliveries), (3, 2));
    let left: Vec<String> = client
        .query("SELECT control_id FROM messages ORDER BY seq", &[])
        .await
        .expect("query")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(
        left,
        ["S1-2", "S1-3"],
        "the dead letter and the owed one stay"
    );
    let orphans: i64 = client
        .query_one(
            "SELECT (SELECT count(*) FROM deliveries WHERE message NOT IN (SELECT seq FROM messages)) \
             + (SELECT count(*) FROM delivery_exceptions WHERE seq NOT IN (SELECT seq FROM deliveries))",
            &[],
        )
        .await
        .expect("query")
        .get(0);
    assert_eq!(
        orphans, 0,
        "a message's deliveries and exceptions go with it"
    );
}
