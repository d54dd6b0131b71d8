//! The zero-copy index over one message: segment boundaries found once, fields found on demand.
//!
//! Indexing costs one pass over the bytes (memchr for segment ends) and one small `Vec`; field,
//! component and escape work happens only for what a caller reads. CR, LF and CRLF all end a
//! segment, because real feeds use all three.

use std::borrow::Cow;

use crate::split::nth_piece;
use crate::{
    Delimiters, NhsNumber, NhsNumberError, ParseError, Path, Selector, Timestamp, TimestampError,
    Value,
};

/// One HL7v2 message, indexed by segment, borrowing the bytes it was parsed from.
#[derive(Debug, Clone)]
pub struct Message<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    segments: Vec<&'a [u8]>,
    /// `raw` as text when it is valid UTF-8 (almost always): values are read as slices of it.
    text: Option<&'a str>,
}

/// One segment line (without its terminator).
#[derive(Debug, Clone, Copy)]
pub struct Segment<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    /// The whole message's text, if valid UTF-8 (see [`Message`]).
    pub(crate) text: Option<&'a str>,
}

/// MSH-9: message code, trigger event and message structure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageType<'a> {
    pub code: Cow<'a, str>,
    pub trigger: Cow<'a, str>,
    pub structure: Cow<'a, str>,
}

