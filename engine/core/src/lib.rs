//! The vocabulary every Wyvern crate shares: the message [`Envelope`], its [`MessageId`], the
//! [`ErrorClass`] every failure is sorted into, an injectable [`Clock`], and the
//! [`content_digest`] duplicate detection compares.
//!
//! Invariant: this crate knows nothing of transports, storage or plugins, so anything may
//! depend on it without pulling in sockets, SQLite or wasmtime.

mod clock;
mod digest;
mod envelope;
mod error;

pub use clock::{Clock, FixedClock, SystemClock, display_timestamp, hl7_timestamp};
pub use digest::{ContentDigest, content_digest};
pub use envelope::{ContentType, Envelope, MessageId, Metadata};
pub use error::ErrorClass;
