//! PID/PD1 → Patient (NHS number only when modulus-11 valid, with its verification status;
//! every other identifier kept as a local one), and A40 merges as Patient `link`s. The
//! clinical segments about the patient are in [`crate::clinical`].

use serde_json::{Map, Value, json};
use wyvern_hl7::{NhsNumber, Segment, Value as V2};

use crate::bundle::Upsert;
use crate::datatypes::{
    address, comp, concept, contact_point, human_name, organization, practitioner, reps, text,
};
use crate::ids::stable_uuid;
use crate::localtime::{fhir_date, fhir_datetime};
use crate::{Context, MapError};

const NHS_MARKERS: [&str; 3] = ["NHS", "NH", "NHSNBR"];
const VERIFICATION_EXT: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";

/// The patient a message is about, as the Bundle refers to it.
pub struct PatientRef {
    pub reference: String,
    pub display: String,
    /// `system|value` of the identifier it was matched on.
    pub key: String,
}

impl PatientRef {
    pub fn json(&self) -> Value {
        json!({ "reference": self.reference, "display": self.display })
    }
}

/// The identifiers of `cx` repetitions, and the one to match the patient on (a valid NHS
/// number first, else the first local identifier).
/// `list` pairs each CX with whether it is an NHS number without saying so (PID-2 in v2.3).
fn identifiers(
    cx: &mut Context<'_, '_>,
    where_: &str,
    list: &[(V2<'_>, bool)],
    status: &str,
) -> (Vec<Value>, Option<(String, String)>) {
    let mut out = Vec::new();
    let mut nhs: Option<(String, String)> = None;
    let mut local: Option<(String, String)> = None;
    for (i, (cxv, implied)) in list.iter().enumerate() {
        let value = comp(Some(*cxv), 1);
        if value.is_empty() {
            continue;
        }
        let authority = comp(cxv.component(4), 1);
        let kind = comp(Some(*cxv), 5);
        let marked = *implied
            || NHS_MARKERS
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&authority) || m.eq_ignore_ascii_case(&kind));
        if marked {
            match NhsNumber::parse(&value) {
                Ok(n) if nhs.is_none() => {
                    let system = cx.map.map.systems.nhs_number.clone();
                    let ext = cx.map.coding(&cx.map.map.coded.nhs_number_status, status).map(|c| {
                        json!([{ "url": VERIFICATION_EXT, "valueCodeableConcept": concept(&c) }])
                    });
                    out.insert(0, json!({ "extension": ext, "system": system, "value": n.as_str() }));
                    nhs = Some((system, n.as_str().to_string()));
                    continue;
                }
                Ok(_) => continue, // the same person's number twice
                Err(e) => cx.warn(format!("{where_} repetition {} holds {value:?}, not a valid NHS number ({e}); kept as a local identifier", i + 1)),
            }
        }
        let system = cx.system(&cx.map.map.systems.local_patient.clone(), &authority, &kind);
        let type_ = cx
            .map
            .coding(&cx.map.map.coded.identifier_type, &kind)
            .map(|c| concept(&c));
        out.push(json!({ "use": "usual", "type": type_, "system": system, "value": value }));
        if local.is_none() {
            local = Some((system, value));
        }
    }
    (out, nhs.or(local))
}

/// A Patient being built: the resource, the identifier (system, value) it is matched on, and
/// a display name for references.
type Built = (Map<String, Value>, (String, String), String);

