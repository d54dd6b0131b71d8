//! FHIR → HL7v2, for receivers that take only v2 (`wyvern map --to-hl7v2`): a Patient (with
//! its Encounter) becomes ADT^A08 (ADT^A31 without one), a DiagnosticReport with its
//! Observations ORU^R01. The code tables are read backwards (each table's `reverse`, or the one
//! v2 code that maps to a FHIR code), the identifier systems are the field map's, so what the
//! forward mapping wrote comes back as it was sent: `tests/round_trip.rs` lists the fields. One
//! patient per message: a Bundle with two Patients, or a report about another patient, is
//! refused rather than filed under the wrong one.

use serde_json::Value;
use wyvern_hl7::Delimiters;

use crate::MapError;
use crate::spec::{CodedField, Mappings};

/// The most results one message carries back, and its largest size: a Bundle that names one
/// Observation a million times cannot make a message of any size.
const MAX_RESULTS: usize = 10_000;
const MAX_MESSAGE: usize = 16 << 20;

/// A message made from FHIR, and what could not be carried.
#[derive(Debug, Clone)]
pub struct Reversed {
    /// The HL7v2 message, CR segment ends.
    pub message: String,
    pub warnings: Vec<String>,
}

/// Builds segments field by field, each value escaped for the standard delimiters.
struct Segment {
    fields: Vec<String>,
}

impl Segment {
    fn new(id: &str) -> Self {
        Segment {
            fields: vec![id.to_string()],
        }
    }

    /// Field `n` (1-based) from its components, each escaped.
    fn set(&mut self, n: usize, components: &[&str]) {
        self.set_raw(n, repetition(components));
    }

    /// Field `n` as repetitions, each already joined.
    fn set_raw(&mut self, n: usize, value: String) {
        if self.fields.len() <= n {
            self.fields.resize(n + 1, String::new());
        }
        self.fields[n] = value;
    }

    fn finish(mut self) -> String {
        while self.fields.len() > 1 && self.fields.last().is_some_and(String::is_empty) {
            self.fields.pop();
        }
        self.fields.join("|")
    }
}

/// A component list escaped and joined: one repetition of a field.
fn repetition(components: &[&str]) -> String {
    let d = Delimiters::default();
    let mut parts: Vec<String> = components
        .iter()
        .map(|c| wyvern_hl7::escape::encode(c, &d))
        .collect();
    while parts.last().is_some_and(String::is_empty) {
        parts.pop();
    }
    parts.join("^")
}

fn s<'v>(v: &'v Value, key: &str) -> &'v str {
    v.get(key).and_then(Value::as_str).unwrap_or_default()
}

/// A FHIR date or dateTime as a v2 timestamp (digits, and the offset when there is one).
fn ts(fhir: &str) -> String {
    let (main, offset) = match fhir.get(10..).and_then(|t| t.find(['+', '-', 'Z'])) {
        Some(i) => fhir.split_at(10 + i),
        None => (fhir, ""),
    };
    let main = main.split('.').next().unwrap_or_default();
    let digits: String = main.chars().filter(char::is_ascii_digit).collect();
    let offset = match offset {
        "" => String::new(),
        "Z" => "+0000".into(),
        o => o.replace(':', ""),
    };
    format!("{digits}{offset}")
}

impl Mappings {
    /// The v2 code `field`'s table maps to `fhir` (reading the table backwards).
    fn v2_code<'m>(&'m self, field: &CodedField, fhir: &str) -> Option<&'m str> {
        self.tables
            .get(&field.table)?
            .reverse
            .get(fhir)
            .map(String::as_str)
    }
}

/// What one mapping from FHIR carries along.
struct Out<'m> {
    map: &'m Mappings,
    warnings: Vec<String>,
}

