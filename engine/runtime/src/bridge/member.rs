//! Asking one member record: find the citizen there by NHS number (its own patient ids), then
//! search the type for those ids. Two plain FHIR searches any R4 server answers, rather than a
//! chained `patient.identifier` search not every server supports. The whole ask is bounded in
//! time (the member's `timeout`) and in bytes (`max_member_answer`, per answer read).

use std::time::Duration;

use serde_json::Value;
use wyvern_config::{Member, SearchType};
use wyvern_connectors::fhir::{FhirClient, ReadFailure};

use super::policy::restricted;
use wyvern_federation::{Answer, Everything, NHS_NUMBER_SYSTEM, Origin, Query, is_outcome};
use wyvern_hl7::NhsNumber;

/// The most patient records one member is asked for under one NHS number: in practice one,
/// now and then a few (a duplicate registration); never the caller's page size.
const PATIENTS_PER_NHS_NUMBER: usize = 50;

/// One member, ready to ask.
#[derive(Debug)]
pub struct MemberClient {
    pub name: String,
    pub ods: String,
    serves: Vec<SearchType>,
    timeout: Duration,
    max_answer: usize,
    client: FhirClient,
}

impl MemberClient {
    /// Resolves the member's secrets now (a missing one stops the engine at start).
    pub fn build(m: &Member, max_answer: u64) -> Result<MemberClient, String> {
        // The whole ask (two searches) is bounded by `timeout` here; the client's own limit per
        // request is looser, so the caller reads one plain reason.
        let mut target = m.fhir.clone();
        target.timeout += Duration::from_secs(1);
        let client = crate::delivery::fhir_client(&target)?;
        Ok(MemberClient {
            name: m.name.clone(),
            ods: m.ods.clone(),
            serves: m.serves.clone(),
            timeout: m.fhir.timeout,
            max_answer: usize::try_from(max_answer).unwrap_or(usize::MAX),
            client,
        })
    }

