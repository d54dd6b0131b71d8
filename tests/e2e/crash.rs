//! The delivery contract under a crash: 4 senders, 20,000 messages, the engine SIGKILLed in the
//! middle and restarted. Senders behave like real ones: what was not ACKed is resent after
//! reconnecting. Afterwards every control id that was ever ACKed AA must be in the store.

use std::collections::{HashMap, HashSet, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use wyvern_connectors::mllp::MllpClient;
use wyvern_store::{InboxReader, InboxStatus};

use crate::harness::{EngineProcess, adt};

pub(crate) const SENDERS: usize = 4;
pub(crate) const PER_SENDER: usize = 5_000;
const WINDOW: usize = 8;

fn msa(ack: &[u8]) -> (String, String) {
    let m = wyvern_hl7::Message::parse(ack).expect("a readable ACK");
    let get = |p: &str| {
        m.get(p)
            .map(|v| v.as_str().into_owned())
            .unwrap_or_default()
    };
    (get("MSA-1"), get("MSA-2"))
}

/// Sends `ids` in order with a window, reconnecting and resending whatever was not ACKed when
/// the connection drops. Returns the ids that were ACKed AA.
pub(crate) async fn sender(
    addr: SocketAddr,
    ids: Vec<String>,
    acked_total: Arc<AtomicUsize>,
) -> Vec<String> {
    sender_of(addr, ids, adt, acked_total).await
}

/// As [`sender`], each message made by `body` from its id and number.
pub(crate) async fn sender_of(
    addr: SocketAddr,
    ids: Vec<String>,
    body: fn(&str, u64) -> Vec<u8>,
    acked_total: Arc<AtomicUsize>,
) -> Vec<String> {
    let mut acked = Vec::with_capacity(ids.len());
    let mut next = 0; // the first id not yet ACKed
    let deadline = Instant::now() + Duration::from_secs(300);
    while next < ids.len() {
        assert!(Instant::now() < deadline, "sender stuck at {next}");
        let Ok(client) = MllpClient::connect(&addr.to_string(), 1 << 20).await else {
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let (mut tx, mut rx) = client.split();
        let mut in_flight: VecDeque<usize> = VecDeque::new();
        let mut to_send = next;
        'conn: loop {
            while to_send < ids.len() && in_flight.len() < WINDOW {
                let n = to_send as u64;
                if tx.send(&body(&ids[to_send], n)).await.is_err() {
                    break 'conn;
                }
                in_flight.push_back(to_send);
                to_send += 1;
            }
            let Some(&expect) = in_flight.front() else {
                break;
            };
            match tokio::time::timeout(Duration::from_secs(20), rx.recv()).await {
                Ok(Ok(ack)) => {
                    let (code, control_id) = msa(&ack);
                    assert_eq!(control_id, ids[expect], "ACKs arrive in order");
                    assert_eq!(code, "AA", "{}", String::from_utf8_lossy(&ack));
                    acked.push(control_id);
                    acked_total.fetch_add(1, Ordering::Relaxed);
                    in_flight.pop_front();
                    next = expect + 1;
                }
                _ => break 'conn,
            }
        }
    }
    acked
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigkill_mid_stream_loses_no_acked_message() {
    let mut engine = EngineProcess::start("");
    let addr = engine.addr;
    let acked_total = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for s in 0..SENDERS {
        let ids: Vec<String> = (0..PER_SENDER).map(|i| format!("S{s}M{i:05}")).collect();
        tasks.push(tokio::spawn(sender(addr, ids, acked_total.clone())));
    }
    // Kill once a good part is in, while all four are mid-stream.
    let kill_at = SENDERS * PER_SENDER * 3 / 10;
    while acked_total.load(Ordering::Relaxed) < kill_at {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let acked_before_kill = acked_total.load(Ordering::Relaxed);
    engine.kill();
    tokio::time::sleep(Duration::from_millis(300)).await;
    engine.restart();
    let mut acked: Vec<String> = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("sender"));
    }

    // Kill once more with everything sent, so the last records may be only in the journal;
    // the restart replays them into the index. Then stop gracefully and count.
    engine.kill();
    engine.restart();
    let status = engine.terminate();
    assert!(status.success(), "{}", engine.log());
    let reader = InboxReader::open(&engine.store_dir()).expect("store");
    let stored = reader.control_ids(InboxStatus::Accepted).expect("ids");
    let mut counts: HashMap<&str, usize> = HashMap::new();
    for id in &stored {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let lost: Vec<&String> = acked
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    let duplicated = counts.values().filter(|&&c| c > 1).count();
    let distinct_acked: HashSet<&String> = acked.iter().collect();
    // Per sender, the store holds its messages in the order they were sent (first copies).
    let mut out_of_order = 0;
    for s in 0..SENDERS {
        let prefix = format!("S{s}M");
        let mut seen = HashSet::new();
        let mut last = None;
        for id in stored.iter().filter(|id| id.starts_with(&prefix)) {
            if seen.insert(id) {
                if last.is_some_and(|l: &String| l > id) {
                    out_of_order += 1;
                }
                last = Some(id);
            }
        }
    }
    let log = engine.log();
    let recovered: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("the journal was replayed into the index"))
        .filter_map(|l| {
            l.split_whitespace()
                .find(|w| w.starts_with("not_yet_indexed="))
        })
        .collect();
    println!("crash test: restarts replayed from the journal into the index: {recovered:?}");
    println!(
        "crash test: {} messages from {SENDERS} senders; killed after {acked_before_kill} ACKs; \
         acked {} ({} distinct), stored {} rows; lost = {}, duplicated (stored twice, resent after the kill) = {duplicated}, out of order = {out_of_order}",
        SENDERS * PER_SENDER,
        acked.len(),
        distinct_acked.len(),
        stored.len(),
        lost.len()
    );
    assert_eq!(
        distinct_acked.len(),
        SENDERS * PER_SENDER,
        "every message was eventually ACKed"
    );
    assert!(
        lost.is_empty(),
        "ACKed but not stored: {:?}",
        &lost[..lost.len().min(10)]
    );
    assert_eq!(out_of_order, 0);
}
