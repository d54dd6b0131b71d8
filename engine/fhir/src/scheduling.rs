//! Scheduling (SIU^S12–S17, S26) → an Appointment: booked, rescheduled, modified, cancelled,
//! discontinued, deleted or not attended, as the event says. It is kept under the filler's
//! appointment id (SCH-2, else the placer's SCH-1), so each event about one appointment updates
//! the same resource. Its times come from SCH-11 (TQ start and end), else the first AIS, AIL or
//! AIP that gives a start; its participants are the patient, each AIP's practitioner and each
//! AIL's location.

use wyvern_hl7::{IndexedSegment, Segment, Value as V2};

use crate::bundle::Upsert;
use crate::datatypes::{Ref, codeable, comp, practitioner, text};
use crate::json::{Item, JsonWriter};
use crate::localtime::{fhir_datetime, fhir_datetime_plus};
use crate::patient;
use crate::{Context, MapError};

/// What an event leaves the appointment as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum AppointmentStatus {
    Booked,
    Cancelled,
    EnteredInError,
    Noshow,
}

impl AppointmentStatus {
    fn fhir(self) -> &'static str {
        match self {
            AppointmentStatus::Booked => "booked",
            AppointmentStatus::Cancelled => "cancelled",
            AppointmentStatus::EnteredInError => "entered-in-error",
            AppointmentStatus::Noshow => "noshow",
        }
    }
}

pub fn map(cx: &mut Context<'_, '_>, status: AppointmentStatus) -> Result<(), MapError> {
    let sch = cx.segment("SCH", 11).ok_or_else(|| {
        MapError::Missing("no SCH segment: there is no appointment to map".into())
    })?;
    let patient = patient::map(cx)?;
    let map = cx.map;
    let zone = map.map.local_time;
    let ei = |n: usize| {
        let v = sch.field(n).and_then(|f| f.repetition(1));
        (comp(v, 1).into_owned(), comp(v, 2).into_owned())
    };
    let (placer, filler) = (ei(1), ei(2));
    let Some((number, namespace)) = [&filler, &placer]
        .into_iter()
        .find(|(n, _)| !n.is_empty())
        .cloned()
    else {
        return Err(MapError::Missing(
            "SCH-1 and SCH-2 are empty: the appointment has no id to be kept under".into(),
        ));
    };
    // The placer's and the filler's numbers are two numbering schemes: each its own system,
    // and the appointment kept under the filler's when it has one.
    let role = if filler.0.is_empty() {
        "placer"
    } else {
        "filler"
    };
    let system_of = |cx: &Context<'_, '_>, ns: &str, role: &str| {
        format!("{}/{role}", cx.system(&map.map.systems.appointment, ns, ""))
    };
    let system = system_of(cx, &namespace, role);
    let segments: Vec<Segment<'_>> = cx.msg.segments().collect();
    let tq = sch.field(11).and_then(|f| f.repetition(1));
    let start_v2 = Some(comp(tq.and_then(|q| q.component(4)), 1).into_owned())
        .filter(|t| !t.is_empty())
        .or_else(|| resource_start(&segments));
    // Appointment.start and end are instants: a time to the second with its offset.
    let instant = |t: Option<String>| t.filter(|t| t.len() >= 25);
    let start = instant(start_v2.as_deref().and_then(|t| fhir_datetime(t, zone)));
    // The length in minutes: SCH-9 (units SCH-10), else the service's AIS-7 (units AIS-8).
    let length = |seg: &IndexedSegment<'_>, n: usize| -> Option<u32> {
        let unit = comp(seg.field(n + 1).and_then(|f| f.repetition(1)), 1);
        let minutes = unit.is_empty() || unit.eq_ignore_ascii_case("MIN");
        text(seg, n).trim().parse().ok().filter(|_| minutes)
    };
    let minutes = length(&sch, 9).or_else(|| {
        let ais = segments.iter().find(|s| s.id_bytes() == b"AIS")?;
        length(&ais.indexed_to(8), 7)
    });
    // The end as sent, else the start and the length.
    let end = instant(
        fhir_datetime(&comp(tq.and_then(|q| q.component(5)), 1), zone)
            .or_else(|| fhir_datetime_plus(start_v2.as_deref()?, i64::from(minutes?), zone)),
    );
    let minutes = minutes.filter(|m| *m > 0);
    if (start.is_none() || end.is_none()) && status != AppointmentStatus::Cancelled {
        cx.warn(format!(
            "the appointment has no {}: FHIR wants a start and an end on an Appointment that is {} (invariant app-3)",
            if start.is_none() { "start" } else { "end (SCH-11.5, or a length in SCH-9 or AIS-7)" },
            status.fhir()
        ));
    }
    let reason = codeable(cx, sch.field(7).and_then(|f| f.repetition(1)));
    let kind = codeable(cx, sch.field(8).and_then(|f| f.repetition(1)));
    let service = segments
        .iter()
        .find(|s| s.id_bytes() == b"AIS")
        .map(|s| codeable(cx, s.indexed_to(3).field(3).and_then(|f| f.repetition(1))))
        .filter(|c| !c.is_empty());
    let mut people: Vec<Ref> = Vec::new();
    let mut places: Vec<Ref> = Vec::new();
    for s in &segments {
        match s.id_bytes() {
            b"AIP" => {
                let aip = s.indexed_to(3);
                if let Some(who) = first(&aip, 3).and_then(|v| practitioner(cx, v)) {
                    people.push(who);
                }
            }
            b"AIL" => {
                let ail = s.indexed_to(3);
                if let Some(at) = first(&ail, 3).and_then(|v| crate::encounter::place(cx, v)) {
                    places.push(at);
                }
            }
            _ => {}
        }
    }
    let mut a = cx.writer();
    let open = a.open_array("identifier");
    for ((n, ns), role) in [(&filler, "filler"), (&placer, "placer")] {
        if !n.is_empty() {
            let system = system_of(cx, ns, role);
            a.object(Item, |w| {
                w.str("system", &system);
                w.str("value", n);
            });
        }
    }
    a.close(open);
    a.str("status", status.fhir());
    if let Some(s) = &service {
        a.array("serviceType", |w| s.write(w, Item));
    }
    if !kind.is_empty() {
        kind.write(&mut a, "appointmentType");
    }
    if !reason.is_empty() {
        a.array("reasonCode", |w| reason.write(w, Item));
    }
    a.opt_str("start", start.as_deref());
    a.opt_str("end", end.as_deref());
    if let Some(m) = minutes {
        a.raw("minutesDuration", &m.to_string());
    }
    a.opt_str("comment", comment(&segments).as_deref());
    a.array("participant", |w| {
        participant(w, |w| patient.write(w, "actor"));
        for r in people.iter().chain(&places) {
            participant(w, |w| r.write(w, "actor"));
        }
    });
    cx.add("Appointment", &[&system, "|", &number], a, Upsert::ById);
    Ok(())
}

