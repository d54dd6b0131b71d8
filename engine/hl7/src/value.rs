//! A borrowed piece of a message at any depth: field, repetition, component or sub-component.
//!
//! One type for every level keeps the API small: split it further with the delimiters it
//! carries, or read it, escape-decoded, as text.

use std::borrow::Cow;

use crate::{Delimiters, escape, split::nth_piece, split::pieces};

/// A slice of the original message plus the delimiters needed to split or decode it.
#[derive(Debug, Clone, Copy)]
pub struct Value<'a> {
    raw: &'a [u8],
    delims: Delimiters,
    /// MSH-1 and MSH-2 are the delimiters themselves: never split or unescaped.
    literal: bool,
    /// The whole message as text when it is valid UTF-8 (checked once at parse), so reading a
    /// value is a slice of it rather than a UTF-8 check per read.
    text: Option<&'a str>,
}

impl<'a> Value<'a> {
    #[inline]
    pub(crate) fn new(raw: &'a [u8], delims: Delimiters, text: Option<&'a str>) -> Self {
        Value {
            raw,
            delims,
            literal: false,
            text,
        }
    }

    pub(crate) fn literal(raw: &'a [u8], delims: Delimiters, text: Option<&'a str>) -> Self {
        Value {
            raw,
            delims,
            literal: true,
            text,
        }
    }

    /// `raw` as a slice of the message's text, when the message is valid UTF-8.
    #[inline]
    fn as_text(&self) -> Option<&'a str> {
        let text = self.text?;
        let start = (self.raw.as_ptr() as usize).checked_sub(text.as_ptr() as usize)?;
        text.get(start..start.checked_add(self.raw.len())?)
    }

    /// The bytes exactly as they stand in the message (still escaped).
    #[inline]
    pub fn raw(&self) -> &'a [u8] {
        self.raw
    }

    #[inline]
    pub fn is_empty(&self) -> bool {
        self.raw.is_empty()
    }

    /// The text with HL7 escapes decoded; borrowed when nothing needed decoding.
    /// Bytes that are not UTF-8 are replaced (U+FFFD), never a panic.
    #[inline]
    pub fn as_str(&self) -> Cow<'a, str> {
        if self.literal {
            return String::from_utf8_lossy(self.raw);
        }
        match escape::decode(self.raw, &self.delims) {
            // Nothing to decode: a slice of the message's text when it is UTF-8; else from_utf8
            // first (its ASCII path is several times faster than the lossy decoder).
            Cow::Borrowed(b) => match self.as_text() {
                Some(s) => Cow::Borrowed(s),
                None => match std::str::from_utf8(b) {
                    Ok(s) => Cow::Borrowed(s),
                    Err(_) => String::from_utf8_lossy(b),
                },
            },
            Cow::Owned(v) => Cow::Owned(String::from_utf8_lossy(&v).into_owned()),
        }
    }

    /// The repetitions of a field.
    #[inline]
    pub fn repetitions(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.children(self.delims.repetition)
    }

    /// The `n`-th repetition, 1-based.
    #[inline]
    pub fn repetition(&self, n: usize) -> Option<Value<'a>> {
        self.child(self.delims.repetition, n)
    }

    #[inline]
    pub fn components(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.children(self.delims.component)
    }

    /// The `n`-th component, 1-based.
    #[inline]
    pub fn component(&self, n: usize) -> Option<Value<'a>> {
        self.child(self.delims.component, n)
    }

    pub fn subcomponents(&self) -> impl Iterator<Item = Value<'a>> + use<'a> {
        self.children(self.delims.subcomponent)
    }

    /// The `n`-th sub-component, 1-based.
    pub fn subcomponent(&self, n: usize) -> Option<Value<'a>> {
        self.child(self.delims.subcomponent, n)
    }

    #[inline]
    fn child(&self, sep: u8, n: usize) -> Option<Value<'a>> {
        if n == 0 {
            return None;
        }
        if self.literal {
            return (n == 1).then_some(*self);
        }
        nth_piece(self.raw, sep, n - 1).map(|raw| Value::new(raw, self.delims, self.text))
    }

    /// The pieces split on `sep` (a literal value is its own one piece). No allocation: the
    /// mapper walks thousands of these a message.
    fn children(&self, sep: u8) -> impl Iterator<Item = Value<'a>> + use<'a> {
        let (delims, text) = (self.delims, self.text);
        let mut literal = self.literal.then_some(*self);
        let mut split = (!self.literal).then(|| pieces(self.raw, sep));
        std::iter::from_fn(move || match &mut split {
            Some(s) => s.next().map(|raw| Value::new(raw, delims, text)),
            None => literal.take(),
        })
    }
}

impl PartialEq<&str> for Value<'_> {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}
