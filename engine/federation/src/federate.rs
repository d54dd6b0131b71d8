//! One searchset from every member's answer. Pure: answers in, a Bundle out.
//!
//! - Every entry says where it came from: `meta.source` is the member's base, and `meta.tag`
//!   names the member and the data owner's ODS code (the convention regional records use, so a
//!   viewer can show "from the Dorset Care Record").
//! - Patients from different members are **linked, not merged**: each keeps its own entry, and
//!   `Patient.link` (`seealso`) points at the others. The bridge holds no second copy of the
//!   citizen's record, and never decides which demographics win.
//! - Any other resource both members hold — the same type and business identifier — appears
//!   once, carrying both members' tags.
//! - A member that failed gives an OperationOutcome entry (`search.mode = outcome`): the caller
//!   sees a partial answer as partial, never a silent gap.

use std::collections::HashMap;

use serde_json::{Map, Value, json};
use wyvern_config::SearchType;

/// `meta.tag` system of the member an entry came from (its code: the member's name).
pub const MEMBER_TAG: &str = "urn:wyvern:bridge:member";
/// `meta.tag` system of the data owner (its code: the owner's ODS code).
pub const OWNER_TAG: &str = "https://fhir.nhs.uk/Id/ods-organization-code";

/// A member, as its entries are tagged.
#[derive(Debug, Clone, Copy)]
pub struct Origin<'a> {
    pub member: &'a str,
    pub ods: &'a str,
    /// The member's FHIR base, without a trailing `/`.
    pub base: &'a str,
}

/// What one member gave a query.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// The `entry` array of its searchset; how many entries the bridge withheld from it
    /// (restricted by `meta.security`: counted for the audit log, never shown); and whether it
    /// holds more than it gave (a next page, or a `total` past what came).
    Entries {
        entries: Vec<Value>,
        withheld: usize,
        more: bool,
    },
    /// Not asked: it does not serve this type, or the patient index says it holds no record.
    Skipped,
    /// It failed, timed out or answered something that is not a searchset: why, for the
    /// caller's OperationOutcome (no patient data in it).
    Failed(String),
}

/// `Patient.link`s one patient entry gets at most (one per other member's record, in practice).
const MAX_LINKS: usize = 16;

