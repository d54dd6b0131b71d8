//! Frames: how a record sits in a journal segment, so that replay can tell a write cut short by
//! a crash (expected; never acknowledged) from damage to a write that was (never to be dropped
//! in silence), and a frame written in this segment from one left by the file's previous life.
//!
//! A frame is `MAGIC | len u32 | crc u32 | batch_start u64 | segment u64 | payload`
//! (little-endian; the payload is [`crate::codec`]'s record). `batch_start` is the segment
//! offset where the group commit that wrote the frame began, `segment` the number of the segment
//! it was written to, and the CRC covers the payload, then `batch_start`, then `segment`.
//! Every write goes after the last one that succeeded (a failed write moves the journal to a new
//! segment), and with `durability: fsync` each write is synced before the next begins. So when
//! replay meets a bad frame at offset X, an intact frame further on whose `batch_start` is
//! beyond X was written by a *later* commit — the bad bytes were durable once, and this is
//! corruption — while intact frames that began at or before X belong to the same write, the last
//! one, cut short. `MAGIC` lets a scan find the next frame after damage without decoding every
//! byte offset.
//!
//! Segment files are recycled (`journal.rs`): a new segment is written over an old one instead
//! of a freshly zero-filled file, so what follows the last write is not zeros but the old
//! segment's frames. Those are intact, and only their `segment` says they are not this one's.
//!
//! Older segments are still read: format 3 wrote `WYF3 | len | crc | batch_start | payload`
//! (no segment number; such files were never recycled), format 2 and older legacy frames,
//! `len u32 | crc u32 | payload`, with no batch information.

/// Marks the start of a frame.
pub(crate) const MAGIC: [u8; 4] = *b"WYF4";
/// Bytes before the payload.
pub(crate) const HEADER: usize = 28;
/// Marks a format 3 frame, and the bytes before its payload.
const V3_MAGIC: [u8; 4] = *b"WYF3";
const V3_HEADER: usize = 20;
/// A legacy frame's header: length and CRC.
const LEGACY_HEADER: usize = 8;
/// The largest payload a frame can hold: its length is a `u32`.
pub(crate) const MAX_PAYLOAD: usize = u32::MAX as usize;

/// Which frames a segment holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Framing {
    /// `MAGIC | len | crc | batch_start | segment | payload`.
    Current,
    /// `WYF3 | len | crc | batch_start | payload` (segments written by format 3).
    V3,
    /// `len | crc | payload` (segments written by format 2 and older).
    Legacy,
}

/// A record larger than a frame can hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the record is {bytes} bytes; a journal frame holds at most {MAX_PAYLOAD}")]
pub(crate) struct TooLarge {
    pub bytes: usize,
}

/// Frames the payload that `write` appends to `out`. The frame is not finished until
/// [`stamp`] gives it the offset its write begins at.
pub(crate) fn encode(out: &mut Vec<u8>, write: impl FnOnce(&mut Vec<u8>)) -> Result<(), TooLarge> {
    let start = out.len();
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; HEADER - 4]);
    write(out);
    let len = out.len() - start - HEADER;
    if len > MAX_PAYLOAD {
        out.truncate(start);
        return Err(TooLarge { bytes: len });
    }
    // The payload's CRC, for now: `stamp` extends it over `batch_start`.
    let crc = crc32fast::hash(&out[start + HEADER..]);
    out[start + 4..start + 8].copy_from_slice(&(len as u32).to_le_bytes());
    out[start + 8..start + 12].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// Finishes every frame in `frames` (as [`encode`] left them): `batch_start` is where this
