//! AMQP 0-9-1 frames on the wire: a publish written by hand (the hot path: one method frame,
//! one content header, the body in frames of at most `frame_max`), everything else encoded and
//! parsed with `amq-protocol`, and [`FrameBuffer`], which cuts whole frames out of what the
//! socket gave.
//!
//! A frame is `type:u8 channel:u16 size:u32 payload[size] 0xCE`.

use amq_protocol::frame::{AMQPFrame, WriteContext, gen_frame, parse_frame};

/// Frame types (AMQP 0-9-1 §4.2.3).
const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_END: u8 = 0xCE;
/// Type, channel and size before the payload, and the end octet after it.
pub(crate) const FRAME_OVERHEAD: usize = 8;

/// `basic` class and its `publish` method.
const BASIC: u16 = 60;
const BASIC_PUBLISH: u16 = 40;
/// Property flags of the four properties a publish carries (content-type, delivery-mode,
/// message-id, app-id: bits 15, 12, 7 and 3).
const PROPERTY_FLAGS: u16 = 0x8000 | 0x1000 | 0x0080 | 0x0008;
/// `delivery-mode` 2: persistent.
const PERSISTENT: u8 = 2;

/// What a published message carries besides its body. Every string is at most 255 bytes
/// (checked by the caller: AMQP's short string).
pub(crate) struct Publish<'a> {
    pub channel: u16,
    pub exchange: &'a str,
    pub routing_key: &'a str,
    pub message_id: &'a str,
    pub content_type: &'a str,
    pub body: &'a [u8],
}

/// Appends a `basic.publish` (mandatory, persistent, app-id `wyvern`) and its content to
/// `out`, the body cut into frames that fit `frame_max`.
pub(crate) fn put_publish(out: &mut Vec<u8>, p: &Publish<'_>, frame_max: usize) {
    let method = begin(out, FRAME_METHOD, p.channel);
    out.extend_from_slice(&BASIC.to_be_bytes());
    out.extend_from_slice(&BASIC_PUBLISH.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // reserved (ticket)
    put_short_string(out, p.exchange);
    put_short_string(out, p.routing_key);
    out.push(0b01); // mandatory, not immediate
    end(out, method);

    let header = begin(out, FRAME_HEADER, p.channel);
    out.extend_from_slice(&BASIC.to_be_bytes());
    out.extend_from_slice(&0u16.to_be_bytes()); // weight
    out.extend_from_slice(&(p.body.len() as u64).to_be_bytes());
    out.extend_from_slice(&PROPERTY_FLAGS.to_be_bytes());
    put_short_string(out, p.content_type);
    out.push(PERSISTENT);
    put_short_string(out, p.message_id);
    put_short_string(out, "wyvern");
    end(out, header);

    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD).max(1);
    for part in p.body.chunks(chunk) {
        let body = begin(out, FRAME_BODY, p.channel);
        out.extend_from_slice(part);
        end(out, body);
    }
}

/// Bytes [`put_publish`] appends, to size a buffer once.
pub(crate) fn publish_len(p: &Publish<'_>, frame_max: usize) -> usize {
    let chunk = frame_max.saturating_sub(FRAME_OVERHEAD).max(1);
    let strings = p.exchange.len() + p.routing_key.len() + p.content_type.len();
    let frames = 2 + p.body.len().div_ceil(chunk);
    frames * FRAME_OVERHEAD + 60 + strings + p.message_id.len() + p.body.len()
}

/// Writes a frame's type and channel and a size to be filled in by [`end`].
fn begin(out: &mut Vec<u8>, kind: u8, channel: u16) -> usize {
    out.push(kind);
    out.extend_from_slice(&channel.to_be_bytes());
    let at = out.len();
    out.extend_from_slice(&[0; 4]);
    at
}

fn end(out: &mut Vec<u8>, size_at: usize) {
    let size = (out.len() - size_at - 4) as u32;
    out[size_at..size_at + 4].copy_from_slice(&size.to_be_bytes());
    out.push(FRAME_END);
}

fn put_short_string(out: &mut Vec<u8>, s: &str) {
    debug_assert!(s.len() <= 255, "checked by the caller");
    out.push(s.len().min(255) as u8);
    out.extend_from_slice(&s.as_bytes()[..s.len().min(255)]);
}

/// Encodes any frame (the handshake, declarations, replies): rare, so `amq-protocol`'s
/// generator is used as it is.
pub(crate) fn encode(frame: &AMQPFrame) -> Vec<u8> {
    match gen_frame(frame)(WriteContext::from(Vec::new())) {
        Ok(ctx) => ctx.write,
        // Only a fixed-size buffer can run out; a Vec grows.
        Err(e) => unreachable!("encoding into a Vec cannot fail: {e:?}"),
    }
}

/// The frame types a broker sends but a publisher has no use for are still parsed, so the
/// stream stays in step.
#[derive(Debug, thiserror::Error)]
pub(crate) enum WireError {
    #[error("the broker sent a frame of {size} bytes; at most {max} were agreed")]
    TooLarge { size: usize, max: usize },
    #[error(
        "the broker sent a frame that does not parse as AMQP 0-9-1 (type {kind}, {size} bytes)"
    )]
    Malformed { kind: u8, size: usize },
}

