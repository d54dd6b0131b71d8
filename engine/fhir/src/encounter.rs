//! PV1 (and the event) → Encounter with its class, status, period, ward Location (part of the
//! site's Location when PV1-3.4 is an ODS site code), participants (attending, referring,
//! admitting: Practitioners) and hospitalization. A message without PV1 has no Encounter.

use wyvern_hl7::IndexedSegment;

use crate::Context;
use crate::bundle::Upsert;
use crate::datatypes::{
    Ref, coding, comp, concept, fixed_concept, identifier, joined, looks_like_ods, organization,
    practitioner, text,
};
use crate::events::VisitStatus;
use crate::json::{Item, JsonWriter};
use crate::localtime::fhir_datetime;
use crate::patient::PatientRef;

const PARTICIPATION: &str = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType";

pub fn map(cx: &mut Context<'_, '_>, patient: &PatientRef, state: VisitStatus) {
    let Some(pv1) = cx.segment("PV1", 45) else {
        cx.warn("no PV1 segment: no Encounter made");
        return;
    };
    let map = cx.map;
    let zone = map.map.local_time;
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
        let system = cx.system(&map.map.systems.visit_number, &authority, "");
        (format!("{system}|{visit_number}"), Some(system))
    };
    let status = state.fhir(end.is_some());
    let mut e = cx.writer();
    if let Some(system) = &upsert_system {
        identifier(&mut e, system, &visit_number);
    }
    e.str("status", status);
    let class_code = text(&pv1, 2);
    match map.coding(&map.map.coded.encounter_class, &class_code) {
        Some(c) => coding(&mut e, "class", &c),
        None => {
            cx.warn(format!(
                "PV1-2 patient class {class_code:?} has no mapping: Encounter.class is 'unknown'"
            ));
            e.object("class", |w| {
                w.str(
                    "system",
                    "http://terminology.hl7.org/CodeSystem/data-absent-reason",
                );
                w.str("code", "unknown");
                w.str("display", "Unknown");
            });
        }
    }
    if let Some(p) = map.coding(&map.map.coded.encounter_priority, &text(&pv1, 4)) {
        concept(&mut e, "priority", &p);
    }
    patient.write(&mut e, "subject");
    let open = e.open_array("participant");
    for (n, code, display) in [
        (7, "ATND", "attender"),
        (8, "REF", "referrer"),
        (17, "ADM", "admitter"),
    ] {
        let Some(xcn) = pv1
            .field(n)
            .and_then(|f| f.repetition(1))
            .filter(|v| !v.is_empty())
        else {
            continue;
        };
        if let Some(who) = practitioner(cx, xcn) {
            e.object(Item, |w| {
                w.array("type", |w| {
                    fixed_concept(w, Item, PARTICIPATION, code, display);
                });
                who.write(w, "individual");
            });
        }
    }
    e.close(open);
    e.object("period", |w| {
        w.opt_str("start", start.as_deref());
        w.opt_str("end", end.as_deref());
    });
    e.object("hospitalization", |w| {
        code_as_is(
            w,
            "admitSource",
            "http://terminology.hl7.org/CodeSystem/v2-0023",
            &text(&pv1, 14),
        );
        code_as_is(
            w,
            "dischargeDisposition",
            "http://terminology.hl7.org/CodeSystem/v2-0112",
            &text(&pv1, 36),
        );
    });
    if let Some(loc) = location(cx, &pv1) {
        let state = match status {
            "planned" => "planned",
            "in-progress" => "active",
            _ => "completed",
        };
        e.array("location", |w| {
            w.object(Item, |w| {
                loc.write(w, "location");
                w.str("status", state);
            })
        });
    }
    let facility = cx.facility.clone();
    if looks_like_ods(&facility)
        && let Some(org) = organization(cx, &facility, "")
    {
        org.write(&mut e, "serviceProvider");
    }
    let upsert = match &upsert_system {
        Some(system) => Upsert::Identifier {
            system,
            value: &visit_number,
        },
        None => Upsert::ById,
    };
    cx.add("Encounter", &[&key], e, upsert);
}

fn code_as_is(w: &mut JsonWriter, k: &'static str, system: &str, code: &str) {
    if code.is_empty() {
        return;
    }
    w.object(k, |w| {
        w.array("coding", |w| {
            w.object(Item, |w| {
                w.str("system", system);
                w.str("code", code);
            })
        })
    });
}

/// PV1-3 → the ward's Location ([`place`]).
fn location(cx: &mut Context<'_, '_>, pv1: &IndexedSegment<'_>) -> Option<Ref> {
    place(cx, pv1.field(3).and_then(|f| f.repetition(1))?)
}

/// A PL (point of care^room^bed^facility^…^description) → the ward's Location, part of the
/// site's when the facility is an ODS site code.
pub(crate) fn place(cx: &mut Context<'_, '_>, pl: wyvern_hl7::Value<'_>) -> Option<Ref> {
    let map = cx.map;
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
        let system = &map.map.systems.ods_site;
        let mut s = cx.writer();
        identifier(&mut s, system, &site);
        part_of = Some(cx.add("Location", &[system, "|", &site], s, Upsert::ById));
    }
    let system = cx.system(&map.map.systems.local_location, "", "");
    let mut w = cx.writer();
    identifier(&mut w, &system, &ward);
    w.str(
        "name",
        if description.is_empty() {
            &ward
        } else {
            &description
        },
    );
    fixed_concept(
        &mut w,
        "physicalType",
        "http://terminology.hl7.org/CodeSystem/location-physical-type",
        "wa",
        "Ward",
    );
    if let Some(p) = part_of {
        w.object("partOf", |w| w.str("reference", p.url()));
    }
    let reference = cx.add("Location", &[&system, "|", &ward], w, Upsert::ById);
    let display = joined(&[&ward, &room, &bed]);
    Some(Ref { reference, display })
}
