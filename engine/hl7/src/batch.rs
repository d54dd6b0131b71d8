//! Batch files: `FHS`/`BHS` … `MSH` … `BTS`/`FTS` split into the messages they carry.
//!
//! GP systems and overnight extracts still send batches; each message inside is stored and
//! routed on its own, so a bad one does not sink the rest.

use crate::ParseError;

/// The messages of a batch (or of a plain message), as slices of the input.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Batch<'a> {
    pub messages: Vec<&'a [u8]>,
    /// The sum of every BTS-1 (message count) the batch declared.
    pub declared_count: Option<usize>,
    /// Non-fatal findings, such as a count that does not match.
    pub warnings: Vec<String>,
}

/// Splits a batch file, or a single message, into messages. Each message runs from its `MSH`
/// line up to the next `MSH`, `BHS`, `BTS`, `FHS` or `FTS` line.
pub fn split_batch(raw: &[u8]) -> Result<Batch<'_>, ParseError> {
    let first = raw
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t'));
    let Some(first) = first else {
        return Err(ParseError::Empty);
    };
    let head = &raw[first..];
    if !(head.starts_with(b"FHS") || head.starts_with(b"BHS") || head.starts_with(b"MSH")) {
        return Err(ParseError::NoMsh {
            found: String::from_utf8_lossy(&head[..head.len().min(16)]).into_owned(),
        });
    }
    let field_sep = *head
        .get(3)
        .ok_or(ParseError::TruncatedHeader("no field separator"))?;

    let mut messages = Vec::new();
    let mut current: Option<usize> = None;
    let mut declared: Option<usize> = None;
    let mut warnings = Vec::new();
    let mut line_start = first;
    fn close<'a>(
        raw: &'a [u8],
        current: &mut Option<usize>,
        end: usize,
        messages: &mut Vec<&'a [u8]>,
    ) {
        if let Some(s) = current.take() {
            messages.push(&raw[s..end]);
        }
    }
    let mut ends: Vec<usize> = memchr::memchr2_iter(b'\r', b'\n', raw)
        .filter(|&p| p >= first)
        .collect();
    ends.push(raw.len());
    for end in ends {
        let line = &raw[line_start..end];
        if !line.is_empty() {
            match line.get(..3) {
                Some(b"MSH") => {
                    close(raw, &mut current, line_start, &mut messages);
                    current = Some(line_start);
                }
                Some(b"BHS" | b"FHS" | b"FTS") => {
                    close(raw, &mut current, line_start, &mut messages)
                }
                Some(b"BTS") => {
                    close(raw, &mut current, line_start, &mut messages);
                    let count = line
                        .split(|&b| b == field_sep)
                        .nth(1)
                        .and_then(|c| std::str::from_utf8(c).ok()?.trim().parse::<usize>().ok());
                    if let Some(c) = count {
                        declared = Some(declared.unwrap_or(0) + c);
                    }
                }
                _ => {}
            }
        }
        line_start = end + 1;
    }
    close(raw, &mut current, raw.len(), &mut messages);
    if let Some(d) = declared.filter(|d| *d != messages.len()) {
        warnings.push(format!(
            "the batch trailer declares {d} messages but {} were found",
            messages.len()
        ));
    }
    Ok(Batch {
        messages,
        declared_count: declared,
        warnings,
    })
}

/// Whether `raw` is a batch rather than one message: it opens with `FHS` or `BHS`, or it holds
/// more than one `MSH`.
pub fn is_batch(raw: &[u8]) -> bool {
    split_batch(raw).is_ok_and(|b| {
        let head = raw.trim_ascii_start();
        b.messages.len() > 1 || head.starts_with(b"FHS") || head.starts_with(b"BHS")
    })
}

/// An `MSH` line standing for a batch's header (its `BHS`, else its `FHS`), so the batch can be
/// acknowledged like a message: sender and receiver as the header names them, MSH-9 `BATCH`,
/// MSH-10 the batch control id (BHS-11), MSH-12 `version` (the first message's). `None` when
/// the batch has no header line.
pub fn batch_header_msh(raw: &[u8], version: &str) -> Option<Vec<u8>> {
    let header = raw
        .split(|&b| b == b'\r' || b == b'\n')
        .map(<[u8]>::trim_ascii_start)
        .find(|l| l.starts_with(b"BHS"))
        .or_else(|| {
            raw.split(|&b| b == b'\r' || b == b'\n')
                .map(<[u8]>::trim_ascii_start)
                .find(|l| l.starts_with(b"FHS"))
        })?;
    let sep = *header.get(3)?;
    let fields: Vec<&[u8]> = header.split(|&b| b == sep).collect();
    let field = |n: usize| fields.get(n).copied().unwrap_or_default();
    let mut msh = b"MSH".to_vec();
    for n in 1..=7 {
        msh.push(sep);
        msh.extend_from_slice(field(n));
    }
    msh.push(sep);
    msh.extend_from_slice(b"BATCH");
    msh.push(sep);
    msh.extend_from_slice(field(10));
    msh.push(sep);
    msh.push(b'P');
    msh.push(sep);
    msh.extend_from_slice(version.as_bytes());
    msh.push(b'\r');
    Some(msh)
}

