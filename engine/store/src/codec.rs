//! How an [`InboxRecord`] is written in the journal: the payload of a frame ([`crate::frame`]),
//! a fixed order of fields, strings and blobs length-prefixed (little-endian).
//!
//! Payload versions: version 1 ends after the deliveries. Version 2 appends a trailer — the
//! version byte `2`, then each delivery's content type (absent: the message's own) — so a
//! version-1 payload (a journal written before the upgrade) still replays, and a reader finds
//! the version by what follows the deliveries. Version 3 is version 2's trailer under the
//! byte `3`, followed by the NHS number a merge folded away (MRG-1). A payload that is intact (its frame's CRC holds)
//! but does not decode — a later version, or a bug — is an error at replay, never a torn tail.

use bytes::Bytes;
use wyvern_core::{ContentType, Envelope, MessageId, Metadata};

use crate::frame::{self, TooLarge};
use crate::{Delivery, InboxRecord, InboxStatus};

const NONE: u32 = u32::MAX;
/// The payload version written now (see the module doc).
const VERSION: u8 = 3;

/// Appends one framed record to `out` (to be stamped by the journal when it is written).
pub(crate) fn encode(r: &InboxRecord, out: &mut Vec<u8>) -> Result<(), TooLarge> {
    frame::encode(out, |out| encode_payload(r, out))
}

fn encode_payload(r: &InboxRecord, out: &mut Vec<u8>) {
    let e = &r.envelope;
    let m = &e.meta;
    out.extend_from_slice(&e.id.to_bytes());
    out.extend_from_slice(&e.received_at_ms.to_le_bytes());
    put(out, Some(e.content_type.as_str().as_bytes()));
    put(out, Some(r.status.as_str().as_bytes()));
    put(
        out,
        e.parent.map(MessageId::to_bytes).as_ref().map(|b| &b[..]),
    );
    put(out, Some(m.source.as_bytes()));
    for field in [
        &m.peer,
        &m.sending_application,
        &m.sending_facility,
        &m.message_type,
        &m.control_id,
        &m.nhs_number,
        &r.error,
    ] {
        put(out, field.as_deref().map(str::as_bytes));
    }
    put(out, r.ack.as_deref());
    out.extend_from_slice(&(r.raw_len as u64).to_le_bytes());
    put(out, Some(&e.raw));
    out.extend_from_slice(&(r.deliveries.len() as u32).to_le_bytes());
    for d in &r.deliveries {
        put(out, Some(d.route.as_bytes()));
        put(out, Some(d.destination.as_bytes()));
        put(out, Some(d.order_key.as_bytes()));
        put(out, d.payload.as_deref());
    }
    out.push(VERSION);
    for d in &r.deliveries {
        put(out, d.content_type.map(|c| c.as_str().as_bytes()));
    }
    put(out, m.merged_nhs_number.as_deref().map(str::as_bytes));
}

fn put(out: &mut Vec<u8>, v: Option<&[u8]>) {
    match v {
        Some(b) => {
            out.extend_from_slice(&(b.len() as u32).to_le_bytes());
            out.extend_from_slice(b);
        }
        None => out.extend_from_slice(&NONE.to_le_bytes()),
    }
}

