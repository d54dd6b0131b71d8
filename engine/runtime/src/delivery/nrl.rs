//! The `nrl` destination: keeps the National Record Locator pointing at the regional record
//! for each patient an ADT feed carries (docs/design/nrl-producer-api.md has the API's facts).
//!
//! Each message is a statement about one patient, and the pointer is made to agree with it:
//! - alive: the NRL holds exactly one current pointer of ours for the NHS number, saying what
//!   this destination says (record URL, type, setting). None: created. One that says something
//!   else, or several: one new pointer that `replaces` them (a supersede).
//! - dead (PID-30 `Y`, or a date of death in PID-29): every pointer of ours for it deleted.
//! - a merge (MRG-1): the merged-away number's pointers deleted, then as alive.
//!
//! A retry never makes a second pointer: every step first reads what the NRL holds, so a
//! create whose answer was lost is found, not made again. Every request also carries the
//! delivery's id as `X-Correlation-ID` (the spec says the NRL uses it to de-duplicate; nothing
//! here relies on that) and a fresh `X-Request-ID`.

use serde_json::{Value, json};
use wyvern_config::NrlDestination;
use wyvern_connectors::fhir::{Exchanged, FhirClient};
use wyvern_hl7::Message;
use wyvern_store::OutboxItem;

use super::sink::{Failure, is_fhir_id};

const NHS_NUMBER: &str = "https://fhir.nhs.uk/Id/nhs-number";
const ODS_CODE: &str = "https://fhir.nhs.uk/Id/ods-organization-code";
const SNOMED: &str = "http://snomed.info/sct";
/// The pointer type: a clinical summary (the regional record), and its category.
const CLINICAL_SUMMARY: (&str, &str) = ("887181000000106", "Clinical summary");
const RECORD_HEADINGS: (&str, &str) = ("716931000000107", "Record headings");
/// The API's media type.
const MEDIA: &str = "application/fhir+json;version=1";
/// The most of an answer read (a search holds a handful of pointers).
const ANSWER_LIMIT: usize = 1 << 20;

/// What one message asks of the NRL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Intent {
    /// A current pointer for `nhs`; the merged-away patient's pointers removed.
    Point {
        nhs: String,
        merged_away: Option<String>,
    },
    /// The patient died: no pointer for `nhs`.
    Remove { nhs: String },
}

/// Reads the intent from an HL7v2 message (pure).
pub(crate) fn intent(payload: &[u8]) -> Result<Intent, Failure> {
    let msg = Message::parse(payload)
        .map_err(|e| Failure::permanent(format!("not an HL7v2 message: {e}")))?;
    let nhs = match msg.nhs_number() {
        Some(Ok(n)) => n.as_str().to_string(),
        Some(Err(e)) => {
            return Err(Failure::permanent(format!(
                "PID-3's NHS number is not valid ({e}): the NRL points by NHS number"
            )));
        }
        None => {
            return Err(Failure::permanent(
                "no NHS number in PID-3: the NRL points by NHS number",
            ));
        }
    };
    // PID-30 says it outright; otherwise a date of death in PID-29 (`""`, HL7's null, clears
    // one: not a death).
    let died = match msg
        .get("PID-30")
        .map(|v| v.as_str().into_owned())
        .as_deref()
    {
        Some("Y") => true,
        Some("N") => false,
        _ => msg.get("PID-29").is_some_and(|v| {
            let d = v.as_str();
            let d = d.trim();
            !d.is_empty() && d != "\"\""
        }),
    };
    if died {
        return Ok(Intent::Remove { nhs });
    }
    let merged_away = msg
        .merged_nhs_number()
        .and_then(Result::ok)
        .map(|n| n.as_str().to_string())
        .filter(|old| *old != nhs);
    Ok(Intent::Point { nhs, merged_away })
}

