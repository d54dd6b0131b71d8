//! The crate's one door to fhirbolt: FHIR R4 JSON and XML parsed strictly into fhirbolt's
//! element model (which knows every R4 element's name, cardinality and primitive type) and
//! written back out. Only the element model is used, not the generated R4 structs: it gives
//! strict parsing and JSON ↔ XML for a 16 s build where the structs cost minutes
//! (ARCHITECTURE.md, "FHIR").
//!
//! Untrusted input is bounded before fhirbolt sees it: nesting depth for JSON and XML (fhirbolt
//! recurses per level: 20,000 nested XML elements overflowed a worker's stack and aborted the
//! whole engine), and no DTD at all for XML (no entity can be declared, so none can be expanded: XXE and billion laughs
//! are refused, not resolved).

use fhirbolt::FhirReleases;
use fhirbolt::element::Element;
use fhirbolt::serde::{DeserializationConfig, DeserializationMode};

/// An R4 resource of any type.
pub type Resource = Element<{ FhirReleases::R4 }>;

/// Deeper than this is refused before parsing (a Bundle of Observations is about 10).
pub const MAX_DEPTH: usize = 64;

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct FhirParseError {
    pub message: String,
    /// Where, FHIRPath-like (`Patient.name[0].given`), when the parser said a line and column.
    pub location: Option<String>,
}

fn err(message: impl Into<String>) -> FhirParseError {
    FhirParseError {
        message: message.into(),
        location: None,
    }
}

/// A JSON error with its location: from the "line L column C" it names, or for an unknown
/// element (fhirbolt reports no position then) from where that key first appears.
fn json_err(text: &str, message: String) -> FhirParseError {
    let offset = match line_col(&message) {
        Some((line, col)) => {
            let before: usize = text
                .split_inclusive('\n')
                .take(line.saturating_sub(1))
                .map(str::len)
                .sum();
            Some(before + col.saturating_sub(1))
        }
        None => unknown_key_offset(text, &message),
    };
    let location = offset.map(|o| json_path_at(text, o));
    FhirParseError { message, location }
}

/// "unknown field `x`" → the offset just after the first `"x"` used as a key.
fn unknown_key_offset(text: &str, message: &str) -> Option<usize> {
    let rest = message.strip_prefix("unknown field `")?;
    let key = format!("\"{}\"", &rest[..rest.find('`')?]);
    let mut from = 0;
    while let Some(i) = text[from..].find(&key) {
        let end = from + i + key.len();
        if text[end..].trim_start().starts_with(':') {
            return Some(end);
        }
        from = end;
    }
    None
}

fn line_col(message: &str) -> Option<(usize, usize)> {
    let at = message.rfind("line ")?;
    let mut words = message[at..].split_whitespace();
    let (_, line, _, col) = (words.next()?, words.next()?, words.next()?, words.next()?);
    let digits = |w: &str| {
        w.trim_end_matches(|c: char| !c.is_ascii_digit())
            .parse()
            .ok()
    };
    Some((digits(line)?, digits(col)?))
}

/// The FHIRPath-like path at byte `offset` of a JSON document, rooted at its resourceType:
/// `Patient.name[0].given[1]`.
pub fn json_path_at(text: &str, offset: usize) -> String {
    enum Frame {
        Object(Option<String>),
        Array(usize),
    }
    let b = text.as_bytes();
    let mut stack: Vec<Frame> = Vec::new();
    let (mut i, mut expect_key) = (0, false);
    while i < b.len().min(offset) {
        match b[i] {
            b'"' => {
                let start = i + 1;
                i += 1;
                while i < b.len() && b[i] != b'"' {
                    i += if b[i] == b'\\' { 2 } else { 1 };
                }
                if expect_key {
                    if let Some(Frame::Object(k)) = stack.last_mut() {
                        *k = Some(String::from_utf8_lossy(&b[start..i.min(b.len())]).into_owned());
                    }
                    expect_key = false;
                }
            }
            b'{' => {
                stack.push(Frame::Object(None));
                expect_key = true;
            }
            b'[' => stack.push(Frame::Array(0)),
            b'}' | b']' => {
                stack.pop();
            }
            b',' => match stack.last_mut() {
                Some(Frame::Array(n)) => *n += 1,
                Some(Frame::Object(_)) => expect_key = true,
                None => {}
            },
            _ => {}
        }
        i += 1;
    }
    let mut path = resource_type_of(text).unwrap_or_else(|| "$".into());
    for f in &stack {
        match f {
            Frame::Object(Some(k)) if k != "resourceType" => {
                path.push('.');
                path.push_str(k);
            }
            Frame::Array(n) => path.push_str(&format!("[{n}]")),
            _ => {}
        }
    }
    path
}

