//! The store at its boundary: records in, rows out, across reopen, from concurrent submitters.

mod support;

use wyvern_store::{
    Durability, InboxQuery, InboxReader, InboxRecord, InboxStatus, Store, StoreError, StoreOptions,
};

fn record(n: usize, status: InboxStatus) -> InboxRecord {
    support::record(
        n,
        status,
        format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\r"),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_commits_are_all_stored_and_searchable() {
    let dir = tempfile::tempdir().unwrap();
    let store = Store::open(StoreOptions::new(dir.path())).unwrap();
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = store.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..100 {
                let n = t * 100 + i;
                let status = if n % 10 == 0 {
                    InboxStatus::Rejected
                } else {
                    InboxStatus::Accepted
                };
                s.commit(record(n, status)).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    let stats = store.stats();
    let commits = stats.commits.load(std::sync::atomic::Ordering::Relaxed);
    assert_eq!(
        stats.records.load(std::sync::atomic::Ordering::Relaxed),
        800
    );
    assert!(commits <= 800);
    store.close().await;
    assert!(matches!(
        store.commit(record(9999, InboxStatus::Accepted)).await,
        Err(StoreError::Closed)
    ));

    let r = InboxReader::open(dir.path()).unwrap();
    let counts = r.counts().unwrap();
    assert_eq!(
        counts
            .iter()
            .map(|c| (c.status.as_str(), c.count))
            .collect::<Vec<_>>(),
        [("accepted", 720), ("rejected", 80)]
    );
    let hits = r
        .list(&InboxQuery {
            control_id: Some("C42".into()),
            ..Default::default()
        })
        .unwrap();
    assert_eq!(hits.len(), 1);
    let full = r.get(&hits[0].id).unwrap().unwrap();
    assert_eq!(
        full.raw.unwrap(),
        b"MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C42|P|2.4\r"
    );
    assert_eq!(r.get(&full.seq.to_string()).unwrap().unwrap().id, full.id);
    let nhs = r
        .list(&InboxQuery {
            nhs_number: Some("9990000018".into()),
            limit: 1000,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(nhs.len(), 400);
    let rejected = r
        .list(&InboxQuery {
            status: Some(InboxStatus::Rejected),
            limit: 5,
            ..Default::default()
        })
        .unwrap();
    assert_eq!(rejected.len(), 5);
    assert!(rejected.windows(2).all(|w| w[0].seq > w[1].seq));
}

#[tokio::test]
async fn one_engine_per_store_and_reopen_keeps_rows() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path());
    opts.durability = Durability::Buffered;
    let store = Store::open(opts.clone()).unwrap();
    assert!(matches!(
        Store::open(opts.clone()),
        Err(StoreError::Locked { .. })
    ));
    store
        .commit(record(1, InboxStatus::Accepted))
        .await
        .unwrap();
    store.close().await;
    drop(store);
    let store = Store::open(opts).unwrap();
    store
        .commit(record(2, InboxStatus::Accepted))
        .await
        .unwrap();
    store.close().await;
    assert_eq!(
        InboxReader::open(dir.path())
            .unwrap()
            .control_ids(InboxStatus::Accepted)
            .unwrap(),
        ["C1", "C2"]
    );
}

#[test]
fn reader_on_missing_store_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let e = InboxReader::open(&dir.path().join("nope")).unwrap_err();
    assert!(e.to_string().contains("does not exist"), "{e}");
}

/// Issue 11 item 8: the store's queue was bounded in records only (8,192 of up to 8 MiB each).
/// Now what waits for the journal and the index is bounded in bytes too, and a record larger
/// than the whole budget still goes, alone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_waits_for_the_store_is_bounded_in_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let mut opts = StoreOptions::new(dir.path());
    opts.queue_bytes = 1 << 20;
    let store = Store::open(opts).unwrap();
    let most = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let watcher = {
        let (store, most) = (store.clone(), most.clone());
        tokio::spawn(async move {
            loop {
                most.fetch_max(store.queued_bytes(), std::sync::atomic::Ordering::Relaxed);
                tokio::task::yield_now().await;
            }
        })
    };
    let body = "X".repeat(200 << 10);
    let commits: Vec<_> = (0..40)
        .map(|n| {
            let store = store.clone();
            let raw = format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\rNTE|1||{body}\r");
            tokio::spawn(async move {
                store
                    .commit(support::record(n, InboxStatus::Accepted, raw))
                    .await
            })
        })
        .collect();
    for c in commits {
        c.await.unwrap().unwrap();
    }
    let huge = format!(
        "MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C99|P|2.4\rNTE|1||{}\r",
        "Y".repeat(3 << 20)
    );
    store
        .commit(support::record(99, InboxStatus::Accepted, huge))
        .await
        .unwrap();
    watcher.abort();
    let most = most.load(std::sync::atomic::Ordering::Relaxed);
    assert!(
        most > 0 && most <= 1 << 20,
        "at most the budget waited: {most} bytes"
    );
    store.close().await;
    assert_eq!(
        store
            .stats()
            .records
            .load(std::sync::atomic::Ordering::Relaxed),
        41
    );
}