/// The pointer this destination means for `nhs`, replacing `replaces` (pure).
pub(crate) fn pointer(d: &NrlDestination, nhs: &str, replaces: &[String]) -> Value {
    let mut p = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": { "coding": [{ "system": SNOMED, "code": CLINICAL_SUMMARY.0, "display": CLINICAL_SUMMARY.1 }] },
        "category": [{ "coding": [{ "system": SNOMED, "code": RECORD_HEADINGS.0, "display": RECORD_HEADINGS.1 }] }],
        "subject": { "identifier": { "system": NHS_NUMBER, "value": nhs } },
        "custodian": { "identifier": { "system": ODS_CODE, "value": d.ods } },
        "author": [{ "identifier": { "system": ODS_CODE, "value": d.ods } }],
        "content": [{
            "attachment": { "contentType": "application/fhir+json", "url": d.record_url },
            "format": {
                "system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLFormatCode",
                "code": "urn:nhs-ic:record-contact",
                "display": "Contact details (HTTP Unsecured)",
            },
            "extension": [{
                "url": "https://fhir.nhs.uk/England/StructureDefinition/Extension-England-ContentStability",
                "valueCodeableConcept": { "coding": [{
                    "system": "https://fhir.nhs.uk/England/CodeSystem/England-NRLContentStability",
                    "code": "dynamic",
                    "display": "Dynamic",
                }] },
            }],
        }],
        "context": { "practiceSetting": { "coding": [{ "system": SNOMED, "code": d.practice_setting }] } },
    });
    if !replaces.is_empty() {
        p["relatesTo"] = replaces
            .iter()
            .map(|id| json!({ "code": "replaces", "target": { "type": "DocumentReference", "identifier": { "value": id } } }))
            .collect();
    }
    p
}

/// Whether a pointer the NRL holds says what `wanted` says (the fields this destination sets).
fn says_the_same(held: &Value, wanted: &Value) -> bool {
    [
        "/type/coding/0/code",
        "/custodian/identifier/value",
        "/content/0/attachment/url",
        "/content/0/attachment/contentType",
        "/context/practiceSetting/coding/0/code",
        "/status",
    ]
    .iter()
    .all(|p| held.pointer(p) == wanted.pointer(p))
}

/// The producer API for one organisation.
#[derive(Debug)]
pub struct NrlSink {
    client: FhirClient,
    config: NrlDestination,
    rng: ring::rand::SystemRandom,
}

impl NrlSink {
    pub fn build(d: &NrlDestination) -> Result<NrlSink, String> {
        Ok(NrlSink {
            client: super::sink::fhir_client(&d.api)?,
            config: d.clone(),
            rng: ring::rand::SystemRandom::new(),
        })
    }

    /// Makes the NRL agree with one message; `Ok` says what was done.
    pub async fn deliver(&self, item: &OutboxItem) -> Result<String, Failure> {
        let correlation = item.delivery_id();
        match intent(&item.payload)? {
            Intent::Remove { nhs } => {
                let deleted = self.remove_all(&nhs, &correlation).await?;
                Ok(format!("the patient died: {deleted} pointer(s) deleted"))
            }
            Intent::Point { nhs, merged_away } => {
                let mut said = Vec::new();
                if let Some(old) = merged_away {
                    let deleted = self.remove_all(&old, &correlation).await?;
                    said.push(format!(
                        "{deleted} pointer(s) of the patient merged away deleted"
                    ));
                }
                let held = self.pointers(&nhs, &correlation).await?;
                let wanted = pointer(&self.config, &nhs, &[]);
                if let [(id, p)] = held.as_slice()
                    && says_the_same(p, &wanted)
                {
                    said.push(format!("pointer {id} is current"));
                    return Ok(said.join("; "));
                }
                let replaces: Vec<String> = held.into_iter().map(|(id, _)| id).collect();
                let body = pointer(&self.config, &nhs, &replaces);
                let answer = self
                    .call("POST", "/DocumentReference", &[], Some(body), &correlation)
                    .await?;
                let at = answer.location.unwrap_or_else(|| "(no Location)".into());
                said.push(if replaces.is_empty() {
                    format!("pointer created: {at}")
                } else {
                    format!("pointer {at} replaces {}", replaces.join(", "))
                });
                Ok(said.join("; "))
            }
        }
    }

