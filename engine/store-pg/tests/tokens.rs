//! The operator API's tokens on the shared store: found by their secret (never stored), names
//! unique, revoked for every node at once.

#[allow(dead_code)] // the records: this test needs only a database
mod support;

use wyvern_store::{TokenRole, TokenStore};
use wyvern_store_pg::PgTokens;
use wyvern_testpg::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_token_made_on_one_node_is_found_and_revoked_on_another() {
    let pg = PgCluster::start();
    let (url, client) = support::database(&pg).await;
    let (a, b) = (PgTokens::new(&url), PgTokens::new(&url));
    let secret = "wyv_secret1".to_string();
    assert!(
        a.add("alice".into(), TokenRole::Operator, secret.clone(), 1)
            .await
            .unwrap()
    );
    assert!(
        !b.add("alice".into(), TokenRole::Admin, "wyv_other".into(), 2)
            .await
            .unwrap(),
        "names are unique across the cluster"
    );
    let found = b.find(secret.clone()).await.unwrap().expect("found on b");
    assert_eq!(
        (found.name.as_str(), found.role),
        ("alice", TokenRole::Operator)
    );
    assert!(b.find("wyv_wrong".into()).await.unwrap().is_none());
    assert_eq!(a.list().await.unwrap().len(), 1);
    let kept: i64 = client
        .query_one(
            "SELECT count(*) FROM api_tokens WHERE hash = $1",
            &[&secret.as_bytes()],
        )
        .await
        .unwrap()
        .get(0);
    assert_eq!(kept, 0, "the secret itself is never stored");
    assert!(b.revoke("alice".into()).await.unwrap());
    assert!(
        a.find(secret).await.unwrap().is_none(),
        "revoked everywhere"
    );
}
