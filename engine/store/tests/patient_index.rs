//! The regional patient index: the lanes that carried a message about each NHS number, found
//! while the entry is pending and after the merge, kept past retention, and given to the
//! survivor of a merge (MRG-1).

mod support;

use std::time::{Duration, Instant};

use wyvern_store::{
    Delivery, DeliveryLog, InboxReader, InboxRecord, InboxStatus, Outbox, Settle, Store,
    StoreOptions, Update,
};

const A: &str = "9990000018";
const B: &str = "9990000026";
const C: &str = "9990000034";
const D: &str = "9990000042";

/// Message `n` about `nhs`, delivered to each of `lanes` (route "r").
fn record(n: usize, nhs: &str, lanes: &[&str]) -> InboxRecord {
    let mut r = support::record(
        n,
        InboxStatus::Accepted,
        format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\r"),
    );
    r.envelope.meta.nhs_number = Some(nhs.into());
    r.deliveries = lanes
        .iter()
        .map(|d| Delivery {
            route: "r".into(),
            destination: (*d).into(),
            order_key: nhs.into(),
            payload: None,
            content_type: None,
        })
        .collect();
    r
}

fn lanes(dir: &std::path::Path, nhs: &str) -> Vec<String> {
    InboxReader::open(dir)
        .expect("reader")
        .lanes_of(nhs)
        .expect("lanes")
        .into_iter()
        .map(|(route, dest)| format!("{route}/{dest}"))
        .collect()
}

fn pending(dir: &std::path::Path) -> i64 {
    rusqlite::Connection::open(dir.join(wyvern_store::DB_FILE))
        .expect("db")
        .query_row("SELECT count(*) FROM nhs_pending", [], |r| r.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_index_names_the_lanes_that_carried_each_patient_and_outlives_retention() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(StoreOptions::new(dir.path())).expect("store");
    store.commit(record(1, A, &["chie"])).await.expect("commit");
    store
        .commit(record(2, A, &["chie", "dcr"]))
        .await
        .expect("commit");
    store.commit(record(3, B, &["dcr"])).await.expect("commit");
    store.commit(record(4, C, &[])).await.expect("commit");
    support::indexed(&store, 4).await;
    assert_eq!(lanes(dir.path(), A), ["r/chie", "r/dcr"], "while pending");
    assert_eq!(lanes(dir.path(), B), ["r/dcr"]);
    assert_eq!(lanes(dir.path(), C), Vec::<String>::new(), "went nowhere");

    let until = Instant::now() + Duration::from_secs(20);
    while pending(dir.path()) > 0 {
        assert!(Instant::now() < until, "merged within 20 s of idling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(lanes(dir.path(), A), ["r/chie", "r/dcr"], "once merged");
    // Pruned before its entry is merged.
    store.commit(record(5, D, &["chie"])).await.expect("commit");
    support::indexed(&store, 5).await;

    // Every delivery made, every message past retention: pruned, and the index remains.
    store.close().await;
    drop(store);
    deliver_all(dir.path());
    let store = Store::open(StoreOptions::new(dir.path())).expect("reopen");
    let pruned = store.prune(i64::MAX / 2).await.expect("prune");
    assert_eq!(pruned.messages, 5);
    assert_eq!(lanes(dir.path(), A), ["r/chie", "r/dcr"], "past retention");
    assert_eq!(lanes(dir.path(), B), ["r/dcr"]);
    assert_eq!(lanes(dir.path(), D), ["r/chie"], "pruned while pending");
    store.close().await;
}

/// Records every waiting delivery of lanes r/chie and r/dcr as delivered.
fn deliver_all(dir: &std::path::Path) {
    let o = Outbox::open(dir).expect("outbox");
    for dest in ["chie", "dcr"] {
        let lane = o.lane("r", dest).expect("lane");
        let pass = o
            .next_pass(lane, i64::MAX / 4, 100, usize::MAX, false, None)
            .expect("pass");
        let settle = Settle {
            outcomes: pass
                .items
                .iter()
                .map(|i| (i.seq, i.order_key.clone(), Update::Delivered { at_ms: 1 }))
                .collect(),
            waiting: vec![],
            cursor: pass.to,
            lease: pass.lease,
        };
        o.settle(lane, &settle).expect("settled");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_merge_gives_the_survivor_the_lanes_of_the_patient_merged_away() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(StoreOptions::new(dir.path())).expect("store");
    store.commit(record(1, B, &["dcr"])).await.expect("commit");
    // A40 through CHIE's feed: A survives, B is merged into it.
    let mut merge = record(2, A, &["chie"]);
    merge.envelope.meta.merged_nhs_number = Some(B.into());
    store.commit(merge).await.expect("commit");
    // And A into C, through a third feed: C gets all three, however many merges back.
    let mut again = record(3, C, &["gp"]);
    again.envelope.meta.merged_nhs_number = Some(A.into());
    store.commit(again).await.expect("commit");
    support::indexed(&store, 3).await;
    assert_eq!(lanes(dir.path(), C), ["r/chie", "r/dcr", "r/gp"]);
    assert_eq!(lanes(dir.path(), A), ["r/chie", "r/dcr"]);
    assert_eq!(
        lanes(dir.path(), B),
        ["r/dcr"],
        "the old number keeps its own"
    );

    // Replayed from the journal after a restart (a copy of the files as a kill leaves
    // them), nothing changes.
    let crashed = tempfile::tempdir().expect("dir");
    support::snapshot(dir.path(), crashed.path());
    store.close().await;
    let store = Store::open(StoreOptions::new(crashed.path())).expect("reopen");
    assert_eq!(lanes(crashed.path(), A), ["r/chie", "r/dcr"]);
    store.close().await;
}
