//! Migrations against a real PostgreSQL (a throwaway cluster): nodes starting together
//! migrate once; a node refuses a schema newer than it knows; an unreachable database is named
//! without its password.

use wyvern_store_pg::{PgStoreError, SCHEMA_VERSION, connect, migrate};
use wyvern_testpg::PgCluster;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nodes_starting_together_migrate_once_and_a_newer_schema_is_refused() {
    let pg = PgCluster::start();
    let url = pg.url("postgres");
    let mut nodes = Vec::new();
    for _ in 0..3 {
        let url = url.clone();
        nodes.push(tokio::spawn(async move {
            let mut client = connect(&url).await.expect("connect");
            migrate(&mut client).await.expect("migrate")
        }));
    }
    let mut from_empty = 0;
    for n in nodes {
        let m = n.await.expect("node");
        assert_eq!(m.to, SCHEMA_VERSION);
        if m.from == 0 {
            from_empty += 1;
        }
    }
    assert_eq!(from_empty, 1, "one node migrated, the others found it done");

    let mut client = connect(&url).await.expect("connect");
    let rows: i64 = client
        .query_one("SELECT count(*) FROM wyvern_schema", &[])
        .await
        .expect("count")
        .get(0);
    assert_eq!(rows, 1);
    client
        .execute(
            "UPDATE wyvern_schema SET version = $1",
            &[&(SCHEMA_VERSION + 1)],
        )
        .await
        .expect("pretend a newer build migrated");
    let err = migrate(&mut client).await.expect_err("refused");
    assert!(matches!(err, PgStoreError::SchemaTooNew { .. }), "{err}");
    assert!(!err.is_transient());
    assert!(err.to_string().contains("upgrade this node"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unreachable_database_is_named_without_its_password() {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port();
    let url = format!("postgresql://wyvern:s3cret@127.0.0.1:{port}/wyvern");
    let err = connect(&url).await.expect_err("nothing listens there");
    let text = err.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("s3cret"), "{text}");
    assert!(err.is_transient());
}
