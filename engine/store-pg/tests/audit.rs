//! The cluster's audit log: nodes appending at the same moment make one sound chain, and an
//! edited record is found.

#[allow(dead_code)] // the records: this test needs only a database
mod support;

use wyvern_store::{AuditAction, AuditBreak, AuditEntry, AuditTrail, verify_trail};
use wyvern_store_pg::PgAudit;
use wyvern_testpg::PgCluster;

fn entry(n: usize) -> AuditEntry {
    AuditEntry {
        at_ms: 1_795_617_000_000 + n as i64,
        actor: format!("token:operator-{}", n % 3),
        action: AuditAction::View,
        message_id: Some(format!("M{n}")),
        nhs_number: Some("9990000018".into()),
        from: Some("127.0.0.1".into()),
        detail: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_appending_together_make_one_chain_and_an_edit_is_found() {
    let pg = PgCluster::start();
    let (url, client) = support::database(&pg).await;
    let mut appending = Vec::new();
    for node in ["node-a", "node-b", "node-c"] {
        let trail = PgAudit::new(&url, Some(node.into()));
        appending.push(tokio::spawn(async move {
            for n in 0..40 {
                trail.append(entry(n)).await.expect("append");
            }
        }));
    }
    for a in appending {
        a.await.expect("appender");
    }
    let reader = PgAudit::new(&url, None);
    let head = verify_trail(&reader)
        .await
        .expect("read")
        .expect("a sound chain");
    assert_eq!(head.records, 120);

    client
        .execute(
            "UPDATE audit SET actor = 'token:someone-else' WHERE seq = 57",
            &[],
        )
        .await
        .expect("edit");
    assert_eq!(
        verify_trail(&reader).await.expect("read"),
        Err(AuditBreak::Edited { seq: 57 })
    );
}
