//! The ACK builder: the reply every HL7v2 sender waits for.
//!
//! Original mode answers AA/AE/AR; enhanced mode (MSH-15/16 present) answers the commit codes
//! CA/CE/CR and only when MSH-15 asks (AL, ER, SU; NE never). The ACK uses the sender's own
//! delimiters, swaps sender and receiver, echoes MSH-10 in MSA-2 and, on AE/AR, carries an ERR
//! segment with the HL7 table 0357 code, the location and a sentence a person can act on.

use crate::{Delimiters, Message, escape::encode};

/// What the receiver decided about a message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckIntent {
    /// Stored safely (AA / CA).
    Accept,
    /// Not accepted now; the sender may resend (AE / CE).
    Error,
    /// Bad input; resending the same bytes will not help (AR / CR).
    Reject,
}

/// Original (AA/AE/AR) or enhanced (CA/CE/CR) acknowledgement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AckMode {
    Original,
    Enhanced,
}

/// An MSA-1 acknowledgement code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AckCode {
    AA,
    AE,
    AR,
    CA,
    CE,
    CR,
}

impl AckCode {
    pub fn new(mode: AckMode, intent: AckIntent) -> Self {
        match (mode, intent) {
            (AckMode::Original, AckIntent::Accept) => AckCode::AA,
            (AckMode::Original, AckIntent::Error) => AckCode::AE,
            (AckMode::Original, AckIntent::Reject) => AckCode::AR,
            (AckMode::Enhanced, AckIntent::Accept) => AckCode::CA,
            (AckMode::Enhanced, AckIntent::Error) => AckCode::CE,
            (AckMode::Enhanced, AckIntent::Reject) => AckCode::CR,
        }
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            AckCode::AA => "AA",
            AckCode::AE => "AE",
            AckCode::AR => "AR",
            AckCode::CA => "CA",
            AckCode::CE => "CE",
            AckCode::CR => "CR",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "AA" => AckCode::AA,
            "AE" => AckCode::AE,
            "AR" => AckCode::AR,
            "CA" => AckCode::CA,
            "CE" => AckCode::CE,
            "CR" => AckCode::CR,
            _ => return None,
        })
    }

    pub fn intent(&self) -> AckIntent {
        match self {
            AckCode::AA | AckCode::CA => AckIntent::Accept,
            AckCode::AE | AckCode::CE => AckIntent::Error,
            AckCode::AR | AckCode::CR => AckIntent::Reject,
        }
    }
}

impl AckMode {
    /// Enhanced mode when the sender filled MSH-15 or MSH-16.
    pub fn of(msg: &Message<'_>) -> Self {
        if msg.accept_ack_type().is_empty() && msg.application_ack_type().is_empty() {
            AckMode::Original
        } else {
            AckMode::Enhanced
        }
    }
}

/// HL7 table 0357, message error condition codes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    SegmentSequenceError = 100,
    RequiredFieldMissing = 101,
    DataTypeError = 102,
    TableValueNotFound = 103,
    UnsupportedMessageType = 200,
    UnsupportedEventCode = 201,
    UnsupportedProcessingId = 202,
    UnsupportedVersionId = 203,
    UnknownKeyIdentifier = 204,
    DuplicateKeyIdentifier = 205,
    ApplicationRecordLocked = 206,
    ApplicationInternalError = 207,
}

impl ErrorCode {
    pub fn code(&self) -> u16 {
        *self as u16
    }
    pub fn text(&self) -> &'static str {
        match self {
            ErrorCode::SegmentSequenceError => "Segment sequence error",
            ErrorCode::RequiredFieldMissing => "Required field missing",
            ErrorCode::DataTypeError => "Data type error",
            ErrorCode::TableValueNotFound => "Table value not found",
            ErrorCode::UnsupportedMessageType => "Unsupported message type",
            ErrorCode::UnsupportedEventCode => "Unsupported event code",
            ErrorCode::UnsupportedProcessingId => "Unsupported processing id",
            ErrorCode::UnsupportedVersionId => "Unsupported version id",
            ErrorCode::UnknownKeyIdentifier => "Unknown key identifier",
            ErrorCode::DuplicateKeyIdentifier => "Duplicate key identifier",
            ErrorCode::ApplicationRecordLocked => "Application record locked",
            ErrorCode::ApplicationInternalError => "Application internal error",
        }
    }
}

