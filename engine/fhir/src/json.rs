//! A JSON writer that appends a resource's members straight into one buffer and drops what
//! would be empty. FHIR forbids empty strings, arrays and objects, and a missing v2 field must
//! never leave one behind: a container that ends up with no members is rolled back (the
//! buffer truncated to where its key began), so nothing has to be pruned afterwards.
//!
//! Why not a `serde_json::Value` tree: building one cost ~130 µs for an ADT^A01 (every key a
//! `String`, every object an ordered map, copies on the way into the Bundle); writing the
//! same Bundle here costs a few µs (ARCHITECTURE.md "FHIR").

/// Where a member goes: under a key in an object (`"name"`), or as an array element ([`Item`]).
pub trait Key: Copy {
    fn name(self) -> Option<&'static str>;
}

impl Key for &'static str {
    fn name(self) -> Option<&'static str> {
        Some(self)
    }
}

/// An array element (no key).
#[derive(Debug, Clone, Copy)]
pub struct Item;

impl Key for Item {
    fn name(self) -> Option<&'static str> {
        None
    }
}

/// An open object or array: where it began, so [`JsonWriter::close`] can drop it if empty.
#[must_use = "close it, or the JSON is left unbalanced"]
#[derive(Debug)]
pub struct Open {
    at: usize,
    outer_first: bool,
    close: char,
}

/// The members of one JSON object (no braces: the Bundle writes the resource's header
/// before them), written in call order.
#[derive(Debug)]
pub struct JsonWriter {
    out: String,
    /// No member written yet at the current depth (so no comma before the next).
    first: bool,
}

impl Default for JsonWriter {
    fn default() -> Self {
        JsonWriter::with_buffer(String::new())
    }
}

impl JsonWriter {
    /// A writer appending to `buf` (cleared), so buffers can be reused.
    pub fn with_buffer(mut buf: String) -> Self {
        buf.clear();
        if buf.capacity() == 0 {
            buf.reserve(2048); // most resources fit: growing costs more than the space
        }
        JsonWriter {
            out: buf,
            first: true,
        }
    }

    fn begin(&mut self, key: Option<&'static str>) {
        if !self.first {
            self.out.push(',');
        }
        self.first = false;
        if let Some(k) = key {
            self.out.push('"');
            self.out.push_str(k);
            self.out.push_str("\":");
        }
    }

    /// A string member; nothing when `v` is blank.
    pub fn str(&mut self, k: impl Key, v: &str) {
        let plain = v
            .as_bytes()
            .first()
            .is_some_and(|b| (0x21..0x80).contains(b));
        if !plain && v.trim().is_empty() {
            return;
        }
        self.begin(k.name());
        escape_into(&mut self.out, v);
    }

    pub fn opt_str(&mut self, k: impl Key, v: Option<&str>) {
        if let Some(v) = v {
            self.str(k, v);
        }
    }

    /// A member whose JSON text is `json` as it stands (a number checked by the caller).
    pub fn raw(&mut self, k: impl Key, json: &str) {
        self.begin(k.name());
        self.out.push_str(json);
    }

    pub fn bool(&mut self, k: impl Key, b: bool) {
        self.raw(k, if b { "true" } else { "false" });
    }

    pub fn open(&mut self, k: impl Key) -> Open {
        self.open_with(k.name(), '{', '}')
    }

    pub fn open_array(&mut self, k: impl Key) -> Open {
        self.open_with(k.name(), '[', ']')
    }

    fn open_with(&mut self, key: Option<&'static str>, open: char, close: char) -> Open {
        let (at, outer_first) = (self.out.len(), self.first);
        self.begin(key);
        self.out.push(open);
        self.first = true;
        Open {
            at,
            outer_first,
            close,
        }
    }

    /// Closes `o`; an object or array that got no members is removed with its key.
    pub fn close(&mut self, o: Open) {
        if self.first {
            self.out.truncate(o.at);
            self.first = o.outer_first;
        } else {
            self.out.push(o.close);
            self.first = false;
        }
    }

    /// An object member filled by `f` (dropped if `f` writes nothing).
    pub fn object(&mut self, k: impl Key, f: impl FnOnce(&mut Self)) {
        let o = self.open(k);
        f(self);
        self.close(o);
    }

    /// An array member filled by `f` (dropped if `f` writes nothing).
    pub fn array(&mut self, k: impl Key, f: impl FnOnce(&mut Self)) {
        let o = self.open_array(k);
        f(self);
        self.close(o);
    }

    /// The members written, as `"a":1,"b":[…]` (empty when none were).
    pub fn into_members(self) -> String {
        self.out
    }
}

