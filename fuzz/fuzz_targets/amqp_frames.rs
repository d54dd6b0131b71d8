//! Bytes from an AMQP broker as the publisher's connection reads them, in any chunking:
//! frames cut out and parsed (amq-protocol), acks, nacks, returns and closes applied to the
//! confirm bookkeeping. Invariant: it never panics, whatever a broker (or something posing as
//! one) sends.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&shape, rest)) = data.split_first() else { return };
    let chunk = 1 + usize::from(shape & 0x0f) * 37;
    let frame_max = 8 + usize::from(shape >> 4) * 4096;
    let _ = wyvern_connectors::amqp::read_as_publisher(rest, chunk, frame_max);
});
