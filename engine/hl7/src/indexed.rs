//! A segment with its field boundaries found once, for callers that read many fields of the
//! same segment (the FHIR mapper reads ~20 of PID and PV1). [`Segment::field`] scans from the
//! start of the line on every call, which is the right trade for the one or two reads a
//! router makes and the wrong one for twenty.

use crate::{Segment, Value};

/// One segment, indexed by field: [`IndexedSegment::field`] is a lookup, not a scan.
#[derive(Debug, Clone)]
pub struct IndexedSegment<'a> {
    segment: Segment<'a>,
    /// Field `n` at index `n` (index 0 the segment id). Empty for MSH, FHS and BHS, whose
    /// numbering is special and which are read through [`Segment::field`].
    fields: Vec<&'a [u8]>,
    /// Found once: every read would otherwise look at the segment id again.
    header: bool,
}

impl<'a> Segment<'a> {
    /// This segment with its fields indexed.
    pub fn indexed(&self) -> IndexedSegment<'a> {
        self.indexed_to(usize::MAX)
    }

    /// This segment with fields 1 to `last` indexed (a field after it is still read, by a
    /// scan): for segments whose long tail of empty fields a caller never reads.
    pub fn indexed_to(&self, last: usize) -> IndexedSegment<'a> {
        let mut fields = Vec::new();
        let header = self.is_header();
        if !header {
            let (raw, sep) = (self.raw(), self.delimiters().field);
            fields.reserve(last.saturating_add(1).min(48)); // PV1 has 52 fields, PID 39
            let mut start = 0;
            for (i, &b) in raw.iter().enumerate() {
                if b == sep {
                    fields.push(&raw[start..i]);
                    start = i + 1;
                    if fields.len() > last {
                        break;
                    }
                }
            }
            if fields.len() <= last {
                fields.push(&raw[start..]);
            }
        }
        IndexedSegment {
            segment: *self,
            fields,
            header,
        }
    }
}

impl<'a> IndexedSegment<'a> {
    /// Field `n` (1-based), exactly as [`Segment::field`] gives it.
    #[inline]
    pub fn field(&self, n: usize) -> Option<Value<'a>> {
        if self.header {
            return self.segment.field(n);
        }
        if n == 0 {
            return None;
        }
        match self.fields.get(n) {
            Some(raw) => Some(Value::new(
                raw,
                *self.segment.delimiters(),
                self.segment.text,
            )),
            None => self.segment.field(n),
        }
    }

    pub fn segment(&self) -> &Segment<'a> {
        &self.segment
    }
}

#[cfg(test)]
mod tests {
    use crate::Message;

    #[test]
    fn indexed_fields_are_the_fields() {
        let m = Message::parse(
            b"MSH|^~\\&|PAS|RX1|||20260101||ADT^A01|1|P|2.4\rPID|1||K1^^^RX1^MR||SMITH^JO||||||||||||||||||||||||||Y\rPV1\r",
        )
        .unwrap();
        for seg in m.segments() {
            for ix in [
                seg.indexed(),
                seg.indexed_to(0),
                seg.indexed_to(3),
                seg.indexed_to(40),
            ] {
                for n in 0..45 {
                    assert_eq!(
                        ix.field(n).map(|v| v.raw()),
                        seg.field(n).map(|v| v.raw()),
                        "{}-{n}",
                        seg.id()
                    );
                }
            }
        }
    }
}
