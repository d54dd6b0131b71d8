//! Search by NHS number finds every message carrying it, whether its entry still waits to be
//! merged into the index or already is, and retention takes the entry with the message.

mod support;

use std::time::{Duration, Instant};

use wyvern_store::{InboxQuery, InboxReader, InboxRecord, InboxStatus, Store, StoreOptions};

const A: &str = "9990000018";
const B: &str = "9990000026";

fn record(n: usize, nhs: &str) -> InboxRecord {
    let mut r = support::record(
        n,
        InboxStatus::Accepted,
        format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\r"),
    );
    r.envelope.meta.nhs_number = Some(nhs.into());
    r
}

/// Control ids of the messages found for `nhs`, oldest first.
fn found(dir: &std::path::Path, nhs: &str) -> Vec<String> {
    let rows = InboxReader::open(dir)
        .expect("reader")
        .list(&InboxQuery {
            nhs_number: Some(nhs.into()),
            ..InboxQuery::default()
        })
        .expect("list");
    let mut ids: Vec<String> = rows.into_iter().filter_map(|r| r.control_id).collect();
    ids.reverse();
    ids
}

fn count(dir: &std::path::Path, table: &str) -> i64 {
    rusqlite::Connection::open(dir.join(wyvern_store::DB_FILE))
        .expect("db")
        .query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
        .expect("count")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_search_finds_entries_pending_and_merged_and_retention_removes_them() {
    let dir = tempfile::tempdir().expect("dir");
    let store = Store::open(StoreOptions::new(dir.path())).expect("store");
    for (n, nhs) in [(1, A), (2, B), (3, A)] {
        store.commit(record(n, nhs)).await.expect("commit");
    }
    support::indexed(&store, 3).await;
    assert_eq!(count(dir.path(), "nhs_pending"), 3, "not merged yet");
    assert_eq!(found(dir.path(), A), ["C1", "C3"]);
    assert_eq!(found(dir.path(), B), ["C2"]);

    // Idle, the index thread merges what waits.
    let until = Instant::now() + Duration::from_secs(20);
    while count(dir.path(), "nhs_pending") > 0 {
        assert!(Instant::now() < until, "merged within 20 s of idling");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(count(dir.path(), "nhs_index"), 3);
    store.commit(record(4, A)).await.expect("commit");
    support::indexed(&store, 4).await;
    assert_eq!(
        found(dir.path(), A),
        ["C1", "C3", "C4"],
        "two merged, one pending: both read"
    );

    let pruned = store.prune(i64::MAX).await.expect("prune");
    assert_eq!(pruned.messages, 4);
    assert_eq!(found(dir.path(), A), Vec::<String>::new());
    assert_eq!(
        count(dir.path(), "nhs_index") + count(dir.path(), "nhs_pending"),
        0
    );
    store.close().await;
}