/// Maps a FHIR JSON body (a Bundle, or one resource) to an HL7v2 message. `now` is MSH-7 and
/// `control_id` MSH-10.
pub fn to_hl7v2(
    map: &Mappings,
    json: &[u8],
    now: &str,
    control_id: &str,
) -> Result<Reversed, MapError> {
    let body: Value = serde_json::from_slice(json)
        .map_err(|e| MapError::Missing(format!("not FHIR JSON: {e}")))?;
    // Each resource with the names it can be referred to by: its fullUrl and `Type/id`.
    let resources: Vec<(&Value, Vec<String>)> = match s(&body, "resourceType") {
        "Bundle" => body
            .get("entry")
            .and_then(Value::as_array)
            .map(|es| {
                es.iter()
                    .filter_map(|e| {
                        let r = e.get("resource")?;
                        Some((r, names(r, Some(s(e, "fullUrl")))))
                    })
                    .collect()
            })
            .unwrap_or_default(),
        "" => {
            return Err(MapError::Missing(
                "no resourceType: not a FHIR resource".into(),
            ));
        }
        _ => vec![(&body, names(&body, None))],
    };
    let index: std::collections::HashMap<&str, &Value> = resources
        .iter()
        .flat_map(|(r, ns)| ns.iter().map(move |n| (n.as_str(), *r)))
        .collect();
    let of = |t: &str| -> Vec<&Value> {
        resources
            .iter()
            .map(|(r, _)| *r)
            .filter(|r| s(r, "resourceType") == t)
            .collect()
    };
    let patients = of("Patient");
    let patient = match patients.as_slice() {
        [one] => *one,
        [] => {
            return Err(MapError::Missing(
                "no Patient: an HL7v2 message needs the patient for its PID".into(),
            ));
        }
        _ => {
            return Err(MapError::Missing(format!(
                "{} Patients: an HL7v2 message is about one patient; send one per request",
                patients.len()
            )));
        }
    };
    let patient_names = names(patient, None);
    let about_patient = |r: &Value| {
        let subject = r.pointer("/subject/reference").and_then(Value::as_str);
        subject.is_none_or(|sub| {
            index.get(sub).is_some_and(|p| std::ptr::eq(*p, patient))
                || patient_names.iter().any(|n| n == sub)
        })
    };
    let mut out = Out {
        map,
        warnings: Vec::new(),
    };
    let reports = of("DiagnosticReport");
    if let Some(other) = reports.iter().find(|r| !about_patient(r)) {
        return Err(MapError::Missing(format!(
            "DiagnosticReport {:?} is about another patient than the Bundle's Patient",
            s(other, "id")
        )));
    }
    let encounter = of("Encounter").into_iter().find(|e| about_patient(e));
    let (kind, structure) = match (reports.is_empty(), encounter.is_some()) {
        (false, _) => ("ORU^R01", "ORU_R01"),
        (true, true) => ("ADT^A08", "ADT_A01"),
        (true, false) => ("ADT^A31", "ADT_A05"),
    };
    let mut segments = Vec::new();
    let mut msh = Segment::new("MSH");
    msh.set_raw(1, "^~\\&".into());
    msh.set(2, &["WYVERN"]);
    msh.set(6, &[now]);
    msh.set_raw(8, format!("{kind}^{structure}"));
    msh.set(9, &[control_id]);
    msh.set(10, &["P"]);
    msh.set(11, &["2.5.1"]);
    // MSH's fields are counted from the separator: the writer's n is one less than MSH-n.
    segments.push(msh.finish());
    if kind.starts_with("ADT") {
        let mut evn = Segment::new("EVN");
        evn.set(1, &[&kind[4..]]);
        evn.set(2, &[now]);
        segments.push(evn.finish());
    }
    segments.push(pid(&mut out, patient));
    match encounter {
        Some(e) => segments.push(pv1(&mut out, e)),
        // ADT_A05 requires PV1: "not applicable".
        None if kind == "ADT^A31" => segments.push("PV1|1|N".into()),
        None => {}
    }
    let mut results = 0;
    for (n, report) in reports.iter().enumerate() {
        let mut seen = std::collections::HashSet::new();
        let observations: Vec<&Value> = report
            .get("result")
            .and_then(Value::as_array)
            .map(|refs| {
                refs.iter()
                    .filter_map(|r| index.get(s(r, "reference")).copied())
                    .filter(|o| seen.insert(*o as *const Value))
                    .collect()
            })
            .unwrap_or_default();
        let named = report
            .get("result")
            .and_then(Value::as_array)
            .map_or(0, Vec::len);
        if observations.len() < named {
            out.warnings.push(format!(
                "DiagnosticReport {:?} names {named} result(s); {} are in the Bundle and go as OBX",
                s(report, "id"),
                observations.len()
            ));
        }
        segments.push(obr(&mut out, n + 1, report));
        for (i, o) in observations.iter().enumerate() {
            results += 1;
            if results > MAX_RESULTS {
                return Err(MapError::Missing(format!(
                    "more than {MAX_RESULTS} results: too many for one message"
                )));
            }
            segments.push(obx(&mut out, i + 1, o));
        }
    }
    let mut message = segments.join("\r");
    message.push('\r');
    if message.len() > MAX_MESSAGE {
        return Err(MapError::Missing(format!(
            "the message would be over {} MiB",
            MAX_MESSAGE >> 20
        )));
    }
    Ok(Reversed {
        message,
        warnings: out.warnings,
    })
}

