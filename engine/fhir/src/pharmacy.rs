//! Pharmacy: RDE^O11/O25 (an encoded order, a refill authorised) → a MedicationRequest per
//! RXE; RDS^O13 (a dispense) → a MedicationDispense per RXD, pointing at the request by the
//! placer's order number. The medicine is RXE-2 / RXD-2 through the coding systems table
//! (dm+d, SNOMED). A request's status comes from ORC-1 through table 0119, in the request's own
//! words (a revoked order is `cancelled`, one on hold `on-hold`).

use wyvern_hl7::{IndexedSegment, Segment};

use crate::bundle::Upsert;
use crate::datatypes::{codeable, comp, first_rep, practitioner, text};
use crate::json::{Item, JsonWriter};
use crate::localtime::fhir_datetime;
use crate::patient::{self, PatientRef};
use crate::results::decimal;
use crate::{Context, MapError};

/// What a pharmacy message carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Pharmacy {
    Order,
    Dispense,
}

pub fn map(cx: &mut Context<'_, '_>, kind: Pharmacy) -> Result<(), MapError> {
    let patient = patient::map(cx)?;
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let (wanted, id): (&[u8], &str) = match kind {
        Pharmacy::Order => (b"RXE", "RXE"),
        Pharmacy::Dispense => (b"RXD", "RXD"),
    };
    let mut found = 0;
    let mut last_orc = None;
    for (i, seg) in segments.iter().enumerate() {
        if seg.id_bytes() == b"ORC" {
            last_orc = Some(i);
        }
        if seg.id_bytes() != wanted {
            continue;
        }
        // The ORC before it, and the RXR after it (before the next of its kind).
        let orc = last_orc.map(|j| segments[j].indexed_to(12));
        let rxr = segments[i + 1..]
            .iter()
            .take_while(|s| s.id_bytes() != wanted)
            .find(|s| s.id_bytes() == b"RXR")
            .map(|s| s.indexed_to(1));
        match kind {
            Pharmacy::Order => request(
                cx,
                &patient,
                orc.as_ref(),
                &seg.indexed_to(27),
                rxr.as_ref(),
            ),
            Pharmacy::Dispense => {
                dispense(cx, &patient, orc.as_ref(), &seg.indexed_to(9), rxr.as_ref())
            }
        }
        found += 1;
    }
    if found == 0 {
        return Err(MapError::Missing(format!(
            "no {id} segment: there is no medication to map"
        )));
    }
    Ok(())
}

/// The placer's order number (ORC-2) as `(system, number)`, when there is one.
fn placer(cx: &Context<'_, '_>, orc: Option<&IndexedSegment<'_>>) -> Option<(String, String)> {
    let v = first_rep(orc, 2);
    let number = comp(v, 1);
    (!number.is_empty()).then(|| {
        let system = cx.system(&cx.map.map.systems.placer_order, &comp(v, 2), "");
        (system, number.into_owned())
    })
}

/// The key a MedicationRequest is kept under, from its placer number.
fn request_key(placer: &(String, String)) -> String {
    format!("{}|{}|medication", placer.0, placer.1)
}

