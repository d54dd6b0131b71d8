//! The separators a message declares in MSH-1 and MSH-2.
//!
//! HL7v2 lets every sender choose its own delimiters, so nothing in Wyvern hard-codes `|^~\&`;
//! every split and every escape goes through a [`Delimiters`] read from the message itself.

use crate::ParseError;

/// Field, component, repetition, escape and sub-component separators of one message.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Delimiters {
    pub field: u8,
    pub component: u8,
    pub repetition: u8,
    /// `None` when MSH-2 declares no escape character (escapes are then taken literally).
    pub escape: Option<u8>,
    pub subcomponent: u8,
}

impl Default for Delimiters {
    fn default() -> Self {
        Delimiters {
            field: b'|',
            component: b'^',
            repetition: b'~',
            escape: Some(b'\\'),
            subcomponent: b'&',
        }
    }
}

impl Delimiters {
    /// Reads the delimiters from the start of a header segment (`MSH|^~\&|…`, also `FHS`/`BHS`).
    /// Returns them and the length of the `MSH|^~\&` prefix.
    pub fn from_header(header: &[u8]) -> Result<(Self, usize), ParseError> {
        let field = *header
            .get(3)
            .ok_or(ParseError::TruncatedHeader("no field separator after MSH"))?;
        if !is_delimiter_byte(field) {
            return Err(ParseError::BadDelimiters(format!(
                "MSH-1 field separator {:?} is not a punctuation character",
                field as char
            )));
        }
        let rest = &header[4..];
        let end = rest
            .iter()
            .position(|&b| b == field || b == b'\r' || b == b'\n')
            .unwrap_or(rest.len());
        let enc = &rest[..end];
        if enc.len() < 2 {
            return Err(ParseError::BadDelimiters(format!(
                "MSH-2 encoding characters {:?} need at least a component and a repetition separator",
                String::from_utf8_lossy(enc)
            )));
        }
        let d = Delimiters {
            field,
            component: enc[0],
            repetition: enc[1],
            escape: enc.get(2).copied(),
            subcomponent: enc.get(3).copied().unwrap_or(b'&'),
        };
        let mut seen = vec![d.field, d.component, d.repetition, d.subcomponent];
        seen.extend(d.escape);
        for (i, &b) in seen.iter().enumerate() {
            if !is_delimiter_byte(b) || seen[..i].contains(&b) {
                return Err(ParseError::BadDelimiters(format!(
                    "MSH-1/MSH-2 {:?}{:?} must be distinct punctuation characters",
                    field as char,
                    String::from_utf8_lossy(enc)
                )));
            }
        }
        Ok((d, 4 + end))
    }

    /// MSH-2 as it should be written in a message using these delimiters.
    pub fn encoding_characters(&self) -> String {
        let mut s = String::with_capacity(4);
        s.push(self.component as char);
        s.push(self.repetition as char);
        // Without an escape character MSH-2 was two characters and the sub-component separator
        // is the default; writing it after no escape would make it read as the escape.
        if let Some(e) = self.escape {
            s.push(e as char);
            s.push(self.subcomponent as char);
        }
        s
    }
}

fn is_delimiter_byte(b: u8) -> bool {
    b.is_ascii_punctuation()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standard_and_custom() {
        let (d, n) = Delimiters::from_header(b"MSH|^~\\&|A").unwrap();
        assert_eq!(d, Delimiters::default());
        assert_eq!(n, 8);
        let (d, _) = Delimiters::from_header(b"MSH#$*@!#A").unwrap();
        assert_eq!(
            (d.field, d.component, d.repetition, d.escape, d.subcomponent),
            (b'#', b'$', b'*', Some(b'@'), b'!')
        );
        assert_eq!(d.encoding_characters(), "$*@!");
    }

    #[test]
    fn rejects_bad() {
        assert!(Delimiters::from_header(b"MSH").is_err());
        assert!(Delimiters::from_header(b"MSHA^~\\&").is_err());
        assert!(Delimiters::from_header(b"MSH|^|").is_err());
        assert!(Delimiters::from_header(b"MSH|^^\\&|").is_err());
        assert!(Delimiters::from_header(b"MSH|||").is_err());
    }

    #[test]
    fn short_encoding_characters_default_the_rest() {
        let (d, _) = Delimiters::from_header(b"MSH|^~|A").unwrap();
        assert_eq!(d.escape, None);
        assert_eq!(d.subcomponent, b'&');
    }

    /// Found by the `hl7_message` fuzz target: an ACK for `MSH#$*#…` wrote MSH-2 as `$*&`,
    /// which reads back as escape `&` and clashes with the default sub-component separator.
    #[test]
    fn encoding_characters_round_trip() {
        for header in [
            &b"MSH#$*#A"[..],
            b"MSH|^~|A",
            b"MSH|^~\\|A",
            b"MSH|^~\\&|A",
            b"MSH#$*@!#A",
        ] {
            let (d, _) = Delimiters::from_header(header).unwrap();
            let written = format!(
                "MSH{}{}{}",
                d.field as char,
                d.encoding_characters(),
                d.field as char
            );
            let (again, _) = Delimiters::from_header(written.as_bytes()).unwrap();
            assert_eq!(again, d, "{}", String::from_utf8_lossy(header));
        }
    }
}
