//! The crate's one door to fhirbolt: FHIR R4 JSON and XML parsed strictly into fhirbolt's
//! element model (which knows every R4 element's name, cardinality and primitive type) and
//! written back out. Only the element model is used, not the generated R4 structs: it gives
//! strict parsing and JSON ↔ XML for a 16 s build where the structs cost minutes
//! (ARCHITECTURE.md, "FHIR").
//!
//! Untrusted input is bounded before fhirbolt sees it: nesting depth for JSON, and no DTD at
//! all for XML (no entity can be declared, so none can be expanded: XXE and billion laughs
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
}

fn err(message: impl Into<String>) -> FhirParseError {
    FhirParseError {
        message: message.into(),
    }
}

fn strict() -> Option<DeserializationConfig> {
    Some(DeserializationConfig {
        mode: DeserializationMode::Strict,
    })
}

pub fn from_json(text: &str) -> Result<Resource, FhirParseError> {
    let depth = json_depth(text.as_bytes());
    if depth > MAX_DEPTH {
        return Err(err(format!(
            "JSON nested {depth} deep: at most {MAX_DEPTH} levels are accepted"
        )));
    }
    // A whole-document syntax check first: fhirbolt stops after the first value and would
    // accept trailing bytes (found by fuzzing).
    serde_json::from_str::<serde::de::IgnoredAny>(text)
        .map_err(|e| err(format!("not JSON: {e}")))?;
    let r: Resource =
        guarded(|| fhirbolt::json::from_str(text, strict()).map_err(|e| err(e.to_string())))?;
    has_type(r)
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
    let upper = text
        .get(..text.len().min(4096))
        .unwrap_or(text)
        .to_ascii_uppercase();
    if upper.contains("<!DOCTYPE") || upper.contains("<!ENTITY") {
        return Err(err(
            "XML with a DTD or entity declarations is refused (FHIR XML never needs one)",
        ));
    }
    if text.to_ascii_uppercase().contains("<!ENTITY") {
        return Err(err("XML with entity declarations is refused"));
    }
    let r: Resource =
        guarded(|| fhirbolt::xml::from_str(text, strict()).map_err(|e| err(e.to_string())))?;
    has_type(r)
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
        let unknown = r#"{"resourceType":"Patient","favouriteColour":"blue"}"#;
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
    fn json_and_xml_round_trip() {
        let json = r#"{"resourceType":"Observation","status":"final","code":{"text":"Hb"},"valueQuantity":{"value":13.50,"unit":"g/dL"}}"#;
        let r = from_json(json).unwrap();
        let back = from_xml(&to_xml(&r).unwrap()).unwrap();
        assert_eq!(to_json(&back).unwrap(), to_json(&r).unwrap());
        assert!(to_json(&back).unwrap().contains("13.50"));
    }
}
