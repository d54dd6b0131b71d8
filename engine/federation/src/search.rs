//! What a caller asked, read from the URL and checked before any member is asked: the type,
//! the patient (always by NHS number: the one identifier every member shares), and nothing
//! the bridge would have to guess at. A search parameter the bridge does not know is refused
//! (400), not ignored: silently widening a search for patient records returns records the
//! caller did not ask for.

use wyvern_config::SearchType;
use wyvern_hl7::NhsNumber;

/// The identifier system of NHS numbers.
pub const NHS_NUMBER_SYSTEM: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// The entries one member may give a query, and the page size when `_count` is not given.
pub const MAX_COUNT: usize = 1000;
const DEFAULT_COUNT: usize = 100;

/// A checked search.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Query {
    pub ty: SearchType,
    pub patient: NhsNumber,
    /// Entries asked of each member (FHIR's `_count`).
    pub count: usize,
}

/// Why a search is refused: the text of the OperationOutcome's issue, and its FHIR code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadSearch {
    #[error("{0} is not a resource type this bridge searches: it searches {list}", list = SearchType::ALL.map(SearchType::as_str).join(", "))]
    UnknownType(String),
    #[error("search parameter {0:?} is not supported here: search {1} by {2}")]
    UnknownParameter(String, SearchType, &'static str),
    #[error("{0} is required: {1} is searched by the patient's NHS number, as {0}={system}|9990000018", system = NHS_NUMBER_SYSTEM)]
    MissingPatient(&'static str, SearchType),
    #[error("{0} names system {1:?}: only NHS numbers ({system}|…) are searched across records", system = NHS_NUMBER_SYSTEM)]
    OtherSystem(&'static str, String),
    #[error("{0} is not a valid NHS number: {1}")]
    InvalidNhsNumber(String, wyvern_hl7::NhsNumberError),
    #[error("parameter {0} is given more than once")]
    Repeated(String),
    #[error("_count {0:?} is not a number from 1 to {max}", max = MAX_COUNT)]
    BadCount(String),
}

impl BadSearch {
    /// The OperationOutcome issue code.
    pub fn code(&self) -> &'static str {
        match self {
            BadSearch::UnknownType(_) => "not-supported",
            BadSearch::UnknownParameter(..) => "not-supported",
            _ => "invalid",
        }
    }
}

/// The parameter that names the patient, for each type.
fn patient_parameter(ty: SearchType) -> &'static str {
    match ty {
        SearchType::Patient => "identifier",
        _ => "patient.identifier",
    }
}

/// Reads `GET /{type}?{query}`: `pairs` are the query's decoded name/value pairs.
pub fn parse(type_name: &str, pairs: &[(String, String)]) -> Result<Query, BadSearch> {
    let ty =
        SearchType::parse(type_name).ok_or_else(|| BadSearch::UnknownType(type_name.into()))?;
    let wanted = patient_parameter(ty);
    let mut patient = None;
    let mut count = None;
    for (i, (name, value)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(BadSearch::Repeated(name.clone()));
        }
        match name.as_str() {
            n if n == wanted => patient = Some(nhs_number(wanted, value)?),
            "_count" => {
                count = Some(
                    value
                        .parse::<usize>()
                        .ok()
                        .filter(|c| (1..=MAX_COUNT).contains(c))
                        .ok_or_else(|| BadSearch::BadCount(value.clone()))?,
                )
            }
            // The caller asks for JSON; the bridge answers nothing else.
            "_format" if value.contains("json") => {}
            _ => return Err(BadSearch::UnknownParameter(name.clone(), ty, wanted)),
        }
    }
    Ok(Query {
        ty,
        patient: patient.ok_or(BadSearch::MissingPatient(wanted, ty))?,
        count: count.unwrap_or(DEFAULT_COUNT),
    })
}

/// `https://fhir.nhs.uk/Id/nhs-number|9990000018`, the number checked (modulus 11).
fn nhs_number(parameter: &'static str, value: &str) -> Result<NhsNumber, BadSearch> {
    let number = match value.split_once('|') {
        Some((NHS_NUMBER_SYSTEM, n)) => n,
        Some((other, _)) => return Err(BadSearch::OtherSystem(parameter, other.into())),
        None => value,
    };
    NhsNumber::parse(number)
        .map_err(|e| BadSearch::InvalidNhsNumber(number.chars().take(32).collect(), e))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn q(ty: &str, pairs: &[(&str, &str)]) -> Result<Query, BadSearch> {
        let pairs: Vec<(String, String)> = pairs
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        parse(ty, &pairs)
    }

    const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number|9990000018";

    #[test]
    fn searches_name_the_patient_by_nhs_number() {
        let p = q("Patient", &[("identifier", NHS)]).unwrap();
        assert_eq!(
            (p.ty, p.patient.as_str(), p.count),
            (SearchType::Patient, "9990000018", 100)
        );
        let c = q(
            "Condition",
            &[("patient.identifier", NHS), ("_count", "20")],
        )
        .unwrap();
        assert_eq!((c.ty, c.count), (SearchType::Condition, 20));
        assert!(q("Condition", &[("patient.identifier", "9990000018")]).is_ok());
    }

    /// A type, its parameters, and words the refusal must hold.
    type Case = (
        &'static str,
        &'static [(&'static str, &'static str)],
        &'static str,
    );

    #[test]
    fn what_is_refused_says_why() {
        let cases: &[Case] = &[
            (
                "Practitioner",
                &[],
                "not a resource type this bridge searches",
            ),
            ("patient", &[("identifier", NHS)], "not a resource type"),
            ("Patient", &[], "identifier is required"),
            (
                "Condition",
                &[("identifier", NHS)],
                "search Condition by patient.identifier",
            ),
            (
                "Patient",
                &[("identifier", NHS), ("family", "Smith")],
                "\"family\" is not supported",
            ),
            (
                "Patient",
                &[("identifier", "https://fhir.nhs.uk/Id/nhs-number|9990000019")],
                "not a valid NHS number: the check digit",
            ),
            (
                "Patient",
                &[("identifier", "urn:oid:1.2|123")],
                "names system \"urn:oid:1.2\"",
            ),
            (
                "Patient",
                &[("identifier", NHS), ("identifier", NHS)],
                "given more than once",
            ),
            (
                "Patient",
                &[("identifier", NHS), ("_count", "0")],
                "_count \"0\"",
            ),
            (
                "Patient",
                &[("identifier", NHS), ("_count", "1001")],
                "_count \"1001\"",
            ),
        ];
        for (ty, pairs, expected) in cases {
            let e = q(ty, pairs).unwrap_err().to_string();
            assert!(e.contains(expected), "{ty} {pairs:?}: {e}");
        }
    }
}
