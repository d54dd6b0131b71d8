//! Problems (PPR^PC1/PC2/PC3: add, update, delete) → a Condition on the patient's problem list
//! per PRB: the problem (PRB-3), when it began (PRB-16) and was recorded (PRB-2, else PRB-7),
//! its life cycle (PRB-14: active, inactive, resolved …) and confirmation (PRB-13), kept under
//! the problem's instance id (PRB-4) so an update or a delete lands on the same resource. A
//! delete (PC3, or PRB-1 DE) is entered-in-error, which FHIR allows only without a clinical
//! status.

use wyvern_hl7::{IndexedSegment, Segment};

use crate::bundle::Upsert;
use crate::datatypes::{codeable, comp, first_rep, fixed_concept, identifier, text};
use crate::json::Item;
use crate::localtime::fhir_datetime;
use crate::patient::{self, PatientRef};
use crate::{Context, MapError};

const CLINICAL: &str = "http://terminology.hl7.org/CodeSystem/condition-clinical";
const VERIFICATION: &str = "http://terminology.hl7.org/CodeSystem/condition-ver-status";
const CATEGORY: &str = "http://terminology.hl7.org/CodeSystem/condition-category";

pub fn map(cx: &mut Context<'_, '_>, deleted: bool) -> Result<(), MapError> {
    let patient = patient::map(cx)?;
    let prbs: Vec<Segment<'_>> = cx
        .msg
        .segments()
        .filter(|s| s.id_bytes() == b"PRB")
        .collect();
    if prbs.is_empty() {
        return Err(MapError::Missing(
            "no PRB segment: there is no problem to map".into(),
        ));
    }
    for prb in &prbs {
        condition(cx, &patient, &prb.indexed_to(16), deleted);
    }
    Ok(())
}

fn condition(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    prb: &IndexedSegment<'_>,
    deleted: bool,
) {
    let map = cx.map;
    let zone = map.map.local_time;
    let first = |n: usize| first_rep(Some(prb), n);
    let code = codeable(cx, first(3));
    let instance = comp(first(4), 1).into_owned();
    let system = cx.system(&map.map.systems.problem, &comp(first(4), 2), "");
    let deleted = deleted || comp(first(1), 1) == "DE";
    let mut c = cx.writer();
    if !instance.is_empty() {
        identifier(&mut c, &system, &instance);
    }
    if deleted {
        fixed_concept(
            &mut c,
            "verificationStatus",
            VERIFICATION,
            "entered-in-error",
            "Entered in Error",
        );
    } else {
        // PRB-14 life cycle and PRB-13 confirmation: a code or a text that is exactly one of
        // FHIR's words ("not resolved" is none of them, and is left as active).
        let exact = |n: usize, codes: &[&'static str]| -> Option<&'static str> {
            let v = first(n);
            [comp(v, 1), comp(v, 2)].into_iter().find_map(|t| {
                let t = t.trim().to_ascii_lowercase();
                codes.iter().copied().find(|c| *c == t)
            })
        };
        let life = [
            "active",
            "recurrence",
            "relapse",
            "inactive",
            "remission",
            "resolved",
        ];
        let clinical = exact(14, &life).unwrap_or("active");
        fixed_concept(&mut c, "clinicalStatus", CLINICAL, clinical, "");
        let confirmation = [
            "unconfirmed",
            "provisional",
            "differential",
            "confirmed",
            "refuted",
        ];
        let verification = exact(13, &confirmation);
        if let Some(v) = verification {
            fixed_concept(&mut c, "verificationStatus", VERIFICATION, v, "");
        }
    }
    c.array("category", |w| {
        fixed_concept(w, Item, CATEGORY, "problem-list-item", "Problem List Item");
    });
    if code.is_empty() {
        cx.warn("PRB-3 has no problem code: Condition.code is empty");
    }
    code.write(&mut c, "code");
    patient.write(&mut c, "subject");
    c.opt_str(
        "onsetDateTime",
        fhir_datetime(&text(prb, 16), zone).as_deref(),
    );
    // When the problem was established (PRB-7), else this action's time (PRB-2).
    let recorded =
        fhir_datetime(&text(prb, 7), zone).or_else(|| fhir_datetime(&text(prb, 2), zone));
    c.opt_str("recordedDate", recorded.as_deref());
    let key = if instance.is_empty() {
        [&*patient.key, "|PRB|", &code.key()].concat()
    } else {
        [&*system, "|", &instance].concat()
    };
    cx.add("Condition", &[&key], c, Upsert::ById);
}