/// The messages of a file as people keep them (one message, several, or an FHS/BHS batch,
/// often with LF line ends), each with CR segment ends and no blank lines. `None` when the
/// bytes do not look like HL7 at all (the caller decides whether to pass them on as they are).
pub fn messages_in_file(bytes: &[u8]) -> Option<Vec<Vec<u8>>> {
    let batch = split_batch(bytes).ok().filter(|b| !b.messages.is_empty())?;
    Some(batch.messages.iter().map(|m| with_cr_segments(m)).collect())
}

/// `m` with CR segment ends (from CR, LF or CRLF) and no blank lines.
pub fn with_cr_segments(m: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(m.len() + 1);
    for seg in m
        .split(|&b| b == b'\r' || b == b'\n')
        .filter(|s| !s.is_empty())
    {
        out.extend_from_slice(seg);
        out.push(b'\r');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_become_messages_with_cr_segments() {
        assert_eq!(
            with_cr_segments(b"MSH|a\r\nPID|1\n\nPV1|2"),
            b"MSH|a\rPID|1\rPV1|2\r"
        );
        let two = messages_in_file(b"MSH|^~\\&|A|B\nPID|1\nMSH|^~\\&|A|B\nPID|2\n").unwrap();
        assert_eq!(
            two,
            [
                b"MSH|^~\\&|A|B\rPID|1\r".to_vec(),
                b"MSH|^~\\&|A|B\rPID|2\r".to_vec()
            ]
        );
        assert_eq!(messages_in_file(b"not hl7"), None);
    }

    #[test]
    fn batch_with_headers() {
        let raw = b"FHS|^~\\&|GP\rBHS|^~\\&|GP\rMSH|^~\\&|A||||||ADT^A08|1|P|2.4\rPID|1\rMSH|^~\\&|A||||||ADT^A08|2|P|2.4\rPID|2\rBTS|2\rFTS|1\r";
        let b = split_batch(raw).unwrap();
        assert_eq!(b.messages.len(), 2);
        assert_eq!(b.messages[0], b"MSH|^~\\&|A||||||ADT^A08|1|P|2.4\rPID|1\r");
        assert_eq!(b.messages[1], b"MSH|^~\\&|A||||||ADT^A08|2|P|2.4\rPID|2\r");
        assert_eq!(b.declared_count, Some(2));
        assert!(b.warnings.is_empty());
    }

    #[test]
    fn plain_message_and_count_mismatch() {
        let b = split_batch(b"MSH|^~\\&|A\nPID|1\n").unwrap();
        assert_eq!(b.messages, vec![&b"MSH|^~\\&|A\nPID|1\n"[..]]);
        let b = split_batch(b"BHS|^~\\&\rMSH|^~\\&|A\rBTS|3").unwrap();
        assert_eq!(b.messages.len(), 1);
        assert_eq!(b.warnings.len(), 1);
    }

    #[test]
    fn batch_header_stands_in_for_an_msh() {
        let raw =
            b"FHS|^~\\&|GP\rBHS|^~\\&|EMIS|Y01234|WYV|DCR|20261125||||B77\rMSH|^~\\&|A\rBTS|1\r";
        assert!(is_batch(raw));
        assert!(!is_batch(b"MSH|^~\\&|A\rPID|1\r"));
        assert!(is_batch(b"MSH|^~\\&|A\rMSH|^~\\&|B\r"));
        assert_eq!(
            batch_header_msh(raw, "2.4").unwrap(),
            b"MSH|^~\\&|EMIS|Y01234|WYV|DCR|20261125||BATCH|B77|P|2.4\r"
        );
        assert_eq!(batch_header_msh(b"MSH|^~\\&|A\r", "2.4"), None);
    }

    #[test]
    fn errors() {
        assert_eq!(split_batch(b"  \r\n").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            split_batch(b"PID|1").unwrap_err(),
            ParseError::NoMsh { .. }
        ));
        assert!(split_batch(b"BHS").is_err());
        assert!(split_batch(b"BHS|\rBTS|0").unwrap().messages.is_empty());
    }
}
