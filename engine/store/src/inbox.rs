//! What the inbox keeps for every message it answered, accepted or not.

use bytes::Bytes;
use wyvern_core::{Envelope, MessageId};

/// The state of an inbox row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum InboxStatus {
    /// Committed and acknowledged AA/CA; the engine owns it now.
    Accepted,
    /// Answered AR/CR; kept so a person can see what was sent and why it was refused.
    Rejected,
    /// Acknowledged AA/CA, but a route step filtered it out: nothing to deliver.
    Filtered,
    /// A resend of a message already accepted (same MSH-3/4/10, same bytes): the original ACK
    /// was sent again; not delivered twice.
    Duplicate,
    /// The control id of an accepted message with other content: answered AE.
    Conflict,
    /// A route step could not process it this time (a plugin error, trap or limit): answered
    /// AE, not delivered; the sender may resend.
    Failed,
}

impl InboxStatus {
    pub fn as_str(&self) -> &'static str {
        match self {
            InboxStatus::Accepted => "accepted",
            InboxStatus::Rejected => "rejected",
            InboxStatus::Filtered => "filtered",
            InboxStatus::Duplicate => "duplicate",
            InboxStatus::Conflict => "conflict",
            InboxStatus::Failed => "failed",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "accepted" => Some(InboxStatus::Accepted),
            "rejected" => Some(InboxStatus::Rejected),
            "filtered" => Some(InboxStatus::Filtered),
            "duplicate" => Some(InboxStatus::Duplicate),
            "conflict" => Some(InboxStatus::Conflict),
            "failed" => Some(InboxStatus::Failed),
            _ => None,
        }
    }
}

/// One row to commit: the envelope, what was decided, and the ACK that will be sent.
#[derive(Debug, Clone)]
pub struct InboxRecord {
    pub envelope: Envelope,
    pub status: InboxStatus,
    /// Why it was rejected, for a person.
    pub error: Option<String>,
    /// The exact ACK bytes sent back (kept so a duplicate can get the same answer).
    pub ack: Option<Bytes>,
    /// The length received; larger than `envelope.raw` when only the head of an oversized
    /// frame was kept.
    pub raw_len: usize,
    /// Where it must be delivered: one outbox entry each, created atomically with the record.
    pub deliveries: Vec<Delivery>,
    /// [`wyvern_core::content_digest`] of `envelope.raw`, when the caller has it already
    /// (duplicate detection computed it); the index computes it otherwise.
    pub digest: Option<wyvern_core::ContentDigest>,
}

/// One destination a message must reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub route: String,
    pub destination: String,
    /// Messages with the same key are delivered in the order they were received.
    pub order_key: String,
    /// What to send; `None` sends the message as received.
    pub payload: Option<Bytes>,
    /// What `payload` is, when not what the message was received as (a mapped Bundle is FHIR
    /// JSON; FHIR received as XML is delivered as JSON). `None`: the message's own.
    pub content_type: Option<wyvern_core::ContentType>,
}

impl InboxRecord {
    pub fn id(&self) -> MessageId {
        self.envelope.id
    }
}
