//! Every failure in Wyvern is one of four classes, and the class alone decides what happens
//! next: answer the sender, retry, or park the message where a person can see it.

/// How a failure is handled.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// Bad input: answer AR (or 4xx); resending the same bytes will never work. Not retried.
    Reject,
    /// Not accepted now: answer AE (or 5xx); the sender may resend.
    Error,
    /// A dependency is briefly unavailable: retry with backoff.
    Transient,
    /// Will not succeed by retrying: dead-letter it, visible and replayable.
    Permanent,
}

impl ErrorClass {
    pub fn as_str(&self) -> &'static str {
        match self {
            ErrorClass::Reject => "reject",
            ErrorClass::Error => "error",
            ErrorClass::Transient => "transient",
            ErrorClass::Permanent => "permanent",
        }
    }
}