impl<'a> Message<'a> {
    /// Indexes a message. Fails only when there is no readable MSH header; leading blank lines,
    /// spaces and a UTF-8 BOM are tolerated.
    pub fn parse(raw: &'a [u8]) -> Result<Self, ParseError> {
        let start = raw
            .iter()
            .position(|b| !matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0xEF | 0xBB | 0xBF));
        let Some(start) = start else {
            return Err(ParseError::Empty);
        };
        let body = &raw[start..];
        if !body.starts_with(b"MSH") {
            let found = String::from_utf8_lossy(&body[..body.len().min(16)]).into_owned();
            return Err(ParseError::NoMsh { found });
        }
        let (delims, _) = Delimiters::from_header(body)?;
        let mut segments = Vec::with_capacity(body.len() / 48 + 2);
        let mut seg_start = 0;
        for pos in memchr::memchr2_iter(b'\r', b'\n', body) {
            if pos > seg_start {
                segments.push(&body[seg_start..pos]);
            }
            seg_start = pos + 1;
        }
        if seg_start < body.len() {
            segments.push(&body[seg_start..]);
        }
        Ok(Message {
            raw: body,
            delims,
            segments,
            text: std::str::from_utf8(body).ok(),
        })
    }

    /// The message bytes from `MSH` on.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    pub fn segments(&self) -> impl Iterator<Item = Segment<'a>> + '_ {
        self.segments.iter().map(|raw| Segment {
            raw,
            delims: self.delims,
            text: self.text,
        })
    }

    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// The `occurrence`-th (1-based) segment with this id.
    pub fn segment(&self, id: &str, occurrence: usize) -> Option<Segment<'a>> {
        self.segments_named(id).nth(occurrence.checked_sub(1)?)
    }

    pub fn segments_named<'s>(&'s self, id: &'s str) -> impl Iterator<Item = Segment<'a>> + 's {
        self.segments()
            .filter(move |s| s.id_bytes() == id.as_bytes())
    }

    /// The first value a path selects, e.g. `MSH-9.2`, `PID-3[2].1`, `OBX[3]-5`.
    /// An invalid path selects nothing; use [`Path`] to see why.
    pub fn get(&self, path: &str) -> Option<Value<'a>> {
        let path: Path = path.parse().ok()?;
        self.query(&path).next()
    }

    /// Every value a path selects (`PID-3(*).1` gives one per repetition).
    pub fn query<'s>(&'s self, path: &'s Path) -> impl Iterator<Item = Value<'a>> + 's {
        let segments: Box<dyn Iterator<Item = Segment<'a>> + 's> = match path.occurrence {
            Selector::All => Box::new(self.segments_named(&path.segment)),
            Selector::Index(n) => Box::new(self.segment(&path.segment, n).into_iter()),
        };
        segments.flat_map(move |seg| {
            let field = seg.field(path.field);
            let reps: Vec<Value<'a>> = match (field, path.repetition) {
                (None, _) => vec![],
                (Some(f), Selector::All) => f.repetitions().collect(),
                (Some(f), Selector::Index(n)) => f.repetition(n).into_iter().collect(),
            };
            reps.into_iter()
                .filter_map(move |rep| match (path.component, path.subcomponent) {
                    (None, _) => Some(rep),
                    (Some(c), None) => rep.component(c),
                    (Some(c), Some(s)) => rep.component(c)?.subcomponent(s),
                })
        })
    }

    fn msh(&self) -> Segment<'a> {
        Segment {
            raw: self.segments[0],
            delims: self.delims,
            text: self.text,
        }
    }

    /// A field of MSH as decoded text; empty when absent.
    pub fn msh_field(&self, n: usize) -> Cow<'a, str> {
        self.msh()
            .field(n)
            .map(|v| v.as_str())
            .unwrap_or(Cow::Borrowed(""))
    }

    fn msh_component(&self, n: usize, c: usize) -> Cow<'a, str> {
        let v = self
            .msh()
            .field(n)
            .and_then(|f| f.repetition(1))
            .and_then(|r| r.component(c));
        v.map(|v| v.as_str()).unwrap_or(Cow::Borrowed(""))
    }

    /// MSH-3.1, the sending application.
    pub fn sending_application(&self) -> Cow<'a, str> {
        self.msh_component(3, 1)
    }
    /// MSH-4.1, the sending facility (often an ODS code).
    pub fn sending_facility(&self) -> Cow<'a, str> {
        self.msh_component(4, 1)
    }
    pub fn receiving_application(&self) -> Cow<'a, str> {
        self.msh_component(5, 1)
    }
    pub fn receiving_facility(&self) -> Cow<'a, str> {
        self.msh_component(6, 1)
    }
    /// MSH-10, the message control id an ACK must echo in MSA-2.
    pub fn control_id(&self) -> Cow<'a, str> {
        self.msh_field(10)
    }
    /// MSH-11.1, processing id (P, T, D).
    pub fn processing_id(&self) -> Cow<'a, str> {
        self.msh_component(11, 1)
    }
    /// MSH-12.1, the version (2.3, 2.4, 2.5.1 …).
    pub fn version(&self) -> Cow<'a, str> {
        self.msh_component(12, 1)
    }
    /// MSH-15, accept acknowledgement type (enhanced mode).
    pub fn accept_ack_type(&self) -> Cow<'a, str> {
        self.msh_field(15)
    }
    /// MSH-16, application acknowledgement type (enhanced mode).
    pub fn application_ack_type(&self) -> Cow<'a, str> {
        self.msh_field(16)
    }

    /// MSH-9 split into code, trigger and structure.
    pub fn message_type(&self) -> MessageType<'a> {
        MessageType {
            code: self.msh_component(9, 1),
            trigger: self.msh_component(9, 2),
            structure: self.msh_component(9, 3),
        }
    }

    /// MSH-7, the time the message was created.
    pub fn created_at(&self) -> Option<Result<Timestamp, TimestampError>> {
        let v = self.msh_component(7, 1);
        (!v.is_empty()).then(|| Timestamp::parse(&v))
    }

    /// The NHS number from PID-3: the first repetition whose assigning authority (CX-4) is `NHS`
    /// or whose identifier type (CX-5) is `NH`, checked with modulus 11.
    pub fn nhs_number(&self) -> Option<Result<NhsNumber, NhsNumberError>> {
        nhs_number_in(self.segment("PID", 1)?.field(3)?)
    }

    /// The NHS number of the patient merged away (A34, A36, A40 …): MRG-1 read as PID-3 is,
    /// by [`Message::nhs_number`]'s rule.
    pub fn merged_nhs_number(&self) -> Option<Result<NhsNumber, NhsNumberError>> {
        nhs_number_in(self.segment("MRG", 1)?.field(1)?)
    }
}

