//! Records for the store's tests and benchmark: synthetic, deterministic apart from the id.

use bytes::Bytes;
use wyvern_core::{ContentType, Envelope, MessageId, Metadata};
use wyvern_store::{InboxRecord, InboxStatus};

/// Record `n` carrying `raw`, with control id `C{n}` and, for even `n`, an NHS number.
pub fn record(n: usize, status: InboxStatus, raw: String) -> InboxRecord {
    InboxRecord {
        envelope: Envelope {
            id: MessageId::new(1_795_617_000_000 + n as i64),
            received_at_ms: 1_795_617_000_000,
            content_type: ContentType::Hl7v2,
            raw: Bytes::from(raw.clone()),
            meta: Metadata {
                source: "test".into(),
                control_id: Some(format!("C{n}")),
                nhs_number: n.is_multiple_of(2).then(|| "9990000018".into()),
                message_type: Some("ADT^A01".into()),
                ..Default::default()
            },
            parent: None,
        },
        status,
        error: (status == InboxStatus::Rejected).then(|| "bad".into()),
        ack: Some(Bytes::from_static(b"MSA|AA")),
        raw_len: raw.len(),
        deliveries: Vec::new(),
        digest: None,
    }
}

/// What a SIGKILL leaves of a store at this moment: its files as they are (call it while
/// nothing is writing), without the engine's lock.
#[allow(dead_code)] // not every test binary that includes this module takes snapshots
pub fn snapshot(from: &std::path::Path, to: &std::path::Path) {
    for entry in std::fs::read_dir(from).expect("read the store") {
        let p = entry.expect("entry").path();
        let dest = to.join(p.file_name().expect("a name"));
        if p.is_dir() {
            std::fs::create_dir_all(&dest).expect("mkdir");
            snapshot(&p, &dest);
        } else if !p.ends_with("engine.lock") {
            std::fs::copy(&p, dest).expect("copy");
        }
    }
}

/// Waits until `store` has indexed `n` records.
#[allow(dead_code)] // not every test binary that includes this module waits for the index
pub async fn indexed(store: &wyvern_store::Store, n: u64) {
    let mut indexed = store.indexed();
    while *indexed.borrow() < n {
        indexed.changed().await.expect("indexed");
    }
}