/// The Patient resource of PID (and PD1), its identity and how to upsert it.
fn build(cx: &mut Context<'_, '_>, pid: &Segment<'_>) -> Result<Built, MapError> {
    let status = text(pid, 32);
    let mut list: Vec<(V2<'_>, bool)> = reps(pid, 3).into_iter().map(|r| (r, false)).collect();
    // v2.3 feeds often carry the NHS number in PID-2 (external id), unmarked.
    if let Some(ext) = pid
        .field(2)
        .and_then(|f| f.repetition(1))
        .filter(|v| !v.is_empty())
    {
        let number = comp(Some(ext), 1);
        if NhsNumber::parse(&number).is_ok()
            && !list.iter().any(|(r, _)| comp(Some(*r), 1) == number)
        {
            list.push((ext, true));
        }
    }
    let (ids, key) = identifiers(cx, "PID-3", &list, &status);
    let key = key.ok_or_else(|| {
        MapError::Missing(
            "PID-3 has no identifier: the patient cannot be matched in the record".into(),
        )
    })?;
    if !ids
        .iter()
        .any(|i| i["system"] == cx.map.map.systems.nhs_number.as_str())
    {
        cx.warn("no valid NHS number in PID-3: the patient is matched on a local identifier");
    }
    let names: Vec<Value> = reps(pid, 5).into_iter().map(human_name).collect();
    let display = names.first().map(|n| {
        let given = n["given"]
            .as_array()
            .and_then(|g| g.first())
            .and_then(Value::as_str)
            .unwrap_or_default();
        format!("{} {}", given, n["family"].as_str().unwrap_or_default())
            .trim()
            .to_string()
    });
    let mut telecom: Vec<Value> = reps(pid, 13)
        .into_iter()
        .map(|v| contact_point(v, "home"))
        .collect();
    telecom.extend(reps(pid, 14).into_iter().map(|v| contact_point(v, "work")));
    let mut p = Map::new();
    p.insert("identifier".into(), ids.into());
    p.insert("name".into(), names.into());
    p.insert("telecom".into(), telecom.into());
    if let Some(g) = cx
        .map
        .coding(&cx.map.map.coded.patient_gender, &text(pid, 8))
    {
        p.insert("gender".into(), g.code.into());
    }
    if let Some(d) = fhir_date(&text(pid, 7)) {
        p.insert("birthDate".into(), d.into());
    }
    let died = fhir_datetime(&text(pid, 29), cx.map.map.local_time);
    match (died, text(pid, 30).as_str()) {
        (Some(d), _) => {
            p.insert("deceasedDateTime".into(), d.into());
        }
        (None, "Y") => {
            p.insert("deceasedBoolean".into(), true.into());
        }
        _ => {}
    }
    p.insert(
        "address".into(),
        reps(pid, 11)
            .into_iter()
            .map(address)
            .collect::<Vec<_>>()
            .into(),
    );
    if let Some(m) = cx
        .map
        .coding(&cx.map.map.coded.patient_marital_status, &text(pid, 16))
    {
        p.insert("maritalStatus".into(), concept(&m));
    }
    if let Some(pd1) = cx.msg.segment("PD1", 1) {
        let mut gps = Vec::new();
        if let Some(xon) = pd1.field(3).and_then(|f| f.repetition(1)) {
            let ods = [comp(Some(xon), 10), comp(Some(xon), 3)]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            gps.extend(organization(cx, &ods, &comp(Some(xon), 1)));
        }
        if let Some(xcn) = pd1
            .field(4)
            .and_then(|f| f.repetition(1))
            .filter(|v| !v.is_empty())
        {
            gps.extend(practitioner(cx, xcn));
        }
        p.insert("generalPractitioner".into(), gps.into());
    }
    Ok((p, key, display.unwrap_or_default()))
}

fn add(
    cx: &mut Context<'_, '_>,
    p: Map<String, Value>,
    key: &(String, String),
    display: String,
) -> PatientRef {
    let profile = cx.map.profile("Patient").map(str::to_string);
    let k = format!("{}|{}", key.0, key.1);
    let reference = cx.bundle.add(
        "Patient",
        &k,
        p,
        Upsert::Identifier {
            system: &key.0,
            value: &key.1,
        },
        profile.as_deref(),
    );
    PatientRef {
        reference,
        display,
        key: k,
    }
}

pub fn map(cx: &mut Context<'_, '_>) -> Result<PatientRef, MapError> {
    let pid = cx
        .msg
        .segment("PID", 1)
        .ok_or_else(|| MapError::Missing("no PID segment: there is no patient to map".into()))?;
    let (p, key, display) = build(cx, &pid)?;
    Ok(add(cx, p, &key, display))
}

/// A40: the surviving patient (PID) `replaces` the one named in MRG-1, which becomes
/// inactive and `replaced-by` the survivor.
pub fn merge(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let pid = cx.msg.segment("PID", 1).ok_or_else(|| {
        MapError::Missing("no PID segment: A40 needs the surviving patient".into())
    })?;
    let mrg = cx.msg.segment("MRG", 1).ok_or_else(|| {
        MapError::Missing("no MRG segment: A40 needs the patient merged away".into())
    })?;
    let (mut survivor, key, display) = build(cx, &pid)?;
    let prior: Vec<(V2<'_>, bool)> = reps(&mrg, 1).into_iter().map(|r| (r, false)).collect();
    let (old_ids, old_key) = identifiers(cx, "MRG-1", &prior, "");
    let old_key = old_key.ok_or_else(|| {
        MapError::Missing("MRG-1 has no identifier: the patient merged away cannot be found".into())
    })?;
    let old_ref = format!(
        "urn:uuid:{}",
        stable_uuid("Patient", &format!("{}|{}", old_key.0, old_key.1))
    );
    let survivor_ref = format!(
        "urn:uuid:{}",
        stable_uuid("Patient", &format!("{}|{}", key.0, key.1))
    );
    survivor.insert(
        "link".into(),
        json!([{ "other": { "reference": old_ref }, "type": "replaces" }]),
    );
    add(cx, survivor, &key, display);
    let mut old = Map::new();
    old.insert("identifier".into(), old_ids.into());
    old.insert("active".into(), false.into());
    old.insert(
        "link".into(),
        json!([{ "other": { "reference": survivor_ref }, "type": "replaced-by" }]),
    );
    add(cx, old, &old_key, String::new());
    Ok(())
}
