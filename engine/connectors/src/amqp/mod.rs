//! The AMQP 0-9-1 publisher (RabbitMQ): one connection with [`LANES`] confirm-mode channels,
//! opened on first use and again after any failure; the exchange (and, when asked, a durable
//! queue and its binding) declared on every (re)connect. A publish counts only when the broker
//! confirms it; `mandatory` makes an unroutable message come back instead of vanishing.
//!
//! Why lanes: a channel's confirms come back in one stream, so one channel is bounded by the
//! broker's confirm round trip (a quorum queue's Raft commit). Messages are spread over the
//! lanes by the caller's lane number (the ordering key's hash), so one key always takes the
//! same channel and keeps its order, while different keys' confirms overlap.
//!
//! Why not lapin (which the queue *source* still uses): publishing through it woke its I/O
//! thread and settled a promise per message, about a quarter of the engine's CPU on the way
//! to RabbitMQ. Here a batch is encoded into one buffer and written at once (`wire.rs`), one
//! reader task per connection takes the broker's frames (`connection.rs`), and confirms are
//! a tag per channel (`confirms.rs`).

mod confirms;
mod connection;
mod handshake;
mod publisher;
mod wire;

pub use publisher::{AmqpPublisher, Unconfirmed};

/// What the publisher's reader makes of bytes from a broker, for the fuzzer: frames cut from
/// `bytes` as they arrive in `chunk`-sized reads, each applied to the confirm bookkeeping of
/// eight channels with a few publishes waiting. Returns how many frames were taken before the
/// first the reader refuses (an oversized or malformed frame ends a connection). Never panics.
#[doc(hidden)]
pub fn read_as_publisher(bytes: &[u8], chunk: usize, frame_max: usize) -> usize {
    connection::read_for_fuzzing(bytes, chunk.max(1), frame_max.max(8), LANES)
}

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct AmqpTarget {
    pub url: String,
    pub exchange: String,
    pub queue: Option<AmqpQueueSpec>,
}

#[derive(Debug, Clone)]
pub struct AmqpQueueSpec {
    pub name: String,
    pub bind: String,
    pub quorum: bool,
}

/// What the broker said, or why a message could not be put on the wire.
#[derive(Debug, Clone, thiserror::Error)]
pub enum PublishError {
    /// Worth retrying: the broker is away, the channel closed, a nack.
    #[error("{0}")]
    Transient(String),
    /// This message can never be published as it is (e.g. its routing key is over AMQP's
    /// 255-byte limit); retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// Confirm-mode channels per publisher.
pub const LANES: usize = 8;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub routing_key: String,
    pub body: &'a [u8],
    pub message_id: &'a str,
    /// The AMQP `content_type` (a media type such as `application/fhir+json`).
    pub content_type: &'a str,
    /// Any number, taken modulo [`LANES`]; equal lanes keep their relative order.
    pub lane: u64,
}

#[cfg(test)]
mod tests {
    /// The fuzzer's entry point on well-formed frames: ack, nack, return (method, header,
    /// body), heartbeat, channel close — all taken, in reads of any size.
    #[test]
    fn a_brokers_frames_are_taken_in_reads_of_any_size() {
        let seed = include_bytes!("../../../../fuzz/seeds/amqp_frames/confirms");
        for chunk in [1, 7, 4096] {
            assert_eq!(super::read_as_publisher(&seed[1..], chunk, 4096), 7);
        }
        assert_eq!(super::read_as_publisher(b"\x01\x00", 1, 4096), 0);
        assert_eq!(
            super::read_as_publisher(&[1, 0, 1, 0xff, 0xff, 0xff, 0xff, 0], 3, 4096),
            0,
            "a frame over frame_max is refused before it is buffered"
        );
    }
}