/// `s` as a JSON string, escaped as serde_json escapes it (so output compares byte for byte).
pub fn escape_into(out: &mut String, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.push('"');
    // Almost every string needs no escape: find out eight bytes at a time.
    if !needs_escape(s.as_bytes()) {
        out.push_str(s);
        out.push('"');
        return;
    }
    let mut start = 0;
    for (i, b) in s.bytes().enumerate() {
        let short = match b {
            b'"' => "\\\"",
            b'\\' => "\\\\",
            b'\n' => "\\n",
            b'\r' => "\\r",
            b'\t' => "\\t",
            0x08 => "\\b",
            0x0c => "\\f",
            0..=0x1f => "",
            _ => continue,
        };
        // Only ASCII bytes are escaped, so `i` is always a char boundary.
        out.push_str(&s[start..i]);
        if short.is_empty() {
            out.push_str("\\u00");
            out.push(char::from(HEX[usize::from(b >> 4)]));
            out.push(char::from(HEX[usize::from(b & 0x0f)]));
        } else {
            out.push_str(short);
        }
        start = i + 1;
    }
    out.push_str(&s[start..]);
    out.push('"');
}

/// Whether `s` holds a control character, `"` or `\`: eight bytes a step with the "has a
/// byte less than / equal to" word tricks (exact for the question "is there one").
fn needs_escape(s: &[u8]) -> bool {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x & HIGH;
    let special = |c: &[u8]| {
        let v = <[u8; 8]>::try_from(c).map_or(0, u64::from_le_bytes);
        let control = v.wrapping_sub(ONES * 0x20) & !v & HIGH;
        let quote = zero_byte(v ^ (ONES * u64::from(b'"')));
        let backslash = zero_byte(v ^ (ONES * u64::from(b'\\')));
        control | quote | backslash != 0
    };
    if s.len() < 8 {
        return s.iter().any(|&b| b < 0x20 || b == b'"' || b == b'\\');
    }
    // Whole words, then the last eight bytes (overlapping) for the tail.
    s.chunks_exact(8).any(special) || special(&s[s.len() - 8..])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn doc(w: JsonWriter) -> String {
        format!("{{{}}}", w.into_members())
    }

    #[test]
    fn empty_members_and_containers_are_dropped() {
        let mut w = JsonWriter::default();
        w.str("a", "  ");
        w.object("b", |w| {
            w.array("c", |w| w.str(Item, ""));
            w.object("d", |_| {});
        });
        w.str("e", "x");
        w.array("f", |w| {
            w.object(Item, |w| w.str("g", ""));
            w.object(Item, |w| w.str("h", "1"));
        });
        w.object("z", |_| {});
        assert_eq!(doc(w), r#"{"e":"x","f":[{"h":"1"}]}"#);
    }

    #[test]
    fn strings_escape_as_serde_json_does() {
        for s in [
            "plain",
            "quote \" and \\ backslash",
            "lines\nand\rtabs\t",
            "\u{1}\u{8}\u{c}\u{1f}\u{7f}",
            "non-ASCII: café, ½, 😀",
            "/slash/",
        ] {
            let mut out = String::new();
            escape_into(&mut out, s);
            assert_eq!(out, serde_json::to_string(s).unwrap(), "{s:?}");
        }
    }

    #[test]
    fn the_word_check_finds_every_special_byte_anywhere() {
        for len in 0..20 {
            let base = vec![b'a'; len];
            assert!(!needs_escape(&base));
            for at in 0..len {
                for special in (0u8..0x20).chain([b'"', b'\\']) {
                    let mut s = base.clone();
                    s[at] = special;
                    assert!(needs_escape(&s), "{special:#x} at {at} of {len}");
                }
                for plain in [0x20u8, b'!', b'#', b'[', b']', 0x7f, 0x80, 0xa2, 0xdc, 0xff] {
                    let mut s = base.clone();
                    s[at] = plain;
                    assert!(!needs_escape(&s), "{plain:#x} at {at} of {len}");
                }
            }
        }
    }

    #[test]
    fn output_is_valid_json() {
        let mut w = JsonWriter::default();
        w.raw("n", "13.50");
        w.bool("t", true);
        w.array("xs", |w| {
            w.str(Item, "a");
            w.str(Item, "b\"");
        });
        let text = doc(w);
        let v: serde_json::Value = serde_json::from_str(&text).unwrap();
        assert_eq!(v["xs"][1], "b\"");
        assert_eq!(text, r#"{"n":13.50,"t":true,"xs":["a","b\""]}"#);
    }
}
