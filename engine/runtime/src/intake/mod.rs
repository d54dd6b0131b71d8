//! A route's intake: from a received frame to a stored record and the answer its sender gets.
//! Every source that carries HL7v2 (MLLP, a folder, a queue) goes through here, so what is
//! accepted, refused, deduplicated and answered is decided the same way for all of them.
//!
//! - `assess.rs`: the pure part — what a frame is (parse, acceptance checks, the route's steps,
//!   the sender binding) and the ACK it earns, with no I/O.
//! - `dedup.rs`: the duplicate window (a resend is answered with the original's ACK).
//! - `ack.rs`: every answer that replaces the assessed one (a resend in flight, a reused control
//!   id, a store failure, an operator's stop), in one place.
//! - `inbox.rs`: `Hl7Inbox` — assess, check duplicates, commit, and only then answer.
//! - `ingest.rs`: where the commit goes (the embedded store, or one several nodes share).
//! - `batch.rs`: an FHS/BHS batch on a `split` route, stored and answered whole.
//!
//! Invariant: an AA/CA leaves only after the record's commit is durable; every other answer
//! leaves the message with its sender (AE) or says why it is refused for good (AR).

pub(crate) mod ack;
pub(crate) mod assess;
pub(crate) mod batch;
pub(crate) mod dedup;
pub(crate) mod inbox;
pub mod ingest;
