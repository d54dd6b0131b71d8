//! HL7v2 → FHIR R4 UK Core, built in: ADT events (the list is [`events`]' table) to Patient,
//! Encounter, Location, Practitioner, Organization, RelatedPerson, AllergyIntolerance and
//! Condition; ORU^R01 to DiagnosticReport and Observations; orders (ORM, OML, OMG) to
//! ServiceRequest and Specimen. The output is a transaction Bundle whose
//! resources have stable ids derived from their identifiers, written as upserts (PUT), so a
//! replayed or duplicated message updates instead of creating twice.
//!
//! What an integration team changes — code tables, identifier systems, profiles — is YAML in
//! `mappings/` ([`Mappings`]); the structure is here. [`model`] is the crate's one door to
//! fhirbolt (parsing and JSON ↔ XML for inbound FHIR and the tests).

mod attachment;
mod bundle;
mod clinical;
mod datatypes;
mod documents;
mod encounter;
mod events;
mod ids;
mod immunisation;
mod json;
mod localtime;
pub mod model;
mod orders;
mod outcome;
mod patient;
mod pharmacy;
mod problems;
mod referrals;
mod results;
mod reverse;
mod scheduling;
mod spec;
mod unused;

use wyvern_hl7::Message;

pub use bundle::Bundle;
pub use events::mapped_events;
pub use outcome::operation_outcome;
pub use reverse::Reversed;
pub use spec::{Coding, FIELD_MAP_FILE, FieldMap, Mappings};
pub use unused::unused;

/// Why a message cannot be mapped. Every one is the sender's problem (AR): the message is
/// wrong for this mapping and a resend of the same bytes would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("not HL7v2: {0}")]
    NotHl7(String),
    #[error("{0} is not mapped to FHIR ({list} are)", list = events::mapped_events())]
    Unsupported(String),
    #[error("{0}")]
    Missing(String),
    #[error("mappings: {0}")]
    Mappings(String),
}

/// A mapped message: the Bundle as JSON text, and what the mapper had to guess or drop.
#[derive(Debug, Clone)]
pub struct Mapped {
    /// The transaction Bundle, compact JSON.
    pub json: String,
    /// Things a person should know (an invalid NHS number kept as a local identifier, a
    /// unit with no UCUM code …): logged with the message id.
    pub warnings: Vec<String>,
}

impl Mapped {
    /// The Bundle as a JSON tree (for printing or inspecting; delivery sends [`Mapped::json`]).
    pub fn value(&self) -> serde_json::Value {
        serde_json::from_str(&self.json).unwrap_or_default()
    }
}

/// Maps messages with one set of [`Mappings`].
#[derive(Debug, Clone)]
pub struct Mapper {
    mappings: Mappings,
}

impl Mapper {
    pub fn new(mappings: Mappings) -> Mapper {
        Mapper { mappings }
    }

    /// The compiled-in mappings.
    pub fn with_defaults() -> Result<Mapper, MapError> {
        Ok(Mapper::new(Mappings::defaults()?))
    }

    /// FHIR JSON (a Bundle or one resource) back to HL7v2 (`reverse.rs`): ADT^A08/A31 for a
    /// Patient (and its Encounter), ORU^R01 for DiagnosticReports. `now` is MSH-7, `control_id`
    /// MSH-10.
    pub fn to_hl7v2(&self, json: &[u8], now: &str, control_id: &str) -> Result<Reversed, MapError> {
        reverse::to_hl7v2(&self.mappings, json, now, control_id)
    }

    pub fn map(&self, raw: &[u8]) -> Result<Mapped, MapError> {
        let msg = Message::parse(raw).map_err(|e| MapError::NotHl7(e.to_string()))?;
        let mt = msg.message_type();
        let (code, event) = (mt.code, mt.trigger);
        let mut cx = Context::new(&self.mappings, &msg);
        match events::effect(&code, &event) {
            Some(events::Effect::Visit(status)) => {
                let patient = patient::map(&mut cx)?;
                encounter::map(&mut cx, &patient, status);
                clinical::map(&mut cx, &patient);
            }
            Some(events::Effect::Person) => {
                let patient = patient::map(&mut cx)?;
                clinical::map(&mut cx, &patient);
            }
            Some(events::Effect::PersonDeleted) => patient::withdraw(&mut cx)?,
            Some(events::Effect::Merge) => patient::merge(&mut cx)?,
            Some(events::Effect::IdentifierMove) => patient::move_identifiers(&mut cx)?,
            Some(events::Effect::AccountMerge) => {
                let patient = patient::map(&mut cx)?;
                clinical::map(&mut cx, &patient);
                cx.warn("A41 merges accounts (MRG-3 into PID-18): accounts are not mapped; the patient is updated");
            }
            Some(events::Effect::Results) => results::map(&mut cx)?,
            Some(events::Effect::Orders) => orders::map(&mut cx)?,
            Some(events::Effect::Appointment(status)) => scheduling::map(&mut cx, status)?,
            Some(events::Effect::Immunisation) => immunisation::map(&mut cx)?,
            Some(events::Effect::Document(event)) => documents::map(&mut cx, event)?,
            Some(events::Effect::Problems(deleted)) => problems::map(&mut cx, deleted)?,
            Some(events::Effect::Referral(cancelled)) => referrals::map(&mut cx, cancelled)?,
            Some(events::Effect::Medication(kind)) => pharmacy::map(&mut cx, kind)?,
            None => {
                let name = if event.is_empty() {
                    code.into_owned()
                } else {
                    format!("{code}^{event}")
                };
                return Err(MapError::Unsupported(name));
            }
        }
        Ok(Mapped {
            json: cx.bundle.finish(),
            warnings: cx.warnings,
        })
    }
}