/// write begins in segment `segment`. Costs a CRC over 16 bytes a frame, not over the payloads.
pub(crate) fn stamp(frames: &mut [u8], batch_start: u64, segment: u64) {
    let mut at = 0;
    while at + HEADER <= frames.len() {
        let len = u32::from_le_bytes(frames[at + 4..at + 8].try_into().expect("4 bytes")) as usize;
        let payload_crc = u32::from_le_bytes(frames[at + 8..at + 12].try_into().expect("4 bytes"));
        let mut crc = crc32fast::Hasher::new_with_initial(payload_crc);
        crc.update(&batch_start.to_le_bytes());
        crc.update(&segment.to_le_bytes());
        frames[at + 8..at + 12].copy_from_slice(&crc.finalize().to_le_bytes());
        frames[at + 12..at + 20].copy_from_slice(&batch_start.to_le_bytes());
        frames[at + 20..at + HEADER].copy_from_slice(&segment.to_le_bytes());
        at += HEADER + len;
    }
}

/// A whole, intact frame.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Frame<'a> {
    pub payload: &'a [u8],
    /// Where the write that made it began (legacy frames: unknown, 0).
    pub batch_start: u64,
    /// The segment it was written to (format 3 and legacy frames: not said).
    pub segment: Option<u64>,
    /// Bytes the frame takes, header included.
    pub len: usize,
}

/// The frame at the start of `buf`, if one is there whole and intact.
pub(crate) fn read(buf: &[u8], framing: Framing) -> Option<Frame<'_>> {
    let word = |at: usize| -> Option<u32> {
        Some(u32::from_le_bytes(buf.get(at..at + 4)?.try_into().ok()?))
    };
    match framing {
        Framing::Current | Framing::V3 => {
            let (magic, header) = match framing {
                Framing::Current => (MAGIC, HEADER),
                _ => (V3_MAGIC, V3_HEADER),
            };
            if buf.get(..4)? != magic {
                return None;
            }
            let len = word(4)? as usize;
            let crc = word(8)?;
            // `batch_start`, then (format 4) `segment`: what the CRC covers after the payload.
            let stamped = buf.get(12..header)?;
            let payload = buf.get(header..header.checked_add(len)?)?;
            let mut h = crc32fast::Hasher::new();
            h.update(payload);
            h.update(stamped);
            let long = |at: usize| {
                let bytes = stamped.get(at..at + 8)?;
                Some(u64::from_le_bytes(bytes.try_into().expect("8 bytes")))
            };
            let batch_start = long(0)?;
            (h.finalize() == crc).then(|| Frame {
                payload,
                batch_start,
                segment: long(8),
                len: header + len,
            })
        }
        Framing::Legacy => {
            let len = word(0)? as usize;
            let crc = word(4)?;
            if len == 0 {
                return None;
            }
            let payload = buf.get(LEGACY_HEADER..LEGACY_HEADER.checked_add(len)?)?;
            (crc32fast::hash(payload) == crc).then_some(Frame {
                payload,
                batch_start: 0,
                segment: None,
                len: LEGACY_HEADER + len,
            })
        }
    }
}

/// The next intact frame starting after `from`, and its offset.
pub(crate) fn next_after(buf: &[u8], from: usize, framing: Framing) -> Option<(usize, Frame<'_>)> {
    let mut at = from + 1;
    while at < buf.len() {
        // Only where the magic is: a frame cannot start anywhere else.
        let magic = match framing {
            Framing::Current => Some(MAGIC),
            Framing::V3 => Some(V3_MAGIC),
            Framing::Legacy => None,
        };
        if let Some(magic) = magic {
            at += buf[at..].windows(4).position(|w| w == magic)?;
        }
        if let Some(frame) = read(&buf[at..], framing) {
            return Some((at, frame));
        }
        at += 1;
    }
    None
}

/// How long the frame starting at `buf` says it is, if its header is there, is of this
/// framing and names `segment` — read without its checksum, so only to tell how far a write
/// cut short reached.
pub(crate) fn claimed_len(buf: &[u8], framing: Framing, segment: u64) -> Option<usize> {
    if framing != Framing::Current || buf.get(..4)? != MAGIC {
        return None;
    }
    let len = u32::from_le_bytes(buf.get(4..8)?.try_into().ok()?) as usize;
    let named = u64::from_le_bytes(buf.get(20..HEADER)?.try_into().ok()?);
    (named == segment).then(|| HEADER.saturating_add(len))
}