fn request(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    orc: Option<&IndexedSegment<'_>>,
    rxe: &IndexedSegment<'_>,
    rxr: Option<&IndexedSegment<'_>>,
) {
    let map = cx.map;
    let zone = map.map.local_time;
    let medicine = codeable(cx, first_rep(Some(rxe), 2));
    let ids = placer(cx, orc);
    // In the request's own words: a discontinued medicine is stopped, a withdrawn order
    // cancelled; a status change (SC) is read from ORC-5.
    let control = orc.map(|o| text(o, 1)).unwrap_or_default();
    let status = match &*control {
        "DC" | "OD" | "DR" => "stopped",
        "CA" | "OC" | "CR" | "UA" => "cancelled",
        _ => {
            let order_status = orc.map(|o| text(o, 5)).unwrap_or_default();
            let coded = match &*control {
                "SC" | "" => map.coding(&map.map.coded.order_status, &order_status),
                _ => map.coding(&map.map.coded.order_control, &control),
            };
            match coded.map(|c| c.code) {
                Some("revoked") => "cancelled",
                Some("on-hold") => "on-hold",
                Some("completed") => "completed",
                Some("entered-in-error") => "entered-in-error",
                Some(_) | None => "active",
            }
        }
    };
    let authored = orc.and_then(|o| fhir_datetime(&text(o, 9), zone));
    let mut m = cx.writer();
    if let Some((system, value)) = &ids {
        crate::datatypes::identifier(&mut m, system, value);
    }
    m.str("status", status);
    m.str("intent", "order");
    if medicine.is_empty() {
        cx.warn("RXE-2 has no medicine code: MedicationRequest.medicationCodeableConcept is empty");
    }
    medicine.write(&mut m, "medicationCodeableConcept");
    patient.write(&mut m, "subject");
    m.opt_str("authoredOn", authored.as_deref());
    if let Some(who) = first_rep(orc, 12)
        .filter(|v| !v.is_empty())
        .and_then(|v| practitioner(cx, v))
    {
        who.write(&mut m, "requester");
    }
    let instructions = codeable(cx, first_rep(Some(rxe), 7));
    let route = codeable(cx, first_rep(rxr, 1));
    let dose = decimal(&text(rxe, 3));
    let unit = comp(first_rep(Some(rxe), 5), 1);
    m.array("dosageInstruction", |w| {
        w.object(Item, |w| {
            w.str("text", &instructions.text);
            if !route.is_empty() {
                route.write(w, "route");
            }
            if let Some(d) = &dose {
                w.array("doseAndRate", |w| {
                    w.object(Item, |w| quantity(w, "doseQuantity", d, &unit));
                });
            }
        });
    });
    let amount = decimal(&text(rxe, 10));
    let refills: Option<u32> = text(rxe, 12).trim().parse().ok();
    m.object("dispenseRequest", |w| {
        if let Some(n) = refills {
            w.raw("numberOfRepeatsAllowed", &n.to_string());
        }
        if let Some(a) = &amount {
            quantity(w, "quantity", a, &comp(first_rep(Some(rxe), 11), 1));
        }
    });
    let key = match &ids {
        Some(p) => request_key(p),
        None => [
            &*patient.key,
            "|RXE|",
            &medicine.key(),
            "|",
            authored.as_deref().unwrap_or_default(),
        ]
        .concat(),
    };
    cx.add("MedicationRequest", &[&key], m, Upsert::ById);
}

fn dispense(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    orc: Option<&IndexedSegment<'_>>,
    rxd: &IndexedSegment<'_>,
    rxr: Option<&IndexedSegment<'_>>,
) {
    let map = cx.map;
    let zone = map.map.local_time;
    let medicine = codeable(cx, first_rep(Some(rxd), 2));
    let handed = fhir_datetime(&text(rxd, 3), zone);
    let prescription = text(rxd, 7).trim().to_string();
    let ids = placer(cx, orc);
    let mut d = cx.writer();
    if !prescription.is_empty() {
        let system = cx.system(&map.map.systems.prescription, "", "");
        crate::datatypes::identifier(&mut d, &system, &prescription);
    }
    d.str("status", "completed");
    medicine.write(&mut d, "medicationCodeableConcept");
    patient.write(&mut d, "subject");
    // The prescription by its placer number (a logical reference): the request may never
    // have reached this record, and a server that checks references on write would refuse a
    // literal one to a resource it does not hold.
    if let Some((system, value)) = &ids {
        d.array("authorizingPrescription", |w| {
            w.object(Item, |w| {
                w.str("type", "MedicationRequest");
                w.object("identifier", |w| {
                    w.str("system", system);
                    w.str("value", value);
                });
            });
        });
    }
    if let Some(a) = decimal(&text(rxd, 4)) {
        quantity(&mut d, "quantity", &a, &comp(first_rep(Some(rxd), 5), 1));
    }
    d.opt_str("whenHandedOver", handed.as_deref());
    let route = codeable(cx, first_rep(rxr, 1));
    if !route.is_empty() {
        d.array("dosageInstruction", |w| {
            w.object(Item, |w| route.write(w, "route"))
        });
    }
    let key = [
        &*patient.key,
        "|RXD|",
        &medicine.key(),
        "|",
        handed.as_deref().unwrap_or_default(),
        "|",
        &prescription,
    ];
    cx.add("MedicationDispense", &key, d, Upsert::ById);
}

/// `{ value, unit }` from a v2 number already checked as a decimal.
fn quantity(w: &mut JsonWriter, k: &'static str, value: &str, unit: &str) {
    w.object(k, |w| {
        w.raw("value", value);
        w.str("unit", unit);
    });
}