/// What a resource can be referred to by: its `fullUrl` in a Bundle and `Type/id`.
fn names(r: &Value, full_url: Option<&str>) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(u) = full_url.filter(|u| !u.is_empty()) {
        out.push(u.to_string());
    }
    let (kind, id) = (s(r, "resourceType"), s(r, "id"));
    if !id.is_empty() {
        out.push(format!("{kind}/{id}"));
    }
    out
}

fn pid(out: &mut Out<'_>, p: &Value) -> String {
    let systems = &out.map.map.systems;
    let mut seg = Segment::new("PID");
    seg.set(1, &["1"]);
    let ids: Vec<String> = p
        .get("identifier")
        .and_then(Value::as_array)
        .map(|ids| {
            ids.iter()
                .map(|i| {
                    let (system, value) = (s(i, "system"), s(i, "value"));
                    if system == systems.nhs_number {
                        repetition(&[value, "", "", "NHS", "NH"])
                    } else {
                        let kind = i
                            .pointer("/type/coding/0/code")
                            .and_then(Value::as_str)
                            .unwrap_or("PI");
                        // The authority is the system's last-but-one part, as the forward
                        // mapping wrote it (`…/Id/{authority}/{type}`), upper-cased.
                        let parts: Vec<&str> = system.rsplit('/').collect();
                        let authority = parts
                            .get(1)
                            .map(|a| a.to_ascii_uppercase())
                            .unwrap_or_default();
                        repetition(&[value, "", "", &authority, kind])
                    }
                })
                .collect()
        })
        .unwrap_or_default();
    seg.set_raw(3, ids.join("~"));
    if let Some(name) = p.pointer("/name/0") {
        let given: Vec<&str> = name
            .get("given")
            .and_then(Value::as_array)
            .map(|g| g.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        let prefix = name
            .pointer("/prefix/0")
            .and_then(Value::as_str)
            .unwrap_or_default();
        seg.set(
            5,
            &[
                s(name, "family"),
                given.first().copied().unwrap_or_default(),
                &given.get(1..).map(|g| g.join(" ")).unwrap_or_default(),
                "",
                prefix,
            ],
        );
    }
    seg.set(7, &[&ts(s(p, "birthDate"))]);
    let gender = s(p, "gender");
    if !gender.is_empty() {
        match out.map.v2_code(&out.map.map.coded.patient_gender, gender) {
            Some(code) => seg.set(8, &[code]),
            None => out.warnings.push(format!(
                "gender {gender:?} has no v2 code: PID-8 left empty"
            )),
        }
    }
    if let Some(a) = p.pointer("/address/0") {
        let lines: Vec<&str> = a
            .get("line")
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        seg.set(
            11,
            &[
                lines.first().copied().unwrap_or_default(),
                &lines.get(1..).map(|l| l.join(", ")).unwrap_or_default(),
                s(a, "city"),
                s(a, "district"),
                s(a, "postalCode"),
                s(a, "country"),
            ],
        );
    }
    if let Some(t) = p.get("deceasedDateTime").and_then(Value::as_str) {
        seg.set(29, &[&ts(t)]);
        seg.set(30, &["Y"]);
    } else if p.get("deceasedBoolean").and_then(Value::as_bool) == Some(true) {
        seg.set(30, &["Y"]);
    }
    seg.finish()
}

fn pv1(out: &mut Out<'_>, e: &Value) -> String {
    let mut seg = Segment::new("PV1");
    seg.set(1, &["1"]);
    let class = e
        .pointer("/class/code")
        .and_then(Value::as_str)
        .unwrap_or_default();
    match out.map.v2_code(&out.map.map.coded.encounter_class, class) {
        Some(code) => seg.set(2, &[code]),
        None => {
            out.warnings.push(format!(
                "Encounter.class {class:?} has no v2 code: PV1-2 is U"
            ));
            seg.set(2, &["U"]);
        }
    }
    if let Some(visit) = e.pointer("/identifier/0/value").and_then(Value::as_str) {
        seg.set(19, &[visit]);
    }
    seg.set(
        44,
        &[&ts(e
            .pointer("/period/start")
            .and_then(Value::as_str)
            .unwrap_or_default())],
    );
    seg.set(
        45,
        &[&ts(e
            .pointer("/period/end")
            .and_then(Value::as_str)
            .unwrap_or_default())],
    );
    seg.finish()
}

/// A CodeableConcept's first coding as CE (code^text^system name, the system named back
/// through the coding systems table when it has a name there).
fn ce(out: &Out<'_>, c: Option<&Value>) -> String {
    let Some(c) = c else { return String::new() };
    let coding = c.pointer("/coding/0");
    let code = coding.map(|c| s(c, "code")).unwrap_or_default();
    let display = coding
        .map(|c| s(c, "display"))
        .filter(|d| !d.is_empty())
        .unwrap_or(s(c, "text"));
    let system = coding.map(|c| s(c, "system")).unwrap_or_default();
    let name = out
        .map
        .tables
        .get(&out.map.map.coding_systems)
        .and_then(|t| {
            t.codes
                .iter()
                .filter(|(_, uri)| *uri == system)
                .map(|(n, _)| n.as_str())
                .min()
        })
        .unwrap_or_default();
    repetition(&[code, display, name])
}

fn obr(out: &mut Out<'_>, n: usize, r: &Value) -> String {
    let mut seg = Segment::new("OBR");
    seg.set(1, &[&n.to_string()]);
    if let Some(id) = r.pointer("/identifier/0/value").and_then(Value::as_str) {
        seg.set(3, &[id]);
    }
    seg.set_raw(4, ce(out, r.get("code")));
    seg.set(7, &[&ts(s(r, "effectiveDateTime"))]);
    let status = s(r, "status");
    if let Some(code) = out.map.v2_code(&out.map.map.coded.report_status, status) {
        seg.set(25, &[code]);
    }
    seg.finish()
}

fn obx(out: &mut Out<'_>, n: usize, o: &Value) -> String {
    let mut seg = Segment::new("OBX");
    seg.set(1, &[&n.to_string()]);
    seg.set_raw(3, ce(out, o.get("code")));
    if let Some(q) = o.get("valueQuantity") {
        seg.set(2, &["NM"]);
        let value = q.get("value").map(Value::to_string).unwrap_or_default();
        seg.set(5, &[&value]);
        let unit = [s(q, "code"), s(q, "unit")]
            .into_iter()
            .find(|u| !u.is_empty())
            .unwrap_or_default();
        seg.set(6, &[unit]);
    } else if let Some(text) = o.get("valueString").and_then(Value::as_str) {
        seg.set(2, &["ST"]);
        seg.set(5, &[text]);
    } else if let Some(c) = o.get("valueCodeableConcept") {
        seg.set(2, &["CE"]);
        seg.set_raw(5, ce(out, Some(c)));
    } else if let Some(t) = o.get("valueDateTime").and_then(Value::as_str) {
        seg.set(2, &["DTM"]);
        seg.set(5, &[&ts(t)]);
    } else if o.get("valueRange").is_some() || o.get("valueRatio").is_some() {
        out.warnings.push(
            "an Observation's range or ratio value is not carried back: OBX-5 left empty".into(),
        );
    }
    if let Some(range) = o.pointer("/referenceRange/0") {
        let low = range.pointer("/low/value").map(Value::to_string);
        let high = range.pointer("/high/value").map(Value::to_string);
        let text = match (low, high) {
            (Some(l), Some(h)) => format!("{l}-{h}"),
            (None, Some(h)) => format!("<{h}"),
            (Some(l), None) => format!(">{l}"),
            (None, None) => s(range, "text").to_string(),
        };
        seg.set(7, &[&text]);
    }
    let flags: Vec<String> = o
        .get("interpretation")
        .and_then(Value::as_array)
        .map(|is| {
            is.iter()
                .filter_map(|i| i.pointer("/coding/0/code").and_then(Value::as_str))
                .filter_map(|c| out.map.v2_code(&out.map.map.coded.interpretation, c))
                .map(|c| repetition(&[c]))
                .collect()
        })
        .unwrap_or_default();
    seg.set_raw(8, flags.join("~"));
    if let Some(code) = out
        .map
        .v2_code(&out.map.map.coded.observation_status, s(o, "status"))
    {
        seg.set(11, &[code]);
    }
    seg.set(14, &[&ts(s(o, "effectiveDateTime"))]);
    seg.finish()
}
