//! MLLP framing as a tokio-util codec.
//!
//! Real links deliver several frames in one read, a frame across many reads, and stray bytes
//! between frames (keep-alives, a sender's restart). The decoder skips bytes outside a frame
//! (counting them), finds `<FS><CR>` even when split across reads, and never buffers more than
//! `max_frame`: past that it keeps only the head (for the reject record and the ACK's MSA-2) and
//! discards the rest up to the end block, so the connection stays usable.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tokio_util::codec::{Decoder, Encoder};

const START: u8 = 0x0B;
const END: [u8; 2] = [0x1C, 0x0D];
/// How much of an oversized frame is kept for the record.
pub const OVERSIZE_HEAD: usize = 64 * 1024;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MllpFrame {
    /// A complete payload (without the framing bytes).
    Message(Bytes),
    /// A frame longer than `max_frame`: its first bytes and its full length.
    Oversized { head: Bytes, len: usize },
}

#[derive(Debug)]
enum State {
    Outside,
    /// Inside a frame; `scanned` bytes are known not to hold the end block.
    Inside {
        scanned: usize,
    },
    /// Discarding an oversized frame until its end block.
    Oversized {
        head: Bytes,
        len: usize,
        pending_fs: bool,
    },
}

/// Decodes MLLP frames and encodes payloads into frames.
#[derive(Debug)]
pub struct MllpCodec {
    max_frame: usize,
    state: State,
    junk: u64,
}

impl MllpCodec {
    pub fn new(max_frame: usize) -> Self {
        MllpCodec {
            max_frame,
            state: State::Outside,
            junk: 0,
        }
    }

    /// True while a frame has started and not yet ended.
    pub fn in_frame(&self) -> bool {
        !matches!(self.state, State::Outside)
    }

    /// Bytes skipped outside frames since the last call.
    pub fn take_junk(&mut self) -> u64 {
        std::mem::take(&mut self.junk)
    }
}

fn find_end(b: &[u8]) -> Option<usize> {
    memchr::memmem::find(b, &END)
}

impl Decoder for MllpCodec {
    type Item = MllpFrame;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<MllpFrame>, Self::Error> {
        loop {
            match &mut self.state {
                State::Outside => match memchr::memchr(START, buf) {
                    None => {
                        self.junk += buf.len() as u64;
                        buf.clear();
                        return Ok(None);
                    }
                    Some(p) => {
                        self.junk += p as u64;
                        buf.advance(p + 1);
                        self.state = State::Inside { scanned: 0 };
                    }
                },
                State::Inside { scanned } => {
                    let from = scanned.saturating_sub(1);
                    if let Some(p) = find_end(&buf[from..]).map(|p| p + from) {
                        let frame = buf.split_to(p).freeze();
                        buf.advance(END.len());
                        self.state = State::Outside;
                        if p > self.max_frame {
                            return Ok(Some(MllpFrame::Oversized {
                                head: frame.slice(..OVERSIZE_HEAD.min(p)),
                                len: p,
                            }));
                        }
                        return Ok(Some(MllpFrame::Message(frame)));
                    }
                    let pending_fs = buf.last() == Some(&END[0]);
                    // A trailing FS may be the start of the end block: it is not content yet.
                    let content = buf.len() - usize::from(pending_fs);
                    if content > self.max_frame {
                        let head = Bytes::copy_from_slice(&buf[..OVERSIZE_HEAD.min(content)]);
                        let len = buf.len();
                        buf.clear();
                        self.state = State::Oversized {
                            head,
                            len,
                            pending_fs,
                        };
                        continue;
                    }
                    *scanned = buf.len();
                    return Ok(None);
                }
                State::Oversized {
                    head,
                    len,
                    pending_fs,
                } => {
                    if buf.is_empty() {
                        return Ok(None);
                    }
                    let end = if *pending_fs && buf[0] == END[1] {
                        *len -= 1;
                        Some(1)
                    } else {
                        find_end(buf).map(|p| {
                            *len += p;
                            p + END.len()
                        })
                    };
                    match end {
                        Some(consumed) => {
                            buf.advance(consumed);
                            let frame = MllpFrame::Oversized {
                                head: std::mem::take(head),
                                len: *len,
                            };
                            self.state = State::Outside;
                            return Ok(Some(frame));
                        }
                        None => {
                            *len += buf.len();
                            *pending_fs = buf.last() == Some(&END[0]);
                            buf.clear();
                            return Ok(None);
                        }
                    }
                }
            }
        }
    }

    /// At end of stream a partial frame is dropped: it was never acknowledged, so the sender
    /// still owns it and will resend.
    fn decode_eof(&mut self, buf: &mut BytesMut) -> Result<Option<MllpFrame>, Self::Error> {
        let frame = self.decode(buf)?;
        if frame.is_none() {
            buf.clear();
        }
        Ok(frame)
    }
}

