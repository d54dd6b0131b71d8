//! The audit log's chain: appended by several writers in order, and any edit, deletion or
//! reordering found by `verify_audit`.

use std::path::Path;

use wyvern_store::{
    AuditAction, AuditBreak, AuditEntry, AuditLog, Store, StoreOptions, verify_audit,
};

fn entry(n: i64) -> AuditEntry {
    AuditEntry {
        at_ms: 1_795_617_000_000 + n,
        actor: "local:alex".into(),
        action: AuditAction::View,
        message_id: Some(format!("M{n}")),
        nhs_number: Some("9990000018".into()),
        from: Some("cli".into()),
        detail: None,
    }
}

async fn store_with_audit(dir: &Path, n: i64) {
    let store = Store::open(StoreOptions::new(dir)).expect("store");
    store.close().await;
    drop(store);
    let mut log = AuditLog::open(dir).expect("audit log");
    for i in 1..=n {
        assert_eq!(log.append(&entry(i)).expect("append"), i);
    }
}

fn sql(dir: &Path, statement: &str) {
    rusqlite::Connection::open(dir.join("wyvern.db"))
        .expect("db")
        .execute_batch(statement)
        .expect("sql");
}

#[tokio::test]
async fn a_sound_chain_verifies_and_any_tampering_is_named() {
    let dir = tempfile::tempdir().unwrap();
    store_with_audit(dir.path(), 5).await;
    let head = verify_audit(dir.path()).unwrap().unwrap();
    assert_eq!((head.records, head.last_seq), (5, 5));

    sql(
        dir.path(),
        "UPDATE audit SET nhs_number = '9990000026' WHERE seq = 3",
    );
    assert_eq!(
        verify_audit(dir.path()).unwrap(),
        Err(AuditBreak::Edited { seq: 3 })
    );

    let dir = tempfile::tempdir().unwrap();
    store_with_audit(dir.path(), 5).await;
    sql(dir.path(), "DELETE FROM audit WHERE seq = 3");
    assert_eq!(
        verify_audit(dir.path()).unwrap(),
        Err(AuditBreak::Unlinked { seq: 4, before: 2 })
    );

    let dir = tempfile::tempdir().unwrap();
    store_with_audit(dir.path(), 5).await;
    sql(
        dir.path(),
        "UPDATE audit SET seq = 100 WHERE seq = 2; UPDATE audit SET seq = 2 WHERE seq = 4; UPDATE audit SET seq = 4 WHERE seq = 100;",
    );
    assert_eq!(
        verify_audit(dir.path()).unwrap(),
        Err(AuditBreak::Unlinked { seq: 2, before: 1 })
    );

    // Rewriting a record *and* its hash still breaks the link to the next one.
    let dir = tempfile::tempdir().unwrap();
    store_with_audit(dir.path(), 5).await;
    sql(
        dir.path(),
        "UPDATE audit SET hash = zeroblob(32) WHERE seq = 2",
    );
    assert!(verify_audit(dir.path()).unwrap().is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn writers_in_parallel_chain_in_order() {
    let dir = tempfile::tempdir().unwrap();
    store_with_audit(dir.path(), 0).await;
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let dir = dir.path().to_path_buf();
            std::thread::spawn(move || {
                let mut log = AuditLog::open(&dir).unwrap();
                for i in 0..25 {
                    log.append(&entry(t * 100 + i)).unwrap();
                }
            })
        })
        .collect();
    for t in threads {
        t.join().unwrap();
    }
    assert_eq!(verify_audit(dir.path()).unwrap().unwrap().records, 100);
}
