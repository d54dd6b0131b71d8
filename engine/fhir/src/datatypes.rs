//! v2 data types → FHIR data types: XPN → HumanName, XAD → Address, XTN → ContactPoint,
//! CE/CWE → CodeableConcept, XCN → a Practitioner. Empty input gives empty output, which the
//! Bundle prunes: a missing field never leaves an empty element.

use serde_json::{Map, Value, json};
use wyvern_hl7::{Segment, Value as V2};

use crate::Context;
use crate::bundle::Upsert;
use crate::spec::Coding;

/// Component `n` of `v` as decoded, trimmed text ("" when absent).
pub fn comp(v: Option<V2<'_>>, n: usize) -> String {
    v.and_then(|v| v.component(n))
        .map(|c| c.as_str().trim().to_string())
        .unwrap_or_default()
}

/// A field's first component (the whole value of a simple field).
pub fn text(seg: &Segment<'_>, n: usize) -> String {
    comp(seg.field(n).and_then(|f| f.repetition(1)), 1)
}

/// A field's repetitions that carry anything.
pub fn reps<'a>(seg: &Segment<'a>, n: usize) -> Vec<V2<'a>> {
    seg.field(n)
        .map(|f| f.repetitions().filter(|r| !r.is_empty()).collect())
        .unwrap_or_default()
}

pub fn coding(c: &Coding) -> Value {
    json!({ "system": c.system, "code": c.code, "display": c.display })
}

/// A CodeableConcept of one mapped coding.
pub fn concept(c: &Coding) -> Value {
    json!({ "coding": [coding(c)] })
}

/// CE/CWE: identifier^text^coding system (^ alternate triplet), systems through the
/// coding-systems table; an unknown system keeps the code without a system.
pub fn codeable(cx: &Context<'_, '_>, v: Option<V2<'_>>) -> Value {
    let mut codings = Vec::new();
    for base in [0, 3] {
        let (code, display, sys) = (comp(v, base + 1), comp(v, base + 2), comp(v, base + 3));
        if code.is_empty() {
            continue;
        }
        let system = cx
            .map
            .lookup(&cx.map.map.coding_systems, &sys.to_ascii_uppercase());
        codings.push(json!({ "system": system, "code": code, "display": display }));
    }
    let text = comp(v, 2);
    json!({ "coding": codings, "text": text })
}

/// XPN: family^given^middle^suffix^prefix^^type.
pub fn human_name(v: V2<'_>) -> Value {
    let c = |n| comp(Some(v), n);
    let given: Vec<String> = [c(2), c(3)].into_iter().filter(|s| !s.is_empty()).collect();
    let family = comp(v.component(1), 1); // FN.1 surname
    let use_ = match c(7).as_str() {
        "L" => "official",
        "D" => "usual",
        "M" => "maiden",
        "N" => "nickname",
        "A" => "anonymous",
        _ => "",
    };
    json!({ "use": use_, "family": family, "given": given, "prefix": [c(5)], "suffix": [c(4)] })
}

/// XAD: street^other^city^county^postcode^country^type.
pub fn address(v: V2<'_>) -> Value {
    let c = |n| comp(Some(v), n);
    let street = comp(v.component(1), 1); // SAD.1
    let use_ = match c(7).as_str() {
        "H" | "HP" => "home",
        "B" | "O" => "work",
        "C" => "temp",
        "OLD" => "old",
        _ => "",
    };
    json!({ "use": use_, "line": [street, c(2)], "city": c(3), "district": c(4), "postalCode": c(5), "country": c(6) })
}

/// XTN, in both its v2.3 form (the number in component 1) and v2.5 (use, equipment, email,
/// area code, local number, unformatted).
pub fn contact_point(v: V2<'_>, default_use: &str) -> Value {
    let c = |n| comp(Some(v), n);
    let equipment = c(3);
    let email = c(4);
    let (system, value) = if equipment.eq_ignore_ascii_case("Internet")
        || equipment.eq_ignore_ascii_case("X.400")
        || (!email.is_empty() && c(1).is_empty() && c(7).is_empty())
    {
        ("email", email)
    } else {
        let number = [c(12), c(1), format!("{}{}", c(6), c(7))]
            .into_iter()
            .find(|s| !s.trim().is_empty())
            .unwrap_or_default();
        (if equipment == "FX" { "fax" } else { "phone" }, number)
    };
    if value.trim().is_empty() {
        return Value::Null;
    }
    let use_ = match (c(2).as_str(), equipment.as_str()) {
        (_, "CP") | ("PRS", _) => "mobile",
        ("WPN", _) => "work",
        ("PRN" | "ORN" | "VHN", _) => "home",
        _ => default_use,
    };
    json!({ "system": system, "value": value.trim(), "use": use_ })
}

/// XCN → a Practitioner in the Bundle (GMC or GMP code where the id has that shape, else a
/// local identifier); returns its reference, or `None` for an empty field.
pub fn practitioner(cx: &mut Context<'_, '_>, v: V2<'_>) -> Option<Value> {
    let c = |n| comp(Some(v), n);
    let id = c(1);
    let name = json!({ "family": c(2), "given": [c(3)], "prefix": [c(6)] });
    let display = [c(6), c(3), c(2)]
        .into_iter()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    if id.is_empty() && display.is_empty() {
        return None;
    }
    let s = &cx.map.map.systems;
    let digits7 = |t: &str| t.len() == 7 && t.bytes().all(|b| b.is_ascii_digit());
    let (system, value) = if let Some(gmc) = id.strip_prefix('C').filter(|t| digits7(t)) {
        (s.gmc_number.clone(), gmc.to_string())
    } else if id.strip_prefix('G').is_some_and(digits7) {
        (s.gmp_number.clone(), id.clone())
    } else {
        (
            cx.system(&s.local_practitioner.clone(), &comp(Some(v), 9), ""),
            id.clone(),
        )
    };
    let key = if value.is_empty() {
        format!("name|{display}")
    } else {
        format!("{system}|{value}")
    };
    let mut r = Map::new();
    if !value.is_empty() {
        r.insert(
            "identifier".into(),
            json!([{ "system": system, "value": value }]),
        );
    }
    r.insert("name".into(), json!([name]));
    let profile = cx.map.profile("Practitioner").map(str::to_string);
    let reference = cx
        .bundle
        .add("Practitioner", &key, r, Upsert::ById, profile.as_deref());
    Some(json!({ "reference": reference, "display": display }))
}

/// An organisation by ODS code (`name` optional); returns its reference.
pub fn organization(cx: &mut Context<'_, '_>, ods: &str, name: &str) -> Option<Value> {
    let ods = ods.trim();
    if ods.is_empty() {
        return None;
    }
    let system = cx.map.map.systems.ods_organization.clone();
    let mut r = Map::new();
    r.insert(
        "identifier".into(),
        json!([{ "system": system, "value": ods }]),
    );
    r.insert("name".into(), name.trim().into());
    let profile = cx.map.profile("Organization").map(str::to_string);
    let reference = cx.bundle.add(
        "Organization",
        &format!("{system}|{ods}"),
        r,
        Upsert::ById,
        profile.as_deref(),
    );
    Some(json!({ "reference": reference, "display": name.trim() }))
}

/// Whether `s` looks like an ODS code (3–6 upper-case letters and digits).
pub fn looks_like_ods(s: &str) -> bool {
    (3..=6).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit())
}
