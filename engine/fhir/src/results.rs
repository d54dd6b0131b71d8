//! ORU^R01 and OUL^R22/R23/R24 → a DiagnosticReport per OBR and an Observation per OBX under
//! it: values by OBX-2 (NM → Quantity with UCUM where the unit maps, ST/FT/TX → string, CE/CWE
//! → concept, SN → Quantity with comparator, Range or Ratio, DT/TS → dateTime), reference
//! ranges, abnormal flags and result status through the mapping tables. An embedded report
//! (OBX-2 ED, or RP pointing at one) is the report's `presentedForm`, bounded in size
//! (`attachment.rs`); the specimen (SPM, in the report's group or the last before it) a
//! Specimen it refers to.

use wyvern_hl7::{IndexedSegment, Segment, Value as V2};

use crate::attachment;
use crate::bundle::{StableId, Upsert};
use crate::datatypes::{codeable, comp, concept, fixed_concept, identifier, reps, text};
use crate::json::{Item, JsonWriter, Key};
use crate::localtime::fhir_datetime;
use crate::patient::{self, PatientRef};
use crate::{Context, MapError};

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category";
const V2_0074: &str = "http://terminology.hl7.org/CodeSystem/v2-0074";
const UCUM: &str = "http://unitsofmeasure.org";

pub fn map(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let patient = patient::map(cx)?;
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let mut reports = 0;
    let mut last_spm = None;
    for (i, obr) in segments.iter().enumerate() {
        if obr.id_bytes() == b"SPM" {
            last_spm = Some(i);
        }
        if obr.id_bytes() != b"OBR" {
            continue;
        }
        let rest = &segments[i + 1..];
        let end = rest
            .iter()
            .position(|s| s.id_bytes() == b"OBR")
            .unwrap_or(rest.len());
        let group = &rest[..end];
        // The report's specimens: the SPMs in its group, else the last one before it.
        let spms: Vec<Segment<'_>> = match group.iter().filter(|s| s.id_bytes() == b"SPM").count() {
            0 => last_spm.map(|j| segments[j]).into_iter().collect(),
            _ => group
                .iter()
                .filter(|s| s.id_bytes() == b"SPM")
                .copied()
                .collect(),
        };
        let specimens: Vec<StableId> = spms
            .iter()
            .filter_map(|s| crate::orders::specimen(cx, &patient, &patient.key, &s.indexed_to(17)))
            .collect();
        report(cx, &patient, &obr.indexed_to(25), group, &specimens);
        reports += 1;
    }
    if reports == 0 {
        return Err(MapError::Missing(
            "no OBR segment: there is no report to map".into(),
        ));
    }
    Ok(())
}

