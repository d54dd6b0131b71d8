//! `GET /fhir/metadata`: a CapabilityStatement for what the members together serve — each
//! type any member serves, searchable by the patient's NHS number, and `Patient/$everything`.

use serde_json::{Value, json};
use wyvern_config::SearchType;

use super::member::MemberClient;
use wyvern_federation::NHS_NUMBER_SYSTEM;

pub fn statement(members: &[MemberClient]) -> Value {
    let resources: Vec<Value> = SearchType::ALL
        .into_iter()
        .filter(|t| members.iter().any(|m| m.serves(*t)))
        .map(|t| {
            let (name, kind) = match t {
                SearchType::Patient => ("identifier", "token"),
                _ => ("patient.identifier", "token"),
            };
            let served: Vec<&str> = members.iter().filter(|m| m.serves(t)).map(|m| m.name.as_str()).collect();
            let mut params = vec![
                json!({ "name": name, "type": kind, "documentation": format!("{NHS_NUMBER_SYSTEM}|NHS number (required, or patient)") }),
                json!({ "name": "_count", "type": "number", "documentation": "entries asked of each member (1 to 1000, default 100)" }),
            ];
            if t != SearchType::Patient {
                params.insert(1, json!({ "name": "patient", "type": "reference", "documentation": "the patient by the bridge's id for them, their NHS number: patient=9990000018" }));
            }
            let mut resource = json!({
                "type": t.as_str(),
                "interaction": [{ "code": "search-type" }],
                "searchParam": params,
                "documentation": format!("from {}", served.join(", ")),
            });
            if t == SearchType::Patient {
                resource["operation"] = json!([{
                    "name": "everything",
                    "definition": "http://hl7.org/fhir/OperationDefinition/Patient-everything",
                    "documentation": "GET Patient/{NHS number}/$everything[?_type=…&_count=…]: every type above for the patient, from every member, in one searchset",
                }]);
            }
            resource
        })
        .collect();
    json!({
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-12-04",
        "kind": "instance",
        "software": { "name": "Wyvern bridge", "version": env!("CARGO_PKG_VERSION") },
        "implementation": { "description": "Federated read across the member records: one searchset, each entry tagged with its member and data owner" },
        "fhirVersion": "4.0.1",
        "format": ["json"],
        "rest": [{ "mode": "server", "resource": resources }],
    })
}
