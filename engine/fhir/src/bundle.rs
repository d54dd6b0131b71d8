//! The transaction Bundle: one entry per resource, each with a stable `urn:uuid:` fullUrl (so
//! references inside the Bundle resolve) and an upsert request. Patients and encounters are
//! written by conditional update on their business identifier; the rest by `PUT Type/id` with
//! the stable id. Either way a replay updates what the first delivery created.

use serde_json::{Map, Value, json};

use crate::ids::stable_uuid;

#[derive(Debug, Default)]
pub struct Bundle {
    entries: Vec<Value>,
    seen: std::collections::HashSet<String>,
}

/// How an entry is written.
#[derive(Debug)]
pub enum Upsert<'a> {
    /// `PUT Type?identifier=system|value`.
    Identifier { system: &'a str, value: &'a str },
    /// `PUT Type/{stable id}`.
    ById,
}

impl Bundle {
    /// Adds `resource` (type `kind`, identity `key`) unless the Bundle already has it, and
    /// returns its reference (`urn:uuid:…`).
    pub fn add(
        &mut self,
        kind: &str,
        key: &str,
        mut resource: Map<String, Value>,
        upsert: Upsert<'_>,
        profile: Option<&str>,
    ) -> String {
        let id = stable_uuid(kind, key);
        let full_url = format!("urn:uuid:{id}");
        if !self.seen.insert(full_url.clone()) {
            return full_url;
        }
        let mut r = Map::new();
        r.insert("resourceType".into(), kind.into());
        let url = match upsert {
            Upsert::Identifier { system, value } => {
                format!("{kind}?identifier={}|{}", query(system), query(value))
            }
            Upsert::ById => {
                r.insert("id".into(), id.clone().into());
                format!("{kind}/{id}")
            }
        };
        if let Some(p) = profile {
            r.insert("meta".into(), json!({ "profile": [p] }));
        }
        r.append(&mut resource);
        prune(&mut r);
        // Built by moving, not with json!: the macro would deep-copy the resource.
        let mut request = Map::new();
        request.insert("method".into(), "PUT".into());
        request.insert("url".into(), url.into());
        let mut entry = Map::new();
        entry.insert("fullUrl".into(), full_url.clone().into());
        entry.insert("resource".into(), Value::Object(r));
        entry.insert("request".into(), Value::Object(request));
        self.entries.push(Value::Object(entry));
        full_url
    }

    pub fn finish(self) -> Value {
        let mut b = Map::new();
        b.insert("resourceType".into(), "Bundle".into());
        b.insert("type".into(), "transaction".into());
        b.insert("entry".into(), Value::Array(self.entries));
        Value::Object(b)
    }
}

/// The characters a search value must escape in a URL query.
fn query(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'/' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// Drops empty strings, arrays and objects at any depth: FHIR forbids empty elements, and a
/// missing v2 field must never leave one behind.
pub fn prune(m: &mut Map<String, Value>) {
    m.retain(|_, v| !is_empty(v));
}

fn is_empty(v: &mut Value) -> bool {
    match v {
        Value::Null => true,
        Value::String(s) => s.trim().is_empty(),
        Value::Array(a) => {
            a.retain_mut(|x| !is_empty(x));
            a.is_empty()
        }
        Value::Object(o) => {
            o.retain(|_, x| !is_empty(x));
            o.is_empty()
        }
        _ => false,
    }
}
