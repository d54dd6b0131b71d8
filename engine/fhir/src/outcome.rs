//! OperationOutcome: how FHIR says no. One issue per problem, with the FHIRPath-like location
//! when it is known, so a sender can find what to fix.

use serde_json::{Value, json};

/// `severity` is `error` or `warning`; `code` an issue-type code (`invalid`, `structure`,
/// `too-long`, `not-supported`, `exception` …).
pub fn operation_outcome(
    severity: &str,
    code: &str,
    diagnostics: &str,
    location: Option<&str>,
) -> Value {
    let mut issue = json!({ "severity": severity, "code": code, "diagnostics": diagnostics });
    if let Some(l) = location {
        issue["expression"] = json!([l]);
    }
    json!({ "resourceType": "OperationOutcome", "issue": [issue] })
}
