//! Orders (ORM^O01, OML^O21, OMG^O19) → a ServiceRequest per order, with the Specimens an
//! OML sends (SPM). An order is an ORC and the OBR after it (an OBR without an ORC, as some
//! v2.3 senders write, is an order too). Its status comes from the order control code (ORC-1)
//! through table 0119, or from the order status (ORC-5, table 0038) when ORC-1 says only that
//! the status changed (SC) or is missing; the placer's order number (ORC-2, else OBR-2) is
//! what the ServiceRequest is kept under, since the filler's is often given later.

use wyvern_hl7::{IndexedSegment, Segment};

use crate::bundle::{StableId, Upsert};
use crate::datatypes::{codeable, comp, first_rep, practitioner, text};
use crate::json::{Item, JsonWriter};
use crate::localtime::fhir_datetime;
use crate::patient::{self, PatientRef};
use crate::{Context, MapError};

const V2_0203: &str = "http://terminology.hl7.org/CodeSystem/v2-0203";

pub fn map(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let patient = patient::map(cx)?;
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    // An order starts at each ORC, and at an OBR no ORC opened.
    let mut starts = Vec::new();
    let mut orc_open = false;
    for (i, seg) in segments.iter().enumerate() {
        match seg.id_bytes() {
            b"ORC" => {
                starts.push(i);
                orc_open = true;
            }
            b"OBR" => {
                if !orc_open {
                    starts.push(i);
                }
                orc_open = false;
            }
            _ => {}
        }
    }
    if starts.is_empty() {
        return Err(MapError::Missing(
            "no ORC or OBR segment: there is no order to map".into(),
        ));
    }
    for (n, &start) in starts.iter().enumerate() {
        let end = starts.get(n + 1).copied().unwrap_or(segments.len());
        order(cx, &patient, &segments[start..end]);
    }
    Ok(())
}

