//! The minimum a message must satisfy before Wyvern accepts responsibility for it.
//!
//! Parsing is lenient; this is the strictness the MLLP inbox applies before it answers AA: a
//! message type and a control id (nothing can be routed or acknowledged without them), segment
//! ids that look like segment ids, and no binary control bytes. Each finding becomes an ERR.

use crate::{AckError, ErrorCode, ErrorLocation, Message, ParseError};

/// Every reason `msg` should be rejected (empty when it is acceptable).
pub fn acceptance_problems(msg: &Message<'_>) -> Vec<AckError> {
    let mut problems = Vec::new();
    if let Some(pos) = first_binary(msg.raw()) {
        problems.push(AckError {
            code: ErrorCode::DataTypeError,
            location: None,
            text: format!(
                "the message holds binary data (byte 0x{:02X} at offset {pos})",
                msg.raw()[pos]
            ),
        });
    }
    if msg.message_type().code.is_empty() {
        problems.push(missing(9, "MSH-9 (message type) is empty"));
    }
    if msg.control_id().is_empty() {
        problems.push(missing(10, "MSH-10 (message control id) is empty"));
    }
    for (i, seg) in msg.segments().enumerate().skip(1) {
        let id = seg.raw().get(..3);
        let valid = id.is_some_and(|id| {
            id[0].is_ascii_uppercase()
                && id[1..]
                    .iter()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
        }) && seg
            .raw()
            .get(3)
            .is_none_or(|&b| b == msg.delimiters().field);
        if !valid {
            let shown = String::from_utf8_lossy(&seg.raw()[..seg.raw().len().min(12)]).into_owned();
            problems.push(AckError {
                code: ErrorCode::SegmentSequenceError,
                location: None,
                text: format!("segment {} starts with {shown:?}, which is not a segment id (truncated or corrupted message?)", i + 1),
            });
            break;
        }
    }
    problems
}

/// Whether a byte is binary in an HL7 message: a control byte other than CR, LF and tab, or
/// DEL. Written without short-circuits, so the scan below compiles to vector compares.
fn is_binary(b: u8) -> bool {
    ((b < 0x20) & (b != b'\r') & (b != b'\n') & (b != b'\t')) | (b == 0x7F)
}

/// The offset of the first binary byte. Every message is scanned whole, so it is done 32
/// bytes at a time with no early exit inside a block (measured: `cargo bench -p wyvern-hl7
/// --bench index -- acceptance`), and only a block that holds one is searched byte by byte.
fn first_binary(raw: &[u8]) -> Option<usize> {
    const BLOCK: usize = 32;
    let mut blocks = raw.chunks_exact(BLOCK);
    let mut at = 0;
    for block in &mut blocks {
        if block.iter().fold(false, |any, &b| any | is_binary(b)) {
            return block.iter().position(|&b| is_binary(b)).map(|p| at + p);
        }
        at += BLOCK;
    }
    blocks
        .remainder()
        .iter()
        .position(|&b| is_binary(b))
        .map(|p| at + p)
}

fn missing(field: usize, text: &str) -> AckError {
    AckError {
        code: ErrorCode::RequiredFieldMissing,
        location: Some(ErrorLocation::field("MSH", 1, field)),
        text: text.to_string(),
    }
}

/// The ERR content for bytes that did not parse as a message at all.
pub fn parse_error_problem(e: &ParseError) -> AckError {
    let code = match e {
        ParseError::Empty | ParseError::NoMsh { .. } => ErrorCode::SegmentSequenceError,
        ParseError::TruncatedHeader(_) => ErrorCode::RequiredFieldMissing,
        ParseError::BadDelimiters(_) => ErrorCode::DataTypeError,
    };
    AckError {
        code,
        location: None,
        text: e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(raw: &[u8]) -> Vec<String> {
        acceptance_problems(&Message::parse(raw).unwrap())
            .into_iter()
            .map(|p| p.to_string())
            .collect()
    }

    #[test]
    fn good_message_has_none() {
        assert!(problems(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1|P|2.4\rPID|1\rZPI|x\r").is_empty());
    }

    #[test]
    fn findings() {
        assert_eq!(
            problems(b"MSH|^~\\&|A|B|C|D|2026|||1|P|2.4"),
            ["101 (Required field missing): MSH-9 (message type) is empty"]
        );
        assert_eq!(
            problems(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01")[0],
            "101 (Required field missing): MSH-10 (message control id) is empty"
        );
        assert_eq!(
            problems(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1\rPID|1\x00\x01"),
            ["102 (Data type error): the message holds binary data (byte 0x00 at offset 38)"]
        );
        assert!(
            problems(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1\rpid|1")[0]
                .contains("segment 2 starts with \"pid|1\"")
        );
        assert!(!problems(b"MSH|^~\\&|A|B|C|D|2026||ADT^A01|1\rPI").is_empty());
    }

    #[test]
    fn the_block_scan_finds_what_a_byte_scan_finds() {
        let plain = |raw: &[u8]| raw.iter().position(|&b| is_binary(b));
        for len in [0, 1, 31, 32, 33, 64, 100] {
            let clean: Vec<u8> = (0..len).map(|i| b"AB|\r\n\t^~"[i % 8]).collect();
            assert_eq!(first_binary(&clean), None);
            for at in 0..len {
                for bad in [0x00, 0x0B, 0x1C, 0x7F] {
                    let mut raw = clean.clone();
                    raw[at] = bad;
                    if at + 1 < len {
                        raw[len - 1] = 0x01;
                    }
                    assert_eq!(first_binary(&raw), plain(&raw), "len {len} at {at}");
                }
            }
        }
    }
}