/// The searchset for `ty` from `answers`, in member order. A member that holds more than it
/// gave is named in an `incomplete` issue.
pub fn federate(ty: SearchType, answers: &[(Origin<'_>, Answer)]) -> Value {
    merge(ty, answers, true)
}

/// As [`federate`], for a page of a search: what members hold beyond it is the next page's
/// (the caller gets a `next` link), not an issue.
pub fn federate_page(ty: SearchType, answers: &[(Origin<'_>, Answer)]) -> Value {
    merge(ty, answers, false)
}

fn merge(ty: SearchType, answers: &[(Origin<'_>, Answer)], tell_more: bool) -> Value {
    let mut matches: Vec<Value> = Vec::new();
    let mut held: HashMap<Identifier, (usize, usize)> = HashMap::new();
    let mut issues: Vec<Value> = Vec::new();
    for (m, (origin, answer)) in answers.iter().enumerate() {
        let entries = match answer {
            Answer::Entries { entries, more, .. } => {
                if *more && tell_more {
                    issues.push(issue("warning", "incomplete", format!("{} holds more {ty} entries than the {} it gave: this answer is not all of its record (ask with a larger _count, up to 1000)", origin.member, entries.len())));
                }
                entries
            }
            Answer::Skipped => continue,
            Answer::Failed(why) => {
                issues.push(issue("warning", "incomplete", format!("{} (ODS {}) gave nothing: {why}. Its records are missing from this answer.", origin.member, origin.ods)));
                continue;
            }
        };
        let mut foreign = 0usize;
        for entry in entries {
            let Some(resource) = entry.get("resource").and_then(Value::as_object) else {
                foreign += 1;
                continue;
            };
            let rtype = resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("");
            if is_outcome(entry) {
                issues.extend(member_issues(origin.member, resource));
                continue;
            }
            if rtype != ty.as_str() {
                foreign += 1;
                continue;
            }
            add(&mut matches, &mut held, m, *origin, entry, resource.clone());
        }
        if foreign > 0 {
            issues.push(issue(
                "warning",
                "processing",
                format!(
                    "{} answered {foreign} entries that are not {ty} resources; they were left out",
                    origin.member
                ),
            ));
        }
    }
    if ty == SearchType::Patient {
        link_patients(&mut matches);
    }
    searchset(matches, issues)
}

/// A searchset of `matches`, and one outcome entry holding `issues` if there are any.
fn searchset(mut matches: Vec<Value>, issues: Vec<Value>) -> Value {
    let total = matches.len();
    if !issues.is_empty() {
        matches.push(json!({
            "resource": { "resourceType": "OperationOutcome", "issue": issues },
            "search": { "mode": "outcome" },
        }));
    }
    json!({ "resourceType": "Bundle", "type": "searchset", "total": total, "entry": matches })
}

/// `$everything`'s Bundle from one searchset per type (each made by [`federate`]): their
/// matches in the order given, and every issue of their outcome entries once, in one outcome
/// entry (a member that failed is named once, not once per type).
pub fn combine(parts: Vec<Value>) -> Value {
    let mut entry = Vec::new();
    let mut issues: Vec<Value> = Vec::new();
    for mut part in parts {
        let Some(Value::Array(entries)) = part.get_mut("entry").map(Value::take) else {
            continue;
        };
        for e in entries {
            if e.pointer("/search/mode").and_then(Value::as_str) == Some("outcome") {
                let found = e.pointer("/resource/issue").and_then(Value::as_array);
                for i in found.into_iter().flatten() {
                    if !issues.contains(i) {
                        issues.push(i.clone());
                    }
                }
            } else {
                entry.push(e);
            }
        }
    }
    searchset(entry, issues)
}

/// Whether a member's entry is its own OperationOutcome (its words about the answer, not a
/// record): `search.mode = outcome`, or an OperationOutcome resource.
pub fn is_outcome(entry: &Value) -> bool {
    entry.pointer("/search/mode").and_then(Value::as_str) == Some("outcome")
        || entry
            .pointer("/resource/resourceType")
            .and_then(Value::as_str)
            == Some("OperationOutcome")
}

/// A resource's business identity: type, identifier system, identifier value.
type Identifier = (String, String, String);

/// Adds member `m`'s resource: merged into an entry another member gave with the same business
/// identifier and the same content (not for patients, which are linked instead), or as a new
/// entry tagged with its origin. Two records that share an identifier but say different things
/// (a status changed in one) are both kept: merging would hide one member's version.
fn add(
    matches: &mut Vec<Value>,
    held: &mut HashMap<Identifier, (usize, usize)>,
    m: usize,
    origin: Origin<'_>,
    entry: &Value,
    mut resource: Map<String, Value>,
) {
    let key = business_identifier(&resource);
    let patient = resource.get("resourceType").and_then(Value::as_str) == Some("Patient");
    if !patient
        && let Some(key) = &key
        && let Some(&(at, by)) = held.get(key)
        && by != m
        && let Some(r) = matches[at]
            .get_mut("resource")
            .and_then(Value::as_object_mut)
        && same_content(r, &resource)
    {
        tag(r, origin);
        return;
    }
    let full_url = match (
        resource.get("id").and_then(Value::as_str),
        entry.get("fullUrl").and_then(Value::as_str),
    ) {
        (_, Some(u)) if u.starts_with("http") => u.to_string(),
        (Some(id), _) => format!(
            "{}/{}/{id}",
            origin.base,
            resource
                .get("resourceType")
                .and_then(Value::as_str)
                .unwrap_or("")
        ),
        (None, Some(u)) => u.to_string(),
        (None, None) => String::new(),
    };
    meta(&mut resource).insert("source".into(), Value::String(origin.base.to_string()));
    tag(&mut resource, origin);
    if let Some(key) = key {
        held.entry(key).or_insert((matches.len(), m));
    }
    let mut e = json!({ "resource": resource, "search": { "mode": "match" } });
    if !full_url.is_empty() {
        e["fullUrl"] = Value::String(full_url);
    }
    matches.push(e);
}

/// Fields two members' copies of one record may differ in and still be the same record: their
/// own ids, their metadata, and the reference to the patient (each member's own patient id).
const LOCAL_FIELDS: [&str; 4] = ["id", "meta", "patient", "subject"];

/// Whether two members' copies say the same (everything but [`LOCAL_FIELDS`]).
fn same_content(a: &Map<String, Value>, b: &Map<String, Value>) -> bool {
    let shared = |r: &Map<String, Value>| {
        r.iter()
            .filter(|(k, _)| !LOCAL_FIELDS.contains(&k.as_str()))
            .count()
    };
    shared(a) == shared(b)
        && a.iter()
            .filter(|(k, _)| !LOCAL_FIELDS.contains(&k.as_str()))
            .all(|(k, v)| b.get(k) == Some(v))
}

/// `resource.meta` as an object (whatever the member sent there is replaced if it was not one).
fn meta(resource: &mut Map<String, Value>) -> &mut Map<String, Value> {
    let meta = resource.entry("meta").or_insert_with(|| json!({}));
    if !meta.is_object() {
        *meta = json!({});
    }
    match meta {
        Value::Object(m) => m,
        _ => unreachable!("made an object above"),
    }
}

/// Adds the member's and the data owner's tags to `resource.meta.tag`, once each.
fn tag(resource: &mut Map<String, Value>, origin: Origin<'_>) {
    let tags = meta(resource).entry("tag").or_insert_with(|| json!([]));
    if !tags.is_array() {
        *tags = json!([]);
    }
    if let Some(list) = tags.as_array_mut() {
        for (system, code) in [(MEMBER_TAG, origin.member), (OWNER_TAG, origin.ods)] {
            let has = list.iter().any(|t| {
                t.get("system").and_then(Value::as_str) == Some(system)
                    && t.get("code").and_then(Value::as_str) == Some(code)
            });
            if !has {
                list.push(json!({ "system": system, "code": code }));
            }
        }
    }
}

/// `(type, system, value)` of the resource's first identifier that has both.
fn business_identifier(r: &Map<String, Value>) -> Option<Identifier> {
    let ty = r.get("resourceType")?.as_str()?;
    r.get("identifier")?.as_array()?.iter().find_map(|i| {
        let system = i.get("system")?.as_str()?;
        let value = i.get("value")?.as_str()?;
        Some((ty.to_string(), system.to_string(), value.to_string()))
    })
}

/// Each patient entry links (`seealso`) to the others, up to [`MAX_LINKS`]: they are one
/// citizen's records in different members (the query named one NHS number).
fn link_patients(matches: &mut [Value]) {
    let urls: Vec<Option<String>> = matches
        .iter()
        .map(|m| m.get("fullUrl").and_then(Value::as_str).map(str::to_string))
        .collect();
    for (i, m) in matches.iter_mut().enumerate() {
        let others: Vec<Value> = urls
            .iter()
            .enumerate()
            .filter(|(j, u)| *j != i && u.is_some())
            .take(MAX_LINKS)
            .map(|(_, u)| json!({ "other": { "reference": u }, "type": "seealso" }))
            .collect();
        if others.is_empty() {
            continue;
        }
        if let Some(r) = m.get_mut("resource").and_then(Value::as_object_mut) {
            let link = r.entry("link").or_insert_with(|| json!([]));
            if !link.is_array() {
                *link = json!([]);
            }
            if let Some(l) = link.as_array_mut() {
                l.extend(others);
            }
        }
    }
}

fn issue(severity: &str, code: &str, text: String) -> Value {
    json!({ "severity": severity, "code": code, "diagnostics": text })
}

/// A member's own OperationOutcome, passed on issue by issue with its severity and code (at
/// most 10), the member named. Its words are not passed on: a member's free text is not checked
/// against the policy, and could name anyone.
fn member_issues(member: &str, r: &Map<String, Value>) -> Vec<Value> {
    const SEVERITIES: [&str; 4] = ["fatal", "error", "warning", "information"];
    r.get("issue")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .take(10)
        .map(|i| {
            let severity = i
                .get("severity")
                .and_then(Value::as_str)
                .filter(|s| SEVERITIES.contains(s))
                .unwrap_or("information");
            let code = i
                .get("code")
                .and_then(Value::as_str)
                .filter(|c| c.len() <= 32 && c.bytes().all(|b| b.is_ascii_lowercase() || b == b'-'))
                .unwrap_or("informational");
            issue(
                severity,
                code,
                format!("{member} reported an issue ({severity}, {code}) with its answer"),
            )
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHIE: Origin<'static> = Origin {
        member: "chie",
        ods: "X1A2B",
        base: "http://chie/fhir",
    };
    const DCR: Origin<'static> = Origin {
        member: "dcr",
        ods: "X3C4D",
        base: "http://dcr/fhir",
    };

    fn entries(resources: &[Value]) -> Answer {
        Answer::Entries {
            entries: resources
                .iter()
                .map(|r| json!({ "resource": r, "search": { "mode": "match" } }))
                .collect(),
            withheld: 0,
            more: false,
        }
    }

    fn tags(entry: &Value) -> Vec<(String, String)> {
        entry["resource"]["meta"]["tag"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| {
                (
                    t["system"].as_str().unwrap().into(),
                    t["code"].as_str().unwrap().into(),
                )
            })
            .collect()
    }

    #[test]
    fn patients_from_two_members_are_linked_not_merged() {
        let p = |id: &str| json!({ "resourceType": "Patient", "id": id, "identifier": [{ "system": "https://fhir.nhs.uk/Id/nhs-number", "value": "9990000018" }] });
        let b = federate(
            SearchType::Patient,
            &[(CHIE, entries(&[p("a")])), (DCR, entries(&[p("b")]))],
        );
        assert_eq!(b["total"], 2);
        let e = b["entry"].as_array().unwrap();
        assert_eq!(e[0]["fullUrl"], "http://chie/fhir/Patient/a");
        assert_eq!(e[0]["resource"]["meta"]["source"], "http://chie/fhir");
        assert_eq!(
            tags(&e[0]),
            vec![
                (MEMBER_TAG.into(), "chie".into()),
                (OWNER_TAG.into(), "X1A2B".into())
            ]
        );
        assert_eq!(
            e[0]["resource"]["link"][0]["other"]["reference"],
            "http://dcr/fhir/Patient/b"
        );
        assert_eq!(
            e[1]["resource"]["link"][0]["other"]["reference"],
            "http://chie/fhir/Patient/a"
        );
        assert_eq!(e[1]["resource"]["link"][0]["type"], "seealso");
    }

    #[test]
    fn a_resource_both_hold_appears_once_with_both_provenances() {
        let allergy = |id: &str| json!({ "resourceType": "AllergyIntolerance", "id": id, "identifier": [{ "system": "https://trust.example/allergy", "value": "AL-1" }] });
        let other = json!({ "resourceType": "AllergyIntolerance", "id": "z" });
        let b = federate(
            SearchType::AllergyIntolerance,
            &[
                (CHIE, entries(&[allergy("a")])),
                (DCR, entries(&[allergy("b"), other])),
            ],
        );
        assert_eq!(b["total"], 2);
        let e = b["entry"].as_array().unwrap();
        assert_eq!(e[0]["resource"]["id"], "a");
        let t = tags(&e[0]);
        assert!(
            t.contains(&(MEMBER_TAG.into(), "chie".into()))
                && t.contains(&(MEMBER_TAG.into(), "dcr".into())),
            "{t:?}"
        );
        assert!(t.contains(&(OWNER_TAG.into(), "X3C4D".into())));
        assert_eq!(e[1]["fullUrl"], "http://dcr/fhir/AllergyIntolerance/z");
    }

    #[test]
    fn a_failed_member_is_an_outcome_entry_not_a_gap() {
        let c = json!({ "resourceType": "Condition", "id": "c1" });
        let b = federate(
            SearchType::Condition,
            &[
                (CHIE, entries(&[c])),
                (DCR, Answer::Failed("no answer within 5s".into())),
            ],
        );
        assert_eq!(b["total"], 1);
        let last = b["entry"].as_array().unwrap().last().unwrap().clone();
        assert_eq!(last["search"]["mode"], "outcome");
        let text = last["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap();
        assert!(
            text.contains("dcr (ODS X3C4D)") && text.contains("no answer within 5s"),
            "{text}"
        );
    }

    #[test]
    fn everything_is_each_types_matches_and_a_failed_member_named_once() {
        let failed = || (DCR, Answer::Failed("no answer within 5s".into()));
        let p = json!({ "resourceType": "Patient", "id": "p1" });
        let c = json!({ "resourceType": "Condition", "id": "c1", "subject": { "reference": "Patient/p1" } });
        let whole = combine(vec![
            federate(SearchType::Patient, &[(CHIE, entries(&[p])), failed()]),
            federate(SearchType::Condition, &[(CHIE, entries(&[c])), failed()]),
        ]);
        assert_eq!(
            (whole["type"].as_str(), whole["total"].as_u64()),
            (Some("searchset"), Some(2))
        );
        let e = whole["entry"].as_array().unwrap();
        let kinds: Vec<&str> = e
            .iter()
            .map(|e| e["resource"]["resourceType"].as_str().unwrap())
            .collect();
        assert_eq!(kinds, ["Patient", "Condition", "OperationOutcome"]);
        assert_eq!(e[2]["resource"]["issue"].as_array().unwrap().len(), 1);
    }

    #[test]
    fn a_page_leaves_what_members_hold_beyond_it_to_the_next_page() {
        let c = json!({ "resourceType": "Condition", "id": "c1" });
        let more = Answer::Entries {
            entries: vec![json!({ "resource": c })],
            withheld: 0,
            more: true,
        };
        let told = federate(SearchType::Condition, &[(CHIE, more.clone())]);
        assert!(
            told.to_string().contains("holds more Condition entries"),
            "{told}"
        );
        let paged = federate_page(SearchType::Condition, &[(CHIE, more)]);
        assert_eq!(paged["entry"].as_array().unwrap().len(), 1, "{paged}");
    }

    #[test]
    fn entries_of_another_type_are_left_out_and_said() {
        let b = federate(
            SearchType::Condition,
            &[(
                CHIE,
                entries(&[
                    json!({ "resourceType": "Patient", "id": "p" }),
                    json!("not an object"),
                ]),
            )],
        );
        assert_eq!(b["total"], 0);
        let text = b["entry"][0]["resource"]["issue"][0]["diagnostics"]
            .as_str()
            .unwrap();
        assert!(text.contains("2 entries that are not Condition"), "{text}");
        let skipped = federate(SearchType::Condition, &[(CHIE, Answer::Skipped)]);
        assert_eq!(skipped["entry"].as_array().unwrap().len(), 0);
    }

    #[test]
    fn only_the_same_record_from_another_member_is_merged() {
        let obs = |id: &str, status: &str| json!({ "resourceType": "Observation", "id": id, "status": status, "identifier": [{ "system": "https://lab.example/accession", "value": "ACC-1" }] });
        // Two results of one accession in one member: both kept. The same accession elsewhere
        // with another status: kept too (merging would hide that member's version).
        let b = federate(
            SearchType::Observation,
            &[
                (CHIE, entries(&[obs("a", "final"), obs("b", "final")])),
                (DCR, entries(&[obs("c", "amended")])),
            ],
        );
        assert_eq!(b["total"], 3, "{b}");
        // The same content from another member: once, both tags.
        let b = federate(
            SearchType::Observation,
            &[
                (CHIE, entries(&[obs("a", "final")])),
                (DCR, entries(&[obs("c", "final")])),
            ],
        );
        assert_eq!(b["total"], 1, "{b}");
    }

    #[test]
    fn odd_shapes_and_member_outcomes_are_handled() {
        let odd = json!({ "resourceType": "Condition", "id": "c", "meta": "not an object" });
        let said = json!({ "resourceType": "OperationOutcome", "issue": [{ "severity": "error", "code": "too-costly", "diagnostics": "search too broad" }] });
        let b = federate(
            SearchType::Condition,
            &[
                (CHIE, entries(&[odd, said])),
                (
                    DCR,
                    Answer::Entries {
                        entries: Vec::new(),
                        withheld: 0,
                        more: true,
                    },
                ),
            ],
        );
        let e = b["entry"].as_array().unwrap();
        assert_eq!(e[0]["resource"]["meta"]["source"], "http://chie/fhir");
        let issues = e[1]["resource"]["issue"].as_array().unwrap();
        assert_eq!(
            (issues[0]["severity"].as_str(), issues[0]["code"].as_str()),
            (Some("error"), Some("too-costly")),
            "{b}"
        );
        assert_eq!(
            issues[0]["diagnostics"],
            "chie reported an issue (error, too-costly) with its answer"
        );
        assert_eq!(
            (issues[1]["severity"].as_str(), issues[1]["code"].as_str()),
            (Some("warning"), Some("incomplete")),
            "{b}"
        );
        assert!(
            issues[1]["diagnostics"]
                .as_str()
                .unwrap()
                .starts_with("dcr holds more"),
            "{b}"
        );
    }
}
