//! The store alone: how long a commit takes for 1 and for 16 records of a ~1 KB ADT^A01,
//! buffered (the journal write only) and fsync (plus its fdatasync). Tells how much of an ACK's
//! latency is the store and how much is the network and the engine around it.
//!
//! Run: `cargo bench -p wyvern-store --bench commit`

use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use wyvern_store::{Durability, InboxRecord, InboxStatus, Store, StoreOptions};

#[path = "../tests/support/mod.rs"]
mod support;

fn record(n: u64) -> InboxRecord {
    let raw = wyvern_hl7::synthetic::adt_a01(&format!("C{n:08}"), n);
    support::record(n as usize, InboxStatus::Accepted, raw)
}

fn benches(c: &mut Criterion) {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let mut g = c.benchmark_group("store_commit");
    g.measurement_time(Duration::from_secs(5));
    for durability in [Durability::Buffered, Durability::Fsync] {
        let dir = tempfile::Builder::new()
            .prefix("wyvern-bench-store-")
            .tempdir_in(".")
            .expect("temp dir");
        let mut opts = StoreOptions::new(dir.path());
        opts.durability = durability;
        let store = rt.block_on(async { Store::open(opts) }).expect("store");
        let mut n = 0u64;
        for batch in [1usize, 16] {
            g.bench_function(
                format!("{durability:?}/batch_of_{batch}").to_lowercase(),
                |b| {
                    b.iter_custom(|iters| {
                        let records: Vec<Vec<InboxRecord>> = (0..iters)
                            .map(|_| {
                                (0..batch)
                                    .map(|_| {
                                        n += 1;
                                        record(n)
                                    })
                                    .collect()
                            })
                            .collect();
                        rt.block_on(async {
                            let start = Instant::now();
                            for group in records {
                                let mut pending = Vec::with_capacity(batch);
                                for r in group {
                                    pending.push(store.submit(r).await.expect("submit"));
                                }
                                for p in pending {
                                    p.wait().await.expect("commit");
                                }
                            }
                            start.elapsed()
                        })
                    })
                },
            );
        }
        rt.block_on(store.close());
    }
    g.finish();
}

criterion_group!(name = commit; config = Criterion::default().sample_size(20); targets = benches);
criterion_main!(commit);
