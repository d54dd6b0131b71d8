//! The operator's side of the shared store: dead letters listed newest first with their lane,
//! put back due now, given up by selection; a replay makes settled deliveries due again; a
//! route's stored traffic is read back in pages for shadow replay.

mod support;

use wyvern_store::{Operations, OutboxState, Replay, Selection};
use wyvern_store_pg::{CommitOptions, PgCommitter, PgOperations};
use wyvern_testpg::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_letters_are_listed_retried_purged_and_a_range_replayed() {
    let pg = PgCluster::start();
    let (url, client) = support::database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(&url, "node-a"))
        .await
        .expect("start");
    for n in 1..=4 {
        committer
            .commit(support::record(1, n, format!("key-{n}")))
            .await
            .expect("commit");
    }
    // Every delivery settled: S1-1 delivered, S1-2 dead, S1-3 held, S1-4 dead.
    client
        .batch_execute(
            "UPDATE partitions p SET done_xid = d.xid, done_seq = d.seq + 1 \
             FROM deliveries d WHERE p.lane = d.lane AND p.partition = d.partition;
             INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, state, attempts) \
             SELECT d.seq, d.xid, d.lane, d.partition, d.order_key, \
                 CASE m.control_id WHEN 'S1-3' THEN 'held' ELSE 'dead' END, 5 \
             FROM deliveries d JOIN messages m ON m.seq = d.message WHERE m.control_id <> 'S1-1';",
        )
        .await
        .expect("settle");
    let ops = PgOperations::new(&url);
    let dead = ops.dead_letters(None, None, 10).await.expect("list");
    let listed: Vec<(OutboxState, &str)> =
        dead.iter().map(|d| (d.state, d.route.as_str())).collect();
    assert_eq!(
        listed,
        [
            (OutboxState::Dead, "adt"),
            (OutboxState::Held, "adt"),
            (OutboxState::Dead, "adt")
        ],
        "newest first"
    );
    assert!(
        ops.dead_letters(Some("other".into()), None, 10)
            .await
            .expect("list")
            .is_empty()
    );
    let first = dead.last().expect("a dead letter");
    let one = Selection {
        seq: Some(first.seq),
        ..Selection::default()
    };
    assert_eq!(ops.requeue(one, 7).await.expect("retry"), 1);
    let retried = ops.delivery(first.seq).await.expect("get").expect("there");
    assert_eq!(
        (retried.state, retried.attempts, retried.next_at_ms),
        (OutboxState::Pending, 0, 7),
        "due now with fresh attempts"
    );
    let all = Selection {
        route: Some("adt".into()),
        ..Selection::default()
    };
    assert_eq!(ops.purge(all).await.expect("purge"), 2);
    assert!(
        ops.dead_letters(None, None, 10)
            .await
            .expect("list")
            .is_empty()
    );

    let replay = Replay {
        route: "adt".into(),
        destination: None,
        since_ms: 0,
        until_ms: i64::MAX,
    };
    assert_eq!(ops.replay(replay, 9).await.expect("replay"), 4);
    let delivered = ops.dead_letters(None, None, 10).await.expect("list").len();
    assert_eq!(delivered, 0, "a replay is not a dead letter");

    // Shadow replay's read: the route's messages in pages, oldest first, each with its bytes,
    // its ACK and what was queued for each destination.
    let query = |after_seq| wyvern_store::TrafficQuery {
        route: "adt".into(),
        since_ms: 0,
        until_ms: i64::MAX,
        after_seq,
        limit: 3,
        max_bytes: usize::MAX,
    };
    let first = ops.traffic(query(0)).await.expect("traffic");
    let ids: Vec<&str> = first
        .iter()
        .map(|t| t.message.control_id.as_deref().unwrap_or(""))
        .collect();
    assert_eq!(ids, ["S1-1", "S1-2", "S1-3"]);
    assert!(
        first[0]
            .message
            .raw
            .as_deref()
            .is_some_and(|r| r.starts_with(b"MSH|"))
    );
    assert_eq!(first[0].message.ack.as_deref(), Some(&b"MSA|AA"[..]));
    assert_eq!(first[0].queued.len(), 1);
    assert_eq!(first[0].queued[0].destination, "chie");
    assert_eq!(first[0].queued[0].order_key, "key-1");
    assert_eq!(first[0].queued[0].payload, None);
    let rest = ops
        .traffic(query(first[2].message.seq))
        .await
        .expect("traffic");
    assert_eq!(rest.len(), 1);
    assert_eq!(rest[0].message.control_id.as_deref(), Some("S1-4"));
    // A page is bounded in bytes too: a budget of one byte still gives one message.
    let one = ops
        .traffic(wyvern_store::TrafficQuery {
            max_bytes: 1,
            ..query(0)
        })
        .await
        .expect("traffic");
    assert_eq!(one.len(), 1);
}
