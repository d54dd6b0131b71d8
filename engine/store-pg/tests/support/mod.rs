//! Records and databases for the PostgreSQL store's tests and benchmark: the embedded store's
//! synthetic records, with a sender's control ids and one delivery each.

use bytes::Bytes;
use wyvern_store::{Delivery, InboxRecord, InboxStatus};

#[path = "../../../store/tests/support/mod.rs"]
mod embedded;

/// Message `n` of `sender`: control id `S{sender}-{n}`, delivered to `adt`/`chie` under the
/// ordering key `key`.
pub fn record(sender: usize, n: usize, key: String) -> InboxRecord {
    let raw =
        wyvern_hl7::synthetic::adt_a01(&format!("S{sender}-{n}"), (sender * 100_000 + n) as u64);
    let mut r = embedded::record(n, InboxStatus::Accepted, raw);
    r.envelope.meta.source = "adt".into();
    r.envelope.meta.control_id = Some(format!("S{sender}-{n}"));
    r.ack = Some(Bytes::from_static(b"MSA|AA"));
    r.deliveries = vec![Delivery {
        route: "adt".into(),
        destination: "chie".into(),
        order_key: key,
        payload: None,
        content_type: None,
    }];
    r
}

/// A migrated database on `pg`: its URL and a connection to it.
#[allow(dead_code)] // the benchmark makes its own databases
pub async fn database(pg: &wyvern_testpg::PgCluster) -> (String, tokio_postgres::Client) {
    let url = pg.url("postgres");
    let mut client = wyvern_store_pg::connect(&url).await.expect("connect");
    wyvern_store_pg::migrate(&mut client)
        .await
        .expect("migrate");
    (url, client)
}
