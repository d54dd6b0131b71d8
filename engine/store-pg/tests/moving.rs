//! `wyvern store migrate`'s import into the shared store: a message the store holds as a
//! resend of another (same route, sender, control id and bytes, another id) still arrives
//! with its delivery — the embedded store kept both copies, and both were acknowledged.

mod support;

use wyvern_store::{MoveBatch, MovingDelivery, MovingMessage};
use wyvern_store_pg::{CommitOptions, PgCommitter};
use wyvern_testpg::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_copy_the_store_holds_as_a_resend_is_imported_not_dropped() {
    let pg = PgCluster::start();
    let (url, mut client) = support::database(&pg).await;
    let committer = PgCommitter::start(CommitOptions::new(&url, "node-a"))
        .await
        .expect("start");
    let original = support::record(1, 1, "key-1".into());
    committer.commit(original.clone()).await.expect("commit");
    let e = &original.envelope;
    let copy = MovingMessage {
        id: "01COPYOFTHEORIGINAL0000000".into(),
        received_at_ms: e.received_at_ms,
        source: e.meta.source.clone(),
        peer: None,
        content_type: "hl7v2".into(),
        status: "accepted".into(),
        sending_app: e.meta.sending_application.clone(),
        sending_facility: e.meta.sending_facility.clone(),
        message_type: None,
        control_id: e.meta.control_id.clone(),
        nhs_number: None,
        error: None,
        ack: None,
        raw_len: e.raw.len() as i64,
        raw: e.raw.to_vec(),
        digest: wyvern_core::content_digest(&e.raw),
    };
    let delivery = MovingDelivery {
        message: 0,
        route: "adt".into(),
        destination: "chie".into(),
        part: 0,
        order_key: "key-1".into(),
        payload: None,
        content_type: None,
    };
    let batch = MoveBatch {
        messages: vec![copy.clone(), copy],
        deliveries: vec![delivery],
    };
    let imported = wyvern_store_pg::moving::import(&mut client, &batch)
        .await
        .expect("import");
    assert_eq!(
        (imported.messages, imported.deliveries),
        (1, 1),
        "not dropped"
    );
    let again = wyvern_store_pg::moving::import(&mut client, &batch)
        .await
        .expect("import again");
    assert_eq!(
        (again.messages, again.deliveries),
        (0, 0),
        "a re-run adds nothing"
    );
}