impl Encoder<Bytes> for MllpCodec {
    type Error = std::io::Error;

    fn encode(&mut self, payload: Bytes, dst: &mut BytesMut) -> Result<(), Self::Error> {
        let p = &payload[..];
        dst.reserve(p.len() + 3);
        dst.put_u8(START);
        dst.put_slice(p);
        dst.put_slice(&END);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(max: usize, chunks: &[&[u8]]) -> (Vec<MllpFrame>, u64) {
        let mut c = MllpCodec::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        for chunk in chunks {
            buf.extend_from_slice(chunk);
            while let Some(f) = c.decode(&mut buf).unwrap() {
                out.push(f);
            }
        }
        (out, c.take_junk())
    }

    fn msg(s: &str) -> MllpFrame {
        MllpFrame::Message(Bytes::copy_from_slice(s.as_bytes()))
    }

    #[test]
    fn several_frames_in_one_read() {
        let (f, junk) = frames(100, &[b"\x0bA\x1c\x0d\x0bB\x1c\x0d\x0bC\x1c\x0d"]);
        assert_eq!(f, [msg("A"), msg("B"), msg("C")]);
        assert_eq!(junk, 0);
    }

    #[test]
    fn frame_split_everywhere_including_the_end_block() {
        let whole = b"\x0bMSH|1\x1c\x0d";
        for cut in 0..whole.len() {
            let (f, _) = frames(100, &[&whole[..cut], &whole[cut..]]);
            assert_eq!(f, [msg("MSH|1")], "cut at {cut}");
        }
        let bytes: Vec<&[u8]> = whole.chunks(1).collect();
        assert_eq!(frames(100, &bytes).0, [msg("MSH|1")]);
    }

    #[test]
    fn junk_outside_frames_is_skipped_and_counted() {
        let (f, junk) = frames(100, &[b"\r\nxx\x0bA\x1c\x0d\x00\x00", b"zz\x0bB\x1c\x0d"]);
        assert_eq!(f, [msg("A"), msg("B")]);
        assert_eq!(junk, 8);
    }

    #[test]
    fn fs_without_cr_is_content() {
        let (f, _) = frames(100, &[b"\x0bA\x1cB\x1c\x0d"]);
        assert_eq!(f, [msg("A\x1cB")]);
    }

    #[test]
    fn oversized_frame_keeps_head_and_connection() {
        let big = vec![b'x'; 300];
        let mut input = vec![0x0b];
        input.extend_from_slice(&big);
        input.extend_from_slice(b"\x1c\x0d\x0bOK\x1c\x0d");
        for chunk in [1usize, 7, 64, 1000] {
            let chunks: Vec<&[u8]> = input.chunks(chunk).collect();
            let (f, _) = frames(100, &chunks);
            assert_eq!(f.len(), 2, "chunk {chunk}");
            match &f[0] {
                MllpFrame::Oversized { head, len } => {
                    assert_eq!(*len, 300, "chunk {chunk}");
                    assert!(head.len() >= 100 && head.iter().all(|&b| b == b'x'));
                }
                other => panic!("{other:?}"),
            }
            assert_eq!(f[1], msg("OK"));
        }
    }

    /// Found by the `mllp_codec` fuzz target: an oversized frame whose read ended on the FS of
    /// its end block kept that FS in the head.
    #[test]
    fn fuzz_regression_oversize_head_excludes_a_pending_fs() {
        let data = include_bytes!("../../tests/fuzz-regressions/mllp-oversize-len.bin");
        let (rest, chunk) = (&data[1..], 8);
        let chunks: Vec<&[u8]> = rest.chunks(chunk).collect();
        let (f, _) = frames(35, &chunks);
        match &f[..] {
            [MllpFrame::Oversized { head, len }] => {
                assert_eq!(*len, 39);
                assert_eq!(
                    &head[..],
                    &rest[88..127],
                    "the head is the frame's content, no FS"
                );
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn exactly_max_frame_is_accepted() {
        let mut input = vec![0x0b];
        input.extend_from_slice(&[b'y'; 100]);
        input.extend_from_slice(b"\x1c\x0d");
        let (f, _) = frames(100, &[&input]);
        assert!(matches!(&f[0], MllpFrame::Message(b) if b.len() == 100));
    }

    #[test]
    fn partial_frame_at_eof_is_dropped() {
        let mut c = MllpCodec::new(100);
        let mut buf = BytesMut::from(&b"\x0bhalf"[..]);
        assert_eq!(c.decode_eof(&mut buf).unwrap(), None);
        assert!(buf.is_empty());
    }

    #[test]
    fn encode_frames() {
        let mut c = MllpCodec::new(10);
        let mut dst = BytesMut::new();
        c.encode(Bytes::from_static(b"AB"), &mut dst).unwrap();
        assert_eq!(&dst[..], b"\x0bAB\x1c\x0d");
    }
}
