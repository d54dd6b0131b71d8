//! Referrals (REF^I12 new, I13 modified, I14 cancelled) → a ServiceRequest in the referral
//! category: its reasons (RF1-10), priority (RF1-2, table 0027's codes), type (RF1-3), when it
//! takes effect (RF1-7), the referring and referred-to providers (PRD with role RP and RT) as
//! organisations by ODS code where PRD-7 gives one, and its ids: the originating referral id
//! (RF1-6) it is kept under, and the external one (RF1-11: the e-Referral Service's UBRN when
//! it has that shape).

use wyvern_hl7::{IndexedSegment, Segment};

use crate::bundle::Upsert;
use crate::datatypes::{
    Ref, codeable, comp, first_rep, fixed_concept, looks_like_ods, organization, text,
};
use crate::json::{Item, JsonWriter};
use crate::localtime::fhir_datetime;
use crate::patient;
use crate::{Context, MapError};

const SNOMED: &str = "http://snomed.info/sct";
/// The e-Referral Service's Unique Booking Reference Number.
const UBRN: &str = "https://fhir.nhs.uk/Id/UBRN";

pub fn map(cx: &mut Context<'_, '_>, cancelled: bool) -> Result<(), MapError> {
    let rf1 = cx
        .segment("RF1", 11)
        .ok_or_else(|| MapError::Missing("no RF1 segment: there is no referral to map".into()))?;
    let patient = patient::map(cx)?;
    let map = cx.map;
    let zone = map.map.local_time;
    let first = |n: usize| first_rep(Some(&rf1), n);
    let origin = comp(first(6), 1).into_owned();
    let system = cx.system(&map.map.systems.referral, &comp(first(6), 2), "");
    let external = comp(first(11), 1).into_owned();
    let effective = fhir_datetime(&text(&rf1, 7), zone);
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let (mut requester, mut performer) = (None, None);
    for prd in segments.iter().filter(|s| s.id_bytes() == b"PRD") {
        let prd = prd.indexed_to(7);
        let role = comp(prd.field(1).and_then(|f| f.repetition(1)), 1);
        match &*role {
            "RP" => requester = requester.or_else(|| provider(cx, &prd)),
            "RT" => performer = performer.or_else(|| provider(cx, &prd)),
            _ => {}
        }
    }
    let reasons: Vec<_> = crate::datatypes::reps(&rf1, 10)
        .map(|v| codeable(cx, Some(v)))
        .filter(|c| !c.is_empty())
        .collect();
    let kind = codeable(cx, first(3));
    let status = if cancelled {
        "revoked"
    } else {
        match &*comp(first(1), 1) {
            "R" => "revoked",   // rejected
            "E" => "completed", // expired
            _ => "active",
        }
    };
    let mut r = cx.writer();
    let open = r.open_array("identifier");
    if !origin.is_empty() {
        r.object(Item, |w| {
            w.str("system", &system);
            w.str("value", &origin);
        });
    }
    if !external.is_empty() {
        let ubrn = external.len() == 12 && external.bytes().all(|b| b.is_ascii_digit());
        let ext_system = if ubrn {
            UBRN.to_string()
        } else {
            cx.system(&map.map.systems.external_referral, &comp(first(11), 2), "")
        };
        r.object(Item, |w| {
            w.str("system", &ext_system);
            w.str("value", &external);
        });
    }
    r.close(open);
    r.str("status", status);
    r.str("intent", "order");
    r.array("category", |w| {
        fixed_concept(w, Item, SNOMED, "3457005", "Patient referral");
    });
    if let Some(p) = map.coding(&map.map.coded.order_priority, &comp(first(2), 1)) {
        r.str("priority", p.code);
    }
    if kind.is_empty() {
        fixed_concept(&mut r, "code", SNOMED, "3457005", "Patient referral");
    } else {
        kind.write(&mut r, "code");
    }
    patient.write(&mut r, "subject");
    r.opt_str("occurrenceDateTime", effective.as_deref());
    if let Some(who) = &requester {
        who.write(&mut r, "requester");
    }
    r.array("performer", |w| {
        if let Some(who) = &performer {
            who.write(w, Item);
        }
    });
    r.array("reasonCode", |w| {
        reasons.iter().for_each(|c| c.write(w, Item))
    });
    notes(&mut r, &segments);
    let key = if !origin.is_empty() {
        [&*system, "|", &origin].concat()
    } else if !external.is_empty() {
        [&*patient.key, "|REF|", &external].concat()
    } else {
        cx.warn("RF1-6 and RF1-11 are empty: the referral is kept under its patient and date");
        [
            &*patient.key,
            "|REF|",
            effective.as_deref().unwrap_or_default(),
        ]
        .concat()
    };
    cx.add("ServiceRequest", &[&key], r, Upsert::ById);
    Ok(())
}

/// A provider of a referral: an organisation in the Bundle, or a name alone.
enum Provider {
    Organisation(Ref),
    Named(String),
}

impl Provider {
    fn write(&self, w: &mut JsonWriter, k: impl crate::json::Key) {
        match self {
            Provider::Organisation(r) => r.write(w, k),
            Provider::Named(name) => w.object(k, |w| w.str("display", name)),
        }
    }
}

/// A PRD as the organisation its PRD-7 names by ODS code, else by its name (PRD-2) alone.
fn provider(cx: &mut Context<'_, '_>, prd: &IndexedSegment<'_>) -> Option<Provider> {
    let name = prd
        .field(2)
        .and_then(|f| f.repetition(1))
        .map(|v| crate::datatypes::joined(&[&comp(Some(v), 2), &comp(Some(v), 1)]))
        .unwrap_or_default();
    let id = comp(prd.field(7).and_then(|f| f.repetition(1)), 1);
    if looks_like_ods(&id) {
        return organization(cx, &id, &name).map(Provider::Organisation);
    }
    (!name.is_empty()).then_some(Provider::Named(name))
}

/// NTE-3s, one note each.
fn notes(r: &mut JsonWriter, segments: &[Segment<'_>]) {
    let texts: Vec<String> = segments
        .iter()
        .filter(|s| s.id_bytes() == b"NTE")
        .map(|s| text(&s.indexed_to(3), 3).trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    r.array("note", |w| {
        for t in &texts {
            w.object(Item, |w| w.str("text", t));
        }
    });
}
