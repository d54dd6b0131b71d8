//! The clinical segments of an ADT message, each a resource about its patient: NK1 →
//! RelatedPerson, AL1 → AllergyIntolerance, DG1 → Condition.

use serde_json::{Map, Value, json};
use wyvern_hl7::Segment;

use crate::Context;
use crate::bundle::Upsert;
use crate::datatypes::{address, codeable, comp, concept, contact_point, human_name, reps, text};
use crate::localtime::fhir_datetime;
use crate::patient::PatientRef;

/// NK1, AL1 and DG1 of an ADT message, each a resource about `patient`.
pub fn map(cx: &mut Context<'_, '_>, patient: &PatientRef) {
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    for seg in segments {
        match &*seg.id() {
            "NK1" => related_person(cx, patient, &seg),
            "AL1" => allergy(cx, patient, &seg),
            "DG1" => condition(cx, patient, &seg),
            _ => {}
        }
    }
}

fn related_person(cx: &mut Context<'_, '_>, patient: &PatientRef, nk1: &Segment<'_>) {
    let names: Vec<Value> = reps(nk1, 2).into_iter().map(human_name).collect();
    if names.is_empty() {
        return;
    }
    let rel_code = comp(nk1.field(3).and_then(|f| f.repetition(1)), 1);
    let mut r = Map::new();
    r.insert("patient".into(), patient.json());
    let relationship = cx
        .map
        .coding(&cx.map.map.coded.relationship, &rel_code)
        .map(|c| concept(&c));
    r.insert("relationship".into(), json!([relationship]));
    let key = format!(
        "{}|NK1|{}|{}",
        patient.key,
        text(nk1, 1),
        serde_json::to_string(&names[0]).unwrap_or_default()
    );
    r.insert("name".into(), names.into());
    let mut telecom: Vec<Value> = reps(nk1, 5)
        .into_iter()
        .map(|v| contact_point(v, "home"))
        .collect();
    telecom.extend(reps(nk1, 6).into_iter().map(|v| contact_point(v, "work")));
    r.insert("telecom".into(), telecom.into());
    r.insert(
        "address".into(),
        reps(nk1, 4)
            .into_iter()
            .map(address)
            .collect::<Vec<_>>()
            .into(),
    );
    r.insert("active".into(), true.into());
    let profile = cx.map.profile("RelatedPerson").map(str::to_string);
    cx.bundle
        .add("RelatedPerson", &key, r, Upsert::ById, profile.as_deref());
}

fn allergy(cx: &mut Context<'_, '_>, patient: &PatientRef, al1: &Segment<'_>) {
    let code = codeable(cx, al1.field(3).and_then(|f| f.repetition(1)));
    if code == json!({ "coding": [], "text": "" }) {
        return;
    }
    let mut a = Map::new();
    a.insert("clinicalStatus".into(), json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active" }] }));
    if let Some(c) = cx.map.coding(
        &cx.map.map.coded.allergy_category,
        &comp(al1.field(2).and_then(|f| f.repetition(1)), 1),
    ) {
        a.insert("category".into(), json!([c.code]));
    }
    if let Some(c) = cx.map.coding(
        &cx.map.map.coded.allergy_criticality,
        &comp(al1.field(4).and_then(|f| f.repetition(1)), 1),
    ) {
        a.insert("criticality".into(), c.code.into());
    }
    let key = format!(
        "{}|AL1|{}",
        patient.key,
        serde_json::to_string(&code).unwrap_or_default()
    );
    a.insert("code".into(), code);
    a.insert("patient".into(), patient.json());
    if let Some(d) = fhir_datetime(&text(al1, 6), cx.map.map.local_time) {
        a.insert("onsetDateTime".into(), d.into());
    }
    let reactions: Vec<Value> = reps(al1, 5)
        .into_iter()
        .map(|r| json!({ "text": r.as_str().trim() }))
        .collect();
    if !reactions.is_empty() {
        a.insert("reaction".into(), json!([{ "manifestation": reactions }]));
    }
    let profile = cx.map.profile("AllergyIntolerance").map(str::to_string);
    cx.bundle.add(
        "AllergyIntolerance",
        &key,
        a,
        Upsert::ById,
        profile.as_deref(),
    );
}

fn condition(cx: &mut Context<'_, '_>, patient: &PatientRef, dg1: &Segment<'_>) {
    let mut code = codeable(cx, dg1.field(3).and_then(|f| f.repetition(1)));
    if code["text"].as_str().unwrap_or_default().is_empty() {
        code["text"] = text(dg1, 4).into(); // v2.3: the description in DG1-4
    }
    if code == json!({ "coding": [], "text": "" }) {
        return;
    }
    let recorded = fhir_datetime(&text(dg1, 5), cx.map.map.local_time);
    let key = format!(
        "{}|DG1|{}|{}",
        patient.key,
        serde_json::to_string(&code).unwrap_or_default(),
        recorded.clone().unwrap_or_default()
    );
    let mut c = Map::new();
    c.insert("clinicalStatus".into(), json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active" }] }));
    c.insert("category".into(), json!([{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "encounter-diagnosis", "display": "Encounter Diagnosis" }] }]));
    c.insert("code".into(), code);
    c.insert("subject".into(), patient.json());
    if let Some(r) = recorded {
        c.insert("recordedDate".into(), r.into());
    }
    let profile = cx.map.profile("Condition").map(str::to_string);
    cx.bundle
        .add("Condition", &key, c, Upsert::ById, profile.as_deref());
}