/// Where an error is: segment id, its sequence (1-based) and optionally a field.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ErrorLocation {
    pub segment: String,
    pub sequence: usize,
    pub field: Option<usize>,
}

impl ErrorLocation {
    pub fn field(segment: &str, sequence: usize, field: usize) -> Self {
        ErrorLocation {
            segment: segment.to_string(),
            sequence,
            field: Some(field),
        }
    }
}

/// The content of an ERR segment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckError {
    pub code: ErrorCode,
    pub location: Option<ErrorLocation>,
    /// What went wrong, for a person (ERR-8, and MSA-3 for older receivers).
    pub text: String,
}

impl std::fmt::Display for AckError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} ({}): {}",
            self.code.code(),
            self.code.text(),
            self.text
        )
    }
}

/// What an answer says, read back: MSA-1, MSA-2 and the reason (ERR-8, else MSA-3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckReading {
    /// MSA-1 as sent (may be something no standard knows).
    pub code_text: String,
    pub code: Option<AckCode>,
    /// MSA-2: the control id this ACK answers.
    pub control_id: String,
    pub text: String,
}

/// Reads an ACK (any delimiters). Fails only when it has no usable MSH.
pub fn read_ack(ack: &[u8]) -> Result<AckReading, crate::ParseError> {
    let a = Message::parse(ack)?;
    let get = |p: &str| {
        a.get(p)
            .map(|v| v.as_str().into_owned())
            .unwrap_or_default()
    };
    let code_text = get("MSA-1");
    let text = a
        .get("ERR-8")
        .or_else(|| a.get("MSA-3"))
        .map(|v| v.as_str().into_owned())
        .unwrap_or_default();
    Ok(AckReading {
        code: AckCode::parse(&code_text),
        code_text,
        control_id: get("MSA-2"),
        text,
    })
}

/// Builds the ACK for `original`. `None` when enhanced mode says no accept ACK is wanted
/// (MSH-15 = NE, or ER on success, or SU on failure). `ack_control_id` becomes the ACK's MSH-10;
/// `timestamp` its MSH-7 (HL7 format); the caller owns the clock so this stays deterministic.
pub fn build_ack(
    original: &Message<'_>,
    intent: AckIntent,
    error: Option<&AckError>,
    ack_control_id: &str,
    timestamp: &str,
) -> Option<Vec<u8>> {
    let mode = AckMode::of(original);
    if mode == AckMode::Enhanced {
        let wanted = match original.accept_ack_type().as_ref() {
            "NE" => false,
            "ER" => intent != AckIntent::Accept,
            "SU" => intent == AckIntent::Accept,
            _ => true,
        };
        if !wanted {
            return None;
        }
    }
    let d = *original.delimiters();
    let msh = original.segments().next();
    let raw_field = |n: usize| msh.and_then(|s| s.field(n)).map(|v| v.raw()).unwrap_or(b"");
    let trigger = original.get("MSH-9.2").map(|v| v.raw()).unwrap_or(b"");
    let header = Header {
        d,
        sending_app: non_empty(raw_field(5), b"WYVERN"),
        sending_facility: raw_field(6),
        receiving_app: raw_field(3),
        receiving_facility: raw_field(4),
        trigger,
        processing_id: non_empty(raw_field(11), b"P"),
        version: raw_field(12),
    };
    let version = original.version();
    Some(write_ack(
        &header,
        AckCode::new(mode, intent),
        original.control_id().as_bytes(),
        error,
        ack_control_id,
        timestamp,
        legacy_err(&version),
    ))
}