/// The record in an intact frame's payload; `None` when it does not decode (a later version).
pub(crate) fn decode(payload: &[u8]) -> Option<InboxRecord> {
    let mut r = Reader(payload);
    let id = MessageId::from_bytes(r.take(16)?.try_into().ok()?);
    let received_at_ms = i64::from_le_bytes(r.take(8)?.try_into().ok()?);
    let content_type = ContentType::parse(r.text()??.as_str())?;
    let status = InboxStatus::parse(r.text()??.as_str())?;
    let parent = match r.bytes()? {
        Some(b) => Some(MessageId::from_bytes(b.try_into().ok()?)),
        None => None,
    };
    let source = r.text()??;
    let [
        peer,
        sending_application,
        sending_facility,
        message_type,
        control_id,
        nhs_number,
        error,
    ] = [(); 7].map(|()| r.text());
    let ack = r.bytes()?.map(Bytes::copy_from_slice);
    let raw_len = u64::from_le_bytes(r.take(8)?.try_into().ok()?) as usize;
    let raw = Bytes::copy_from_slice(r.bytes()??);
    let count = u32::from_le_bytes(r.take(4)?.try_into().ok()?);
    let mut deliveries = Vec::new();
    for _ in 0..count {
        deliveries.push(Delivery {
            route: r.text()??,
            destination: r.text()??,
            order_key: r.text()??,
            payload: r.bytes()?.map(Bytes::copy_from_slice),
            content_type: None,
        });
    }
    // Version 1 ends here; versions 2 and 3 go on with their trailers.
    let mut merged_nhs_number = None;
    match r.take(1) {
        None => {}
        Some([version @ (2 | 3)]) => {
            for d in &mut deliveries {
                d.content_type = match r.text()? {
                    Some(t) => Some(ContentType::parse(&t)?),
                    None => None,
                };
            }
            if *version == 3 {
                merged_nhs_number = r.text()?;
            }
        }
        Some(_) => return None,
    }
    let meta = Metadata {
        source,
        peer: peer?,
        sending_application: sending_application?,
        sending_facility: sending_facility?,
        message_type: message_type?,
        control_id: control_id?,
        nhs_number: nhs_number?,
        merged_nhs_number,
    };
    let envelope = Envelope {
        id,
        received_at_ms,
        content_type,
        raw,
        meta,
        parent,
    };
    // Anything after the last field this version knows: written by a later one.
    if !r.0.is_empty() {
        return None;
    }
    Some(InboxRecord {
        envelope,
        status,
        error: error?,
        ack,
        deliveries,
        raw_len,
        digest: None,
    })
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        let (head, rest) = (self.0.get(..n)?, self.0.get(n..)?);
        self.0 = rest;
        Some(head)
    }

    /// `None` when the input is short; `Some(None)` for an absent value.
    fn bytes(&mut self) -> Option<Option<&'a [u8]>> {
        let len = u32::from_le_bytes(self.take(4)?.try_into().ok()?);
        if len == NONE {
            Some(None)
        } else {
            self.take(len as usize).map(Some)
        }
    }

    fn text(&mut self) -> Option<Option<String>> {
        match self.bytes()? {
            Some(b) => Some(Some(String::from_utf8(b.to_vec()).ok()?)),
            None => Some(None),
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) fn sample(n: u64) -> InboxRecord {
        InboxRecord {
            envelope: Envelope {
                id: MessageId::from_bytes((u128::from(n) + 1000).to_be_bytes()),
                received_at_ms: 1_795_617_000_000,
                content_type: ContentType::Hl7v2,
                raw: Bytes::from(format!("MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C{n}|P|2.4\r")),
                meta: Metadata {
                    source: "r".into(),
                    peer: Some("127.0.0.1:9".into()),
                    control_id: Some(format!("C{n}")),
                    nhs_number: n.is_multiple_of(7).then(|| "9990000026".into()),
                    merged_nhs_number: (n == 7).then(|| "9990000018".into()),
                    ..Default::default()
                },
                parent: n
                    .is_multiple_of(2)
                    .then(|| MessageId::from_bytes(5u128.to_be_bytes())),
            },
            status: if n.is_multiple_of(3) {
                InboxStatus::Rejected
            } else {
                InboxStatus::Accepted
            },
            error: n.is_multiple_of(3).then(|| "bad".into()),
            ack: (!n.is_multiple_of(5)).then(|| Bytes::from_static(b"MSA|AA")),
            raw_len: 40 + n as usize,
            deliveries: (0..n % 3)
                .map(|k| Delivery {
                    route: "r".into(),
                    destination: format!("d{k}"),
                    order_key: format!("K{n}"),
                    payload: (k == 1).then(|| Bytes::from_static(b"{\"resourceType\":\"Bundle\"}")),
                    content_type: (k == 1).then_some(ContentType::FhirJson),
                })
                .collect(),
            digest: None,
        }
    }

    fn same(a: &InboxRecord, b: &InboxRecord) -> bool {
        a.envelope.id == b.envelope.id
            && a.envelope.raw == b.envelope.raw
            && a.envelope.meta == b.envelope.meta
            && a.envelope.parent == b.envelope.parent
            && a.envelope.content_type == b.envelope.content_type
            && (a.status, &a.error, &a.ack, a.raw_len) == (b.status, &b.error, &b.ack, b.raw_len)
            && a.deliveries == b.deliveries
    }

    /// Frames `records` as one write at `batch_start` and reads them back.
    pub(crate) fn framed(records: &[InboxRecord], batch_start: u64) -> Vec<u8> {
        let mut buf = Vec::new();
        for r in records {
            encode(r, &mut buf).unwrap();
        }
        frame::stamp(&mut buf, batch_start, 1);
        buf
    }

    fn read_back(mut buf: &[u8]) -> Vec<InboxRecord> {
        let mut out = Vec::new();
        while let Some(f) = frame::read(buf, frame::Framing::Current) {
            out.push(decode(f.payload).unwrap());
            buf = &buf[f.len..];
        }
        out
    }

    #[test]
    fn round_trips() {
        let records: Vec<_> = (0..10).map(sample).collect();
        let back = read_back(&framed(&records, 40));
        assert_eq!(back.len(), 10);
        assert!(records.iter().zip(&back).all(|(a, b)| same(a, b)));
    }

    fn payload(r: &InboxRecord) -> Vec<u8> {
        let mut p = Vec::new();
        encode_payload(r, &mut p);
        p
    }

    /// Journals written before the version-2 and version-3 trailers still replay after an
    /// upgrade.
    #[test]
    fn version_1_and_2_payloads_still_decode() {
        let r = sample(4); // one delivery, no payload of its own, no merge
        let v3 = payload(&r);
        // Version 2 is version 3 with its byte and without the merged NHS number (absent).
        let mut v2 = v3[..v3.len() - 4].to_vec();
        let at = v2.len() - (1 + 4);
        v2[at] = 2;
        assert!(same(&decode(&v2).unwrap(), &r));
        // Version 1 is version 2 without its trailer: the version byte and one absent type.
        let v1 = &v2[..at];
        assert!(same(&decode(v1).unwrap(), &r));
        let with_type = sample(2);
        assert_eq!(
            with_type.deliveries[1].content_type,
            Some(ContentType::FhirJson)
        );
        assert!(same(&decode(&payload(&with_type)).unwrap(), &with_type));
        let merged = sample(7);
        assert_eq!(
            decode(&payload(&merged))
                .unwrap()
                .envelope
                .meta
                .merged_nhs_number
                .as_deref(),
            Some("9990000018")
        );
    }

    /// What a later version writes (another trailer, or more after this one's) is not read
    /// as something it is not.
    #[test]
    fn a_later_versions_payload_does_not_decode() {
        let mut p = payload(&sample(4));
        let at = p.len() - (1 + 4 + 4);
        p[at] = 4;
        assert!(decode(&p).is_none());
        let mut longer = payload(&sample(4));
        longer.push(0);
        assert!(decode(&longer).is_none());
    }
}
