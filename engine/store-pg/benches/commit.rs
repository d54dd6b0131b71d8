//! Group commit on PostgreSQL against the embedded store, in the same run: N senders, each
//! committing 1 KB ADT^A01 messages one at a time (stop-and-wait, as MLLP senders do), into
//! (a) the embedded store with `durability: fsync` and (b) `PgCommitter` on a throwaway cluster
//! (fsync and `synchronous_commit` on, PostgreSQL's defaults) on the same disk. Prints
//! messages per second and the ratio; the two cores are shared with PostgreSQL itself.
//!
//! Run: `cargo bench -p wyvern-store-pg --bench commit` (`-- --messages 4000` for more).

use std::time::Instant;

use wyvern_store::{InboxRecord, Store, StoreOptions};
use wyvern_store_pg::{CommitOptions, PgCommitter, connect, migrate};
use wyvern_testpg::PgCluster;

#[path = "../tests/support/mod.rs"]
mod support;

fn record(sender: usize, n: usize) -> InboxRecord {
    support::record(sender, n, format!("patient-{}", n % 97))
}

/// Runs `senders` stop-and-wait senders of `each` records through `commit`; msgs/s.
async fn rate<F, Fut>(senders: usize, each: usize, commit: F) -> f64
where
    F: Fn(InboxRecord) -> Fut + Clone + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let start = Instant::now();
    let mut tasks = Vec::new();
    for s in 0..senders {
        let commit = commit.clone();
        tasks.push(tokio::spawn(async move {
            for n in 0..each {
                commit(record(s, n)).await;
            }
        }));
    }
    for t in tasks {
        t.await.expect("sender");
    }
    (senders * each) as f64 / start.elapsed().as_secs_f64()
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let messages: usize = args
        .iter()
        .position(|a| a == "--messages")
        .and_then(|i| args.get(i + 1)?.parse().ok())
        .unwrap_or(8000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let pg = PgCluster::start();
    println!(
        "| senders | embedded store (fsync) msgs/s | PostgreSQL msgs/s | PostgreSQL ÷ embedded |"
    );
    println!("|---:|---:|---:|---:|");
    for senders in [1usize, 16] {
        let each = (messages / senders)
            .max(1)
            .min(if senders == 1 { 2000 } else { usize::MAX });
        let dir = tempfile::Builder::new()
            .prefix("wyvern-bench-pg-")
            .tempdir_in(".")
            .expect("temp dir");
        let store = rt
            .block_on(async { Store::open(StoreOptions::new(dir.path())) })
            .expect("store");
        let s = store.clone();
        let embedded = rt.block_on(rate(senders, each, move |r| {
            let s = s.clone();
            async move { s.commit(r).await.expect("embedded commit") }
        }));
        rt.block_on(store.close());
        let database = format!("bench{senders}");
        let postgres = rt.block_on(async {
            let admin = connect(&pg.url("postgres")).await.expect("connect");
            admin
                .batch_execute(&format!("CREATE DATABASE {database}"))
                .await
                .expect("create database");
            let url = pg.url(&database);
            let mut client = connect(&url).await.expect("connect");
            migrate(&mut client).await.expect("migrate");
            let committer = PgCommitter::start(CommitOptions::new(url, "bench"))
                .await
                .expect("committer");
            rate(senders, each, move |r| {
                let c = committer.clone();
                async move {
                    c.commit(r).await.expect("PostgreSQL commit");
                }
            })
            .await
        });
        println!(
            "| {senders} | {embedded:.0} | {postgres:.0} | {:.2} |",
            postgres / embedded
        );
    }
}
