//! Changing a message: set a value at a path, clear what a path selects, drop segments. The
//! input is never modified; the result is new bytes with CR segment ends. Values are escaped
//! for the message's own delimiters. A path whose segment is absent changes nothing (steps set
//! fields, they do not invent segments); missing fields, repetitions and components up to the
//! target are created empty.

use crate::{Message, ParseError, Path, Selector, escape};

/// `raw` with `value` at every place `path` selects (in the segments that exist).
pub fn set(raw: &[u8], path: &Path, value: &str) -> Result<Vec<u8>, ParseError> {
    let msg = Message::parse(raw)?;
    let encoded = escape::encode(value, msg.delimiters()).into_bytes();
    set_encoded(raw, path, &encoded)
}

/// Replaces the whole field `path` names (every repetition; its repetition and component
/// parts are ignored) with `encoded`, which goes in as it is: it may carry the message's own
/// delimiters, so one call writes a field with its repetitions (`A^^^NHS^NH~B^^^RX1^MR`).
pub fn set_field_encoded(raw: &[u8], path: &Path, encoded: &[u8]) -> Result<Vec<u8>, ParseError> {
    let whole = Path {
        repetition: Selector::Index(1),
        component: None,
        subcomponent: None,
        ..path.clone()
    };
    set_encoded_inner(raw, &whole, encoded, true)
}

/// Like [`set`], but `encoded` goes in as it is (it may carry the message's delimiters).
pub fn set_encoded(raw: &[u8], path: &Path, encoded: &[u8]) -> Result<Vec<u8>, ParseError> {
    set_encoded_inner(raw, path, encoded, false)
}

fn set_encoded_inner(
    raw: &[u8],
    path: &Path,
    encoded: &[u8],
    whole_field: bool,
) -> Result<Vec<u8>, ParseError> {
    let msg = Message::parse(raw)?;
    let d = *msg.delimiters();
    let mut out = Vec::with_capacity(raw.len() + encoded.len() + 8);
    let mut occurrence = 0;
    for seg in msg.segments() {
        let line = seg.raw();
        let is_target = line.get(..3) == Some(path.segment.as_bytes())
            && line.get(3).is_none_or(|&b| b == d.field);
        let selected = is_target && {
            occurrence += 1;
            matches!(path.occurrence, Selector::All)
                || path.occurrence == Selector::Index(occurrence)
        };
        if selected && !(path.segment == "MSH" && path.field <= 2) {
            out.extend_from_slice(&set_in_segment(
                line,
                path,
                encoded,
                whole_field,
                d.field,
                d.repetition,
                d.component,
                d.subcomponent,
            ));
        } else {
            out.extend_from_slice(line);
        }
        out.push(b'\r');
    }
    Ok(out)
}

fn split(b: &[u8], sep: u8) -> Vec<Vec<u8>> {
    b.split(|&c| c == sep).map(<[u8]>::to_vec).collect()
}

fn join(parts: &[Vec<u8>], sep: u8) -> Vec<u8> {
    parts.join(&sep)
}

fn slot(parts: &mut Vec<Vec<u8>>, index: usize) -> &mut Vec<u8> {
    if parts.len() <= index {
        parts.resize(index + 1, Vec::new());
    }
    &mut parts[index]
}

#[allow(clippy::too_many_arguments)]
fn set_in_segment(
    line: &[u8],
    path: &Path,
    value: &[u8],
    whole_field: bool,
    fs: u8,
    rs: u8,
    cs: u8,
    ss: u8,
) -> Vec<u8> {
    let mut fields = split(line, fs);
    // In MSH the field separator is MSH-1, so MSH-n sits at index n-1.
    let index = if path.segment == "MSH" {
        path.field - 1
    } else {
        path.field
    };
    let field = slot(&mut fields, index);
    if whole_field {
        *field = value.to_vec();
        return join(&fields, fs);
    }
    let mut reps = split(field, rs);
    let targets: Vec<usize> = match path.repetition {
        Selector::All => (0..reps.len()).collect(),
        Selector::Index(r) => vec![r - 1],
    };
    for r in targets {
        let rep = slot(&mut reps, r);
        *rep = match path.component {
            None => value.to_vec(),
            Some(c) => {
                let mut comps = split(rep, cs);
                let comp = slot(&mut comps, c - 1);
                *comp = match path.subcomponent {
                    None => value.to_vec(),
                    Some(s) => {
                        let mut subs = split(comp, ss);
                        *slot(&mut subs, s - 1) = value.to_vec();
                        join(&subs, ss)
                    }
                };
                join(&comps, cs)
            }
        };
    }
    *field = join(&reps, rs);
    join(&fields, fs)
}