/// An ACK for bytes that are not a readable message (no MSH): default delimiters, original mode,
/// MSA-2 empty because there is no control id to echo.
pub fn build_ack_without_message(
    intent: AckIntent,
    error: Option<&AckError>,
    ack_control_id: &str,
    timestamp: &str,
) -> Vec<u8> {
    let header = Header {
        d: Delimiters::default(),
        sending_app: b"WYVERN",
        sending_facility: b"",
        receiving_app: b"",
        receiving_facility: b"",
        trigger: b"",
        processing_id: b"P",
        version: b"2.5.1",
    };
    write_ack(
        &header,
        AckCode::new(AckMode::Original, intent),
        b"",
        error,
        ack_control_id,
        timestamp,
        false,
    )
}

struct Header<'a> {
    d: Delimiters,
    sending_app: &'a [u8],
    sending_facility: &'a [u8],
    receiving_app: &'a [u8],
    receiving_facility: &'a [u8],
    trigger: &'a [u8],
    processing_id: &'a [u8],
    version: &'a [u8],
}

fn non_empty<'a>(v: &'a [u8], default: &'a [u8]) -> &'a [u8] {
    if v.is_empty() { default } else { v }
}

/// Versions before 2.5 carry the error in ERR-1 (ELD); 2.5 and later in ERR-2..8.
fn legacy_err(version: &str) -> bool {
    matches!(version, "2.1" | "2.2" | "2.3" | "2.3.1" | "2.4")
}

fn write_ack(
    h: &Header<'_>,
    code: AckCode,
    msa2: &[u8],
    error: Option<&AckError>,
    ack_id: &str,
    ts: &str,
    legacy: bool,
) -> Vec<u8> {
    let d = &h.d;
    let (f, c) = (d.field, d.component);
    let mut out = Vec::with_capacity(256);
    out.extend_from_slice(b"MSH");
    out.push(f);
    out.extend_from_slice(d.encoding_characters().as_bytes());
    for part in [
        h.sending_app,
        h.sending_facility,
        h.receiving_app,
        h.receiving_facility,
        ts.as_bytes(),
        b"",
    ] {
        out.push(f);
        out.extend_from_slice(part);
    }
    out.push(f);
    out.extend_from_slice(b"ACK");
    if !h.trigger.is_empty() {
        out.push(c);
        out.extend_from_slice(h.trigger);
        out.push(c);
        out.extend_from_slice(b"ACK");
    }
    for part in [ack_id.as_bytes(), h.processing_id, h.version] {
        out.push(f);
        out.extend_from_slice(part);
    }
    out.push(b'\r');
    out.extend_from_slice(b"MSA");
    out.push(f);
    out.extend_from_slice(code.as_str().as_bytes());
    out.push(f);
    out.extend_from_slice(msa2);
    if let Some(e) = error {
        let text = encode(&e.text, d);
        out.push(f);
        out.extend_from_slice(text.as_bytes());
        out.push(b'\r');
        out.extend_from_slice(err_segment(e, d, &text, legacy).as_bytes());
    }
    out.push(b'\r');
    out
}