/// One order: its ORC (when it has one), its OBR, and what follows them (NTE, SPM).
fn order(cx: &mut Context<'_, '_>, patient: &PatientRef, group: &[Segment<'_>]) {
    let map = cx.map;
    let zone = map.map.local_time;
    let find = |id: &[u8]| group.iter().find(|s| s.id_bytes() == id);
    let orc = find(b"ORC").map(|s| s.indexed_to(12));
    let obr = find(b"OBR").map(|s| s.indexed_to(31));
    let field = |n_orc: usize, n_obr: usize| -> String {
        let from_orc = orc.as_ref().map(|o| text(o, n_orc)).unwrap_or_default();
        if from_orc.is_empty() {
            obr.as_ref()
                .map(|o| text(o, n_obr))
                .unwrap_or_default()
                .into_owned()
        } else {
            from_orc.into_owned()
        }
    };
    let placer = [first_rep(orc.as_ref(), 2), first_rep(obr.as_ref(), 2)]
        .into_iter()
        .map(|v| (comp(v, 1), comp(v, 2)))
        .find(|(n, _)| !n.is_empty());
    let filler = [first_rep(orc.as_ref(), 3), first_rep(obr.as_ref(), 3)]
        .into_iter()
        .map(|v| (comp(v, 1), comp(v, 2)))
        .find(|(n, _)| !n.is_empty());
    let code = codeable(cx, first_rep(obr.as_ref(), 4));
    let placer_ids = placer.as_ref().map(|(n, ns)| {
        (
            cx.system(&map.map.systems.placer_order, ns, ""),
            n.to_string(),
        )
    });
    let filler_ids = filler.as_ref().map(|(n, ns)| {
        (
            cx.system(&map.map.systems.filler_order, ns, ""),
            n.to_string(),
        )
    });
    let authored = fhir_datetime(&field(9, 6), zone);
    let key = match (&placer_ids, &filler_ids) {
        (Some((s, n)), _) | (None, Some((s, n))) => format!("{s}|{n}"),
        (None, None) => [
            &*patient.key,
            "|ORDER|",
            &code.key(),
            "|",
            authored.as_deref().unwrap_or_default(),
        ]
        .concat(),
    };
    let specimens: Vec<StableId> = group
        .iter()
        .filter(|s| s.id_bytes() == b"SPM")
        .filter_map(|s| specimen(cx, patient, &key, &s.indexed_to(17)))
        .collect();
    let control = orc.as_ref().map(|o| text(o, 1)).unwrap_or_default();
    let status = map
        .coding(&map.map.coded.order_control, &control)
        .or_else(|| {
            let order_status = orc.as_ref().map(|o| text(o, 5)).unwrap_or_default();
            map.coding(&map.map.coded.order_status, &order_status)
        })
        .map_or("unknown", |c| c.code);
    let mut r = cx.writer();
    let open = r.open_array("identifier");
    for (ids, kind, display) in [
        (&placer_ids, "PLAC", "Placer Identifier"),
        (&filler_ids, "FILL", "Filler Identifier"),
    ] {
        if let Some((system, value)) = ids {
            r.object(Item, |w| {
                crate::datatypes::fixed_concept(w, "type", V2_0203, kind, display);
                w.str("system", system);
                w.str("value", value);
            });
        }
    }
    r.close(open);
    r.str("status", status);
    r.str("intent", "order");
    let priority = [first_rep(orc.as_ref(), 7), first_rep(obr.as_ref(), 27)]
        .into_iter()
        .map(|tq| comp(tq, 6))
        .find(|p| !p.is_empty())
        .unwrap_or_default();
    if let Some(p) = map.coding(&map.map.coded.order_priority, &priority) {
        r.str("priority", p.code);
    }
    if code.is_empty() {
        cx.warn("the order has no service (OBR-4): ServiceRequest.code is empty");
    }
    code.write(&mut r, "code");
    patient.write(&mut r, "subject");
    r.opt_str("authoredOn", authored.as_deref());
    let requester = [first_rep(orc.as_ref(), 12), first_rep(obr.as_ref(), 16)]
        .into_iter()
        .flatten()
        .find(|v| !v.is_empty());
    if let Some(who) = requester.and_then(|v| practitioner(cx, v)) {
        who.write(&mut r, "requester");
    }
    if let Some(o) = &obr {
        let reasons: Vec<_> = crate::datatypes::reps(o, 31)
            .map(|v| codeable(cx, Some(v)))
            .filter(|c| !c.is_empty())
            .collect();
        r.array("reasonCode", |w| {
            reasons.iter().for_each(|c| c.write(w, Item))
        });
    }
    r.array("specimen", |w| {
        for s in &specimens {
            w.object(Item, |w| w.str("reference", s.url()));
        }
    });
    notes(&mut r, group);
    cx.add("ServiceRequest", &[&key], r, Upsert::ById);
}

/// NTE-3 of the order's group, one note each.
fn notes(r: &mut JsonWriter, group: &[Segment<'_>]) {
    let texts: Vec<String> = group
        .iter()
        .filter(|s| s.id_bytes() == b"NTE")
        .map(|s| {
            let s = s.indexed_to(3);
            crate::datatypes::reps(&s, 3)
                .map(|v| v.as_str().trim().to_string())
                .collect::<Vec<_>>()
                .join("\n")
        })
        .filter(|t| !t.is_empty())
        .collect();
    r.array("note", |w| {
        for t in &texts {
            w.object(Item, |w| w.str("text", t));
        }
    });
}

/// SPM → a Specimen of the patient: its id (SPM-2, the placer's part), type (SPM-4) and when
/// it was collected (SPM-17, the range's start). Kept under the patient and the specimen's id
/// (else the order's key and SPM-1), and made once however many reports name it.
pub(crate) fn specimen(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    order_key: &str,
    spm: &IndexedSegment<'_>,
) -> Option<StableId> {
    let map = cx.map;
    let id = spm.field(2).and_then(|f| f.repetition(1));
    // EIP: the placer's EI, then the filler's, their parts as subcomponents (`SP0003&ICE`).
    let number = [1, 2]
        .into_iter()
        .filter_map(|n| {
            id.and_then(|v| v.component(n))
                .and_then(|c| c.subcomponent(1))
        })
        .map(|v| v.as_str().trim().to_string())
        .find(|n| !n.is_empty())
        .unwrap_or_default();
    let kind = codeable(cx, spm.field(4).and_then(|f| f.repetition(1)));
    if number.is_empty() && kind.is_empty() {
        return None;
    }
    let collected = fhir_datetime(
        &comp(spm.field(17).and_then(|f| f.repetition(1)), 1),
        map.map.local_time,
    );
    let system = cx.system(&map.map.systems.specimen, "", "");
    let key = if number.is_empty() {
        [order_key, "|SPM|", "", "|", &text(spm, 1)]
    } else {
        [&*patient.key, "|SPM|", &system, "|", &number]
    };
    let (id, held) = cx.identify("Specimen", &key);
    if held {
        return Some(id);
    }
    let mut s = cx.writer();
    if !number.is_empty() {
        crate::datatypes::identifier(&mut s, &system, &number);
    }
    kind.write(&mut s, "type");
    patient.write(&mut s, "subject");
    s.object("collection", |w| {
        w.opt_str("collectedDateTime", collected.as_deref());
    });
    Some(cx.add_identified("Specimen", id, s, Upsert::ById))
}
