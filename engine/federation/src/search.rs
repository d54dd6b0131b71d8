//! What a caller asked, read from the URL and checked before any member is asked: the type,
//! the patient (always by NHS number: the one identifier every member shares), and nothing
//! the bridge would have to guess at. The bridge's own id for a patient *is* the NHS number:
//! `patient=9990000018`, `patient=Patient/9990000018` and `Patient/9990000018/$everything`
//! name the same citizen in every member, where a member's own ids name one record. A search parameter the bridge does not know is refused
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
    /// A later page (`_page`, from the bridge's own `next` link): the members that held more,
    /// each with how many of its entries earlier pages gave. `None`: the first page.
    pub page: Option<Page>,
}

/// Where a later page starts in each member that held more: `chie:100,dcr:200`. Plain
/// offsets, not the members' own paging links: a caller who edits one only moves within the
/// same patient's records (every page is checked against the patient again), and never makes
/// the bridge fetch a URL it chose.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Page(pub Vec<(String, usize)>);

/// The furthest a page may start in one member.
pub const MAX_OFFSET: usize = 1_000_000;
/// The most members one page names (far more than any bridge has).
const MAX_PAGE_MEMBERS: usize = 64;

impl Page {
    fn parse(value: &str) -> Result<Page, BadSearch> {
        let bad = || BadSearch::BadPage(value.chars().take(64).collect());
        let mut members: Vec<(String, usize)> = Vec::new();
        for (i, part) in value.split(',').enumerate() {
            if i >= MAX_PAGE_MEMBERS {
                return Err(bad());
            }
            let (name, offset) = part.split_once(':').ok_or_else(bad)?;
            let offset: usize = offset.parse().map_err(|_| bad())?;
            // A member's name as config allows it.
            if !wyvern_config::valid_name(name)
                || offset > MAX_OFFSET
                || members.iter().any(|(n, _)| n == name)
            {
                return Err(bad());
            }
            members.push((name.to_string(), offset));
        }
        Ok(Page(members))
    }

    /// Where `member` starts on this page; `None` when it gave all it held earlier.
    pub fn offset(&self, member: &str) -> Option<usize> {
        self.0.iter().find(|(n, _)| n == member).map(|(_, o)| *o)
    }

    /// The `_page` value.
    pub fn to_param(&self) -> String {
        self.0
            .iter()
            .map(|(n, o)| format!("{n}:{o}"))
            .collect::<Vec<_>>()
            .join(",")
    }
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
    #[error("the patient is named twice (patient and patient.identifier): name them once")]
    TwoPatients,
    #[error(
        "{0:?} is not a patient this bridge knows: it names a patient by NHS number, as patient=9990000018 or Patient/9990000018/$everything (a member's own patient ids name only its record)"
    )]
    NotAnNhsNumber(String),
    #[error(
        "parameter {0:?} is not supported by $everything: it takes _type (types to include, comma-separated) and _count (entries per type from each member)"
    )]
    UnknownEverythingParameter(String),
    #[error("_page {0:?} is not a page this bridge gave: follow the Bundle's next link as it is")]
    BadPage(String),
}

impl BadSearch {
    /// The OperationOutcome issue code.
    pub fn code(&self) -> &'static str {
        match self {
            BadSearch::UnknownType(_) => "not-supported",
            BadSearch::UnknownParameter(..) | BadSearch::UnknownEverythingParameter(_) => {
                "not-supported"
            }
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
    let mut page = None;
    for (i, (name, value)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(BadSearch::Repeated(name.clone()));
        }
        let named = match name.as_str() {
            "_page" => {
                page = Some(Page::parse(value)?);
                continue;
            }
            n if n == wanted => nhs_number(wanted, value)?,
            "patient" if ty != SearchType::Patient => patient_id(value)?,
            "_count" => {
                count = Some(count_of(value)?);
                continue;
            }
            // The caller asks for JSON; the bridge answers nothing else.
            "_format" if value.contains("json") => continue,
            _ => return Err(BadSearch::UnknownParameter(name.clone(), ty, wanted)),
        };
        if patient.replace(named).is_some() {
            return Err(BadSearch::TwoPatients);
        }
    }
    Ok(Query {
        ty,
        patient: patient.ok_or(BadSearch::MissingPatient(wanted, ty))?,
        count: count.unwrap_or(DEFAULT_COUNT),
        page,
    })
}

/// `GET /Patient/{id}/$everything`, checked: the patient's whole record across members.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Everything {
    pub patient: NhsNumber,
    /// The types to include (`_type`), in `SearchType::ALL`'s order; all by default.
    pub types: Vec<SearchType>,
    /// Entries of each type asked of each member.
    pub count: usize,
}

impl Everything {
    /// The search for one of its types.
    pub fn query(&self, ty: SearchType) -> Query {
        Query {
            ty,
            patient: self.patient,
            count: self.count,
            page: None,
        }
    }
}

