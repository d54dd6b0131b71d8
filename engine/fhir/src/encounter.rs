//! PV1 (and the event) → Encounter with its class, status, period, ward Location (part of the
//! site's Location when PV1-3.4 is an ODS site code), participants (attending, referring,
//! admitting: Practitioners) and hospitalization. A message without PV1 has no Encounter.

use serde_json::{Map, Value, json};
use wyvern_hl7::Segment;

use crate::Context;
use crate::bundle::Upsert;
use crate::datatypes::{coding, comp, concept, looks_like_ods, organization, practitioner, text};
use crate::localtime::fhir_datetime;
use crate::patient::PatientRef;

pub fn map(cx: &mut Context<'_, '_>, patient: &PatientRef, event: &str) {
    let Some(pv1) = cx.msg.segment("PV1", 1) else {
        cx.warn("no PV1 segment: no Encounter made");
        return;
    };
    let zone = cx.map.map.local_time;
    let start = fhir_datetime(&text(&pv1, 44), zone);
    let end = fhir_datetime(&text(&pv1, 45), zone);
    let visit = pv1.field(19).and_then(|f| f.repetition(1));
    let visit_number = comp(visit, 1);
    let (key, upsert_system) = if visit_number.is_empty() {
        match &start {
            Some(s) => (format!("{}|admitted|{s}", patient.key), None),
            None => {
                cx.warn("PV1 has neither a visit number (PV1-19) nor an admit time (PV1-44): no Encounter made");
                return;
            }
        }
    } else {
        let authority = comp(visit.and_then(|v| v.component(4)), 1);
        let system = cx.system(&cx.map.map.systems.visit_number.clone(), &authority, "");
        (format!("{system}|{visit_number}"), Some(system))
    };
    let status = match event {
        "A03" => "finished",
        "A05" => "planned",
        "A11" => "cancelled",
        "A08" if end.is_some() => "finished",
        _ => "in-progress",
    };
    let class_code = text(&pv1, 2);
    let class = match cx
        .map
        .coding(&cx.map.map.coded.encounter_class, &class_code)
    {
        Some(c) => coding(&c),
        None => {
            cx.warn(format!(
                "PV1-2 patient class {class_code:?} has no mapping: Encounter.class is 'unknown'"
            ));
            json!({ "system": "http://terminology.hl7.org/CodeSystem/data-absent-reason", "code": "unknown", "display": "Unknown" })
        }
    };
    let mut e = Map::new();
    if let Some(system) = &upsert_system {
        e.insert(
            "identifier".into(),
            json!([{ "system": system, "value": visit_number }]),
        );
    }
    e.insert("status".into(), status.into());
    e.insert("class".into(), class);
    if let Some(p) = cx
        .map
        .coding(&cx.map.map.coded.encounter_priority, &text(&pv1, 4))
    {
        e.insert("priority".into(), concept(&p));
    }
    e.insert("subject".into(), patient.json());
    let participants: Vec<Value> = [(7, "ATND", "attender"), (8, "REF", "referrer"), (17, "ADM", "admitter")]
        .into_iter()
        .filter_map(|(n, code, display)| {
            let xcn = pv1.field(n).and_then(|f| f.repetition(1)).filter(|v| !v.is_empty())?;
            let who = practitioner(cx, xcn)?;
            Some(json!({
                "type": [{ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v3-ParticipationType", "code": code, "display": display }] }],
                "individual": who,
            }))
        })
        .collect();
    e.insert("participant".into(), participants.into());
    e.insert("period".into(), json!({ "start": start, "end": end }));
    let hospitalization = json!({
        "admitSource": code_as_is("http://terminology.hl7.org/CodeSystem/v2-0023", &text(&pv1, 14)),
        "dischargeDisposition": code_as_is("http://terminology.hl7.org/CodeSystem/v2-0112", &text(&pv1, 36)),
    });
    e.insert("hospitalization".into(), hospitalization);
    if let Some(loc) = location(cx, &pv1) {
        let state = if status == "finished" {
            "completed"
        } else {
            "active"
        };
        e.insert(
            "location".into(),
            json!([{ "location": loc, "status": state }]),
        );
    }
    let facility = cx.facility.clone();
    if looks_like_ods(&facility) {
        let org = organization(cx, &facility, "");
        e.insert("serviceProvider".into(), org.into());
    }
    let profile = cx.map.profile("Encounter").map(str::to_string);
    let upsert = match &upsert_system {
        Some(system) => Upsert::Identifier {
            system,
            value: &visit_number,
        },
        None => Upsert::ById,
    };
    cx.bundle
        .add("Encounter", &key, e, upsert, profile.as_deref());
}

fn code_as_is(system: &str, code: &str) -> Value {
    if code.is_empty() {
        return Value::Null;
    }
    json!({ "coding": [{ "system": system, "code": code }] })
}

/// PV1-3 (point of care^room^bed^facility^…^description) → the ward's Location, part of the
/// site's when the facility is an ODS site code.
fn location(cx: &mut Context<'_, '_>, pv1: &Segment<'_>) -> Option<Value> {
    let pl = pv1.field(3).and_then(|f| f.repetition(1))?;
    let ward = comp(Some(pl), 1);
    if ward.is_empty() {
        return None;
    }
    let (room, bed, site, description) = (
        comp(Some(pl), 2),
        comp(Some(pl), 3),
        comp(pl.component(4), 1),
        comp(Some(pl), 9),
    );
    let mut part_of = None;
    if looks_like_ods(&site) {
        let system = cx.map.map.systems.ods_site.clone();
        let mut s = Map::new();
        s.insert(
            "identifier".into(),
            json!([{ "system": system, "value": site }]),
        );
        let profile = cx.map.profile("Location").map(str::to_string);
        part_of = Some(cx.bundle.add(
            "Location",
            &format!("{system}|{site}"),
            s,
            Upsert::ById,
            profile.as_deref(),
        ));
    }
    let system = cx.system(&cx.map.map.systems.local_location.clone(), "", "");
    let mut w = Map::new();
    w.insert(
        "identifier".into(),
        json!([{ "system": system, "value": ward }]),
    );
    w.insert(
        "name".into(),
        (if description.is_empty() {
            ward.clone()
        } else {
            description
        })
        .into(),
    );
    w.insert("physicalType".into(), json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/location-physical-type", "code": "wa", "display": "Ward" }] }));
    if let Some(p) = part_of {
        w.insert("partOf".into(), json!({ "reference": p }));
    }
    let profile = cx.map.profile("Location").map(str::to_string);
    let reference = cx.bundle.add(
        "Location",
        &format!("{system}|{ward}"),
        w,
        Upsert::ById,
        profile.as_deref(),
    );
    let display = [ward, room, bed]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    Some(json!({ "reference": reference, "display": display }))
}
