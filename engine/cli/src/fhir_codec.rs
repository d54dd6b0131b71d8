//! The FHIR parser of `fhir` sources: the runtime's [`FhirCodec`] filled with `wyvern-fhir`'s
//! model (fhirbolt, strict). XML is converted to JSON for delivery; JSON goes on as sent.

use wyvern_runtime::source::fhir::{FhirCodec, FhirRefusal, ParsedFhir};

const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";

#[derive(Debug)]
pub struct ModelCodec;

impl FhirCodec for ModelCodec {
    fn parse(&self, body: &[u8], xml: bool) -> Result<ParsedFhir, FhirRefusal> {
        let refuse = |e: wyvern_fhir::model::FhirParseError| FhirRefusal {
            diagnostics: e.message,
            location: e.location,
        };
        let text = std::str::from_utf8(body).map_err(|e| FhirRefusal {
            diagnostics: format!("the body is not UTF-8 ({e})"),
            location: None,
        })?;
        let (json, value) = if xml {
            let r = wyvern_fhir::model::from_xml(text).map_err(refuse)?;
            let json = wyvern_fhir::model::to_json(&r).map_err(refuse)?;
            let value: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
            (json.into_bytes(), value)
        } else {
            let (_, value) = wyvern_fhir::model::from_json_with_tree(text).map_err(refuse)?;
            (body.to_vec(), value)
        };
        Ok(ParsedFhir {
            resource_type: value["resourceType"]
                .as_str()
                .unwrap_or_default()
                .to_string(),
            bundle_type: value["type"]
                .as_str()
                .filter(|_| value["resourceType"] == "Bundle")
                .map(str::to_string),
            id: value["id"].as_str().map(str::to_string),
            nhs_number: nhs_number(&value),
            json,
        })
    }
}

/// The first valid NHS number identifier anywhere in the resource (a Patient's own, or the
/// first Patient's in a Bundle).
fn nhs_number(v: &serde_json::Value) -> Option<String> {
    match v {
        serde_json::Value::Object(o) => {
            if o.get("system").and_then(|s| s.as_str()) == Some(NHS_NUMBER)
                && let Some(n) = o.get("value").and_then(|n| n.as_str())
                && let Ok(n) = wyvern_hl7::NhsNumber::parse(n)
            {
                return Some(n.as_str().to_string());
            }
            o.values().find_map(nhs_number)
        }
        serde_json::Value::Array(a) => a.iter().find_map(nhs_number),
        _ => None,
    }
}
