//! The declarative part of the mapping: `mappings/hl7v2-to-fhir.map.yaml` (profiles, identifier
//! systems, which v2 field feeds which coded element through which table) and the code tables
//! beside it. The repository's files are compiled in as defaults, so the engine maps with
//! nothing installed; a config's mappings folder overrides any table by name and the field map
//! as a whole.

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;

use serde::Deserialize;
use wyvern_config::{CodeTable, CodeTables, SourceFile};

use crate::MapError;

/// The field map file's name in a mappings folder.
pub const FIELD_MAP_FILE: &str = "hl7v2-to-fhir.map.yaml";

const DEFAULT_FIELD_MAP: &str = include_str!("../../../mappings/hl7v2-to-fhir.map.yaml");

/// The repository's tables, compiled in: (file name, text).
const DEFAULT_TABLES: &[(&str, &str)] = &[
    (
        "v2-0001-administrative-sex.yaml",
        include_str!("../../../mappings/v2-0001-administrative-sex.yaml"),
    ),
    (
        "v2-0002-marital-status.yaml",
        include_str!("../../../mappings/v2-0002-marital-status.yaml"),
    ),
    (
        "v2-0004-patient-class.yaml",
        include_str!("../../../mappings/v2-0004-patient-class.yaml"),
    ),
    (
        "v2-0007-admission-type.yaml",
        include_str!("../../../mappings/v2-0007-admission-type.yaml"),
    ),
    (
        "v2-0027-priority.yaml",
        include_str!("../../../mappings/v2-0027-priority.yaml"),
    ),
    (
        "v2-0038-order-status.yaml",
        include_str!("../../../mappings/v2-0038-order-status.yaml"),
    ),
    (
        "v2-0063-relationship.yaml",
        include_str!("../../../mappings/v2-0063-relationship.yaml"),
    ),
    (
        "v2-0078-abnormal-flags.yaml",
        include_str!("../../../mappings/v2-0078-abnormal-flags.yaml"),
    ),
    (
        "v2-0085-observation-result-status.yaml",
        include_str!("../../../mappings/v2-0085-observation-result-status.yaml"),
    ),
    (
        "v2-0119-order-control.yaml",
        include_str!("../../../mappings/v2-0119-order-control.yaml"),
    ),
    (
        "v2-0322-completion-status.yaml",
        include_str!("../../../mappings/v2-0322-completion-status.yaml"),
    ),
    (
        "v2-0123-result-status.yaml",
        include_str!("../../../mappings/v2-0123-result-status.yaml"),
    ),
    (
        "v2-0127-allergen-type.yaml",
        include_str!("../../../mappings/v2-0127-allergen-type.yaml"),
    ),
    (
        "v2-0128-allergy-severity.yaml",
        include_str!("../../../mappings/v2-0128-allergy-severity.yaml"),
    ),
    (
        "v2-0203-identifier-type.yaml",
        include_str!("../../../mappings/v2-0203-identifier-type.yaml"),
    ),
    (
        "nhs-number-verification-status.yaml",
        include_str!("../../../mappings/nhs-number-verification-status.yaml"),
    ),
    (
        "coding-systems.yaml",
        include_str!("../../../mappings/coding-systems.yaml"),
    ),
    (
        "ucum-units.yaml",
        include_str!("../../../mappings/ucum-units.yaml"),
    ),
];

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FieldMap {
    pub version: u32,
    /// Resource type → the UK Core profile claimed in `meta.profile`.
    pub profiles: BTreeMap<String, String>,
    pub systems: Systems,
    pub coded: Coded,
    pub coding_systems: String,
    pub units: String,
    pub local_time: LocalTime,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Systems {
    pub nhs_number: String,
    pub ods_organization: String,
    pub ods_site: String,
    pub gmc_number: String,
    pub gmp_number: String,
    pub local_patient: String,
    pub visit_number: String,
    pub filler_order: String,
    /// Added with orders: a field map written before them takes the default.
    #[serde(default = "default_placer_order")]
    pub placer_order: String,
    #[serde(default = "default_specimen")]
    pub specimen: String,
    #[serde(default = "default_appointment")]
    pub appointment: String,
    #[serde(default = "default_document")]
    pub document: String,
    #[serde(default = "default_problem")]
    pub problem: String,
    #[serde(default = "default_referral")]
    pub referral: String,
    #[serde(default = "default_external_referral")]
    pub external_referral: String,
    #[serde(default = "default_prescription")]
    pub prescription: String,
    pub local_practitioner: String,
    pub local_location: String,
}

/// Every coded element the mapper fills: a closed set, so a misspelt key is an error.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Coded {
    #[serde(rename = "Patient.gender")]
    pub patient_gender: CodedField,
    #[serde(rename = "Patient.maritalStatus")]
    pub patient_marital_status: CodedField,
    #[serde(rename = "Patient.nhsNumberVerificationStatus")]
    pub nhs_number_status: CodedField,
    #[serde(rename = "Identifier.type")]
    pub identifier_type: CodedField,
    #[serde(rename = "Encounter.class")]
    pub encounter_class: CodedField,
    #[serde(rename = "Encounter.priority")]
    pub encounter_priority: CodedField,
    #[serde(rename = "RelatedPerson.relationship")]
    pub relationship: CodedField,
    #[serde(rename = "AllergyIntolerance.category")]
    pub allergy_category: CodedField,
    #[serde(rename = "AllergyIntolerance.criticality")]
    pub allergy_criticality: CodedField,
    #[serde(rename = "DiagnosticReport.status")]
    pub report_status: CodedField,
    #[serde(rename = "Observation.status")]
    pub observation_status: CodedField,
    #[serde(rename = "Observation.interpretation")]
    pub interpretation: CodedField,
    // Added with orders: a field map written before them takes these defaults.
    #[serde(rename = "ServiceRequest.status", default = "default_order_control")]
    pub order_control: CodedField,
    #[serde(
        rename = "ServiceRequest.statusFromOrderStatus",
        default = "default_order_status"
    )]
    pub order_status: CodedField,
    #[serde(rename = "ServiceRequest.priority", default = "default_order_priority")]
    pub order_priority: CodedField,
    #[serde(rename = "Immunization.status", default = "default_completion_status")]
    pub completion_status: CodedField,
}

