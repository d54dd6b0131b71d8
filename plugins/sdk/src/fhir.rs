//! Small helpers for plugins that produce FHIR R4 JSON (UK Core identifiers and references).

use serde_json::{Value, json};

/// The NHS number identifier system.
pub const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
/// The ODS organisation code system.
pub const ODS_ORGANIZATION: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// `{"system": …, "value": …}`.
pub fn identifier(system: &str, value: &str) -> Value {
    json!({ "system": system, "value": value })
}

/// A reference by business identifier (`Organization` by ODS code, say).
pub fn reference_by_identifier(resource_type: &str, system: &str, value: &str) -> Value {
    json!({ "type": resource_type, "identifier": identifier(system, value) })
}

/// A resource as a message body of content type `fhir+json`.
pub fn to_body(resource: &Value) -> Vec<u8> {
    serde_json::to_vec(resource).unwrap_or_default()
}
