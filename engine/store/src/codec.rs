//! How an [`InboxRecord`] is written in the journal: a frame of `len u32 | crc32 u32 | payload`
//! (little-endian), the payload a fixed order of fields, strings and blobs length-prefixed.
//!
//! Format versions: version 1 ends after the deliveries. Version 2 appends a trailer — the
//! format byte `2`, then each delivery's content type (absent: the message's own) — so a
//! version-1 frame (a journal written before the upgrade) still replays, and a reader finds
//! the version by what follows the deliveries.
//!
//! The CRC is what makes a torn write harmless: replay stops at the first frame whose length
//! or checksum is wrong, which can only be the tail being written when the engine died, and
//! that record was never acknowledged.

use bytes::Bytes;
use wyvern_core::{ContentType, Envelope, MessageId, Metadata};

use crate::{Delivery, InboxRecord, InboxStatus};

const NONE: u32 = u32::MAX;
/// The frame format written now (see the module doc).
const FORMAT: u8 = 2;
/// Frame header: payload length and CRC-32 of the payload.
pub(crate) const HEADER: usize = 8;
/// The largest payload replay believes (a frame is at most a 1 GiB message plus its metadata).
const MAX_PAYLOAD: usize = (1 << 30) + (1 << 20);

/// Appends one framed record to `out`.
pub(crate) fn encode(r: &InboxRecord, out: &mut Vec<u8>) {
    let start = out.len();
    out.extend_from_slice(&[0; HEADER]);
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
    out.push(FORMAT);
    for d in &r.deliveries {
        put(out, d.content_type.map(|c| c.as_str().as_bytes()));
    }
    let payload_len = out.len() - start - HEADER;
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start..start + 4].copy_from_slice(&(payload_len as u32).to_le_bytes());
    out[start + 4..start + HEADER].copy_from_slice(&crc.to_le_bytes());
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

/// Decodes every whole, intact frame from the start of `buf`. Returns the records and how many
/// bytes they took; anything after that is a torn or corrupt tail.
pub(crate) fn decode_all(buf: &[u8]) -> (Vec<InboxRecord>, usize) {
    let mut records = Vec::new();
    let mut at = 0;
    while let Some((record, used)) = decode_one(&buf[at..]) {
        records.push(record);
        at += used;
    }
    (records, at)
}

fn decode_one(buf: &[u8]) -> Option<(InboxRecord, usize)> {
    let len = u32::from_le_bytes(buf.get(0..4)?.try_into().ok()?) as usize;
    let crc = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?);
    if len == 0 || len > MAX_PAYLOAD {
        return None;
    }
    let payload = buf.get(HEADER..HEADER + len)?;
    if crc32fast::hash(payload) != crc {
        return None;
    }
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
    // Version 1 ends here; version 2 goes on with its trailer.
    match r.take(1) {
        None => {}
        Some([2]) => {
            for d in &mut deliveries {
                d.content_type = match r.text()? {
                    Some(t) => Some(ContentType::parse(&t)?),
                    None => None,
                };
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
    };
    let envelope = Envelope {
        id,
        received_at_ms,
        content_type,
        raw,
        meta,
        parent,
    };
    Some((
        InboxRecord {
            envelope,
            status,
            error: error?,
            ack,
            deliveries,
            raw_len,
            digest: None,
        },
        HEADER + len,
    ))
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

    #[test]
    fn round_trips_and_stops_at_a_torn_tail() {
        let records: Vec<_> = (0..10).map(sample).collect();
        let mut buf = Vec::new();
        for r in &records {
            encode(r, &mut buf);
        }
        let whole = buf.len();
        let (back, used) = decode_all(&buf);
        assert_eq!(used, whole);
        assert!(records.iter().zip(&back).all(|(a, b)| same(a, b)) && back.len() == 10);
        // Every possible torn tail of the last record leaves the first nine intact.
        let mut last = Vec::new();
        encode(&records[9], &mut last);
        for cut in 0..last.len() {
            let (back, _) = decode_all(&buf[..whole - last.len() + cut]);
            assert_eq!(back.len(), 9, "cut {cut}");
        }
        // A flipped bit in the middle stops replay there.
        let mut corrupt = buf.clone();
        corrupt[whole / 2] ^= 0x40;
        assert!(decode_all(&corrupt).0.len() < 10);
    }

    /// A journal written before the format-2 trailer still replays after an upgrade.
    #[test]
    fn a_version_1_frame_still_decodes() {
        let r = sample(4); // one delivery, no payload of its own
        let mut v2 = Vec::new();
        encode(&r, &mut v2);
        // Version 1 is version 2 without its trailer: the format byte and one absent type.
        let trailer = 1 + 4;
        let mut v1 = v2[..v2.len() - trailer].to_vec();
        let len = (v1.len() - HEADER) as u32;
        let crc = crc32fast::hash(&v1[HEADER..]);
        v1[..4].copy_from_slice(&len.to_le_bytes());
        v1[4..HEADER].copy_from_slice(&crc.to_le_bytes());
        let (back, used) = decode_all(&v1);
        assert_eq!((back.len(), used), (1, v1.len()));
        assert!(same(&back[0], &r));
        let with_type = sample(2);
        assert_eq!(
            with_type.deliveries[1].content_type,
            Some(ContentType::FhirJson)
        );
        let mut buf = Vec::new();
        encode(&with_type, &mut buf);
        assert!(same(&decode_all(&buf).0[0], &with_type));
    }
}
