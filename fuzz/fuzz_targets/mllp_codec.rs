//! The MLLP decoder fed any bytes in any chunking. Invariants: it never panics, never returns
//! a frame over max_frame as a message, and a frame's reported length is at least its head.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tokio_util::codec::Decoder;
use wyvern_connectors::mllp::{MllpCodec, MllpFrame};

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let max_frame = 16 + usize::from(shape & 0x3f);
    let chunk = 1 + usize::from(shape >> 6) * 7;
    let mut codec = MllpCodec::new(max_frame);
    let mut buf = BytesMut::new();
    let check = |f: MllpFrame| match f {
        MllpFrame::Message(m) => assert!(m.len() <= max_frame),
        MllpFrame::Oversized { head, len } => assert!(len > max_frame && head.len() <= len),
    };
    for piece in rest.chunks(chunk) {
        buf.extend_from_slice(piece);
        while let Some(f) = codec.decode(&mut buf).expect("decode never errors") {
            check(f);
        }
    }
    while let Some(f) = codec.decode_eof(&mut buf).expect("decode never errors") {
        check(f);
    }
});