/// One OBR and the segments after it up to the next OBR (its OBX among them).
fn report(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    obr: &IndexedSegment<'_>,
    after: &[Segment<'_>],
    specimens: &[StableId],
) {
    let map = cx.map;
    let zone = map.map.local_time;
    let filler = obr.field(3).and_then(|f| f.repetition(1));
    let placer = obr.field(2).and_then(|f| f.repetition(1));
    let (number, namespace) = match comp(filler, 1) {
        n if !n.is_empty() => (n, comp(filler, 2)),
        _ => (comp(placer, 1), comp(placer, 2)),
    };
    let code = codeable(cx, obr.field(4).and_then(|f| f.repetition(1)));
    let effective = fhir_datetime(&text(obr, 7), zone);
    let system = cx.system(&map.map.systems.filler_order, &namespace, "");
    let key = if number.is_empty() {
        [
            &*patient.key,
            "|OBR|",
            &code.key(),
            "|",
            effective.as_deref().unwrap_or_default(),
        ]
        .concat()
    } else {
        [&*system, "|", &number].concat()
    };
    let mut results: Vec<StableId> = Vec::new();
    let mut forms = Vec::new();
    for o in after.iter().filter(|s| s.id_bytes() == b"OBX") {
        let o = o.indexed_to(14);
        let value = o.field(5).and_then(|f| f.repetition(1));
        let form = match &*text(&o, 2) {
            "ED" => Some(value.and_then(|v| attachment::ed(cx, v))),
            "RP" => Some(value.and_then(|v| attachment::rp(cx, v))),
            _ => None,
        };
        match form {
            Some(found) => {
                let title = codeable(cx, o.field(3).and_then(|f| f.repetition(1))).text;
                forms.extend(found.map(|a| (a, title.into_owned())));
            }
            None => results.push(observation(cx, patient, &key, effective.as_deref(), &o)),
        }
    }
    let mut r = cx.writer();
    if !number.is_empty() {
        identifier(&mut r, &system, &number);
    }
    let status = map
        .coding(&map.map.coded.report_status, &text(obr, 25))
        .map_or("unknown", |c| c.code);
    r.str("status", status);
    let section = text(obr, 24);
    r.array("category", |w| {
        if section.is_empty() {
            fixed_concept(w, Item, V2_0074, "LAB", "Laboratory");
        } else {
            fixed_concept(w, Item, V2_0074, &section, "");
        }
    });
    code.write(&mut r, "code");
    patient.write(&mut r, "subject");
    r.opt_str("effectiveDateTime", effective.as_deref());
    if let Some(issued) = fhir_datetime(&text(obr, 22), zone).filter(|t| t.len() >= 25) {
        r.str("issued", &issued);
    }
    r.array("specimen", |w| {
        for reference in specimens {
            w.object(Item, |w| w.str("reference", reference.url()));
        }
    });
    r.array("result", |w| {
        for reference in &results {
            w.object(Item, |w| w.str("reference", reference.url()));
        }
    });
    r.array("presentedForm", |w| {
        for (a, title) in &forms {
            a.write(w, Item, title);
        }
    });
    cx.add("DiagnosticReport", &[&key], r, Upsert::ById);
}

fn observation(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    report_key: &str,
    report_time: Option<&str>,
    obx: &IndexedSegment<'_>,
) -> StableId {
    let map = cx.map;
    let zone = map.map.local_time;
    let code = codeable(cx, obx.field(3).and_then(|f| f.repetition(1)));
    let code_key = code.key();
    let (set_id, sub_id) = (text(obx, 1), text(obx, 4));
    let key = [report_key, "|OBX|", &set_id, "|", &code_key, "|", &sub_id];
    let mut o = cx.writer();
    let status = map
        .coding(&map.map.coded.observation_status, &text(obx, 11))
        .map_or("unknown", |c| c.code);
    o.str("status", status);
    o.array("category", |w| {
        fixed_concept(w, Item, LAB, "laboratory", "Laboratory")
    });
    code.write(&mut o, "code");
    patient.write(&mut o, "subject");
    match fhir_datetime(&text(obx, 14), zone) {
        Some(t) => o.str("effectiveDateTime", &t),
        None => o.opt_str("effectiveDateTime", report_time),
    }
    let unit = obx.field(6).and_then(|f| f.repetition(1));
    let unit = match comp(unit, 1) {
        u if u.is_empty() => comp(unit, 2),
        u => u,
    };
    let wrote_quantity = value(cx, &mut o, obx, &unit);
    if wrote_quantity && !unit.is_empty() && map.lookup(&map.map.units, &unit).is_none() {
        let w = format!(
            "OBX-6 unit {unit:?} has no UCUM code in table {}: the quantity keeps the unit as text only",
            map.map.units
        );
        if !cx.warnings.contains(&w) {
            cx.warn(w);
        }
    }
    o.array("interpretation", |w| {
        for f in reps(obx, 8) {
            if let Some(c) = map.coding(&map.map.coded.interpretation, &comp(Some(f), 1)) {
                concept(w, Item, &c);
            }
        }
    });
    o.array("referenceRange", |w| {
        reference_range(cx, w, &text(obx, 7), &unit)
    });
    cx.add("Observation", &key, o, Upsert::ById)
}

/// OBX-5 as the `value[x]` its OBX-2 type says; whether that was a Quantity with the unit.
fn value(
    cx: &mut Context<'_, '_>,
    w: &mut JsonWriter,
    obx: &IndexedSegment<'_>,
    unit: &str,
) -> bool {
    let kind = text(obx, 2);
    let Some(field) = obx.field(5) else {
        return false;
    };
    let Some(first) = field.repetition(1).filter(|f| !f.is_empty()) else {
        return false;
    };
    let whole = first.as_str();
    let whole = whole.trim();
    match &*kind {
        "NM" => match decimal(whole) {
            Some(n) => {
                quantity(cx, w, "valueQuantity", &n, unit, None);
                return true;
            }
            None => {
                cx.warn(format!(
                    "OBX-5 {whole:?} is typed NM but is not a number: kept as a string"
                ));
                w.str("valueString", whole);
            }
        },
        "ST" | "FT" | "TX" => {
            let lines: Vec<String> = field
                .repetitions()
                .map(|r| r.as_str().trim_end().to_string())
                .collect();
            w.str("valueString", &lines.join("\n"));
        }
        "CE" | "CWE" | "CNE" => codeable(cx, Some(first)).write(w, "valueCodeableConcept"),
        "DT" | "TS" | "DTM" => w.opt_str(
            "valueDateTime",
            fhir_datetime(whole, cx.map.map.local_time).as_deref(),
        ),
        "SN" => return structured_numeric(cx, w, first, unit),
        other => {
            cx.warn(format!(
                "OBX-2 value type {other:?} is not mapped: OBX-5 kept as a string"
            ));
            w.str("valueString", whole);
        }
    }
    false
}

/// SN: comparator^number^separator^number; whether a Quantity with the unit was written.
fn structured_numeric(cx: &Context<'_, '_>, w: &mut JsonWriter, v: V2<'_>, unit: &str) -> bool {
    let (cmp, n1, sep, n2) = (
        comp(Some(v), 1),
        comp(Some(v), 2),
        comp(Some(v), 3),
        comp(Some(v), 4),
    );
    let (n1, n2) = (decimal(&n1), decimal(&n2));
    match &*sep {
        "-" => {
            w.object("valueRange", |w| {
                if let Some(n) = &n1 {
                    quantity(cx, w, "low", n, unit, None);
                }
                if let Some(n) = &n2 {
                    quantity(cx, w, "high", n, unit, None);
                }
            });
            n1.is_some() || n2.is_some()
        }
        ":" | "/" => {
            if let (Some(n1), Some(n2)) = (n1, n2) {
                w.object("valueRatio", |w| {
                    w.object("numerator", |w| w.raw("value", &n1));
                    w.object("denominator", |w| w.raw("value", &n2));
                });
            }
            false
        }
        _ => match n1 {
            Some(n) => {
                let cmp = matches!(&*cmp, "<" | ">" | "<=" | ">=").then_some(&*cmp);
                quantity(cx, w, "valueQuantity", &n, unit, cmp);
                true
            }
            None => false,
        },
    }
}

/// A Quantity of the decimal `n` (checked by [`decimal`]), UCUM-coded when the unit maps.
fn quantity(
    cx: &Context<'_, '_>,
    w: &mut JsonWriter,
    k: impl Key,
    n: &str,
    unit: &str,
    comparator: Option<&str>,
) {
    let ucum = cx.map.lookup(&cx.map.map.units, unit);
    w.object(k, |w| {
        w.raw("value", n);
        w.str("unit", unit);
        w.opt_str("system", ucum.map(|_| UCUM));
        w.opt_str("code", ucum);
        w.opt_str("comparator", comparator);
    });
}

/// OBX-7: `3.5-5.0`, `<5`, `>2`, or text; one element of `referenceRange`.
fn reference_range(cx: &Context<'_, '_>, w: &mut JsonWriter, range: &str, unit: &str) {
    let range = range.trim();
    if range.is_empty() {
        return;
    }
    let q = |s: &str| decimal(s.trim());
    if let Some(h) = range
        .strip_prefix('<')
        .and_then(|r| q(r.trim_start_matches('=')))
    {
        w.object(Item, |w| {
            quantity(cx, w, "high", &h, unit, None);
            w.str("text", range);
        });
        return;
    }
    if let Some(l) = range
        .strip_prefix('>')
        .and_then(|r| q(r.trim_start_matches('=')))
    {
        w.object(Item, |w| {
            quantity(cx, w, "low", &l, unit, None);
            w.str("text", range);
        });
        return;
    }
    // Split on the '-' that is not a leading sign.
    let dash = range
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '-')
        .map(|(i, _)| i);
    if let Some((Some(l), Some(h))) = dash.map(|i| (q(&range[..i]), q(&range[i + 1..]))) {
        w.object(Item, |w| {
            quantity(cx, w, "low", &l, unit, None);
            quantity(cx, w, "high", &h, unit, None);
        });
        return;
    }
    w.object(Item, |w| w.str("text", range));
}

