//! What indexing costs: CPU time of each store thread per record while a steady stream of
//! ~1 KB ADT^A01s (a random NHS number each, one delivery each, as a route makes) is committed
//! and indexed, on top of an index that already holds `--preload` records. The index thread's
//! share is the figure to watch: it is off the ACK path, but on two cores it takes CPU from
//! everything else. Baseline in the same run: the journal thread's CPU per record (one write
//! per group, no fdatasync here).
//!
//! Run: `cargo bench -p wyvern-store --bench index -- [records] [preload]`
//! (defaults 200,000 and 200,000).

use std::collections::BTreeMap;
use std::time::Instant;

use bytes::Bytes;
use wyvern_core::{ContentType, Envelope, MessageId, Metadata};
use wyvern_store::{Delivery, Durability, InboxRecord, InboxStatus, Store, StoreOptions};

/// A synthetic NHS number in 999 000 0000 – 999 999 9999 with a valid check digit.
fn nhs_number(mut x: u64) -> String {
    loop {
        let body = format!("999{:06}", x % 1_000_000);
        let sum: u32 = body
            .bytes()
            .enumerate()
            .map(|(i, b)| u32::from(b - b'0') * (10 - i as u32))
            .sum();
        let check = (11 - sum % 11) % 11;
        if check != 10 {
            return format!("{body}{check}");
        }
        x = x.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
    }
}

fn record(n: u64) -> InboxRecord {
    let mixed = n.wrapping_mul(0x9E37_79B9_7F4A_7C15);
    let nhs = nhs_number(mixed >> 20);
    let raw = wyvern_hl7::synthetic::adt_a01(&format!("C{n:08}"), n);
    InboxRecord {
        envelope: Envelope {
            id: MessageId::new(1_795_617_000_000 + (n / 16) as i64),
            received_at_ms: 1_795_617_000_000,
            content_type: ContentType::Hl7v2,
            raw: Bytes::from(raw.clone()),
            meta: Metadata {
                source: format!("feed-{}", n % 16),
                control_id: Some(format!("C{n:08}")),
                nhs_number: Some(nhs.clone()),
                message_type: Some("ADT^A01".into()),
                sending_application: Some("PAS".into()),
                sending_facility: Some("RX1".into()),
                ..Default::default()
            },
            parent: None,
        },
        status: InboxStatus::Accepted,
        error: None,
        ack: Some(Bytes::from_static(
            b"MSH|^~\\&|WYVERN|WYVERN|PAS|RX1|20261203||ACK|1|P|2.4\rMSA|AA|1",
        )),
        raw_len: raw.len(),
        deliveries: vec![Delivery {
            route: "adt".into(),
            destination: "chie".into(),
            order_key: nhs,
            payload: None,
            content_type: None,
        }],
        digest: None,
    }
}

/// CPU seconds (user + system) of each thread of this process, by name.
fn thread_cpu() -> BTreeMap<String, f64> {
    let tick = 100.0; // USER_HZ on Linux
    let mut out = BTreeMap::new();
    for task in std::fs::read_dir("/proc/self/task").expect("/proc/self/task") {
        let dir = task.expect("task").path();
        let Ok(stat) = std::fs::read_to_string(dir.join("stat")) else {
            continue;
        };
        let Some(close) = stat.rfind(')') else {
            continue;
        };
        let name = stat[stat.find('(').unwrap_or(0) + 1..close].to_string();
        let fields: Vec<&str> = stat[close + 2..].split(' ').collect();
        let ticks: f64 =
            fields[11].parse::<f64>().unwrap_or(0.0) + fields[12].parse::<f64>().unwrap_or(0.0);
        *out.entry(name).or_insert(0.0) += ticks / tick;
    }
    out
}

async fn feed(store: &Store, from: u64, count: u64) {
    let mut pending = std::collections::VecDeque::new();
    for n in from..from + count {
        pending.push_back(store.submit(record(n)).await.expect("submit"));
        if pending.len() >= 256 {
            pending
                .pop_front()
                .expect("one")
                .wait()
                .await
                .expect("commit");
        }
    }
    for p in pending {
        p.wait().await.expect("commit");
    }
    let mut indexed = store.indexed();
    while *indexed.borrow()
        < store
            .stats()
            .records
            .load(std::sync::atomic::Ordering::Relaxed)
    {
        indexed.changed().await.expect("indexed");
    }
}

fn main() {
    let args: Vec<u64> = std::env::args()
        .skip(1)
        .filter_map(|a| a.replace(['_', ','], "").parse().ok())
        .collect();
    let records = args.first().copied().unwrap_or(200_000);
    let preload = args.get(1).copied().unwrap_or(200_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .expect("runtime");
    let dir = tempfile::Builder::new()
        .prefix("wyvern-bench-index-")
        .tempdir_in(".")
        .expect("temp dir");
    let mut opts = StoreOptions::new(dir.path());
    opts.durability = Durability::Buffered;
    let store = rt.block_on(async { Store::open(opts) }).expect("store");
    // An experiment's knob: `DROP_INDEXES=a,b` measures what those indexes cost.
    if let Ok(names) = std::env::var("DROP_INDEXES") {
        let db = rusqlite::Connection::open(dir.path().join(wyvern_store::DB_FILE)).expect("db");
        for name in names.split(',').filter(|n| !n.is_empty()) {
            db.execute_batch(&format!("DROP INDEX {name}"))
                .expect("drop");
        }
    }
    rt.block_on(feed(&store, 0, preload));
    let before = thread_cpu();
    let start = Instant::now();
    rt.block_on(feed(&store, preload, records));
    let wall = start.elapsed().as_secs_f64();
    let after = thread_cpu();
    println!(
        "{records} records on top of {preload}: {:.0} records/s indexed",
        records as f64 / wall
    );
    println!("{:<24} {:>14}", "thread", "CPU µs/record");
    for (name, secs) in &after {
        let used = secs - before.get(name).copied().unwrap_or(0.0);
        if used > 0.0 {
            println!("{name:<24} {:>14.1}", used * 1e6 / records as f64);
        }
    }
    rt.block_on(store.close());
}
