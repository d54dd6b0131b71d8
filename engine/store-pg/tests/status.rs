//! What `wyvern cluster status` reads: a node's heartbeat keeps it heard from; one that has
//! not been heard from shows how long it has been silent.

use std::time::{Duration, Instant};

use wyvern_store_pg::{HEARTBEAT, PgShared, cluster_status, connect};
use wyvern_testpg::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_is_heard_from_while_it_runs_and_silent_once_it_stops() {
    let pg = PgCluster::start();
    let url = pg.url("postgres");
    let node = PgShared::open(&url, "node-a", Duration::from_secs(10))
        .await
        .expect("open");
    let client = connect(&url).await.expect("connect");
    // As if it had last been heard from a minute ago: a heartbeat brings it back (the first,
    // sent at start, may land just after this; either way one moved it).
    age(&client).await;
    let silent = |s: &wyvern_store_pg::ClusterStatus| s.nodes[0].silent_secs;
    let deadline = Instant::now() + HEARTBEAT * 3;
    loop {
        let s = cluster_status(&client).await.expect("status");
        if silent(&s) < 60 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no heartbeat in {:?}",
            HEARTBEAT * 3
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // Stopped: nothing moves it any more (a beat already sent lands within the pause).
    drop(node);
    tokio::time::sleep(Duration::from_millis(500)).await;
    age(&client).await;
    tokio::time::sleep(HEARTBEAT + Duration::from_secs(1)).await;
    assert!(silent(&cluster_status(&client).await.expect("status")) >= 60);
}

/// As if every node had last been heard from a minute ago.
async fn age(client: &tokio_postgres::Client) {
    client
        .execute(
            "UPDATE nodes SET seen_at = now() - interval '60 seconds'",
            &[],
        )
        .await
        .expect("age it");
}