fn err_segment(e: &AckError, d: &Delimiters, text: &str, legacy: bool) -> String {
    let (f, c, s) = (d.field as char, d.component as char, d.subcomponent as char);
    let (seg, seq, field) = match &e.location {
        Some(l) => (
            l.segment.as_str(),
            l.sequence.to_string(),
            l.field.map(|x| x.to_string()).unwrap_or_default(),
        ),
        None => ("", String::new(), String::new()),
    };
    let (code, code_text) = (e.code.code(), e.code.text());
    if legacy {
        format!("ERR{f}{seg}{c}{seq}{c}{field}{c}{code}{s}{code_text}{s}HL70357")
    } else {
        let location = if e.location.is_some() {
            format!("{seg}{c}{seq}{c}{field}")
        } else {
            String::new()
        };
        format!("ERR{f}{f}{location}{f}{code}{c}{code_text}{c}HL70357{f}E{f}{f}{f}{f}{text}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(raw: &[u8], intent: AckIntent, err: Option<&AckError>) -> Option<String> {
        let m = Message::parse(raw).unwrap();
        build_ack(&m, intent, err, "ACK1", "20261125143000").map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn original_mode_accept() {
        let got = ack(
            b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|C1|P|2.5.1\rPID|1",
            AckIntent::Accept,
            None,
        )
        .unwrap();
        assert_eq!(
            got,
            "MSH|^~\\&|WYV|CHIE|PAS|RX1|20261125143000||ACK^A01^ACK|ACK1|P|2.5.1\rMSA|AA|C1\r"
        );
    }

    #[test]
    fn reject_with_err_v25_and_legacy() {
        let e = AckError {
            code: ErrorCode::RequiredFieldMissing,
            location: Some(ErrorLocation::field("MSH", 1, 9)),
            text: "MSH-9 is empty|".into(),
        };
        let got = ack(
            b"MSH|^~\\&|PAS|RX1|||2026|||C2|P|2.5",
            AckIntent::Reject,
            Some(&e),
        )
        .unwrap();
        assert_eq!(
            got,
            "MSH|^~\\&|WYVERN||PAS|RX1|20261125143000||ACK|ACK1|P|2.5\rMSA|AR|C2|MSH-9 is empty\\F\\\rERR||MSH^1^9|101^Required field missing^HL70357|E||||MSH-9 is empty\\F\\\r"
        );
        let got = ack(
            b"MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C2|P|2.3",
            AckIntent::Error,
            Some(&e),
        )
        .unwrap();
        assert!(got.contains("MSA|AE|C2|"), "{got}");
        assert!(
            got.ends_with("ERR|MSH^1^9^101&Required field missing&HL70357\r"),
            "{got}"
        );
    }

    #[test]
    fn enhanced_mode_rules() {
        let base = |m15: &str| format!("MSH|^~\\&|A|B|C|D|2026||ADT^A01|C3|P|2.5|||{m15}|NE");
        assert!(
            ack(base("AL").as_bytes(), AckIntent::Accept, None)
                .unwrap()
                .contains("MSA|CA|C3")
        );
        assert!(ack(base("NE").as_bytes(), AckIntent::Accept, None).is_none());
        assert!(ack(base("ER").as_bytes(), AckIntent::Accept, None).is_none());
        assert!(
            ack(base("ER").as_bytes(), AckIntent::Reject, None)
                .unwrap()
                .contains("MSA|CR|C3")
        );
        assert!(ack(base("SU").as_bytes(), AckIntent::Error, None).is_none());
        assert!(
            ack(base("SU").as_bytes(), AckIntent::Accept, None)
                .unwrap()
                .contains("MSA|CA|C3")
        );
        assert!(
            ack(base("").as_bytes(), AckIntent::Error, None)
                .unwrap()
                .contains("MSA|CE|C3")
        );
    }

    #[test]
    fn custom_delimiters_are_kept() {
        let got = ack(
            b"MSH#$*@!#PAS#RX1#WYV#CHIE#2026##ADT$A08#C4#P#2.4",
            AckIntent::Accept,
            None,
        )
        .unwrap();
        assert_eq!(
            got,
            "MSH#$*@!#WYV#CHIE#PAS#RX1#20261125143000##ACK$A08$ACK#ACK1#P#2.4\rMSA#AA#C4\r"
        );
    }

    #[test]
    fn without_message() {
        let e = AckError {
            code: ErrorCode::SegmentSequenceError,
            location: None,
            text: "no MSH".into(),
        };
        let got = String::from_utf8(build_ack_without_message(
            AckIntent::Reject,
            Some(&e),
            "X",
            "2026",
        ))
        .unwrap();
        assert_eq!(
            got,
            "MSH|^~\\&|WYVERN||||2026||ACK|X|P|2.5.1\rMSA|AR||no MSH\rERR|||100^Segment sequence error^HL70357|E||||no MSH\r"
        );
    }
}
