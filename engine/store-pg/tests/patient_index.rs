//! The regional patient index on the shared store: found from the messages while they are
//! kept, kept past retention, and merges (MRG-1) giving the survivor the lanes of the patients
//! merged away, however many merges back — before and after the merge messages are pruned.

mod support;

use wyvern_store::{Delivery, Operations};
use wyvern_store_pg::{CommitOptions, PgCommitter, PgOperations};
use wyvern_testpg::PgCluster;

const A: &str = "9990000018";
const B: &str = "9990000026";
const C: &str = "9990000034";

fn about(n: usize, nhs: &str, dest: &str, merged: Option<&str>) -> wyvern_store::InboxRecord {
    let mut r = support::record(1, n, nhs.into());
    r.envelope.meta.nhs_number = Some(nhs.into());
    r.envelope.meta.merged_nhs_number = merged.map(str::to_string);
    r.deliveries = vec![Delivery {
        route: "adt".into(),
        destination: dest.into(),
        order_key: nhs.into(),
        payload: None,
        content_type: None,
    }];
    r
}

async fn lanes(ops: &PgOperations, nhs: &str) -> Vec<String> {
    ops.lanes_of(nhs.into())
        .await
        .expect("lanes")
        .into_iter()
        .map(|(r, d)| format!("{r}/{d}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lanes_are_found_kept_past_retention_and_follow_a_merge() {
    let pg = PgCluster::start();
    let (url, client) = support::database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(&url, "node-a"))
        .await
        .expect("start");
    committer
        .commit(about(1, B, "dcr", None))
        .await
        .expect("commit");
    // A40 through CHIE's feed: A survives, B is merged into it.
    committer
        .commit(about(2, A, "chie", Some(B)))
        .await
        .expect("commit");
    // And A into C, through a third feed: C is found with all three, however many merges back.
    committer
        .commit(about(3, C, "gp", Some(A)))
        .await
        .expect("commit");
    let ops = PgOperations::new(&url);
    assert_eq!(lanes(&ops, A).await, ["adt/chie", "adt/dcr"]);
    assert_eq!(lanes(&ops, B).await, ["adt/dcr"]);
    assert_eq!(lanes(&ops, C).await, ["adt/chie", "adt/dcr", "adt/gp"]);

    // Everything delivered and past retention: the messages go, the index stays.
    client
        .batch_execute(
            "UPDATE partitions p SET done_xid = d.xid, done_seq = d.seq + 1 \
             FROM deliveries d WHERE p.lane = d.lane AND p.partition = d.partition",
        )
        .await
        .expect("settle");
    let pruned = wyvern_store_pg::prune(&client, i64::MAX, 100)
        .await
        .expect("prune");
    assert_eq!(pruned.messages, 3);
    assert_eq!(
        lanes(&ops, A).await,
        ["adt/chie", "adt/dcr"],
        "past retention"
    );
    assert_eq!(lanes(&ops, B).await, ["adt/dcr"]);
    assert_eq!(lanes(&ops, C).await, ["adt/chie", "adt/dcr", "adt/gp"]);
}
