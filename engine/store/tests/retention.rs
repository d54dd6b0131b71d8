//! Retention against an unclean stop: a message pruned from the index must not come back when
//! the journal is replayed at the next start.

mod support;

use std::sync::atomic::Ordering;
use std::time::Duration;

use wyvern_store::{InboxReader, InboxStatus, Store, StoreOptions};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pruned_message_never_comes_back_after_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    for n in 0..50 {
        let raw = format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\r");
        store
            .commit(support::record(n, InboxStatus::Accepted, raw))
            .await
            .unwrap();
    }
    while store.stats().indexed.load(Ordering::Relaxed) < 50 {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Every message is finished (no deliveries) and older than the cut-off.
    let far_future = i64::MAX / 2;
    let pruned = store.prune(far_future).await.unwrap();
    assert_eq!(pruned.messages, 50);

    let crashed = tempfile::tempdir().unwrap();
    support::snapshot(dir.path(), crashed.path());
    let reopened = Store::open(StoreOptions::new(crashed.path())).unwrap();
    let back = reopened.recovered().added;
    reopened.close().await;
    let reader = InboxReader::open(crashed.path()).unwrap();
    assert_eq!(
        (
            back,
            reader.control_ids(InboxStatus::Accepted).unwrap().len()
        ),
        (0, 0),
        "pruned messages came back from the journal"
    );
    store.close().await;
}
