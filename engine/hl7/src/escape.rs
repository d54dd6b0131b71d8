//! HL7v2 escape sequences: decoding for reading, encoding for writing.
//!
//! `\F\ \S\ \T\ \R\ \E\` stand for the delimiters, `\Xhh…\` for raw bytes and `\.br\` for a line
//! break. Highlighting and character-set switches carry no text and are dropped; an unknown or
//! unterminated sequence is kept literally so that no input is ever lost or refused here.

use std::borrow::Cow;

use crate::Delimiters;

/// Decodes escape sequences; borrows when the value holds no escape character.
#[inline]
pub fn decode<'a>(raw: &'a [u8], d: &Delimiters) -> Cow<'a, [u8]> {
    let Some(esc) = d.escape else {
        return Cow::Borrowed(raw);
    };
    // Most values are a few bytes: a plain scan beats memchr's set-up there.
    let found = if raw.len() < 32 {
        raw.contains(&esc)
    } else {
        memchr::memchr(esc, raw).is_some()
    };
    if !found {
        return Cow::Borrowed(raw);
    }
    let mut out = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        let b = raw[i];
        if b != esc {
            out.push(b);
            i += 1;
            continue;
        }
        let Some(len) = raw[i + 1..].iter().position(|&c| c == esc) else {
            out.extend_from_slice(&raw[i..]);
            break;
        };
        let seq = &raw[i + 1..i + 1 + len];
        if !expand(seq, d, &mut out) {
            out.extend_from_slice(&raw[i..i + len + 2]);
        }
        i += len + 2;
    }
    Cow::Owned(out)
}

/// Appends the meaning of one sequence (without its escape characters); `false` if unknown.
fn expand(seq: &[u8], d: &Delimiters, out: &mut Vec<u8>) -> bool {
    match seq {
        b"F" => out.push(d.field),
        b"S" => out.push(d.component),
        b"T" => out.push(d.subcomponent),
        b"R" => out.push(d.repetition),
        b"E" => out.extend(d.escape),
        b".br" | b".sp" => out.push(b'\n'),
        b"H" | b"N" => {}
        [b'.', ..] => {}
        [b'X', hex @ ..] if !hex.is_empty() && hex.len() % 2 == 0 => {
            let Some(bytes) = hex.chunks(2).map(hex_byte).collect::<Option<Vec<u8>>>() else {
                return false;
            };
            out.extend(bytes);
        }
        [b'C' | b'M' | b'Z', ..] => {}
        _ => return false,
    }
    true
}

fn hex_byte(pair: &[u8]) -> Option<u8> {
    let s = std::str::from_utf8(pair).ok()?;
    u8::from_str_radix(s, 16).ok()
}

/// Escapes text so it can stand as one value: delimiters become `\F\` etc., line breaks `\.br\`,
/// and every other control character `\Xhh\` — MLLP's VT and FS among them, so no value can end
/// or start a frame on the wire.
pub fn encode(text: &str, d: &Delimiters) -> String {
    let esc = d.escape.unwrap_or(b'\\') as char;
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if c.is_ascii_control() && c != '\n' && c != '\r' {
            out.push(esc);
            out.push_str(&format!("X{:02X}", c as u32));
            out.push(esc);
            continue;
        }
        let code = match c {
            _ if c == d.field as char => Some("F"),
            _ if c == d.component as char => Some("S"),
            _ if c == d.subcomponent as char => Some("T"),
            _ if c == d.repetition as char => Some("R"),
            _ if c == esc => Some("E"),
            '\n' => Some(".br"),
            '\r' => Some("X0D"),
            _ => None,
        };
        match code {
            Some(code) => {
                out.push(esc);
                out.push_str(code);
                out.push(esc);
            }
            None => out.push(c),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_escaped_so_no_value_can_end_a_frame() {
        let d = Delimiters::default();
        let e = encode("GB\u{1c}\u{0b}\u{0}x\tz", &d);
        assert_eq!(e, "GB\\X1C\\\\X0B\\\\X00\\x\\X09\\z");
        assert!(!e.bytes().any(|b| b.is_ascii_control()));
    }

    fn dec(s: &str) -> String {
        String::from_utf8(decode(s.as_bytes(), &Delimiters::default()).into_owned()).unwrap()
    }

    #[test]
    fn delimiters_and_specials() {
        assert_eq!(dec(r"A\F\B\S\C\T\D\R\E\E\F"), r"A|B^C&D~E\F");
        assert_eq!(dec(r"line1\.br\line2"), "line1\nline2");
        assert_eq!(dec(r"\X4142\C"), "ABC");
        assert_eq!(dec(r"\H\bold\N\"), "bold");
        assert_eq!(dec(r"x\Q\y"), r"x\Q\y");
        assert_eq!(dec(r"dangling\F"), r"dangling\F");
        assert_eq!(dec(r"\XZZ\"), r"\XZZ\");
        assert_eq!(dec(r"\"), r"\");
        assert_eq!(dec(r"\\"), r"\\");
    }

    #[test]
    fn borrowed_when_plain() {
        assert!(matches!(
            decode(b"plain", &Delimiters::default()),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn encode_round_trips() {
        let d = Delimiters::default();
        for s in [r"a|b^c&d~e\f", "two\nlines", "plain", ""] {
            let e = encode(s, &d);
            assert_eq!(
                String::from_utf8(decode(e.as_bytes(), &d).into_owned()).unwrap(),
                s
            );
        }
    }

    #[test]
    fn custom_escape_character() {
        let (d, _) = Delimiters::from_header(b"MSH#$*@!#").unwrap();
        assert_eq!(
            String::from_utf8(decode(b"a@F@b", &d).into_owned()).unwrap(),
            "a#b"
        );
    }
}
