//! The clinical segments of an ADT message, each a resource about its patient: NK1 →
//! RelatedPerson, AL1 and IAM (A60's adverse reactions) → AllergyIntolerance, DG1 → Condition.

use wyvern_hl7::IndexedSegment;

use crate::Context;
use crate::bundle::Upsert;
use crate::datatypes::{
    address, codeable, comp, concept, fixed_concept, human_name, reps, telecom, text,
};
use crate::json::Item;
use crate::localtime::fhir_datetime;
use crate::patient::PatientRef;

/// Where an allergy segment keeps what AL1 and IAM do not share (type, code, severity and
/// reaction are fields 2–5 of both).
#[derive(Clone, Copy)]
enum AllergySegment {
    /// AL1-6: identification date.
    Al1,
    /// IAM-6: action code (A add, U update, X no change, D delete); IAM-11: onset date.
    Iam,
}

/// NK1, AL1, IAM and DG1 of an ADT message, each a resource about `patient`.
pub fn map(cx: &mut Context<'_, '_>, patient: &PatientRef) {
    let msg = cx.msg;
    for seg in msg.segments() {
        match seg.id_bytes() {
            b"NK1" => related_person(cx, patient, &seg.indexed_to(6)),
            b"AL1" => allergy(cx, patient, &seg.indexed_to(6), AllergySegment::Al1),
            b"IAM" => allergy(cx, patient, &seg.indexed_to(11), AllergySegment::Iam),
            b"DG1" => condition(cx, patient, &seg.indexed_to(5)),
            _ => {}
        }
    }
}

fn related_person(cx: &mut Context<'_, '_>, patient: &PatientRef, nk1: &IndexedSegment<'_>) {
    let map = cx.map;
    let names: Vec<_> = reps(nk1, 2).map(human_name).collect();
    let Some(first) = names.first() else {
        return;
    };
    let rel_code = comp(nk1.field(3).and_then(|f| f.repetition(1)), 1);
    let mut r = cx.writer();
    patient.write(&mut r, "patient");
    if let Some(c) = map.coding(&map.map.coded.relationship, &rel_code) {
        r.array("relationship", |w| concept(w, Item, &c));
    }
    let key = [&*patient.key, "|NK1|", &text(nk1, 1), "|", &first.key()];
    r.array("name", |w| names.iter().for_each(|n| n.write(w, Item)));
    telecom(&mut r, nk1, 5, 6);
    r.array("address", |w| {
        reps(nk1, 4).for_each(|v| address(w, Item, v))
    });
    r.bool("active", true);
    cx.add("RelatedPerson", &key, r, Upsert::ById);
}

/// An allergy as an AllergyIntolerance, keyed by patient and allergen, so an IAM update (A60)
/// and an earlier AL1 about the same allergen are one resource. IAM's action D (delete) marks
/// it entered-in-error (FHIR then forbids a clinical status).
fn allergy(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    al1: &IndexedSegment<'_>,
    kind: AllergySegment,
) {
    let map = cx.map;
    let code = codeable(cx, al1.field(3).and_then(|f| f.repetition(1)));
    if code.is_empty() {
        return;
    }
    let (onset_field, deleted) = match kind {
        AllergySegment::Al1 => (6, false),
        AllergySegment::Iam => (
            11,
            comp(al1.field(6).and_then(|f| f.repetition(1)), 1) == "D",
        ),
    };
    let mut a = cx.writer();
    if deleted {
        fixed_concept(
            &mut a,
            "verificationStatus",
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification",
            "entered-in-error",
            "Entered in Error",
        );
    } else {
        fixed_concept(
            &mut a,
            "clinicalStatus",
            "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical",
            "active",
            "",
        );
    }
    if let Some(c) = map.coding(&map.map.coded.allergy_category, &text(al1, 2)) {
        a.array("category", |w| w.str(Item, c.code));
    }
    if let Some(c) = map.coding(&map.map.coded.allergy_criticality, &text(al1, 4)) {
        a.str("criticality", c.code);
    }
    let code_key = code.key();
    code.write(&mut a, "code");
    patient.write(&mut a, "patient");
    if let Some(d) = fhir_datetime(&text(al1, onset_field), map.map.local_time) {
        a.str("onsetDateTime", &d);
    }
    // AL1-5 is free text (ST); IAM-5 a coded reaction (CWE).
    let reactions: Vec<_> = reps(al1, 5)
        .map(|r| match kind {
            AllergySegment::Al1 => (None, r.as_str().trim().to_string()),
            AllergySegment::Iam => (Some(codeable(cx, Some(r))), String::new()),
        })
        .collect();
    a.array("reaction", |w| {
        w.object(Item, |w| {
            w.array("manifestation", |w| {
                for (coded, text) in &reactions {
                    match coded {
                        Some(c) if !c.is_empty() => c.write(w, Item),
                        Some(_) => {}
                        None => w.object(Item, |w| w.str("text", text)),
                    }
                }
            })
        })
    });
    cx.add(
        "AllergyIntolerance",
        &[&patient.key, "|AL1|", &code_key],
        a,
        Upsert::ById,
    );
}

fn condition(cx: &mut Context<'_, '_>, patient: &PatientRef, dg1: &IndexedSegment<'_>) {
    let map = cx.map;
    let mut code = codeable(cx, dg1.field(3).and_then(|f| f.repetition(1)));
    if code.text.is_empty() {
        code.text = text(dg1, 4); // v2.3: the description in DG1-4
    }
    if code.is_empty() {
        return;
    }
    let recorded = fhir_datetime(&text(dg1, 5), map.map.local_time);
    let code_key = code.key();
    let key = [
        &*patient.key,
        "|DG1|",
        &code_key,
        "|",
        recorded.as_deref().unwrap_or_default(),
    ];
    let mut c = cx.writer();
    fixed_concept(
        &mut c,
        "clinicalStatus",
        "http://terminology.hl7.org/CodeSystem/condition-clinical",
        "active",
        "",
    );
    c.array("category", |w| {
        fixed_concept(
            w,
            Item,
            "http://terminology.hl7.org/CodeSystem/condition-category",
            "encounter-diagnosis",
            "Encounter Diagnosis",
        )
    });
    code.write(&mut c, "code");
    patient.write(&mut c, "subject");
    c.opt_str("recordedDate", recorded.as_deref());
    cx.add("Condition", &key, c, Upsert::ById);
}