/// What a mapping in progress carries: the message, the mappings, the Bundle being built.
pub(crate) struct Context<'m, 'a> {
    pub map: &'m Mappings,
    pub msg: &'m Message<'a>,
    pub bundle: Bundle,
    pub warnings: Vec<String>,
    /// MSH-4.1: whose local identifiers these are, when a CX says nothing.
    pub facility: String,
}

impl<'m, 'a> Context<'m, 'a> {
    fn new(map: &'m Mappings, msg: &'m Message<'a>) -> Self {
        let facility = msg
            .sending_facility()
            .split('^')
            .next()
            .unwrap_or_default()
            .trim()
            .to_string();
        Context {
            map,
            msg,
            bundle: Bundle::default(),
            warnings: Vec::new(),
            facility,
        }
    }

    /// The first segment `id`, its fields up to `last` (the last the mapper reads) indexed.
    pub fn segment(&self, id: &str, last: usize) -> Option<wyvern_hl7::IndexedSegment<'a>> {
        self.msg.segment(id, 1).map(|s| s.indexed_to(last))
    }

    pub fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    /// Adds a resource to the Bundle with the profile the field map claims for its type, and
    /// returns its reference.
    pub fn add(
        &mut self,
        kind: &'static str,
        key: &[&str],
        body: json::JsonWriter,
        upsert: bundle::Upsert<'_>,
    ) -> bundle::StableId {
        let profile = self.map.profile(kind);
        self.bundle.add(kind, key, body, upsert, profile)
    }

    /// The id of a resource, and whether the Bundle holds it already (so a practitioner named
    /// twice is built once).
    pub fn identify(&self, kind: &'static str, key: &[&str]) -> (bundle::StableId, bool) {
        self.bundle.identify(kind, key)
    }

    /// [`Context::add`] for an id from [`Context::identify`] that the Bundle does not hold.
    pub fn add_identified(
        &mut self,
        kind: &'static str,
        id: bundle::StableId,
        body: json::JsonWriter,
        upsert: bundle::Upsert<'_>,
    ) -> bundle::StableId {
        let profile = self.map.profile(kind);
        self.bundle.add_identified(kind, id, body, upsert, profile)
    }

    /// A writer for a resource's members.
    pub fn writer(&mut self) -> json::JsonWriter {
        self.bundle.writer()
    }

    /// `template` with `{facility}` (and `{authority}`/`{type}`) filled, lower-case and
    /// URL-safe.
    pub fn system(&self, template: &str, authority: &str, kind: &str) -> String {
        fn clean(out: &mut String, s: &str) {
            let s = s.trim();
            if s.is_empty() {
                out.push_str("local");
            }
            out.extend(s.chars().map(|c| {
                if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                    c.to_ascii_lowercase()
                } else {
                    '-'
                }
            }));
        }
        fn or<'s>(s: &'s str, default: &'s str) -> &'s str {
            if s.trim().is_empty() { default } else { s }
        }
        let mut out = String::with_capacity(template.len() + 16);
        let mut rest = template;
        while let Some(i) = rest.find('{') {
            out.push_str(&rest[..i]);
            let tail = &rest[i..];
            let (value, skip) = if tail.starts_with("{facility}") {
                (self.facility.as_str(), "{facility}".len())
            } else if tail.starts_with("{authority}") {
                (or(authority, &self.facility), "{authority}".len())
            } else if tail.starts_with("{type}") {
                (or(kind, "id"), "{type}".len())
            } else {
                out.push('{');
                rest = &tail[1..];
                continue;
            };
            clean(&mut out, value);
            rest = &tail[skip..];
        }
        out.push_str(rest);
        out
    }
}