/// Frames a format 3 segment holds, for tests of the upgrade path.
#[cfg(test)]
pub(crate) fn encode_v3(payload: &[u8], batch_start: u64, out: &mut Vec<u8>) {
    let mut h = crc32fast::Hasher::new();
    h.update(payload);
    h.update(&batch_start.to_le_bytes());
    out.extend_from_slice(&V3_MAGIC);
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&h.finalize().to_le_bytes());
    out.extend_from_slice(&batch_start.to_le_bytes());
    out.extend_from_slice(payload);
}

/// Frames a legacy (format 2) segment holds, for tests of the upgrade path.
#[cfg(test)]
pub(crate) fn encode_legacy(payload: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&(payload.len() as u32).to_le_bytes());
    out.extend_from_slice(&crc32fast::hash(payload).to_le_bytes());
    out.extend_from_slice(payload);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(payloads: &[&[u8]], batch_start: u64) -> Vec<u8> {
        let mut out = Vec::new();
        for p in payloads {
            encode(&mut out, |o| o.extend_from_slice(p)).unwrap();
        }
        stamp(&mut out, batch_start, 7);
        out
    }

    #[test]
    fn a_stamped_frame_reads_back_and_any_flipped_bit_is_caught() {
        let buf = framed(&[b"first", b"second record"], 40);
        let a = read(&buf, Framing::Current).unwrap();
        assert_eq!(
            (a.payload, a.batch_start, a.segment, a.len),
            (&b"first"[..], 40, Some(7), HEADER + 5)
        );
        let b = read(&buf[a.len..], Framing::Current).unwrap();
        assert_eq!((b.payload, b.batch_start), (&b"second record"[..], 40));
        for byte in 0..a.len {
            for bit in 0..8 {
                let mut bad = buf.clone();
                bad[byte] ^= 1 << bit;
                assert!(
                    read(&bad, Framing::Current).is_none(),
                    "byte {byte} bit {bit}"
                );
            }
        }
        // Every cut short of the whole frame is not a frame.
        for cut in 0..a.len {
            assert!(read(&buf[..cut], Framing::Current).is_none());
        }
    }

    #[test]
    fn a_scan_finds_the_next_frame_after_damage() {
        let mut buf = framed(&[b"one", b"two"], 40);
        let second = read(&buf, Framing::Current).unwrap().len;
        buf[2] ^= 0xFF;
        assert!(read(&buf, Framing::Current).is_none());
        let (at, f) = next_after(&buf, 0, Framing::Current).unwrap();
        assert_eq!((at, f.payload), (second, &b"two"[..]));
        assert!(next_after(&buf, second, Framing::Current).is_none());

        let mut legacy = Vec::new();
        encode_legacy(b"old one", &mut legacy);
        let next = legacy.len();
        encode_legacy(b"old two", &mut legacy);
        legacy[9] ^= 1;
        assert!(read(&legacy, Framing::Legacy).is_none());
        let (at, f) = next_after(&legacy, 0, Framing::Legacy).unwrap();
        assert_eq!((at, f.payload), (next, &b"old two"[..]));

        let mut v3 = Vec::new();
        encode_v3(b"three one", 48, &mut v3);
        let next = v3.len();
        encode_v3(b"three two", 48, &mut v3);
        v3[2] ^= 1;
        assert!(read(&v3, Framing::V3).is_none());
        let (at, f) = next_after(&v3, 0, Framing::V3).unwrap();
        assert_eq!((at, f.payload, f.segment), (next, &b"three two"[..], None));
        assert!(
            read(&v3[next..], Framing::Current).is_none(),
            "not a format 4 frame"
        );
    }

    #[test]
    fn a_cut_frame_says_how_long_it_was_meant_to_be_only_for_its_own_segment() {
        let buf = framed(&[b"a record of some length"], 48);
        let whole = read(&buf, Framing::Current).unwrap().len;
        assert_eq!(claimed_len(&buf[..30], Framing::Current, 7), Some(whole));
        assert_eq!(claimed_len(&buf[..30], Framing::Current, 8), None);
        assert_eq!(claimed_len(&buf[..10], Framing::Current, 7), None);
    }
}