fn default_placer_order() -> String {
    "https://wyvern.invalid/Id/{authority}/placer-order-number".into()
}

fn default_specimen() -> String {
    "https://wyvern.invalid/Id/{authority}/specimen".into()
}

fn default_appointment() -> String {
    "https://wyvern.invalid/Id/{authority}/appointment".into()
}

fn default_document() -> String {
    "https://wyvern.invalid/Id/{authority}/document".into()
}

fn default_problem() -> String {
    "https://wyvern.invalid/Id/{authority}/problem".into()
}

fn default_referral() -> String {
    "https://wyvern.invalid/Id/{authority}/referral".into()
}

fn default_external_referral() -> String {
    "https://wyvern.invalid/Id/{authority}/external-referral".into()
}

fn default_prescription() -> String {
    "https://wyvern.invalid/Id/{facility}/prescription".into()
}

fn coded(field: &str, table: &str) -> CodedField {
    CodedField {
        field: field.into(),
        table: table.into(),
        default: None,
    }
}

fn default_order_control() -> CodedField {
    coded("ORC-1", "v2-0119")
}

fn default_order_status() -> CodedField {
    coded("ORC-5", "v2-0038")
}

fn default_completion_status() -> CodedField {
    coded("RXA-20", "v2-0322")
}

fn default_order_priority() -> CodedField {
    coded("ORC-7.6", "v2-0027")
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodedField {
    /// The v2 field (documentation and checks; the mapper knows where each element comes from).
    pub field: String,
    pub table: String,
    /// The v2 code to use when the field is empty.
    #[serde(default)]
    pub default: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
pub enum LocalTime {
    /// GMT in winter, BST (+01:00) from 01:00 UTC on the last Sunday of March to 01:00 UTC on
    /// the last Sunday of October.
    #[serde(rename = "Europe/London")]
    EuropeLondon,
    #[serde(rename = "UTC")]
    Utc,
}

/// A mapped code: system, code, display (borrowed from the table).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Coding<'m> {
    pub system: Option<&'m str>,
    pub code: &'m str,
    pub display: Option<&'m str>,
}

/// The field map and every table it names, checked together.
#[derive(Debug, Clone)]
pub struct Mappings {
    pub map: FieldMap,
    pub(crate) tables: FxHashMap<String, CodeTable>,
}

impl Mappings {
    /// The compiled-in defaults.
    pub fn defaults() -> Result<Mappings, MapError> {
        Mappings::with(None, &CodeTables::new())
    }

    /// What a config's `map:` steps use: `tables` (the config's) over the built-in ones, and
    /// `mappings_dir/hl7v2-to-fhir.map.yaml` over the built-in field map when it exists.
    pub fn load(mappings_dir: &std::path::Path, tables: &CodeTables) -> Result<Mappings, MapError> {
        let path = mappings_dir.join(FIELD_MAP_FILE);
        if !path.is_file() {
            return Mappings::with(None, tables);
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| MapError::Mappings(format!("cannot read {}: {e}", path.display())))?;
        Mappings::with(Some((&path.display().to_string(), &text)), tables)
    }

    /// The defaults, with `tables` (a config's) replacing tables of the same name and
    /// `field_map` (a config's `hl7v2-to-fhir.map.yaml` text) replacing the field map.
    pub fn with(
        field_map: Option<(&str, &str)>,
        tables: &CodeTables,
    ) -> Result<Mappings, MapError> {
        let files: Vec<SourceFile> = DEFAULT_TABLES
            .iter()
            .map(|(name, text)| SourceFile {
                path: format!("(built in) mappings/{name}").into(),
                text: (*text).to_string(),
            })
            .collect();
        let defaults =
            wyvern_config::parse_code_tables(&files).map_err(|d| MapError::Mappings(join(&d)))?;
        let mut all: FxHashMap<String, CodeTable> = defaults.into_iter().collect();
        all.extend(tables.iter().map(|(k, v)| (k.clone(), v.clone())));
        let (file, text) = field_map.unwrap_or((
            "(built in) mappings/hl7v2-to-fhir.map.yaml",
            DEFAULT_FIELD_MAP,
        ));
        let map: FieldMap = serde_saphyr::from_str(text).map_err(|e| {
            let at = e
                .location()
                .map_or(String::new(), |l| format!(":{}:{}", l.line(), l.column()));
            let mut msg = e.without_snippet().to_string();
            if let Some(i) = msg.find(" at line ") {
                msg.truncate(i);
            }
            MapError::Mappings(format!("{file}{at}: {msg}"))
        })?;
        let m = Mappings { map, tables: all };
        m.check(file, text)?;
        Ok(m)
    }

    /// What the types cannot say: the version, and that every table named exists. Errors
    /// point at the line that names the value.
    fn check(&self, file: &str, text: &str) -> Result<(), MapError> {
        if self.map.version != 1 {
            return Err(MapError::Mappings(format!(
                "{file}{}: version {} is not supported: expected version: 1",
                locate(text, "version:"),
                self.map.version
            )));
        }
        let c = &self.map.coded;
        let named = [
            &c.patient_gender,
            &c.patient_marital_status,
            &c.nhs_number_status,
            &c.identifier_type,
            &c.encounter_class,
            &c.encounter_priority,
            &c.relationship,
            &c.allergy_category,
            &c.allergy_criticality,
            &c.report_status,
            &c.observation_status,
            &c.interpretation,
            &c.order_control,
            &c.order_status,
            &c.order_priority,
            &c.completion_status,
        ]
        .map(|f| f.table.as_str());
        for t in named
            .iter()
            .chain([self.map.coding_systems.as_str(), self.map.units.as_str()].iter())
        {
            if !self.tables.contains_key(*t) {
                return Err(MapError::Mappings(format!(
                    "{file}{}: table {t:?} is not in the mappings folder nor built in",
                    locate(text, t)
                )));
            }
        }
        Ok(())
    }

    /// `code` through `field`'s table (its default when the code is empty).
    pub fn coding(&self, field: &CodedField, code: &str) -> Option<Coding<'_>> {
        let code = code.trim();
        let code = if code.is_empty() {
            field.default.as_deref()?
        } else {
            code
        };
        let t = self.tables.get(&field.table)?;
        let mapped = t.codes.get(code)?;
        Some(Coding {
            system: t.system.as_deref(),
            code: mapped,
            display: t.display.get(mapped).map(String::as_str),
        })
    }

    /// A plain lookup (coding systems, units).
    pub fn lookup(&self, table: &str, key: &str) -> Option<&str> {
        self.tables.get(table)?.codes.get(key).map(String::as_str)
    }

    /// The profile claimed for `resource` (none when the field map leaves it blank).
    pub fn profile(&self, resource: &str) -> Option<&str> {
        self.map
            .profiles
            .get(resource)
            .map(String::as_str)
            .filter(|p| !p.trim().is_empty())
    }
}

/// `:line:col` of the first `needle` in `text` (1-based), or nothing when it is not there.
fn locate(text: &str, needle: &str) -> String {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with('#'))
        .find_map(|(i, l)| l.find(needle).map(|c| format!(":{}:{}", i + 1, c + 1)))
        .unwrap_or_default()
}

fn join(d: &[wyvern_config::Diagnostic]) -> String {
    d.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n")
}
