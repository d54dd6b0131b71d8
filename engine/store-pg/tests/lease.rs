//! Leases on a real PostgreSQL (a throwaway cluster): one holder per partition, taken over
//! only once expired, a holder that stops renewing stops by its own clock before the database
//! lets anyone else in, and a stale holder's writes are fenced off by its token.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use tokio_postgres::Client;
use wyvern_store_pg::{CommitOptions, Leases, PARTITIONS, PgCommitter, advance, connect, read_log};
use wyvern_testpg::PgCluster;

mod support;

/// A database with one lane (made by committing a message to it); returns its id.
async fn one_lane(pg: &PgCluster) -> (Client, i32) {
    let (url, client) = support::database(pg).await;
    let committer = PgCommitter::start(CommitOptions::new(url, "node-a"))
        .await
        .expect("committer");
    committer
        .commit(support::record(0, 1, "k".into()))
        .await
        .expect("commit");
    let lane = client
        .query_one("SELECT lane FROM lanes", &[])
        .await
        .expect("the lane")
        .get(0);
    (client, lane)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_passes_on_only_when_expired_and_the_old_holder_is_fenced_off() {
    let pg = PgCluster::start();
    let (client, lane) = one_lane(&pg).await;
    let ttl = Duration::from_secs(4);
    let (a, b) = (Leases::new("node-a", ttl), Leases::new("node-b", ttl));
    let taken_at = Instant::now();
    let mut held = a.take(&client, lane, 64, &[]).await.expect("take");
    assert_eq!(
        held.len(),
        PARTITIONS as usize,
        "every partition, once each"
    );
    assert!(held.iter().all(|l| l.token == 1 && l.is_valid()));
    assert!(
        b.take(&client, lane, 64, &[])
            .await
            .expect("take")
            .is_empty(),
        "nothing for a second node while they are held"
    );
    assert!(a.renew(&client, &mut held[0]).await.expect("renew"));

    // Node a stops renewing. Past its local validity (3/4 of the TTL) it must have stopped,
    // while the database still says its leases run: nobody else can have started yet.
    let local_end = taken_at + ttl - ttl / 4;
    tokio::time::sleep_until((local_end + Duration::from_millis(50)).into()).await;
    assert!(
        held.iter().all(|l| !l.is_valid()),
        "node a stopped by its own clock"
    );
    let still_held: i64 = client
        .query_one(
            "SELECT count(*) FROM partitions WHERE owner = 'node-a' AND expires_at > now()",
            &[],
        )
        .await
        .expect("count")
        .get(0);
    assert!(still_held > 0, "…before its leases expired in the database");

    tokio::time::sleep_until((taken_at + ttl + Duration::from_millis(300)).into()).await;
    let taken_over = b.take(&client, lane, 64, &[]).await.expect("take over");
    assert_eq!(taken_over.len(), PARTITIONS as usize);
    assert!(taken_over.iter().all(|l| l.token >= 2), "new tokens");
    assert!(
        !a.renew(&client, &mut held[1]).await.expect("renew"),
        "the old holder learns it lost the partition"
    );
    assert!(
        !advance(&client, &held[1], 7, 100).await.expect("advance"),
        "the old holder's cursor write is fenced off"
    );
    let partition = held[1].partition;
    let new = taken_over
        .iter()
        .find(|l| l.partition == partition)
        .expect("the same partition");
    assert!(advance(&client, new, 7, 100).await.expect("advance"));
    let cursor: i64 = client
        .query_one(
            "SELECT done_seq FROM partitions WHERE lane = $1 AND partition = $2",
            &[&lane, &partition],
        )
        .await
        .expect("cursor")
        .get(0);
    assert_eq!(cursor, 100);
}

/// Three nodes taking at the same moment, many times over: a partition never has two holders.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_taking_at_once_never_share_a_partition() {
    let pg = PgCluster::start();
    let url = pg.url("postgres");
    let (client, lane) = one_lane(&pg).await;
    for round in 0..20 {
        client
            .execute(
                "UPDATE partitions SET owner = NULL, expires_at = '-infinity'",
                &[],
            )
            .await
            .expect("free them all");
        let mut nodes = Vec::new();
        for n in 0..3 {
            let url = url.clone();
            nodes.push(tokio::spawn(async move {
                let client = connect(&url).await.expect("connect");
                let leases = Leases::new(format!("node-{n}"), Duration::from_secs(30));
                leases.take(&client, lane, 8, &[]).await.expect("take")
            }));
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        for node in nodes {
            for lease in node.await.expect("node") {
                total += 1;
                assert!(
                    seen.insert(lease.partition),
                    "round {round}: partition {} held twice",
                    lease.partition
                );
            }
        }
        assert!(total <= PARTITIONS as usize);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_released_partition_is_taken_at_once() {
    let pg = PgCluster::start();
    let (client, lane) = one_lane(&pg).await;
    let (a, b) = (
        Leases::new("node-a", Duration::from_secs(60)),
        Leases::new("node-b", Duration::from_secs(60)),
    );
    let mut held = a.take(&client, lane, 1, &[]).await.expect("take");
    let lease = held.pop().expect("one");
    let partition = lease.partition;
    a.release(&client, lease).await.expect("release");
    let next = b.take(&client, lane, 1, &[]).await.expect("take");
    assert_eq!(next.len(), 1);
    assert_eq!(next[0].partition, partition);
}

/// A group that commits late must not be skipped: with one transaction still open (its rows
/// numbered first), a later group's rows are not read yet — a cursor moved past them would
/// never come back for the earlier ones. Once it commits, both are read, in (xid, seq) order.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_never_passes_a_transaction_still_in_flight() {
    let pg = PgCluster::start();
    let url = pg.url("postgres");
    let (mut client, lane) = one_lane(&pg).await;
    let leases = Leases::new("node-a", Duration::from_secs(60));
    let lease = leases
        .take(&client, lane, 64, &[])
        .await
        .expect("take")
        .into_iter()
        .find(|l| l.partition == 0)
        .expect("partition 0");
    let message: i64 = client
        .query_one("SELECT seq FROM messages", &[])
        .await
        .expect("the message")
        .get(0);
    let insert = "INSERT INTO deliveries (lane, partition, message, part, order_key) \
                  VALUES ($1, 0, $2, 0, $3)";
    // The slow one: open, its row inserted (an xid and a seq taken), not committed — for as
    // long as the test needs (the store's sessions end an idle transaction after a second).
    client
        .batch_execute("SET idle_in_transaction_session_timeout = 0")
        .await
        .expect("no idle timeout");
    let slow = client.transaction().await.expect("begin");
    slow.execute(insert, &[&lane, &message, &"slow"])
        .await
        .expect("insert");
    // The fast one, on another connection: inserted and committed after it.
    let other = connect(&url).await.expect("connect");
    other
        .execute(insert, &[&lane, &message, &"fast"])
        .await
        .expect("insert and commit");
    let reader = connect(&url).await.expect("connect");
    let first = read_log(&reader, &lease, (0, 0), 100).await.expect("read");
    assert!(
        first.iter().all(|r| r.order_key != "fast"),
        "read past a transaction still open: {first:?}"
    );
    slow.commit().await.expect("commit the slow one");
    let after = first.last().map_or((0, 0), |r| (r.xid, r.seq));
    let keys: Vec<String> = read_log(&reader, &lease, after, 100)
        .await
        .expect("read")
        .into_iter()
        .map(|r| r.order_key)
        .collect();
    assert_eq!(
        keys,
        ["slow", "fast"],
        "both, in the order their transactions began"
    );
}

/// A node cut off from the database in the middle of a transaction (a settle locks its
/// partition's row first) leaves that transaction open on the server, holding the row lock
/// and the cluster's `xmin`: the database must end it by itself, or no other node could ever
/// take the partition (the take skips locked rows) and nobody's later deliveries would be read.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_transaction_left_open_by_a_vanished_node_does_not_hold_its_partition_for_ever() {
    let pg = PgCluster::start();
    let (_, lane) = one_lane(&pg).await;
    let url = pg.url("postgres");
    let ttl = Duration::from_secs(2);
    let (a, b) = (Leases::new("node-a", ttl), Leases::new("node-b", ttl));
    let mut stranded = connect(&url).await.expect("connect");
    let held = a.take(&stranded, lane, 64, &[]).await.expect("take");
    assert_eq!(held.len(), PARTITIONS as usize);
    // node-a's settle has locked partition 0's row, and then node-a is heard from no more:
    // the transaction stays open, its client alive but silent.
    let tx = stranded.transaction().await.expect("begin");
    tx.query(
        "SELECT 1 FROM partitions WHERE lane = $1 AND partition = 0 FOR UPDATE",
        &[&lane],
    )
    .await
    .expect("lock");
    let other = connect(&url).await.expect("connect");
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut got = Vec::new();
    while got.len() < PARTITIONS as usize && Instant::now() < deadline {
        let mine: Vec<i16> = got
            .iter()
            .map(|l: &wyvern_store_pg::Lease| l.partition)
            .collect();
        got.extend(b.take(&other, lane, 64, &mine).await.expect("take"));
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(
        got.iter().any(|l| l.partition == 0),
        "node-b never got partition 0: the vanished node's transaction still holds it (got {:?})",
        got.iter().map(|l| l.partition).collect::<Vec<_>>()
    );
    drop(tx);
}