/// Reads `GET /Patient/{id}/$everything?{query}`.
pub fn parse_everything(id: &str, pairs: &[(String, String)]) -> Result<Everything, BadSearch> {
    let patient = patient_id(id)?;
    let mut types = None;
    let mut count = None;
    for (i, (name, value)) in pairs.iter().enumerate() {
        if pairs[..i].iter().any(|(n, _)| n == name) {
            return Err(BadSearch::Repeated(name.clone()));
        }
        match name.as_str() {
            "_count" => count = Some(count_of(value)?),
            "_type" => {
                let mut list = Vec::new();
                for t in value.split(',').map(str::trim) {
                    let ty =
                        SearchType::parse(t).ok_or_else(|| BadSearch::UnknownType(t.into()))?;
                    if !list.contains(&ty) {
                        list.push(ty);
                    }
                }
                list.sort();
                types = Some(list);
            }
            "_format" if value.contains("json") => {}
            _ => return Err(BadSearch::UnknownEverythingParameter(name.clone())),
        }
    }
    Ok(Everything {
        patient,
        types: types.unwrap_or_else(|| SearchType::ALL.to_vec()),
        count: count.unwrap_or(DEFAULT_COUNT),
    })
}

fn count_of(value: &str) -> Result<usize, BadSearch> {
    value
        .parse::<usize>()
        .ok()
        .filter(|c| (1..=MAX_COUNT).contains(c))
        .ok_or_else(|| BadSearch::BadCount(value.to_string()))
}

/// The bridge's id of a patient, `9990000018` or `Patient/9990000018`: the NHS number.
fn patient_id(value: &str) -> Result<NhsNumber, BadSearch> {
    let id = value.strip_prefix("Patient/").unwrap_or(value);
    NhsNumber::parse(id).map_err(|_| BadSearch::NotAnNhsNumber(value.chars().take(64).collect()))
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
        let paged = q(
            "Condition",
            &[("patient", "9990000018"), ("_page", "chie:100,dcr_2:3")],
        )
        .unwrap()
        .page
        .unwrap();
        assert_eq!(
            (
                paged.offset("chie"),
                paged.offset("dcr_2"),
                paged.offset("dcr")
            ),
            (Some(100), Some(3), None)
        );
        assert_eq!(paged.to_param(), "chie:100,dcr_2:3");
        // The bridge's id of a patient is the NHS number.
        for id in ["9990000018", "Patient/9990000018"] {
            let c = q("Condition", &[("patient", id)]).unwrap();
            assert_eq!(c.patient.as_str(), "9990000018");
        }
    }

    #[test]
    fn everything_takes_the_patient_by_nhs_number_types_and_a_count() {
        let pairs = |p: &[(&str, &str)]| -> Vec<(String, String)> {
            p.iter()
                .map(|(a, b)| (a.to_string(), b.to_string()))
                .collect()
        };
        let all = parse_everything("9990000018", &[]).unwrap();
        assert_eq!((all.types.len(), all.count), (SearchType::ALL.len(), 100));
        let some = parse_everything(
            "Patient/9990000018",
            &pairs(&[
                ("_type", "Observation,Patient,Observation"),
                ("_count", "5"),
            ]),
        )
        .unwrap();
        assert_eq!(
            (some.types, some.count),
            (vec![SearchType::Patient, SearchType::Observation], 5)
        );
        let refused = [
            ("p-chie", pairs(&[]), "not a patient this bridge knows"),
            ("9990000019", pairs(&[]), "not a patient this bridge knows"),
            (
                "9990000018",
                pairs(&[("_type", "Practitioner")]),
                "not a resource type",
            ),
            (
                "9990000018",
                pairs(&[("_since", "2026")]),
                "not supported by $everything",
            ),
            ("9990000018", pairs(&[("_count", "0")]), "_count \"0\""),
        ];
        for (id, p, expected) in refused {
            let e = parse_everything(id, &p).unwrap_err().to_string();
            assert!(e.contains(expected), "{id} {p:?}: {e}");
        }
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
            (
                "Condition",
                &[("patient", "9990000018"), ("patient.identifier", NHS)],
                "named twice",
            ),
            (
                "Condition",
                &[("patient", "p-chie")],
                "names a patient by NHS number",
            ),
            (
                "Condition",
                &[("patient", "http://elsewhere/Patient/9990000018")],
                "names a patient by NHS number",
            ),
            (
                "Patient",
                &[("patient", "9990000018")],
                "\"patient\" is not supported",
            ),
            (
                "Condition",
                &[("patient", "9990000018"), ("_page", "chie")],
                "not a page this bridge gave",
            ),
            (
                "Condition",
                &[("patient", "9990000018"), ("_page", "chie:1,chie:2")],
                "not a page",
            ),
            (
                "Condition",
                &[("patient", "9990000018"), ("_page", "Chie:1")],
                "not a page",
            ),
            (
                "Condition",
                &[("patient", "9990000018"), ("_page", "chie:99999999")],
                "not a page",
            ),
        ];
        for (ty, pairs, expected) in cases {
            let e = q(ty, pairs).unwrap_err().to_string();
            assert!(e.contains(expected), "{ty} {pairs:?}: {e}");
        }
    }
}