fn resource_type_of(text: &str) -> Option<String> {
    let at = text.find("\"resourceType\"")?;
    let rest = &text[at + 14..];
    let rest = &rest[rest.find(':')? + 1..];
    let start = rest.find('"')? + 1;
    let end = rest[start..].find('"')? + start;
    Some(rest[start..end].to_string())
}

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

pub fn from_json(text: &str) -> Result<Resource, FhirParseError> {
    from_json_with_tree(text).map(|(r, _)| r)
}

/// [`from_json`], and the document as a `serde_json` tree: the whole-document syntax check
/// builds it anyway, so a caller that reads plain fields (resourceType, id, identifiers) need
/// not parse the body a third time.
pub fn from_json_with_tree(text: &str) -> Result<(Resource, serde_json::Value), FhirParseError> {
    let depth = json_depth(text.as_bytes());
    if depth > MAX_DEPTH {
        return Err(err(format!(
            "JSON nested {depth} deep: at most {MAX_DEPTH} levels are accepted"
        )));
    }
    // A whole-document syntax check first: fhirbolt stops after the first value and would
    // accept trailing bytes (found by fuzzing).
    let tree: serde_json::Value =
        serde_json::from_str(text).map_err(|e| json_err(text, format!("not JSON: {e}")))?;
    let r: Resource = guarded(|| {
        fhirbolt::json::from_str(text, strict()).map_err(|e| json_err(text, e.to_string()))
    })?;
    Ok((has_type(r)?, tree))
}

/// A resource names its type; fhirbolt accepts `{}` and then cannot write it (found by
/// fuzzing: its XML writer panics).
fn has_type(r: Resource) -> Result<Resource, FhirParseError> {
    match r.get("resourceType") {
        Some(fhirbolt::element::Value::Primitive(fhirbolt::element::Primitive::String(t)))
            if !t.is_empty() =>
        {
            Ok(r)
        }
        _ => Err(err(
            "resourceType is missing: a FHIR resource names its type",
        )),
    }
}

/// fhirbolt is a library we do not control: a panic inside it on some input becomes an
/// error for that input, never a crash of the engine.
fn guarded<T>(f: impl FnOnce() -> Result<T, FhirParseError>) -> Result<T, FhirParseError> {
    std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)).unwrap_or_else(|_| {
        Err(err(
            "the FHIR parser failed on this input (an internal error, reported)",
        ))
    })
}

pub fn from_xml(text: &str) -> Result<Resource, FhirParseError> {
    // Anywhere in the document, not only its head: a prolog padded with comments must not
    // hide a DTD.
    if declares(text, b"<!DOCTYPE") || declares(text, b"<!ENTITY") {
        return Err(err(
            "XML with a DTD or entity declarations is refused (FHIR XML never needs one)",
        ));
    }
    let depth = xml_depth(text.as_bytes());
    if depth > MAX_DEPTH {
        return Err(err(format!(
            "XML nested {depth} deep: at most {MAX_DEPTH} levels are accepted"
        )));
    }
    let r: Resource =
        guarded(|| fhirbolt::xml::from_str(text, strict()).map_err(|e| err(e.to_string())))?;
    has_type(r)
}

/// The deepest nesting of elements, read without parsing: comments, CDATA, processing
/// instructions and quoted attribute values are skipped. It never under-counts a document an
/// XML parser would accept, so it bounds the parser's recursion; malformed markup is left to
/// the parser to refuse.
pub fn xml_depth(b: &[u8]) -> usize {
    let find = |from: usize, pat: &[u8]| {
        memchr::memmem::find(&b[from.min(b.len())..], pat).map_or(b.len(), |i| from + i + pat.len())
    };
    let (mut i, mut depth, mut max) = (0usize, 0usize, 0usize);
    while let Some(lt) = memchr::memchr(b'<', &b[i..]) {
        i += lt + 1;
        let rest = &b[i..];
        if rest.starts_with(b"!--") {
            i = find(i, b"-->");
        } else if rest.starts_with(b"![CDATA[") {
            i = find(i, b"]]>");
        } else if rest.starts_with(b"?") {
            i = find(i, b"?>");
        } else if rest.starts_with(b"!") {
            i = find(i, b">");
        } else if rest.starts_with(b"/") {
            depth = depth.saturating_sub(1);
            i = find(i, b">");
        } else {
            // A start tag: find its end outside quoted attribute values.
            let (mut quote, mut self_closing) = (None, false);
            while i < b.len() {
                let c = b[i];
                i += 1;
                match (quote, c) {
                    (Some(q), c) if c == q => quote = None,
                    (Some(_), _) => {}
                    (None, b'"' | b'\'') => quote = Some(c),
                    (None, b'>') => {
                        self_closing = i >= 2 && b[i - 2] == b'/';
                        break;
                    }
                    _ => {}
                }
            }
            if !self_closing {
                depth += 1;
                max = max.max(depth);
            }
        }
    }
    max
}