    /// Our pointers for `nhs` of this destination's type: their ids and resources. The answer
    /// is not trusted to have searched: only pointers whose subject, type and custodian are
    /// these are taken (a search that ignored the subject must not make a death delete every
    /// pointer the organisation has).
    async fn pointers(
        &self,
        nhs: &str,
        correlation: &str,
    ) -> Result<Vec<(String, Value)>, Failure> {
        let query = [
            ("subject:identifier", format!("{NHS_NUMBER}|{nhs}")),
            ("type", format!("{SNOMED}|{}", CLINICAL_SUMMARY.0)),
        ];
        let answer = self
            .call("GET", "/DocumentReference", &query, None, correlation)
            .await?;
        let bundle: Value = serde_json::from_slice(&answer.body)
            .map_err(|e| Failure::transient(format!("the NRL's search answer is not JSON: {e}")))?;
        if bundle.get("resourceType").and_then(Value::as_str) != Some("Bundle") {
            return Err(Failure::transient(
                "the NRL's search answer is not a Bundle: what it holds is unknown, so nothing is changed",
            ));
        }
        let ours = |r: &Value| {
            r.pointer("/subject/identifier/value")
                .and_then(Value::as_str)
                == Some(nhs)
                && r.pointer("/type/coding/0/code").and_then(Value::as_str)
                    == Some(CLINICAL_SUMMARY.0)
                && r.pointer("/custodian/identifier/value")
                    .and_then(Value::as_str)
                    == Some(self.config.ods.as_str())
        };
        Ok(bundle["entry"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|e| {
                let r = e.get("resource")?;
                let id = r.get("id")?.as_str()?;
                // An id goes into a URL path: only what a FHIR id may be.
                (is_fhir_id(id) && ours(r)).then(|| (id.to_string(), r.clone()))
            })
            .collect())
    }

    /// Deletes every pointer of ours for `nhs`; how many there were.
    async fn remove_all(&self, nhs: &str, correlation: &str) -> Result<usize, Failure> {
        let held = self.pointers(nhs, correlation).await?;
        for (id, _) in &held {
            let path = format!("/DocumentReference/{id}");
            let answer = self.send("DELETE", &path, &[], None, correlation).await?;
            // 404: already gone (a retry after a lost answer): what was asked holds.
            if answer.status != 404 {
                judge("DELETE", &path, answer)?;
            }
        }
        Ok(held.len())
    }

    /// One request with the API's headers, judged: a status that is not 2xx is a failure.
    async fn call(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        correlation: &str,
    ) -> Result<Exchanged, Failure> {
        let answer = self.send(method, path, query, body, correlation).await?;
        judge(method, path, answer)
    }

    /// One request with the API's headers; any status comes back.
    async fn send(
        &self,
        method: &str,
        path: &str,
        query: &[(&str, String)],
        body: Option<Value>,
        correlation: &str,
    ) -> Result<Exchanged, Failure> {
        let headers = [
            ("Accept", MEDIA.to_string()),
            ("NHSD-End-User-Organisation-ODS", self.config.ods.clone()),
            ("X-Request-ID", self.request_id()),
            ("X-Correlation-ID", correlation.to_string()),
        ];
        let body = body.map(|b| (MEDIA, b.to_string().into_bytes()));
        self.client
            .exchange(method, path, query, &headers, body, ANSWER_LIMIT)
            .await
            .map_err(Failure::transient)
    }

    /// A random (version 4) UUID for `X-Request-ID`.
    fn request_id(&self) -> String {
        use ring::rand::SecureRandom as _;
        let mut b = [0u8; 16];
        if self.rng.fill(&mut b).is_err() {
            b = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos())
                .to_le_bytes();
        }
        b[6] = (b[6] & 0x0f) | 0x40;
        b[8] = (b[8] & 0x3f) | 0x80;
        let h: String = b.iter().map(|x| format!("{x:02x}")).collect();
        format!(
            "{}-{}-{}-{}-{}",
            &h[..8],
            &h[8..12],
            &h[12..16],
            &h[16..20],
            &h[20..]
        )
    }
}

