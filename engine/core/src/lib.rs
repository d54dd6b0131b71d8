//! The vocabulary every Wyvern crate shares: the message [`Envelope`], its [`MessageId`], the
//! [`ErrorClass`] every failure is sorted into, and an injectable [`Clock`].
//!
//! Invariant: this crate knows nothing of transports, storage or plugins, so anything may
//! depend on it without pulling in sockets, SQLite or wasmtime.

mod clock;
mod envelope;
mod error;

pub use clock::{Clock, FixedClock, SystemClock, display_timestamp, hl7_timestamp};
pub use envelope::{ContentType, Envelope, MessageId, Metadata};
pub use error::ErrorClass;