    pub fn origin(&self) -> Origin<'_> {
        Origin {
            member: &self.name,
            ods: &self.ods,
            base: self.client.base(),
        }
    }

    pub fn serves(&self, ty: SearchType) -> bool {
        self.serves.contains(&ty)
    }

    /// The member's entries for `q`, or why there are none (never an error for the query: the
    /// caller gets the others' entries and an outcome naming this one). `offset`: how many of
    /// its matches earlier pages took (FHIR's `_offset`). Also how many of its own matches
    /// this answer took (its next page starts that much further on).
    pub async fn ask(&self, q: &Query, offset: usize) -> (Answer, usize) {
        if !self.serves(q.ty) {
            return (Answer::Skipped, 0);
        }
        match tokio::time::timeout(self.timeout, self.search(q, offset)).await {
            Ok(Ok(found)) => found,
            Ok(Err(why)) => (Answer::Failed(why), 0),
            Err(_) => (Answer::Failed(self.too_slow()), 0),
        }
    }

    fn too_slow(&self) -> String {
        format!(
            "no answer within {}",
            humantime::format_duration(self.timeout)
        )
    }

    /// Every type of `e` for its patient, in `e.types`' order: the patient found once, then
    /// the types searched at once, the whole within the member's `timeout`.
    pub async fn everything(&self, e: &Everything) -> Vec<Answer> {
        let work = async {
            let found = self.patients(e.patient, PATIENTS_PER_NHS_NUMBER, 0).await?;
            let ids = found.ids();
            // Withheld patients are counted once, with the first type this member serves.
            let first = e.types.iter().position(|t| self.serves(*t));
            let answers =
                futures_util::future::join_all(e.types.iter().enumerate().map(|(i, &ty)| {
                    let (found, ids) = (&found, &ids);
                    async move {
                        let withheld = if Some(i) == first { found.withheld } else { 0 };
                        if !self.serves(ty) {
                            Answer::Skipped
                        } else if ty == SearchType::Patient {
                            bounded(found.patients.clone(), withheld, found.more, e.count)
                        } else {
                            self.records(ty, ids, e.count, 0, withheld)
                                .await
                                .map_or_else(Answer::Failed, |(a, _)| a)
                        }
                    }
                }))
                .await;
            Ok::<_, String>(answers)
        };
        match tokio::time::timeout(self.timeout, work).await {
            Ok(Ok(answers)) => answers,
            Ok(Err(why)) => vec![Answer::Failed(why); e.types.len()],
            Err(_) => vec![Answer::Failed(self.too_slow()); e.types.len()],
        }
    }

    /// The entries for `q`, at most `q.count` of them (always `Answer::Entries`), and how many
    /// of the member's matches they took.
    async fn search(&self, q: &Query, offset: usize) -> Result<(Answer, usize), String> {
        if q.ty == SearchType::Patient {
            let found = self.patients(q.patient, q.count, offset).await?;
            let took = found.took.min(q.count);
            return Ok((
                bounded(found.patients, found.withheld, found.more, q.count),
                took,
            ));
        }
        // The patients are looked up whole on every page (a page is about the same ids).
        let found = self.patients(q.patient, PATIENTS_PER_NHS_NUMBER, 0).await?;
        self.records(q.ty, &found.ids(), q.count, offset, found.withheld)
            .await
    }

    /// The member's patients carrying `nhs` (at most `count`, after `offset`), restricted ones
    /// withheld.
    async fn patients(
        &self,
        nhs: NhsNumber,
        count: usize,
        offset: usize,
    ) -> Result<Patients, String> {
        let query = [(
            "identifier",
            format!("{NHS_NUMBER_SYSTEM}|{}", nhs.as_str()),
        )];
        let (patients, more, took) = self.searchset("Patient", &query, count, offset).await?;
        if more && count == PATIENTS_PER_NHS_NUMBER {
            tracing::warn!(member = %self.name, "a member holds more than {PATIENTS_PER_NHS_NUMBER} patients with one NHS number; the rest were not asked about");
        }
        // Only the member's patients whose NHS number is the one asked for: a server that ignored
        // the identifier would otherwise hand over everyone's records.
        let patients: Vec<Value> = patients
            .into_iter()
            .filter(|e| holds_nhs_number(e, nhs.as_str()) || is_outcome(e))
            .collect();
        // A restricted patient record is withheld, and so is everything the member holds under it.
        let (withheld_patients, patients): (Vec<Value>, Vec<Value>) =
            patients.into_iter().partition(restricted);
        Ok(Patients {
            patients,
            withheld: withheld_patients.len(),
            more,
            took,
        })
    }

    /// The member's `ty` entries about its patients `ids`, at most `count`; `withheld` (the
    /// patients withheld) is added to the count of what was withheld.
    async fn records(
        &self,
        ty: SearchType,
        ids: &[String],
        count: usize,
        offset: usize,
        withheld: usize,
    ) -> Result<(Answer, usize), String> {
        if ids.is_empty() {
            return Ok((bounded(Vec::new(), withheld, false, count), 0));
        }
        let query = [("patient", ids.join(","))];
        let (entries, more, took) = self.searchset(ty.as_str(), &query, count, offset).await?;
        let took = took.min(count);
        // The same distrust for the records: only those about the patients found above.
        let (about, other): (Vec<Value>, Vec<Value>) = entries
            .into_iter()
            .partition(|e| about_patient(e, self.client.base(), ids) || is_outcome(e));
        if !other.is_empty() {
            tracing::warn!(member = %self.name, r#type = %ty, left_out = other.len(), "a member answered records of other patients to a patient search; they were left out");
        }
        let (restricted_entries, about): (Vec<Value>, Vec<Value>) =
            about.into_iter().partition(restricted);
        Ok((
            bounded(about, withheld + restricted_entries.len(), more, count),
            took,
        ))
    }

    /// One search (`query`, at most `count` entries, from `offset` on): its `entry` array,
    /// whether the member holds more than it gave (a next page, or a `total` past the entries
    /// after `offset`), and how many of the entries are matches (not the member's own
    /// outcomes). An answer that is not a Bundle is a failure.
    async fn searchset(
        &self,
        ty: &str,
        query: &[(&str, String)],
        count: usize,
        offset: usize,
    ) -> Result<(Vec<Value>, bool, usize), String> {
        let mut query = query.to_vec();
        query.push(("_count", count.to_string()));
        if offset > 0 {
            query.push(("_offset", offset.to_string()));
        }
        let body = self
            .client
            .read(&format!("/{ty}"), &query, self.max_answer)
            .await
            .map_err(|e| match e {
                ReadFailure::TooLarge(n) => {
                    format!("its answer was larger than {n} bytes (max_member_answer)")
                }
                ReadFailure::TimedOut => self.too_slow(),
                other => other.to_string(),
            })?;
        let mut bundle: Value = serde_json::from_slice(&body)
            .map_err(|e| format!("its answer to a {ty} search is not JSON: {e}"))?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(format!("its answer to a {ty} search is not a Bundle"));
        }
        let next = bundle
            .get("link")
            .and_then(Value::as_array)
            .is_some_and(|l| {
                l.iter()
                    .any(|l| l.get("relation").and_then(Value::as_str) == Some("next"))
            });
        let total = bundle.get("total").and_then(Value::as_u64);
        let entries = match bundle.get_mut("entry").map(Value::take) {
            None | Some(Value::Null) => Vec::new(),
            Some(Value::Array(entries)) => entries,
            Some(_) => {
                return Err(format!(
                    "its answer to a {ty} search has an entry that is not a list"
                ));
            }
        };
        let matches = entries.iter().filter(|e| !is_outcome(e)).count();
        let more = next || total.is_some_and(|t| t > (offset + matches) as u64);
        Ok((entries, more, matches))
    }
}

