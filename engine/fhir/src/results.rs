//! ORU^R01 → a DiagnosticReport per OBR and an Observation per OBX under it: values by OBX-2
//! (NM → Quantity with UCUM where the unit maps, ST/FT/TX → string, CE/CWE → concept, SN →
//! Quantity with comparator, Range or Ratio, DT/TS → dateTime), reference ranges, abnormal
//! flags and result status through the mapping tables.

use serde_json::{Map, Value, json};
use wyvern_hl7::Segment;

use crate::bundle::Upsert;
use crate::datatypes::{codeable, comp, concept, reps, text};
use crate::localtime::fhir_datetime;
use crate::patient::{self, PatientRef};
use crate::{Context, MapError};

const LAB: &str = "http://terminology.hl7.org/CodeSystem/observation-category";

pub fn map(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let patient = patient::map(cx)?;
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let mut i = 0;
    let mut reports = 0;
    while i < segments.len() {
        if &*segments[i].id() != "OBR" {
            i += 1;
            continue;
        }
        let obr = segments[i];
        let mut j = i + 1;
        while j < segments.len() && &*segments[j].id() != "OBR" {
            j += 1;
        }
        let obx: Vec<Segment<'_>> = segments[i + 1..j]
            .iter()
            .filter(|s| &*s.id() == "OBX")
            .copied()
            .collect();
        report(cx, &patient, &obr, &obx);
        reports += 1;
        i = j;
    }
    if reports == 0 {
        return Err(MapError::Missing(
            "ORU^R01 without an OBR segment: there is no report to map".into(),
        ));
    }
    Ok(())
}

fn report(cx: &mut Context<'_, '_>, patient: &PatientRef, obr: &Segment<'_>, obx: &[Segment<'_>]) {
    let zone = cx.map.map.local_time;
    let filler = obr.field(3).and_then(|f| f.repetition(1));
    let placer = obr.field(2).and_then(|f| f.repetition(1));
    let (number, namespace) = match comp(filler, 1) {
        n if !n.is_empty() => (n, comp(filler, 2)),
        _ => (comp(placer, 1), comp(placer, 2)),
    };
    let code = codeable(cx, obr.field(4).and_then(|f| f.repetition(1)));
    let effective = fhir_datetime(&text(obr, 7), zone);
    let system = cx.system(&cx.map.map.systems.filler_order.clone(), &namespace, "");
    let key = if number.is_empty() {
        format!(
            "{}|OBR|{}|{}",
            patient.key,
            serde_json::to_string(&code).unwrap_or_default(),
            effective.clone().unwrap_or_default()
        )
    } else {
        format!("{system}|{number}")
    };
    let observations: Vec<Value> = obx
        .iter()
        .map(|o| observation(cx, patient, &key, &effective, o))
        .map(|r| json!({ "reference": r }))
        .collect();
    let mut r = Map::new();
    if !number.is_empty() {
        r.insert(
            "identifier".into(),
            json!([{ "system": system, "value": number }]),
        );
    }
    let status = cx
        .map
        .coding(&cx.map.map.coded.report_status, &text(obr, 25))
        .map_or_else(|| "unknown".to_string(), |c| c.code);
    r.insert("status".into(), status.into());
    let section = text(obr, 24);
    let category = if section.is_empty() {
        json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": "LAB", "display": "Laboratory" }] })
    } else {
        json!({ "coding": [{ "system": "http://terminology.hl7.org/CodeSystem/v2-0074", "code": section }] })
    };
    r.insert("category".into(), json!([category]));
    r.insert("code".into(), code);
    r.insert("subject".into(), patient.json());
    r.insert("effectiveDateTime".into(), effective.into());
    if let Some(issued) = fhir_datetime(&text(obr, 22), zone).filter(|t| t.len() >= 25) {
        r.insert("issued".into(), issued.into());
    }
    r.insert("result".into(), observations.into());
    let profile = cx.map.profile("DiagnosticReport").map(str::to_string);
    cx.bundle.add(
        "DiagnosticReport",
        &key,
        r,
        Upsert::ById,
        profile.as_deref(),
    );
}

fn observation(
    cx: &mut Context<'_, '_>,
    patient: &PatientRef,
    report_key: &str,
    report_time: &Option<String>,
    obx: &Segment<'_>,
) -> String {
    let zone = cx.map.map.local_time;
    let code = codeable(cx, obx.field(3).and_then(|f| f.repetition(1)));
    let key = format!(
        "{report_key}|OBX|{}|{}|{}",
        text(obx, 1),
        serde_json::to_string(&code).unwrap_or_default(),
        text(obx, 4)
    );
    let mut o = Map::new();
    let status = cx
        .map
        .coding(&cx.map.map.coded.observation_status, &text(obx, 11))
        .map_or_else(|| "unknown".to_string(), |c| c.code);
    o.insert("status".into(), status.into());
    o.insert(
        "category".into(),
        json!([{ "coding": [{ "system": LAB, "code": "laboratory", "display": "Laboratory" }] }]),
    );
    o.insert("code".into(), code);
    o.insert("subject".into(), patient.json());
    let effective = fhir_datetime(&text(obx, 14), zone).or_else(|| report_time.clone());
    o.insert("effectiveDateTime".into(), effective.into());
    let unit = obx.field(6).and_then(|f| f.repetition(1));
    let unit = if comp(unit, 1).is_empty() {
        comp(unit, 2)
    } else {
        comp(unit, 1)
    };
    if let Some((name, v)) = value(cx, obx, &unit) {
        o.insert(name.into(), v);
    }
    let flags: Vec<Value> = reps(obx, 8)
        .into_iter()
        .filter_map(|f| {
            cx.map
                .coding(&cx.map.map.coded.interpretation, &comp(Some(f), 1))
        })
        .map(|c| concept(&c))
        .collect();
    o.insert("interpretation".into(), flags.into());
    o.insert(
        "referenceRange".into(),
        json!([reference_range(cx, &text(obx, 7), &unit)]),
    );
    let profile = cx.map.profile("Observation").map(str::to_string);
    cx.bundle
        .add("Observation", &key, o, Upsert::ById, profile.as_deref())
}

