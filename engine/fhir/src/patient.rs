//! PID/PD1 → Patient (NHS number only when modulus-11 valid, with its verification status;
//! every other identifier kept as a local one), and A40 merges as Patient `link`s. The
//! clinical segments about the patient are in [`crate::clinical`].

use std::borrow::Cow;

use wyvern_hl7::{IndexedSegment, NhsNumber, NhsNumberError, Value as V2};

use crate::bundle::{StableId, Upsert};
use crate::datatypes::{
    address, comp, concept, human_name, organization, practitioner, reference, reps, telecom, text,
};
use crate::ids::stable_uuid;
use crate::json::{Item, JsonWriter, Key};
use crate::localtime::{fhir_date, fhir_datetime};
use crate::{Context, MapError};

const NHS_MARKERS: [&str; 3] = ["NHS", "NH", "NHSNBR"];
const VERIFICATION_EXT: &str =
    "https://fhir.hl7.org.uk/StructureDefinition/Extension-UKCore-NHSNumberVerificationStatus";

/// The patient a message is about, as the Bundle refers to it.
pub struct PatientRef {
    pub reference: StableId,
    pub display: String,
    /// `system|value` of the identifier it was matched on.
    pub key: String,
}

impl PatientRef {
    pub fn write(&self, w: &mut JsonWriter, k: impl Key) {
        reference(w, k, self.reference.url(), &self.display);
    }
}

/// One CX as read: value, assigning authority, type, and (when it is marked as an NHS
/// number) whether that number is valid.
struct Cx<'a> {
    value: Cow<'a, str>,
    authority: Cow<'a, str>,
    kind: Cow<'a, str>,
    nhs: Option<Result<NhsNumber, NhsNumberError>>,
}

/// (system, value) of the identifier a patient is matched on.
type Identity = (String, String);