/// What an answer means: 2xx is the answer; any other status a failure, classed.
fn judge(method: &str, path: &str, answer: Exchanged) -> Result<Exchanged, Failure> {
    if (200..300).contains(&answer.status) {
        return Ok(answer);
    }
    let text: String = String::from_utf8_lossy(&answer.body)
        .chars()
        .take(400)
        .collect();
    let why = format!("HTTP {} from {method} {path}: {text}", answer.status);
    Err(match answer.status {
        // Authentication and grants are this destination's configuration (an expired
        // key, an ODS code not yet granted): retried until fixed, as for `fhir`.
        401 | 403 => {
            Failure::transient(format!("{why} (are the destination's auth and ods right?)"))
        }
        // So is a path the API does not know (a wrong base).
        404 | 405 => Failure::transient(format!("{why} (is the destination's api base right?)")),
        408 | 429 | 500..=599 => Failure::transient(why),
        _ => Failure::permanent(why),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adt(pid_tail: &str, mrg: &str) -> Vec<u8> {
        format!(
            "MSH|^~\\&|PAS|RX1|||20261204||ADT^A08|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||TEST^ALEX{pid_tail}\r{mrg}"
        )
        .into_bytes()
    }

    #[test]
    fn a_message_says_point_remove_or_merge() {
        assert_eq!(
            intent(&adt("", "")).unwrap(),
            Intent::Point {
                nhs: "9990000018".into(),
                merged_away: None
            }
        );
        // PID-29 (date of death) or PID-30 (death indicator), after PID-5.
        let died = format!("{}20261201", "|".repeat(29 - 5));
        assert_eq!(
            intent(&adt(&died, "")).unwrap(),
            Intent::Remove {
                nhs: "9990000018".into()
            }
        );
        let flagged = format!("{}Y", "|".repeat(30 - 5));
        assert!(matches!(
            intent(&adt(&flagged, "")).unwrap(),
            Intent::Remove { .. }
        ));
        // HL7's null in PID-29 clears a date of death: not a death.
        let cleared = format!("{}\"\"", "|".repeat(29 - 5));
        assert!(matches!(
            intent(&adt(&cleared, "")).unwrap(),
            Intent::Point { .. }
        ));
        let alive = format!("{}20261201|N", "|".repeat(29 - 5));
        assert!(matches!(
            intent(&adt(&alive, "")).unwrap(),
            Intent::Point { .. }
        ));
        assert_eq!(
            intent(&adt("", "MRG|9990000026^^^NHS^NH\r")).unwrap(),
            Intent::Point {
                nhs: "9990000018".into(),
                merged_away: Some("9990000026".into())
            }
        );
        let none = b"MSH|^~\\&|PAS|RX1|||20261204||ADT^A08|C1|P|2.4\rPID|1||K1^^^RX1^MR";
        let e = intent(none).unwrap_err();
        assert_eq!(e.class, wyvern_core::ErrorClass::Permanent);
        assert!(e.reason.contains("no NHS number"), "{}", e.reason);
    }

    #[test]
    fn the_pointer_says_what_the_destination_says() {
        let d = NrlDestination {
            api: wyvern_config::FhirDestination {
                base: wyvern_config::SecretValue::parse("http://nrl/fhir")
                    .unwrap()
                    .0,
                auth: wyvern_config::FhirAuth::None,
                timeout: std::time::Duration::from_secs(5),
                ca: None,
            },
            ods: "XCH01".into(),
            record_url: "https://chie.example/record".into(),
            practice_setting: "1060971000000108".into(),
        };
        let p = pointer(&d, "9990000018", &[]);
        assert_eq!(p["subject"]["identifier"]["value"], "9990000018");
        assert_eq!(p["custodian"]["identifier"]["value"], "XCH01");
        assert!(p.get("relatesTo").is_none());
        assert!(says_the_same(&p, &pointer(&d, "9990000018", &[])));
        let moved = NrlDestination {
            record_url: "https://chie.example/v2".into(),
            ..d.clone()
        };
        assert!(!says_the_same(&p, &pointer(&moved, "9990000018", &[])));
        let s = pointer(&d, "9990000018", &["XCH01-1".into()]);
        assert_eq!(s["relatesTo"][0]["code"], "replaces");
        assert_eq!(
            s["relatesTo"][0]["target"]["identifier"]["value"],
            "XCH01-1"
        );
    }
}