/// `raw` without any `id` segment (MSH cannot be removed).
pub fn remove_segments(raw: &[u8], id: &str) -> Result<Vec<u8>, ParseError> {
    let msg = Message::parse(raw)?;
    let fs = msg.delimiters().field;
    let mut out = Vec::with_capacity(raw.len());
    for seg in msg.segments() {
        let line = seg.raw();
        let drop = id != "MSH"
            && line.get(..3) == Some(id.as_bytes())
            && line.get(3).is_none_or(|&b| b == fs);
        if !drop {
            out.extend_from_slice(line);
            out.push(b'\r');
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const M: &[u8] = b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|C1|P|2.4\rPID|1||111^^^RX1^MR~9990000018^^^NHS^NH||TEST^ALEX\rNK1|1|A\rPV1|1|I|WARD7\rNK1|2|B\r";

    fn set_str(path: &str, v: &str) -> String {
        String::from_utf8(set(M, &path.parse().unwrap(), v).unwrap()).unwrap()
    }

    #[test]
    fn sets_at_every_depth_creating_what_is_missing() {
        assert!(set_str("PV1-3.4", "RHX01").contains("PV1|1|I|WARD7^^^RHX01\r"));
        assert!(set_str("MSH-5", "DCR").starts_with("MSH|^~\\&|PAS|RX1|DCR|CHIE|"));
        assert!(
            set_str("PID-3[2].4", "NHS-X").contains("PID|1||111^^^RX1^MR~9990000018^^^NHS-X^NH|")
        );
        assert!(set_str("PID-3(*).5", "ID").contains("111^^^RX1^ID~9990000018^^^NHS^ID"));
        assert!(set_str("PV1-50", "X").contains(&format!("PV1|1|I|WARD7{}X\r", "|".repeat(47))));
        assert!(set_str("PID-5.1.2", "Y").contains("TEST&Y^ALEX"));
        assert!(
            set_str("NK1[2]-2", "Z").contains("NK1|1|A\r")
                && set_str("NK1[2]-2", "Z").contains("NK1|2|Z\r")
        );
        assert!(
            set_str("PID-5.1", "O|BRIEN").contains("O\\F\\BRIEN^ALEX"),
            "values are escaped"
        );
        assert_eq!(
            set_str("ZZZ-1", "x").as_bytes(),
            M,
            "an absent segment is not invented"
        );
    }

    #[test]
    fn removes_segments_and_clears_fields() {
        let out = String::from_utf8(remove_segments(M, "NK1").unwrap()).unwrap();
        assert!(!out.contains("NK1") && out.contains("PV1|1|I|WARD7"));
        assert!(set_str("PID-5", "").contains("PID|1||111^^^RX1^MR~9990000018^^^NHS^NH||\r"));
        assert_eq!(remove_segments(M, "MSH").unwrap(), M, "MSH stays");
    }
}

#[cfg(test)]
mod whole_field_tests {
    use super::*;

    #[test]
    fn a_whole_field_with_repetitions_in_one_call() {
        let raw = b"MSH|^~\\&|A\rPID|1||X^^^RX1^MR~Y^^^NHS^NH||N\r";
        let out =
            set_field_encoded(raw, &"PID-3".parse().unwrap(), b"Y^^^NHS^NH~X^^^RX1^MR").unwrap();
        assert_eq!(out, b"MSH|^~\\&|A\rPID|1||Y^^^NHS^NH~X^^^RX1^MR||N\r");
        let first_only = set_encoded(raw, &"PID-3".parse().unwrap(), b"Z").unwrap();
        assert_eq!(first_only, b"MSH|^~\\&|A\rPID|1||Z~Y^^^NHS^NH||N\r");
    }
}
