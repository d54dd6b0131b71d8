//! `nrl:` — a destination that keeps the National Record Locator pointing at the regional
//! record for each patient the route's ADT feed carries: a pointer created for a patient it
//! has not pointed at, replaced when what it says changes, deleted when the patient dies or is
//! merged away. `api` is the producer API as a FHIR server (base, OAuth2 signed-JWT auth, tls,
//! timeout); `ods` is the record's organisation (custodian, author, and the
//! `NHSD-End-User-Organisation-ODS` header); `record_url` is where the record is retrieved
//! (it must hold no patient data: the pointer's subject says whose record it is).

use std::path::Path;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::DestinationKind;
use crate::at::At;
use crate::fhir_destination::{FhirDestination, FhirDestinationFile};

/// `nrl: { api: { base: …, auth: { oauth2: … } }, ods: XCH01, record_url: https://… }`.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NrlDestinationFile {
    /// The producer API, as a `fhir` destination says it, e.g. base
    /// `https://int.api.service.nhs.uk/record-locator/producer/FHIR/R4`.
    pub api: FhirDestinationFile,
    /// The ODS code of the organisation that holds the record.
    #[schemars(with = "String")]
    pub ods: Spanned<String>,
    /// Where a clinician's system retrieves the record (`https://…` or `ssp://…`); no patient
    /// data in it.
    #[schemars(with = "String")]
    pub record_url: Spanned<String>,
    /// The pointer's `context.practiceSetting` (SNOMED), default `1060971000000108`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub practice_setting: Option<Spanned<String>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NrlDestination {
    pub api: FhirDestination,
    pub ods: String,
    pub record_url: String,
    pub practice_setting: String,
}

/// The default `context.practiceSetting`: General practice service.
const GENERAL_PRACTICE: &str = "1060971000000108";

pub(crate) fn nrl(at: &mut At<'_>, base: &Path, f: &NrlDestinationFile) -> Option<DestinationKind> {
    let api = crate::fhir_destination::fhir_target(at, base, &f.api);
    let ods = f.ods.value.trim();
    let ods_ok = crate::bridge::ods_ok(ods);
    if !ods_ok {
        at.err(&f.ods, format!("ods {:?} is not an ODS code: expected 3 to 10 capital letters and digits, such as RHM or A12345", f.ods.value));
    }
    let url = f.record_url.value.trim();
    let url_ok = ["https://", "http://", "ssp://"]
        .iter()
        .any(|s| url.len() > s.len() && url.starts_with(s))
        && !url.bytes().any(|b| b.is_ascii_whitespace());
    if !url_ok {
        at.err(&f.record_url, format!("record_url {url:?} is not a URL: expected where the record is retrieved, such as https://chie.example.nhs.uk/record (no patient data in it)"));
    }
    if url_ok && url.contains('{') {
        at.err(&f.record_url, "record_url must hold no patient data: it is the same for every patient (the pointer's subject says whose record it is)");
    }
    let practice_setting = match &f.practice_setting {
        Some(p) if !p.value.bytes().all(|b| b.is_ascii_digit()) || p.value.len() < 6 => {
            at.err(p, format!("practice_setting {:?} is not a SNOMED code: expected digits such as {GENERAL_PRACTICE}", p.value));
            return None;
        }
        Some(p) => p.value.clone(),
        None => GENERAL_PRACTICE.into(),
    };
    if !ods_ok || !url_ok || url.contains('{') {
        return None;
    }
    Some(DestinationKind::Nrl(NrlDestination {
        api: api?,
        ods: ods.into(),
        record_url: url.into(),
        practice_setting,
    }))
}