/// The first repetition of field `n`, when it holds anything.
fn first<'a>(seg: &IndexedSegment<'a>, n: usize) -> Option<V2<'a>> {
    seg.field(n)
        .and_then(|f| f.repetition(1))
        .filter(|v| !v.is_empty())
}

/// The first start (a v2 timestamp) a resource segment gives: AIS-4, AIG-8, AIL-6 or AIP-6.
fn resource_start(segments: &[Segment<'_>]) -> Option<String> {
    segments.iter().find_map(|s| {
        let n = match s.id_bytes() {
            b"AIS" => 4,
            b"AIG" => 8,
            b"AIL" | b"AIP" => 6,
            _ => return None,
        };
        Some(comp(s.indexed_to(n).field(n).and_then(|f| f.repetition(1)), 1).into_owned())
            .filter(|t| !t.is_empty())
    })
}

/// A participant who has accepted (the booking system made the booking).
fn participant(w: &mut JsonWriter, actor: impl FnOnce(&mut JsonWriter)) {
    w.object(Item, |w| {
        actor(w);
        w.str("status", "accepted");
    });
}

/// The NTE after SCH, joined: the appointment's comment.
fn comment(segments: &[Segment<'_>]) -> Option<String> {
    let texts: Vec<String> = segments
        .iter()
        .filter(|s| s.id_bytes() == b"NTE")
        .map(|s| s.indexed_to(3))
        .map(|s| text(&s, 3).trim().to_string())
        .filter(|t| !t.is_empty())
        .collect();
    (!texts.is_empty()).then(|| texts.join("\n"))
}