/// Bytes read from the broker, cut into whole frames.
#[derive(Debug, Default)]
pub(crate) struct FrameBuffer {
    buf: Vec<u8>,
    start: usize,
}

impl FrameBuffer {
    /// Room to read into: the unread tail is moved to the front first.
    pub(crate) fn spare(&mut self, at_least: usize) -> &mut Vec<u8> {
        if self.start > 0 {
            self.buf.drain(..self.start);
            self.start = 0;
        }
        self.buf.reserve(at_least);
        &mut self.buf
    }

    /// The next whole frame, if one has arrived. `max` is the agreed frame size: a larger one
    /// is refused before it is buffered whole.
    pub(crate) fn next_frame(&mut self, max: usize) -> Result<Option<AMQPFrame>, WireError> {
        let rest = &self.buf[self.start..];
        if rest.len() < 7 {
            return Ok(None);
        }
        let size = u32::from_be_bytes([rest[3], rest[4], rest[5], rest[6]]) as usize;
        if size + FRAME_OVERHEAD > max {
            return Err(WireError::TooLarge {
                size: size + FRAME_OVERHEAD,
                max,
            });
        }
        let total = size + FRAME_OVERHEAD;
        if rest.len() < total {
            return Ok(None);
        }
        let kind = rest[0];
        let frame = &rest[..total];
        let parsed = match parse_frame(frame) {
            Ok(([], f)) => f,
            _ => return Err(WireError::Malformed { kind, size }),
        };
        self.start += total;
        Ok(Some(parsed))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use amq_protocol::frame::AMQPContentHeader;
    use amq_protocol::protocol::{AMQPClass, basic};

    fn publish(body: &[u8]) -> Publish<'_> {
        Publish {
            channel: 3,
            exchange: "wessex.adt",
            routing_key: "adt.A01",
            message_id: "01JD0000000000000000000000-0",
            content_type: "x-application/hl7-v2+er7",
            body,
        }
    }

    /// The hand-written publish is byte for byte what `amq-protocol` makes of the same frames.
    #[test]
    fn a_publish_is_what_the_reference_encoder_makes() {
        let body: Vec<u8> = (0..300u32).map(|i| i as u8).collect();
        let p = publish(&body);
        let frame_max = 108; // 100 bytes of body a frame: 3 body frames
        let mut ours = Vec::new();
        put_publish(&mut ours, &p, frame_max);

        let props = basic::AMQPProperties::default()
            .with_content_type(p.content_type.into())
            .with_delivery_mode(2)
            .with_message_id(p.message_id.into())
            .with_app_id("wyvern".into());
        let mut reference = encode(&AMQPFrame::Method(
            3,
            AMQPClass::Basic(basic::AMQPMethod::Publish(basic::Publish {
                exchange: p.exchange.into(),
                routing_key: p.routing_key.into(),
                mandatory: true,
                immediate: false,
            })),
        ));
        reference.extend(encode(&AMQPFrame::Header(
            3,
            AMQPContentHeader {
                class_id: 60,
                body_size: 300,
                properties: props,
            },
        )));
        for part in body.chunks(100) {
            reference.extend(encode(&AMQPFrame::Body(3, part.to_vec())));
        }
        assert_eq!(ours, reference);
        assert!(publish_len(&p, frame_max) >= ours.len());
    }

    #[test]
    fn an_empty_body_has_no_body_frame() {
        let mut out = Vec::new();
        put_publish(&mut out, &publish(b""), 4096);
        let mut frames = FrameBuffer::default();
        frames.spare(out.len()).extend_from_slice(&out);
        let mut kinds = Vec::new();
        while let Some(f) = frames.next_frame(4096).expect("parses") {
            kinds.push(matches!(f, AMQPFrame::Method(..)) as u8 + 2 * f.is_header() as u8);
        }
        assert_eq!(kinds, [1, 2]);
    }

    /// Frames split across reads come out whole, one at a time; a frame over the agreed size
    /// and garbage are errors, never a panic.
    #[test]
    fn frames_are_cut_from_reads_of_any_size() {
        let mut out = Vec::new();
        put_publish(&mut out, &publish(&[7; 1000]), 256);
        put_publish(&mut out, &publish(b"x"), 256);
        let mut frames = FrameBuffer::default();
        let mut n = 0;
        for byte in &out {
            frames.spare(1).push(*byte);
            while frames.next_frame(256).expect("parses").is_some() {
                n += 1;
            }
        }
        assert_eq!(
            n,
            2 + 5 + 2 + 1,
            "1,000 bytes in frames of 248, then one byte"
        );

        let mut big = FrameBuffer::default();
        big.spare(7).extend_from_slice(&[1, 0, 0, 0, 1, 0, 0]);
        assert!(matches!(
            big.next_frame(4096),
            Err(WireError::TooLarge { .. })
        ));
        let mut junk = FrameBuffer::default();
        junk.spare(9)
            .extend_from_slice(&[9, 0, 0, 0, 0, 0, 1, 0, 0xCE]);
        assert!(matches!(
            junk.next_frame(4096),
            Err(WireError::Malformed { .. })
        ));
    }
}