/// The first repetition of a CX list whose assigning authority (CX-4) is `NHS` or whose
/// identifier type (CX-5) is `NH`, checked with modulus 11.
fn nhs_number_in(list: Value<'_>) -> Option<Result<NhsNumber, NhsNumberError>> {
    let rep = list.repetitions().find(|r| {
        let authority = r.component(4).and_then(|c| c.subcomponent(1));
        let kind = r.component(5);
        authority.is_some_and(|a| a.raw().eq_ignore_ascii_case(b"NHS"))
            || kind.is_some_and(|k| k.raw() == b"NH")
    })?;
    Some(NhsNumber::parse(&rep.component(1)?.as_str()))
}

impl<'a> Segment<'a> {
    /// The whole segment line as received.
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    /// The segment id as bytes: compare without decoding (`seg.id_bytes() == b"OBX"`).
    pub fn id_bytes(&self) -> &'a [u8] {
        nth_piece(self.raw, self.delims.field, 0).unwrap_or(self.raw)
    }

    /// The segment id (`MSH`, `PID`, `ZPI` …).
    pub fn id(&self) -> Cow<'a, str> {
        String::from_utf8_lossy(self.id_bytes())
    }

    pub fn delimiters(&self) -> &Delimiters {
        &self.delims
    }

    /// MSH, FHS and BHS, whose field 1 is the separator itself.
    pub(crate) fn is_header(&self) -> bool {
        matches!(self.id_bytes(), b"MSH" | b"FHS" | b"BHS")
    }

    /// Field `n` (1-based, as HL7 counts: MSH-1 is the field separator itself).
    pub fn field(&self, n: usize) -> Option<Value<'a>> {
        if n == 0 {
            return None;
        }
        if self.is_header() {
            if n == 1 {
                return self
                    .raw
                    .get(3..4)
                    .map(|r| Value::literal(r, self.delims, self.text));
            }
            let piece = nth_piece(self.raw, self.delims.field, n - 1)?;
            return Some(if n == 2 {
                Value::literal(piece, self.delims, self.text)
            } else {
                Value::new(piece, self.delims, self.text)
            });
        }
        nth_piece(self.raw, self.delims.field, n).map(|r| Value::new(r, self.delims, self.text))
    }

    /// How many fields the segment carries (trailing empty ones included).
    pub fn field_count(&self) -> usize {
        let seps = memchr::memchr_iter(self.delims.field, self.raw).count();
        if self.is_header() { seps + 1 } else { seps }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ADT: &[u8] = b"MSH|^~\\&|PAS|RX1|WYVERN|CHIE|20261125143000+0000||ADT^A01^ADT_A01|MSG0001|P|2.4|||AL|NE\r\
EVN|A01|20261125143000\n\
PID|1||K123^^^RX1^MR~9990000018^^^NHS^NH||SMITH^JOHN^^^MR||19700101|M\r\n\
PV1|1|I|WARD1^BED2\r\
OBX|1|NM|HB||135|g/L\r\
OBX|2|ST|NOTE||a\\F\\b\r\
OBX|3|NM|WBC||7.1\r";

    #[test]
    fn mixed_segment_terminators() {
        let m = Message::parse(ADT).unwrap();
        let ids: Vec<_> = m.segments().map(|s| s.id().into_owned()).collect();
        assert_eq!(ids, ["MSH", "EVN", "PID", "PV1", "OBX", "OBX", "OBX"]);
    }

    #[test]
    fn msh_numbering_and_helpers() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.msh_field(1), "|");
        assert_eq!(m.msh_field(2), "^~\\&");
        assert_eq!(m.sending_application(), "PAS");
        assert_eq!(m.sending_facility(), "RX1");
        assert_eq!(m.control_id(), "MSG0001");
        assert_eq!(m.version(), "2.4");
        assert_eq!(m.accept_ack_type(), "AL");
        let t = m.message_type();
        assert_eq!(
            (&*t.code, &*t.trigger, &*t.structure),
            ("ADT", "A01", "ADT_A01")
        );
        assert_eq!(m.nhs_number().unwrap().unwrap().as_str(), "9990000018");
        assert_eq!(
            m.created_at().unwrap().unwrap().to_iso8601(),
            "2026-11-25T14:30:00+00:00"
        );
    }

    #[test]
    fn paths() {
        let m = Message::parse(ADT).unwrap();
        assert_eq!(m.get("MSH-9.2").unwrap(), "A01");
        assert_eq!(m.get("MSH.9.1").unwrap(), "ADT");
        assert_eq!(m.get("PID-3[2].1").unwrap(), "9990000018");
        assert_eq!(m.get("PID-3(2).4").unwrap(), "NHS");
        assert_eq!(m.get("PID-3.1").unwrap(), "K123");
        let all: Vec<_> = m
            .query(&"PID-3(*).4".parse().unwrap())
            .map(|v| v.as_str().into_owned())
            .collect();
        assert_eq!(all, ["RX1", "NHS"]);
        assert_eq!(m.get("OBX[3]-5").unwrap(), "7.1");
        assert_eq!(m.get("OBX[2]-5").unwrap().as_str(), "a|b");
        let values: Vec<_> = m
            .query(&"OBX(*)-3".parse().unwrap())
            .map(|v| v.as_str().into_owned())
            .collect();
        assert_eq!(values, ["HB", "NOTE", "WBC"]);
        assert!(m.get("OBX[4]-5").is_none());
        assert!(m.get("PID-99").is_none());
        assert!(m.get("ZZZ-1").is_none());
        assert!(m.get("not a path").is_none());
        assert_eq!(m.get("PID-5.2").unwrap(), "JOHN");
        assert_eq!(m.get("PID-3.4.1").unwrap(), "RX1");
    }

    #[test]
    fn custom_delimiters() {
        let raw = b"MSH#$*@!#PAS#RX1###20261125##ADT$A08#C1#P#2.5.1\rPID#1##9990000018$$$NHS$NH*X1##A@F@B";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.message_type().trigger, "A08");
        assert_eq!(m.get("PID-3[2].1").unwrap(), "X1");
        assert_eq!(m.get("PID-5").unwrap(), "A#B");
        assert_eq!(m.nhs_number().unwrap().unwrap().as_str(), "9990000018");
    }

    #[test]
    fn a_merge_names_the_nhs_number_merged_away() {
        let raw = b"MSH|^~\\&|PAS|RX1|||20261125||ADT^A40|C1|P|2.5.1\rEVN|A40\r\
PID|1||9990000026^^^NHS^NH||SMITH^JOHN\rMRG|K9^^^RX1^MR~9990000018^^^NHS^NH";
        let m = Message::parse(raw).unwrap();
        assert_eq!(m.nhs_number().unwrap().unwrap().as_str(), "9990000026");
        assert_eq!(
            m.merged_nhs_number().unwrap().unwrap().as_str(),
            "9990000018"
        );
        let no_mrg = Message::parse(b"MSH|^~\\&|PAS|RX1|||20261125||ADT^A01|C1|P|2.5.1").unwrap();
        assert!(no_mrg.merged_nhs_number().is_none());
        let bad = Message::parse(
            b"MSH|^~\\&|PAS|RX1|||20261125||ADT^A40|C1|P|2.5.1\rMRG|9990000019^^^NHS",
        )
        .unwrap();
        assert!(bad.merged_nhs_number().unwrap().is_err());
    }

    #[test]
    fn not_a_message() {
        assert_eq!(Message::parse(b"").unwrap_err(), ParseError::Empty);
        assert_eq!(Message::parse(b"\r\n").unwrap_err(), ParseError::Empty);
        assert!(matches!(
            Message::parse(b"PID|1").unwrap_err(),
            ParseError::NoMsh { .. }
        ));
        assert!(matches!(
            Message::parse(b"\x00\x01\x02").unwrap_err(),
            ParseError::NoMsh { .. }
        ));
        assert!(matches!(
            Message::parse(b"MSH").unwrap_err(),
            ParseError::TruncatedHeader(_)
        ));
        let m = Message::parse(b"MSH|^~\\&").unwrap();
        assert_eq!(m.control_id(), "");
        assert!(m.nhs_number().is_none());
    }
}
