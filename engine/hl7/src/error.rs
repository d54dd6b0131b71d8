//! Why a byte string could not be indexed as an HL7v2 message at all.
//!
//! Only the header matters here: a message whose MSH is readable always parses, and any later
//! problem is a [`crate::check`] finding instead.

/// The ways a payload can fail to be an HL7v2 message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    #[error("the message is empty")]
    Empty,
    #[error("the message does not start with an MSH segment (it starts with {found:?})")]
    NoMsh { found: String },
    #[error("the MSH segment is truncated: {0}")]
    TruncatedHeader(&'static str),
    #[error("the MSH delimiters are invalid: {0}")]
    BadDelimiters(String),
}
