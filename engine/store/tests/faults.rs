//! The store on a disk that misbehaves (faultfs: FUSE between the store and a real folder):
//! a failed fsync of the index ("fsyncgate"), a failed journal write or fdatasync, a full disk.
//! Each commit's answer is checked against what the store holds afterwards: nothing answered Ok
//! is lost, nothing answered Err comes back, and the store goes on once the disk does.

mod support;

use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use wyvern_faultfs::FaultFs;
use wyvern_store::{InboxReader, InboxStatus, Store, StoreOptions};

fn record(n: usize) -> wyvern_store::InboxRecord {
    let raw = format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\rPID|1||{n}^^^RX1^MR\r");
    support::record(n, InboxStatus::Accepted, raw)
}

/// Small segments, so a few hundred records rotate the journal several times.
fn options(dir: &Path) -> StoreOptions {
    let mut opts = StoreOptions::new(dir);
    opts.segment_bytes = 32 << 10;
    opts
}

async fn wait_indexed(store: &Store, n: u64) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while store.stats().indexed.load(Ordering::Relaxed) < n {
        assert!(Instant::now() < deadline, "index stuck");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Records the journal holds now (every segment, read as recovery would).
fn journalled(dir: &Path) -> usize {
    wyvern_store::check(dir)
        .expect("check")
        .segments
        .iter()
        .map(|s| s.records)
        .sum()
}

fn stored_ids(dir: &Path) -> Vec<String> {
    InboxReader::open(dir)
        .expect("reader")
        .control_ids(InboxStatus::Accepted)
        .expect("ids")
}

/// PostgreSQL's 2018 lesson: after a failed fsync, the kernel may have dropped the pages it
/// could not write, and the next fsync succeeds. The checkpoint used to retry, believe the
/// second fsync and delete the journal segments — the only durable copy of those rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_failed_index_fsync_the_journal_is_kept_and_replayed() {
    let fs = FaultFs::mount();
    let dir = fs.mount.join("store");
    let store = Store::open(options(&dir)).unwrap();
    for n in 0..300 {
        store.commit(record(n)).await.unwrap();
    }
    wait_indexed(&store, 300).await;
    // Normally the checkpoint deletes indexed segments within a few ticks.
    let deadline = Instant::now() + Duration::from_secs(10);
    while journalled(&dir) > 150 {
        assert!(
            Instant::now() < deadline,
            "indexed segments were not deleted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    fs.control("fail-fsync wyvern.db-wal 1");
    for n in 300..600 {
        store.commit(record(n)).await.unwrap();
    }
    wait_indexed(&store, 600).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        journalled(&dir) >= 300,
        "segments written after the failed fsync were deleted: the journal holds {}",
        journalled(&dir)
    );
    store.close().await;
    drop(store);
    assert!(journalled(&dir) >= 300, "a clean close emptied the journal");

    let store = Store::open(options(&dir)).unwrap();
    assert!(store.recovered().records >= 300, "{:?}", store.recovered());
    store.close().await;
    drop(store);
    assert_eq!(stored_ids(&dir).len(), 600);
    assert_eq!(journalled(&dir), 0, "a sound run empties it again");
}

/// A journal write or fdatasync that fails is answered Err (the sender gets AE and resends);
/// its record must not come back at the next start as if it had been stored, and the commits
/// after it go to a new segment and succeed.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failed_journal_write_or_sync_is_refused_and_never_replayed() {
    let fs = FaultFs::mount();
    let dir = fs.mount.join("store");
    let store = Store::open(options(&dir)).unwrap();
    let mut ok = Vec::new();
    let mut failed = Vec::new();
    for n in 0..60 {
        match n {
            20 => fs.control("fail-write .journal 1"),
            40 => fs.control("fail-fsync .journal 1"),
            _ => String::new(),
        };
        match store.commit(record(n)).await {
            Ok(()) => ok.push(format!("C{n}")),
            Err(_) => failed.push(format!("C{n}")),
        }
    }
    assert_eq!(failed, ["C20", "C40"]);
    wait_indexed(&store, ok.len() as u64).await;
    // Killed now, the index not yet checkpointed: the next start replays the journal.
    let crashed = tempfile::tempdir().unwrap();
    support::snapshot(&dir, crashed.path());
    store.close().await;
    std::fs::remove_file(crashed.path().join("wyvern.db")).unwrap();
    for side in ["wyvern.db-wal", "wyvern.db-shm"] {
        let _ = std::fs::remove_file(crashed.path().join(side));
    }
    let store = Store::open(StoreOptions::new(crashed.path())).unwrap();
    let r = store.recovered();
    store.close().await;
    drop(store);
    let mut stored = stored_ids(crashed.path());
    stored.sort();
    ok.sort();
    assert_eq!(stored, ok, "{r:?}");
}

/// A full disk: commits fail (AE) once the journal needs space it cannot get, none of them
/// is stored, everything answered Ok is, and commits succeed again by themselves once there
/// is space — no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_commits_and_recovers_when_space_returns() {
    let fs = FaultFs::mount();
    let dir = fs.mount.join("store");
    let store = Store::open(options(&dir)).unwrap();
    let mut ok = Vec::new();
    let mut n = 0;
    for _ in 0..50 {
        store.commit(record(n)).await.unwrap();
        ok.push(format!("C{n}"));
        n += 1;
    }
    fs.control("full on");
    let mut refused = 0;
    while refused < 20 {
        assert!(n < 5_000, "a full disk never refused a commit");
        match tokio::time::timeout(Duration::from_secs(30), store.commit(record(n))).await {
            Ok(Ok(())) => ok.push(format!("C{n}")),
            Ok(Err(_)) => refused += 1,
            Err(_) => panic!("a commit hung on a full disk"),
        }
        n += 1;
    }
    fs.control("full off");
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut after = 0;
    while after < 50 {
        assert!(
            Instant::now() < deadline,
            "the store did not recover once space returned"
        );
        if store.commit(record(n)).await.is_ok() {
            ok.push(format!("C{n}"));
            after += 1;
        }
        n += 1;
    }
    wait_indexed(&store, ok.len() as u64).await;
    store.close().await;
    drop(store);
    let mut stored = stored_ids(&dir);
    stored.sort();
    ok.sort();
    assert_eq!(stored.len(), ok.len());
    assert_eq!(stored, ok);
}