/// OBX-5 as the `value[x]` its OBX-2 type says.
fn value(cx: &mut Context<'_, '_>, obx: &Segment<'_>, unit: &str) -> Option<(&'static str, Value)> {
    let kind = text(obx, 2);
    let field = obx.field(5)?;
    let first = field.repetition(1)?;
    if first.is_empty() {
        return None;
    }
    let whole = first.as_str().trim().to_string();
    Some(match kind.as_str() {
        "NM" => match decimal(&whole) {
            Some(n) => ("valueQuantity", quantity(cx, n, unit)),
            None => {
                cx.warn(format!(
                    "OBX-5 {whole:?} is typed NM but is not a number: kept as a string"
                ));
                ("valueString", whole.into())
            }
        },
        "ST" | "FT" | "TX" => {
            let lines: Vec<String> = field
                .repetitions()
                .map(|r| r.as_str().trim_end().to_string())
                .collect();
            ("valueString", lines.join("\n").into())
        }
        "CE" | "CWE" | "CNE" => ("valueCodeableConcept", codeable(cx, Some(first))),
        "DT" | "TS" | "DTM" => (
            "valueDateTime",
            fhir_datetime(&whole, cx.map.map.local_time)?.into(),
        ),
        "SN" => structured_numeric(cx, first, unit)?,
        other => {
            cx.warn(format!(
                "OBX-2 value type {other:?} is not mapped: OBX-5 kept as a string"
            ));
            ("valueString", whole.into())
        }
    })
}

/// SN: comparator^number^separator^number.
fn structured_numeric(
    cx: &Context<'_, '_>,
    v: wyvern_hl7::Value<'_>,
    unit: &str,
) -> Option<(&'static str, Value)> {
    let (cmp, n1, sep, n2) = (
        comp(Some(v), 1),
        comp(Some(v), 2),
        comp(Some(v), 3),
        comp(Some(v), 4),
    );
    match sep.as_str() {
        "-" => Some((
            "valueRange",
            json!({ "low": decimal(&n1).map(|n| quantity(cx, n, unit)), "high": decimal(&n2).map(|n| quantity(cx, n, unit)) }),
        )),
        ":" | "/" => Some((
            "valueRatio",
            json!({ "numerator": { "value": decimal(&n1)? }, "denominator": { "value": decimal(&n2)? } }),
        )),
        _ => {
            let mut q = quantity(cx, decimal(&n1)?, unit);
            if matches!(cmp.as_str(), "<" | ">" | "<=" | ">=") {
                q["comparator"] = cmp.into();
            }
            Some(("valueQuantity", q))
        }
    }
}

fn quantity(cx: &Context<'_, '_>, n: serde_json::Number, unit: &str) -> Value {
    let ucum = cx.map.lookup(&cx.map.map.units, unit);
    json!({ "value": n, "unit": unit, "system": ucum.map(|_| "http://unitsofmeasure.org"), "code": ucum })
}

/// OBX-7: `3.5-5.0`, `<5`, `>2`, or text.
fn reference_range(cx: &Context<'_, '_>, range: &str, unit: &str) -> Value {
    let range = range.trim();
    if range.is_empty() {
        return Value::Null;
    }
    let q = |s: &str| decimal(s.trim()).map(|n| quantity(cx, n, unit));
    if let Some(h) = range
        .strip_prefix('<')
        .and_then(|r| q(r.trim_start_matches('=')))
    {
        return json!({ "high": h, "text": range });
    }
    if let Some(l) = range
        .strip_prefix('>')
        .and_then(|r| q(r.trim_start_matches('=')))
    {
        return json!({ "low": l, "text": range });
    }
    // Split on the '-' that is not a leading sign.
    let dash = range
        .char_indices()
        .skip(1)
        .find(|(_, c)| *c == '-')
        .map(|(i, _)| i);
    if let Some((Some(l), Some(h))) = dash.map(|i| (q(&range[..i]), q(&range[i + 1..]))) {
        return json!({ "low": l, "high": h });
    }
    json!({ "text": range })
}

/// A v2 number as a FHIR decimal, its digits kept (`13.50` stays `13.50`).
pub fn decimal(s: &str) -> Option<serde_json::Number> {
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
    let text = match (neg, frac.is_empty()) {
        (false, true) => int.to_string(),
        (false, false) => format!("{int}.{frac}"),
        (true, true) => format!("-{int}"),
        (true, false) => format!("-{int}.{frac}"),
    };
    serde_json::from_str(&text).ok()
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
