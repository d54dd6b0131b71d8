//! HL7v2 → FHIR R4 UK Core, built in: ADT (A01–A13, A28, A31, A40) to Patient, Encounter,
//! Location, Practitioner, Organization, RelatedPerson, AllergyIntolerance and Condition;
//! ORU^R01 to DiagnosticReport and Observations. The output is a transaction Bundle whose
//! resources have stable ids derived from their identifiers, written as upserts (PUT), so a
//! replayed or duplicated message updates instead of creating twice.
//!
//! What an integration team changes — code tables, identifier systems, profiles — is YAML in
//! `mappings/` ([`Mappings`]); the structure is here. [`model`] is the crate's one door to
//! fhirbolt (parsing and JSON ↔ XML for inbound FHIR and the tests).

mod bundle;
mod clinical;
mod datatypes;
mod encounter;
mod ids;
mod localtime;
pub mod model;
mod outcome;
mod patient;
mod results;
mod spec;

use wyvern_hl7::Message;

pub use bundle::Bundle;
pub use outcome::operation_outcome;
pub use spec::{Coding, FIELD_MAP_FILE, FieldMap, Mappings};

/// Why a message cannot be mapped. Every one is the sender's problem (AR): the message is
/// wrong for this mapping and a resend of the same bytes would fail the same way.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum MapError {
    #[error("not HL7v2: {0}")]
    NotHl7(String),
    #[error("{0} is not mapped to FHIR (ADT A01–A13, A28, A31, A40 and ORU^R01 are)")]
    Unsupported(String),
    #[error("{0}")]
    Missing(String),
    #[error("mappings: {0}")]
    Mappings(String),
}

/// A mapped message: the Bundle as JSON, and what the mapper had to guess or drop.
#[derive(Debug, Clone)]
pub struct Mapped {
    pub bundle: serde_json::Value,
    /// Things a person should know (an invalid NHS number kept as a local identifier, a
    /// unit with no UCUM code …): logged with the message id.
    pub warnings: Vec<String>,
}

impl Mapped {
    pub fn to_json(&self) -> Vec<u8> {
        serde_json::to_vec(&self.bundle).unwrap_or_default()
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

    pub fn map(&self, raw: &[u8]) -> Result<Mapped, MapError> {
        let msg = Message::parse(raw).map_err(|e| MapError::NotHl7(e.to_string()))?;
        let mt = msg.message_type();
        let (code, event) = (mt.code.to_string(), mt.trigger.to_string());
        let mut cx = Context::new(&self.mappings, &msg);
        match (code.as_str(), event.as_str()) {
            (
                "ADT",
                "A01" | "A02" | "A03" | "A04" | "A05" | "A08" | "A11" | "A13" | "A28" | "A31",
            ) => {
                let patient = patient::map(&mut cx)?;
                if !matches!(event.as_str(), "A28" | "A31") {
                    encounter::map(&mut cx, &patient, &event);
                }
                clinical::map(&mut cx, &patient);
            }
            ("ADT", "A40") => patient::merge(&mut cx)?,
            ("ORU", "R01") => results::map(&mut cx)?,
            _ => {
                let name = if event.is_empty() {
                    code
                } else {
                    format!("{code}^{event}")
                };
                return Err(MapError::Unsupported(name));
            }
        }
        Ok(Mapped {
            bundle: cx.bundle.finish(),
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

    pub fn warn(&mut self, w: impl Into<String>) {
        self.warnings.push(w.into());
    }

    /// `template` with `{facility}` (and `{authority}`/`{type}`) filled, lower-case and
    /// URL-safe.
    pub fn system(&self, template: &str, authority: &str, kind: &str) -> String {
        let clean = |s: &str| -> String {
            let s: String = s
                .trim()
                .chars()
                .map(|c| {
                    if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                        c.to_ascii_lowercase()
                    } else {
                        '-'
                    }
                })
                .collect();
            if s.is_empty() { "local".into() } else { s }
        };
        template
            .replace("{facility}", &clean(&self.facility))
            .replace(
                "{authority}",
                &clean(if authority.trim().is_empty() {
                    &self.facility
                } else {
                    authority
                }),
            )
            .replace(
                "{type}",
                &clean(if kind.trim().is_empty() { "id" } else { kind }),
            )
    }
}
