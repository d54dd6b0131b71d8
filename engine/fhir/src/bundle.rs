//! The transaction Bundle: one entry per resource, each with a stable `urn:uuid:` fullUrl (so
//! references inside the Bundle resolve) and an upsert request. Patients and encounters are
//! written by conditional update on their business identifier; the rest by `PUT Type/id` with
//! the stable id. Either way a replay updates what the first delivery created.
//!
//! The Bundle is JSON text from the start: each resource's members ([`JsonWriter`]) are
//! appended behind a header (`resourceType`, `id`, `meta`) as the resource is added.

use rustc_hash::FxHashSet;

pub use crate::ids::StableId;
use crate::ids::stable_uuid;
use crate::json::{JsonWriter, escape_into};

const HEAD: &str = r#"{"resourceType":"Bundle","type":"transaction","entry":["#;

#[derive(Debug)]
pub struct Bundle {
    out: String,
    /// Ids already in the Bundle: a resource two segments name (the same GP) is added once.
    seen: FxHashSet<StableId>,
    /// Buffers of resources already added, for the next ones.
    spare: Vec<String>,
}

impl Default for Bundle {
    fn default() -> Self {
        let mut out = String::with_capacity(16 * 1024);
        out.push_str(HEAD);
        Bundle {
            out,
            seen: FxHashSet::default(),
            spare: Vec::new(),
        }
    }
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
    /// A writer for the next resource's members (reusing an added resource's buffer).
    pub fn writer(&mut self) -> JsonWriter {
        JsonWriter::with_buffer(self.spare.pop().unwrap_or_default())
    }

    /// The id of a resource of type `kind` whose identity key is the concatenation of `key`,
    /// and whether the Bundle holds it already.
    pub fn identify(&self, kind: &str, key: &[&str]) -> (StableId, bool) {
        let id = stable_uuid(kind, key);
        (id, self.seen.contains(&id))
    }

    /// Adds a resource (type `kind`, identity key the concatenation of `key`, members `body`)
    /// unless the Bundle already has it, and returns its id (whose `url()` is the reference).
    pub fn add(
        &mut self,
        kind: &str,
        key: &[&str],
        body: JsonWriter,
        upsert: Upsert<'_>,
        profile: Option<&str>,
    ) -> StableId {
        match self.identify(kind, key) {
            (id, true) => id,
            (id, false) => self.add_identified(kind, id, body, upsert, profile),
        }
    }

    /// [`Bundle::add`] with the id already worked out by [`Bundle::identify`] (and not held).
    pub fn add_identified(
        &mut self,
        kind: &str,
        id: StableId,
        body: JsonWriter,
        upsert: Upsert<'_>,
        profile: Option<&str>,
    ) -> StableId {
        let id_str = id.as_str();
        let o = &mut self.out;
        if self.seen.is_empty() {
            o.push('{');
        } else {
            o.push_str(",{");
        }
        o.push_str(r#""fullUrl":""#);
        o.push_str(id.url());
        o.push_str(r#"","resource":{"resourceType":"#);
        escape_into(o, kind);
        if matches!(upsert, Upsert::ById) {
            o.push_str(r#","id":""#);
            o.push_str(id_str);
            o.push('"');
        }
        if let Some(p) = profile {
            o.push_str(r#","meta":{"profile":["#);
            escape_into(o, p);
            o.push_str("]}");
        }
        let mut members = body.into_members();
        if !members.is_empty() {
            o.push(',');
            o.push_str(&members);
        }
        members.clear();
        self.spare.push(members);
        o.push_str(r#"},"request":{"method":"PUT","url":""#);
        // Types, ids and percent-encoded queries need no JSON escapes.
        o.push_str(kind);
        match upsert {
            Upsert::Identifier { system, value } => {
                o.push_str("?identifier=");
                query(o, system);
                o.push('|');
                query(o, value);
            }
            Upsert::ById => {
                o.push('/');
                o.push_str(id_str);
            }
        }
        o.push_str("\"}}");
        self.seen.insert(id);
        id
    }

    /// The Bundle's JSON text.
    pub fn finish(mut self) -> String {
        if self.seen.is_empty() {
            self.out.truncate(HEAD.len() - r#","entry":["#.len());
            self.out.push('}');
        } else {
            self.out.push_str("]}");
        }
        self.out
    }
}

/// `s` with the characters a search value must escape in a URL query escaped.
fn query(out: &mut String, s: &str) {
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' | b':' | b'/' => {
                out.push(char::from(b))
            }
            _ => {
                const HEX: &[u8; 16] = b"0123456789ABCDEF";
                out.push('%');
                out.push(char::from(HEX[usize::from(b >> 4)]));
                out.push(char::from(HEX[usize::from(b & 0x0f)]));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bundle_is_json_with_one_entry_per_resource() {
        let mut b = Bundle::default();
        let mut w = JsonWriter::default();
        w.str("gender", "female");
        let r1 = b.add(
            "Patient",
            &["s|1"],
            w,
            Upsert::Identifier {
                system: "s",
                value: "1 2",
            },
            Some("P"),
        );
        let w = b.writer();
        let r2 = b.add("Patient", &["s", "|1"], w, Upsert::ById, None);
        let w = b.writer();
        b.add("Location", &["l"], w, Upsert::ById, None);
        assert_eq!(r1, r2);
        let v: serde_json::Value = serde_json::from_str(&b.finish()).unwrap();
        let e = v["entry"].as_array().unwrap();
        assert_eq!(e.len(), 2);
        assert_eq!(e[0]["resource"]["gender"], "female");
        assert_eq!(e[0]["resource"]["meta"]["profile"][0], "P");
        assert_eq!(e[0]["request"]["url"], "Patient?identifier=s|1%202");
        assert_eq!(e[1]["resource"]["resourceType"], "Location");
        let empty = Bundle::default().finish();
        assert_eq!(empty, r#"{"resourceType":"Bundle","type":"transaction"}"#);
    }
}