/// A member's patients found by NHS number.
struct Patients {
    /// Their entries (and the member's own outcomes), restricted ones left out.
    patients: Vec<Value>,
    /// Restricted patients left out.
    withheld: usize,
    /// Whether the member holds more than it gave.
    more: bool,
    /// How many matches the member gave (before any was left out).
    took: usize,
}

impl Patients {
    /// The member's own ids of the patients.
    fn ids(&self) -> Vec<String> {
        self.patients
            .iter()
            .filter(|e| !is_outcome(e))
            .filter_map(|e| e.pointer("/resource/id").and_then(Value::as_str))
            .map(str::to_string)
            .collect()
    }
}

/// What a member gave, at most `count` entries: a member that ignores `_count` cannot make the
/// answer (or the merging) as large as it likes; it is told as holding more.
fn bounded(entries: Vec<Value>, withheld: usize, more: bool, count: usize) -> Answer {
    let (outcomes, mut matches): (Vec<Value>, Vec<Value>) =
        entries.into_iter().partition(is_outcome);
    let cut = matches.len() > count;
    matches.truncate(count);
    // A member's own outcomes (at most a few) do not take matches' places.
    matches.extend(outcomes.into_iter().take(4));
    Answer::Entries {
        entries: matches,
        withheld,
        more: more || cut,
    }
}

/// Whether an entry's resource is about one of `ids` at this member (its `subject` or
/// `patient` reference is `Patient/{id}`, or the same under the member's own base).
fn about_patient(entry: &Value, base: &str, ids: &[impl AsRef<str>]) -> bool {
    let resource = entry.get("resource");
    ["subject", "patient"]
        .iter()
        .filter_map(|field| resource?.get(field)?.get("reference")?.as_str())
        .any(|r| {
            let local = r
                .strip_prefix(base)
                .and_then(|r| r.strip_prefix('/'))
                .unwrap_or(r);
            ids.iter()
                .any(|id| local.strip_prefix("Patient/") == Some(id.as_ref()))
        })
}

/// Whether a Patient entry carries `nhs` under the NHS number system.
fn holds_nhs_number(entry: &Value, nhs: &str) -> bool {
    entry
        .pointer("/resource/identifier")
        .and_then(Value::as_array)
        .is_some_and(|ids| {
            ids.iter().any(|i| {
                i.get("system").and_then(Value::as_str) == Some(NHS_NUMBER_SYSTEM)
                    && i.get("value")
                        .and_then(Value::as_str)
                        .map(|v| v.replace([' ', '-'], ""))
                        == Some(nhs.to_string())
            })
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn only_the_patients_and_records_asked_for_are_kept() {
        let p = |nhs: &str| json!({ "resource": { "resourceType": "Patient", "identifier": [{ "system": NHS_NUMBER_SYSTEM, "value": nhs }] } });
        assert!(holds_nhs_number(&p("9990000018"), "9990000018"));
        assert!(holds_nhs_number(&p("999 000 0018"), "9990000018"));
        assert!(holds_nhs_number(&p("999-000-0018"), "9990000018"));
        assert!(!holds_nhs_number(&p("9990000026"), "9990000018"));
        let c = |field: &str, r: &str| json!({ "resource": { "resourceType": "Condition", field: { "reference": r } } });
        let base = "http://x/fhir";
        assert!(about_patient(&c("subject", "Patient/a"), base, &["a", "b"]));
        assert!(about_patient(
            &c("patient", "http://x/fhir/Patient/b"),
            base,
            &["a", "b"]
        ));
        assert!(!about_patient(
            &c("patient", "http://elsewhere/fhir/Patient/b"),
            base,
            &["b"]
        ));
        assert!(!about_patient(
            &c("subject", "Patient/ab"),
            base,
            &["a", "b"]
        ));
        assert!(!about_patient(&c("subject", "Group/a"), base, &["a"]));
        let none = json!({ "resource": { "resourceType": "Condition" } });
        assert!(!about_patient(&none, base, &["a"]));
        let many: Vec<Value> = (0..5).map(|i| json!({ "i": i })).collect();
        let Answer::Entries { entries, more, .. } = bounded(many, 0, false, 3) else {
            panic!("entries")
        };
        assert_eq!((entries.len(), more), (3, true));
    }
}
