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
