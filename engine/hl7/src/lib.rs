//! Pure HL7v2 for Wyvern: a zero-copy index over one message, path queries, escape decoding,
//! NHS numbers, HL7 timestamps, batch splitting and the ACK builder.
//!
//! This crate does no I/O and has no async or clock dependency, so it compiles to `wasm32` and
//! WebAssembly plugins reuse exactly the parser the engine uses. Parsing is lenient: it only
//! fails when there is no usable MSH header; everything else is reported by [`check`] so that
//! strictness is a decision of the caller, not a mode of the parser.
//!
//! ```
//! let raw = b"MSH|^~\\&|PAS|RX1|WYVERN|CHIE|20261125143000||ADT^A01^ADT_A01|MSG0001|P|2.4\r\
//!             PID|1||9990000018^^^NHS^NH~K123^^^RX1^MR||SMITH^JOHN\r";
//! let msg = wyvern_hl7::Message::parse(raw).unwrap();
//! assert_eq!(msg.get("MSH-9.2").unwrap().as_str(), "A01");
//! assert_eq!(msg.get("PID-3[2].1").unwrap().as_str(), "K123");
//! assert_eq!(msg.nhs_number().unwrap().unwrap().as_str(), "9990000018");
//! ```

mod ack;
mod batch;
pub mod check;
mod delimiters;
pub mod edit;
mod error;
pub mod escape;
mod indexed;
mod message;
mod nhs;
mod path;
mod split;
pub mod synthetic;
mod timestamp;
mod value;

pub use ack::{
    AckCode, AckError, AckIntent, AckMode, AckReading, ErrorCode, ErrorLocation, build_ack,
    build_ack_without_message, read_ack,
};
pub use batch::{
    Batch, batch_header_msh, is_batch, messages_in_file, split_batch, with_cr_segments,
};
pub use delimiters::Delimiters;
pub use error::ParseError;
pub use indexed::IndexedSegment;
pub use message::{Message, MessageType, Segment};
pub use nhs::{NhsNumber, NhsNumberError};
pub use path::{Path, PathError, Selector};
pub use timestamp::{Precision, Timestamp, TimestampError};
pub use value::Value;
