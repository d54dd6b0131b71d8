//! The stand-in's searches: `identifier=system|value`, `patient=id[,id…]` (a `subject` or
//! `patient` reference to `Patient/id`), `_count` and `_offset` (`total` is every match); other parameters are ignored, as FHIR
//! lets a server do. With `--ignore-search` it answers every search with everything of the
//! type, as a careless server might: for testing that a client (the bridge) does not trust
//! what it is given.

use serde_json::Value;

/// Whether `resource` matches every parameter the stand-in understands.
pub fn matches(resource: &Value, params: &[(String, String)]) -> bool {
    params.iter().all(|(name, value)| match name.as_str() {
        "identifier" => has_identifier(resource, value),
        "patient" => value.split(',').any(|id| refers_to_patient(resource, id)),
        _ => true,
    })
}

/// `_count`, if given and a number.
pub fn count(params: &[(String, String)]) -> Option<usize> {
    number(params, "_count")
}

/// `_offset` (how many matches to pass over), if given and a number.
pub fn offset(params: &[(String, String)]) -> Option<usize> {
    number(params, "_offset")
}

fn number(params: &[(String, String)], name: &str) -> Option<usize> {
    params
        .iter()
        .find(|(n, _)| n == name)
        .and_then(|(_, v)| v.parse().ok())
}

fn has_identifier(resource: &Value, token: &str) -> bool {
    let (system, value) = match token.split_once('|') {
        Some((s, v)) => (Some(s), v),
        None => (None, token),
    };
    resource
        .get("identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter().any(|i| {
                i.get("value").and_then(Value::as_str) == Some(value)
                    && system.is_none_or(|s| i.get("system").and_then(Value::as_str) == Some(s))
            })
        })
}

fn refers_to_patient(resource: &Value, id: &str) -> bool {
    let wanted = format!("Patient/{id}");
    ["subject", "patient"].iter().any(|field| {
        resource
            .get(field)
            .and_then(|r| r.get("reference"))
            .and_then(Value::as_str)
            == Some(wanted.as_str())
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn searches_by_identifier_patient_and_count() {
        let p = json!({ "resourceType": "Patient", "id": "a", "identifier": [{ "system": "s", "value": "1" }] });
        let c = json!({ "resourceType": "Condition", "subject": { "reference": "Patient/a" } });
        let q = |pairs: &[(&str, &str)]| -> Vec<(String, String)> {
            pairs
                .iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        assert!(matches(&p, &q(&[("identifier", "s|1")])));
        assert!(matches(&p, &q(&[("identifier", "1")])));
        assert!(!matches(&p, &q(&[("identifier", "t|1")])));
        assert!(matches(&c, &q(&[("patient", "b,a")])));
        assert!(!matches(&c, &q(&[("patient", "b")])));
        assert_eq!(count(&q(&[("_count", "5")])), Some(5));
    }
}
