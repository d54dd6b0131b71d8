//! Immunisation (VXU^V04) → an Immunization per RXA: the vaccine (RXA-5, through the coding
//! systems table: SNOMED, dm+d, CVX), when it was given (RXA-3), the dose (RXA-6/7), lot and
//! expiry (RXA-15/16), manufacturer (RXA-17), who gave it (RXA-10), the route and site (the RXR
//! after it), whether the record is the giver's own (RXA-9: `00` new record, else historical),
//! and its status: RXA-20 through table 0322 (completed, or not-done with RXA-18's reason),
//! entered-in-error when RXA-21 says D (delete). Kept under the patient, vaccine and time, so
//! an update (RXA-21 U) or a delete lands on the same resource.

use wyvern_hl7::{IndexedSegment, Segment};

use crate::bundle::Upsert;
use crate::datatypes::{codeable, comp, first_rep, practitioner, text};
use crate::json::Item;
use crate::localtime::{fhir_date, fhir_datetime};
use crate::patient::{self, PatientRef};
use crate::{Context, MapError};

pub fn map(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let patient = patient::map(cx)?;
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let mut given = 0;
    for (i, rxa) in segments.iter().enumerate() {
        if rxa.id_bytes() != b"RXA" {
            continue;
        }
        // Its RXR, if one follows before the next RXA.
        let rxr = segments[i + 1..]
            .iter()
            .take_while(|s| s.id_bytes() != b"RXA")
            .find(|s| s.id_bytes() == b"RXR")
            .map(|s| s.indexed_to(2));
        // The ORC before it: ORC-3, the giver's id for this immunisation.
        let orc_id = segments[..i]
            .iter()
            .rev()
            .take_while(|s| s.id_bytes() != b"RXA")
            .find(|s| s.id_bytes() == b"ORC")
            .map(|s| comp(s.indexed_to(3).field(3).and_then(|f| f.repetition(1)), 1).into_owned())
            .filter(|id| !id.is_empty());
        immunization(
            cx,
            &patient,
            &rxa.indexed_to(21),
            rxr.as_ref(),
            orc_id.as_deref(),
        );
        given += 1;
    }
    if given == 0 {
        return Err(MapError::Missing(
            "VXU^V04 without an RXA segment: there is no immunisation to map".into(),
        ));
    }
    Ok(())
}

fn immunization(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    rxa: &IndexedSegment<'_>,
    rxr: Option<&IndexedSegment<'_>>,
    orc_id: Option<&str>,
) {
    let map = cx.map;
    let zone = map.map.local_time;
    let first = |n: usize| first_rep(Some(rxa), n);
    let vaccine = codeable(cx, first(5));
    let when = fhir_datetime(&text(rxa, 3), zone);
    let status = if comp(first(21), 1) == "D" {
        "entered-in-error"
    } else {
        map.coding(&map.map.coded.completion_status, &comp(first(20), 1))
            .map_or("completed", |c| c.code)
    };
    let mut w = cx.writer();
    w.str("status", status);
    if status == "not-done" {
        let reason = codeable(cx, first(18));
        if !reason.is_empty() {
            reason.write(&mut w, "statusReason");
        }
    }
    if vaccine.is_empty() {
        cx.warn("RXA-5 has no vaccine code: Immunization.vaccineCode is empty");
    }
    vaccine.write(&mut w, "vaccineCode");
    patient.write(&mut w, "patient");
    match &when {
        Some(t) => w.str("occurrenceDateTime", t),
        None => {
            cx.warn("RXA-3 has no time: Immunization.occurrenceString says so");
            w.str("occurrenceString", "not recorded");
        }
    }
    let source = comp(first(9), 1);
    if !source.is_empty() {
        // NIP001: 00 is the giver's own record; 01–08 are taken from elsewhere.
        w.bool("primarySource", source == "00");
    }
    let manufacturer = comp(first(17), 2);
    if !manufacturer.is_empty() {
        w.object("manufacturer", |w| w.str("display", &manufacturer));
    }
    w.str("lotNumber", &text(rxa, 15));
    w.opt_str("expirationDate", fhir_date(&text(rxa, 16)).as_deref());
    if let Some(rxr) = rxr {
        for (n, key) in [(2, "site"), (1, "route")] {
            let c = codeable(cx, rxr.field(n).and_then(|f| f.repetition(1)));
            if !c.is_empty() {
                c.write(&mut w, key);
            }
        }
    }
    // RXA-6: the amount; 999 means "not recorded" (CDC's convention, which UK feeds follow).
    if let Some(amount) = crate::results::decimal(&text(rxa, 6)).filter(|a| {
        a != "999" && !a.starts_with('-') && !a.trim_start_matches(['0', '.']).is_empty()
    }) {
        let unit = comp(first(7), 1);
        w.object("doseQuantity", |w| {
            w.raw("value", &amount);
            w.str("unit", &unit);
        });
    }
    if let Some(who) = first(10)
        .filter(|v| !v.is_empty())
        .and_then(|v| practitioner(cx, v))
    {
        w.array("performer", |w| {
            w.object(Item, |w| who.write(w, "actor"));
        });
    }
    // Kept under the giver's immunisation id (ORC-3) when the message has one, else the
    // patient, the vaccine's code (not its words, which senders vary) and the time.
    let code = [comp(first(5), 3), comp(first(5), 1)].join("|");
    let key = match orc_id {
        Some(id) => [&*patient.key, "|IMM|", id, "", ""],
        None => [
            &*patient.key,
            "|RXA|",
            &code,
            "|",
            when.as_deref().unwrap_or_default(),
        ],
    };
    cx.add("Immunization", &key, w, Upsert::ById);
}