/// A v2 number as a FHIR decimal, its digits kept (`13.50` stays `13.50`).
pub fn decimal(s: &str) -> Option<String> {
    let s = s.trim().trim_start_matches('+');
    let (neg, body) = match s.strip_prefix('-') {
        Some(b) => (true, b),
        None => (false, s),
    };
    let (int, frac) = body.split_once('.').unwrap_or((body, ""));
    let digits = |x: &str| x.bytes().all(|b| b.is_ascii_digit());
    if (int.is_empty() && frac.is_empty())
        || !digits(int)
        || !digits(frac)
        || (body.contains('.') && frac.is_empty())
    {
        return None;
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    Some(match (neg, frac.is_empty()) {
        (false, true) => int.to_string(),
        (false, false) => format!("{int}.{frac}"),
        (true, true) => format!("-{int}"),
        (true, false) => format!("-{int}.{frac}"),
    })
}

#[cfg(test)]
mod tests {
    use super::decimal;

    #[test]
    fn decimals_keep_their_digits() {
        assert_eq!(decimal("13.50").unwrap().to_string(), "13.50");
        assert_eq!(decimal("007").unwrap().to_string(), "7");
        assert_eq!(decimal(".5").unwrap().to_string(), "0.5");
        assert_eq!(decimal("-0.25").unwrap().to_string(), "-0.25");
        assert_eq!(decimal("+4").unwrap().to_string(), "4");
        for bad in ["", "1.", "abc", "1.2.3", "1e5", "-", "."] {
            assert!(decimal(bad).is_none(), "{bad}");
        }
    }
}