/// Writes the `identifier` list of `list` (a valid NHS number first, then the others in
/// order) and returns the identity to match the patient on (the NHS number, else the first
/// local identifier). `list` pairs each CX with whether it is an NHS number without saying
/// so (PID-2 in v2.3). The second result says whether an NHS number was found.
fn identifiers(
    cx: &mut Context<'_, '_>,
    w: &mut JsonWriter,
    where_: &str,
    list: &[(V2<'_>, bool)],
    status: &str,
) -> (Option<Identity>, bool) {
    let map = cx.map;
    let read: Vec<Cx<'_>> = list
        .iter()
        .map(|(v, implied)| {
            let (value, authority, kind) = (
                comp(Some(*v), 1),
                comp(v.component(4), 1),
                comp(Some(*v), 5),
            );
            let marked = *implied
                || NHS_MARKERS
                    .iter()
                    .any(|m| m.eq_ignore_ascii_case(&authority) || m.eq_ignore_ascii_case(&kind));
            let nhs = (marked && !value.is_empty()).then(|| NhsNumber::parse(&value));
            Cx {
                value,
                authority,
                kind,
                nhs,
            }
        })
        .collect();
    let national = read.iter().position(|c| matches!(c.nhs, Some(Ok(_))));
    let mut identity = None;
    let open = w.open_array("identifier");
    if let Some(Cx {
        nhs: Some(Ok(n)), ..
    }) = national.map(|i| &read[i])
    {
        let system = &map.map.systems.nhs_number;
        w.object(Item, |w| {
            if let Some(c) = map.coding(&map.map.coded.nhs_number_status, status) {
                w.array("extension", |w| {
                    w.object(Item, |w| {
                        w.str("url", VERIFICATION_EXT);
                        concept(w, "valueCodeableConcept", &c);
                    })
                });
            }
            w.str("system", system);
            w.str("value", n.as_str());
        });
        identity = Some((system.clone(), n.as_str().to_string()));
    }
    let mut local = None;
    for (i, c) in read.iter().enumerate() {
        if c.value.is_empty() {
            continue;
        }
        match &c.nhs {
            Some(Ok(_)) => continue, // the national one, or the same person's number twice
            Some(Err(e)) => cx.warn(format!(
                "{where_} repetition {} holds {:?}, not a valid NHS number ({e}); kept as a local identifier",
                i + 1,
                c.value
            )),
            None => {}
        }
        let system = cx.system(&map.map.systems.local_patient, &c.authority, &c.kind);
        w.object(Item, |w| {
            w.str("use", "usual");
            if let Some(t) = map.coding(&map.map.coded.identifier_type, &c.kind) {
                concept(w, "type", &t);
            }
            w.str("system", &system);
            w.str("value", &c.value);
        });
        if local.is_none() {
            local = Some((system, c.value.to_string()));
        }
    }
    w.close(open);
    (identity.or(local), national.is_some())
}

/// A Patient being built: its members, the identity it is matched on, a display name.
type Built = (JsonWriter, Identity, String);

/// The Patient resource of PID (and PD1), its identity and how to upsert it.
fn build(cx: &mut Context<'_, '_>, pid: &IndexedSegment<'_>) -> Result<Built, MapError> {
    let map = cx.map;
    let status = text(pid, 32);
    let mut list: Vec<(V2<'_>, bool)> = reps(pid, 3).map(|r| (r, false)).collect();
    // v2.3 feeds often carry the NHS number in PID-2 (external id), unmarked.
    if let Some(ext) = pid
        .field(2)
        .and_then(|f| f.repetition(1))
        .filter(|v| !v.is_empty())
    {
        let number = comp(Some(ext), 1);
        if NhsNumber::parse(&number).is_ok()
            && !list.iter().any(|(r, _)| comp(Some(*r), 1) == number)
        {
            list.push((ext, true));
        }
    }
    let mut p = cx.writer();
    let (key, national) = identifiers(cx, &mut p, "PID-3", &list, &status);
    let key = key.ok_or_else(|| {
        MapError::Missing(
            "PID-3 has no identifier: the patient cannot be matched in the record".into(),
        )
    })?;
    if !national {
        cx.warn("no valid NHS number in PID-3: the patient is matched on a local identifier");
    }
    let names: Vec<_> = reps(pid, 5).map(human_name).collect();
    let display = names.first().map(|n| n.display()).unwrap_or_default();
    p.array("name", |w| names.iter().for_each(|n| n.write(w, Item)));
    telecom(&mut p, pid, 13, 14);
    if let Some(g) = map.coding(&map.map.coded.patient_gender, &text(pid, 8)) {
        p.str("gender", g.code);
    }
    if let Some(d) = fhir_date(&text(pid, 7)) {
        p.str("birthDate", &d);
    }
    match (
        fhir_datetime(&text(pid, 29), map.map.local_time),
        &*text(pid, 30),
    ) {
        (Some(d), _) => p.str("deceasedDateTime", &d),
        (None, "Y") => p.bool("deceasedBoolean", true),
        _ => {}
    }
    p.array("address", |w| {
        reps(pid, 11).for_each(|v| address(w, Item, v))
    });
    if let Some(m) = map.coding(&map.map.coded.patient_marital_status, &text(pid, 16)) {
        concept(&mut p, "maritalStatus", &m);
    }
    if let Some(pd1) = cx.segment("PD1", 4) {
        let open = p.open_array("generalPractitioner");
        if let Some(xon) = pd1.field(3).and_then(|f| f.repetition(1)) {
            let ods = [comp(Some(xon), 10), comp(Some(xon), 3)]
                .into_iter()
                .find(|s| !s.is_empty())
                .unwrap_or_default();
            if let Some(org) = organization(cx, &ods, &comp(Some(xon), 1)) {
                org.write(&mut p, Item);
            }
        }
        if let Some(xcn) = pd1
            .field(4)
            .and_then(|f| f.repetition(1))
            .filter(|v| !v.is_empty())
            && let Some(gp) = practitioner(cx, xcn)
        {
            gp.write(&mut p, Item);
        }
        p.close(open);
    }
    Ok((p, key, display))
}

fn add(cx: &mut Context<'_, '_>, p: JsonWriter, key: &Identity, display: String) -> PatientRef {
    let k = format!("{}|{}", key.0, key.1);
    let upsert = Upsert::Identifier {
        system: &key.0,
        value: &key.1,
    };
    let reference = cx.add("Patient", &[&k], p, upsert);
    PatientRef {
        reference,
        display,
        key: k,
    }
}

pub fn map(cx: &mut Context<'_, '_>) -> Result<PatientRef, MapError> {
    let pid = cx
        .segment("PID", 32)
        .ok_or_else(|| MapError::Missing("no PID segment: there is no patient to map".into()))?;
    let (p, key, display) = build(cx, &pid)?;
    Ok(add(cx, p, &key, display))
}

/// What A40 and A47 both read: the patient in PID (built, with its key and name), and the one
/// MRG-1 names (a writer holding its identifiers, and its key). `event` names them in errors.
struct PriorAndCurrent {
    current: JsonWriter,
    key: Identity,
    display: String,
    prior: JsonWriter,
    prior_key: Identity,
}

fn prior_and_current(cx: &mut Context<'_, '_>, event: &str) -> Result<PriorAndCurrent, MapError> {
    let pid = cx.segment("PID", 32).ok_or_else(|| {
        MapError::Missing(format!(
            "no PID segment: {event} needs the patient's identifiers"
        ))
    })?;
    let mrg = cx.segment("MRG", 1).ok_or_else(|| {
        MapError::Missing(format!(
            "no MRG segment: {event} needs the patient's prior identifier"
        ))
    })?;
    let (current, key, display) = build(cx, &pid)?;
    let listed: Vec<(V2<'_>, bool)> = reps(&mrg, 1).map(|r| (r, false)).collect();
    let mut prior = cx.writer();
    let (prior_key, _) = identifiers(cx, &mut prior, "MRG-1", &listed, "");
    let prior_key = prior_key.ok_or_else(|| {
        MapError::Missing("MRG-1 has no identifier: the patient it names cannot be found".into())
    })?;
    Ok(PriorAndCurrent {
        current,
        key,
        display,
        prior,
        prior_key,
    })
}

/// A47: the identifier in MRG-1 was wrong; PID-3 holds the right ones. The Patient found by
/// the old identifier (the same stable id) is written with the new identifiers, so the record
/// moves the person's number rather than making a second person.
pub fn move_identifiers(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let p = prior_and_current(cx, "A47")?;
    add(cx, p.current, &p.prior_key, p.display);
    Ok(())
}

/// A29 (delete person information): the record withdraws the person, so the Patient is
/// written inactive — never deleted, since a shared record may hold what others wrote.
pub fn withdraw(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let pid = cx
        .segment("PID", 32)
        .ok_or_else(|| MapError::Missing("no PID segment: there is no patient to map".into()))?;
    let (mut p, key, display) = build(cx, &pid)?;
    p.bool("active", false);
    add(cx, p, &key, display);
    cx.warn("A29 deletes the person's information: the Patient is written inactive, not deleted");
    Ok(())
}

/// `[{ "other": { "reference": … }, "type": … }]`
fn link(w: &mut JsonWriter, other: &Identity, kind: &str) {
    let id = stable_uuid("Patient", &[&other.0, "|", &other.1]);
    w.array("link", |w| {
        w.object(Item, |w| {
            w.object("other", |w| w.str("reference", id.url()));
            w.str("type", kind);
        })
    });
}

/// A40: the surviving patient (PID) `replaces` the one named in MRG-1, which becomes
/// inactive and `replaced-by` the survivor.
pub fn merge(cx: &mut Context<'_, '_>) -> Result<(), MapError> {
    let PriorAndCurrent {
        current: mut survivor,
        key,
        display,
        prior: mut old,
        prior_key: old_key,
    } = prior_and_current(cx, "A40")?;
    link(&mut survivor, &old_key, "replaces");
    add(cx, survivor, &key, display);
    old.bool("active", false);
    link(&mut old, &key, "replaced-by");
    add(cx, old, &old_key, String::new());
    Ok(())
}