/// Whether `text` holds `markup` (upper-case ASCII), in any case, without copying it.
fn declares(text: &str, markup: &[u8]) -> bool {
    text.as_bytes()
        .windows(markup.len())
        .any(|w| w.eq_ignore_ascii_case(markup))
}

pub fn to_json(r: &Resource) -> Result<String, FhirParseError> {
    guarded(|| fhirbolt::json::to_string(r, None).map_err(|e| err(e.to_string())))
}

pub fn to_xml(r: &Resource) -> Result<String, FhirParseError> {
    guarded(|| fhirbolt::xml::to_string(r, None).map_err(|e| err(e.to_string())))
}

/// The deepest nesting of objects and arrays, strings skipped.
pub fn json_depth(b: &[u8]) -> usize {
    let (mut depth, mut max, mut in_str, mut esc) = (0usize, 0usize, false, false);
    for &c in b {
        if in_str {
            match (esc, c) {
                (true, _) => esc = false,
                (false, b'\\') => esc = true,
                (false, b'"') => in_str = false,
                _ => {}
            }
            continue;
        }
        match c {
            b'"' => in_str = true,
            b'{' | b'[' => {
                depth += 1;
                max = max.max(depth);
            }
            b'}' | b']' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    max
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hostile_input_is_refused_before_parsing() {
        let deep = "[".repeat(10_000) + &"]".repeat(10_000);
        assert!(
            from_json(&deep)
                .unwrap_err()
                .message
                .contains("nested 10000 deep")
        );
        let xxe = r#"<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#;
        assert!(from_xml(xxe).unwrap_err().message.contains("DTD"));
        // A DTD after a long comment is found too.
        let padded = format!(
            "<?xml version=\"1.0\"?><!--{}-->{}",
            "x".repeat(10_000),
            &xxe[21..]
        );
        assert!(from_xml(&padded).unwrap_err().message.contains("DTD"));
        // Issue 11: 20,000 nested extensions overflowed the stack and aborted the process.
        let deep_xml = format!(
            "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
            "<extension url=\"http://x/e\">".repeat(20_000),
            "</extension>".repeat(20_000)
        );
        let e = from_xml(&deep_xml).unwrap_err();
        assert!(e.message.contains("XML nested 20001 deep"), "{e:?}");
        let unknown = "{\"resourceType\": \"Patient\",\n \"name\": [{\"family\": \"X\"}, {\"favouriteColour\": \"blue\"}]}";
        let e = from_json(unknown).unwrap_err();
        assert_eq!(
            e.location.as_deref(),
            Some("Patient.name[1].favouriteColour"),
            "{e:?}"
        );
        let e =
            from_json("{\"resourceType\": \"Patient\", \"gender\": \"male\",\n  \"active\": tru}")
                .unwrap_err();
        assert_eq!(e.location.as_deref(), Some("Patient.active"), "{e:?}");
        assert!(
            from_json(unknown)
                .unwrap_err()
                .message
                .contains("favouriteColour")
        );
        assert!(from_json("{not json").is_err());
        // Found by fuzzing: an object with no type, and bytes after the document.
        assert!(from_json("{\n    },\n    \"identifier\": [\n \">:").is_err());
        assert!(
            from_json("{}")
                .unwrap_err()
                .message
                .contains("resourceType")
        );
    }

    #[test]
    fn xml_depth_counts_elements_only() {
        assert_eq!(xml_depth(b"<a><b/><c x=\"/>\"><d></d></c></a>"), 3);
        assert_eq!(
            xml_depth(b"<?xml version=\"1.0\"?><!-- <x><y> --><a><![CDATA[<q><r>]]></a>"),
            1
        );
        assert_eq!(xml_depth(b"<a><b><c></c></b><b/></a>"), 3);
        assert_eq!(xml_depth(b"no markup"), 0);
        assert_eq!(xml_depth(b"<unclosed attr='>"), 1);
    }

    #[test]
    fn json_and_xml_round_trip() {
        let json = r#"{"resourceType":"Observation","status":"final","code":{"text":"Hb"},"valueQuantity":{"value":13.50,"unit":"g/dL"}}"#;
        let r = from_json(json).unwrap();
        let back = from_xml(&to_xml(&r).unwrap()).unwrap();
        assert_eq!(to_json(&back).unwrap(), to_json(&r).unwrap());
        assert!(to_json(&back).unwrap().contains("13.50"));
    }
}
