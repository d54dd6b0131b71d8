//! Where a route test looks inside a FHIR body: a JSON pointer (`/entry/0/resource/id`), or a
//! FHIRPath-like path that starts at a resource type (`Patient.name[0].family`,
//! `Observation[1].valueQuantity.value`). In a Bundle the type picks the entries whose resource
//! is of that type (`[n]`, 0-based, which one; the first by default); an element without an
//! index on a list takes the list's first item, as FHIRPath's `first()` would. Parsed when the
//! test file is validated, so a path that cannot mean anything is a file:line:col error.

use serde_json::Value;

/// Why an element path does not parse.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ElementPathError {
    #[error("JSON pointer {0:?} has an empty step: expected such as /entry/0/resource/id")]
    EmptyStep(String),
    #[error(
        "{0:?} does not start with a resource type: expected such as Patient.name[0].family or a JSON pointer such as /entry/0/resource/id"
    )]
    NoResourceType(String),
    #[error(
        "{0:?} is not an element path: expected names with optional 0-based indexes, such as Patient.name[0].family"
    )]
    Malformed(String),
}

/// A parsed element path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ElementPath {
    /// RFC 6901, from the body's root.
    Pointer(String),
    /// A resource type, which of them, then elements with optional indexes.
    Fhir {
        resource: String,
        index: usize,
        elements: Vec<(String, Option<usize>)>,
    },
}

impl ElementPath {
    /// Parses `text`, or says what was expected.
    pub fn parse(text: &str) -> Result<ElementPath, ElementPathError> {
        if let Some(rest) = text.strip_prefix('/') {
            if rest.split('/').any(|t| t.is_empty()) && !rest.is_empty() {
                return Err(ElementPathError::EmptyStep(text.to_string()));
            }
            return Ok(ElementPath::Pointer(text.to_string()));
        }
        let mut parts = text.split('.');
        let (resource, index) = step(parts.next().unwrap_or(""), text)?;
        let starts_upper = resource
            .chars()
            .next()
            .is_some_and(|c| c.is_ascii_uppercase());
        if !starts_upper {
            return Err(ElementPathError::NoResourceType(text.to_string()));
        }
        let mut elements = Vec::new();
        for p in parts {
            elements.push(step(p, text)?);
        }
        Ok(ElementPath::Fhir {
            resource,
            index: index.unwrap_or(0),
            elements,
        })
    }

    /// What the path selects in `body`, or `None` when nothing is there.
    pub fn select<'v>(&self, body: &'v Value) -> Option<&'v Value> {
        match self {
            ElementPath::Pointer(p) => body.pointer(p),
            ElementPath::Fhir {
                resource,
                index,
                elements,
            } => {
                let is =
                    |v: &Value| v.get("resourceType").and_then(Value::as_str) == Some(resource);
                let mut at = if is(body) {
                    (*index == 0).then_some(body)?
                } else {
                    body.get("entry")?
                        .as_array()?
                        .iter()
                        .filter_map(|e| e.get("resource"))
                        .filter(|r| is(r))
                        .nth(*index)?
                };
                for (name, i) in elements {
                    at = at.get(name)?;
                    at = match (at, i) {
                        (Value::Array(items), i) => items.get(i.unwrap_or(0))?,
                        (v, None | Some(0)) => v,
                        (_, Some(_)) => return None,
                    };
                }
                Some(at)
            }
        }
    }
}

/// One `name` or `name[n]`.
fn step(s: &str, whole: &str) -> Result<(String, Option<usize>), ElementPathError> {
    let bad = || ElementPathError::Malformed(whole.to_string());
    let (name, index) = match s.split_once('[') {
        Some((name, rest)) => {
            let n = rest.strip_suffix(']').ok_or_else(bad)?;
            (name, Some(n.parse::<usize>().map_err(|_| bad())?))
        }
        None => (s, None),
    };
    let named = !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if named {
        Ok((name.to_string(), index))
    } else {
        Err(bad())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn bundle() -> Value {
        json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "SMITH", "given": ["ANN", "MARY"]}]}},
            {"resource": {"resourceType": "Encounter", "status": "in-progress"}},
            {"resource": {"resourceType": "Patient", "name": [{"family": "JONES"}]}}
        ]})
    }

    fn get(path: &str, body: &Value) -> Option<Value> {
        ElementPath::parse(path).unwrap().select(body).cloned()
    }

    #[test]
    fn a_type_picks_entries_of_that_type_in_a_bundle() {
        let b = bundle();
        assert_eq!(get("Patient.name.family", &b), Some(json!("SMITH")));
        assert_eq!(get("Patient[1].name[0].family", &b), Some(json!("JONES")));
        assert_eq!(get("Patient.name.given[1]", &b), Some(json!("MARY")));
        assert_eq!(get("Encounter.status", &b), Some(json!("in-progress")));
        assert_eq!(get("Patient[2].name", &b), None);
        assert_eq!(get("Observation.status", &b), None);
        assert_eq!(
            get("Bundle.entry[1].resource.status", &b),
            Some(json!("in-progress"))
        );
        assert_eq!(
            get("/entry/2/resource/name/0/family", &b),
            Some(json!("JONES"))
        );
    }

    #[test]
    fn a_resource_on_its_own_is_its_own_root() {
        let p = json!({"resourceType": "Patient", "id": "p1"});
        assert_eq!(get("Patient.id", &p), Some(json!("p1")));
        assert_eq!(get("Patient[1].id", &p), None);
    }

    #[test]
    fn paths_that_mean_nothing_are_refused() {
        for bad in [
            "",
            "patient.name",
            "Patient..name",
            "Patient.name[x]",
            "Patient.name[0",
            "Patient.na-me",
            "//x",
        ] {
            assert!(ElementPath::parse(bad).is_err(), "{bad}");
        }
        assert!(ElementPath::parse("/").is_ok());
    }
}
