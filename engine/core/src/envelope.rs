//! One message as it travels through Wyvern: id, raw bytes, content type and the metadata read
//! from it at receipt. The raw bytes are never rewritten in place; steps make new envelopes.

use std::fmt;

use bytes::Bytes;

/// A message's identity inside Wyvern: a ULID, so ids sort by time of receipt.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct MessageId(pub ulid::Ulid);

impl MessageId {
    /// A new id stamped with `millis`; random bits make ids from one millisecond distinct.
    pub fn new(millis: i64) -> Self {
        let ts = std::time::UNIX_EPOCH
            + std::time::Duration::from_millis(u64::try_from(millis).unwrap_or(0));
        MessageId(ulid::Ulid::from_datetime(ts))
    }

    pub fn parse(s: &str) -> Option<Self> {
        ulid::Ulid::from_string(s).ok().map(MessageId)
    }

    /// The 16 bytes of the ULID, big-endian (so byte order is time order).
    pub fn to_bytes(self) -> [u8; 16] {
        self.0.0.to_be_bytes()
    }

    pub fn from_bytes(b: [u8; 16]) -> Self {
        MessageId(ulid::Ulid(u128::from_be_bytes(b)))
    }
}

impl fmt::Display for MessageId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// What the bytes are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ContentType {
    Hl7v2,
    FhirJson,
    FhirXml,
    Json,
}

impl ContentType {
    pub fn as_str(&self) -> &'static str {
        match self {
            ContentType::Hl7v2 => "hl7v2",
            ContentType::FhirJson => "fhir+json",
            ContentType::FhirXml => "fhir+xml",
            ContentType::Json => "json",
        }
    }

    /// The media type receivers are told (AMQP `content_type`, HTTP `Content-Type`).
    pub fn mime(&self) -> &'static str {
        match self {
            ContentType::Hl7v2 => "application/hl7-v2",
            ContentType::FhirJson => "application/fhir+json",
            ContentType::FhirXml => "application/fhir+xml",
            ContentType::Json => "application/json",
        }
    }

    /// The file name extension a file destination uses unless told one.
    pub fn extension(&self) -> &'static str {
        match self {
            ContentType::Hl7v2 => "hl7",
            ContentType::FhirJson | ContentType::Json => "json",
            ContentType::FhirXml => "xml",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "hl7v2" => ContentType::Hl7v2,
            "fhir+json" => ContentType::FhirJson,
            "fhir+xml" => ContentType::FhirXml,
            "json" => ContentType::Json,
            _ => return None,
        })
    }
}

/// Facts read from a message at receipt, kept beside it for search and routing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Metadata {
    /// The source that received it (the route name).
    pub source: String,
    /// The remote address, for network sources.
    pub peer: Option<String>,
    /// MSH-3 and MSH-4.
    pub sending_application: Option<String>,
    pub sending_facility: Option<String>,
    /// MSH-9 as `CODE^TRIGGER`.
    pub message_type: Option<String>,
    /// MSH-10.
    pub control_id: Option<String>,
    /// A modulus-11-valid NHS number from PID-3.
    pub nhs_number: Option<String>,
    /// A modulus-11-valid NHS number from MRG-1: the patient a merge (A34, A36, A40 …) folded
    /// into `nhs_number`. The patient index gives the survivor the merged patient's records.
    pub merged_nhs_number: Option<String>,
}

/// A received message.
#[derive(Debug, Clone)]
pub struct Envelope {
    pub id: MessageId,
    pub received_at_ms: i64,
    pub content_type: ContentType,
    pub raw: Bytes,
    pub meta: Metadata,
    /// The envelope this one was split or derived from.
    pub parent: Option<MessageId>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_sort_by_time_and_round_trip() {
        let a = MessageId::new(1_000);
        let b = MessageId::new(2_000);
        assert!(a < b);
        assert_eq!(MessageId::parse(&a.to_string()), Some(a));
        assert_eq!(MessageId::from_bytes(a.to_bytes()), a);
        for ct in [
            ContentType::Hl7v2,
            ContentType::FhirJson,
            ContentType::FhirXml,
            ContentType::Json,
        ] {
            assert_eq!(ContentType::parse(ct.as_str()), Some(ct));
        }
    }
}
