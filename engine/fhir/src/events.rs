//! Which HL7v2 events the mapping takes, and what each does in FHIR. This table is the one
//! place that says so: the mapper dispatches on it, a refusal lists it, and the README's list
//! is checked against [`mapped_events`].

/// What an event does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Effect {
    /// The patient, the visit (PV1) as an Encounter in this state, and the clinical segments.
    Visit(VisitStatus),
    /// The patient (and the clinical segments), no visit: person-level events.
    Person,
    /// The patient's record withdrawn: the Patient written `active: false`.
    PersonDeleted,
    /// MRG: the merged-away patient replaced by the survivor.
    Merge,
    /// A47: the patient found by MRG-1's identifier given PID-3's identifiers.
    IdentifierMove,
    /// A41: accounts merged (MRG-3 into PID-18): the patient updated; accounts are not mapped.
    AccountMerge,
    /// ORU^R01: DiagnosticReports and Observations.
    Results,
    /// ORM^O01, OML^O21, OMG^O19: ServiceRequests (and Specimens).
    Orders,
    /// VXU^V04: Immunizations.
    Immunisation,
    /// MDM: a DocumentReference (and a Binary with the document).
    Document(crate::documents::DocumentEvent),
    /// PPR: Conditions on the problem list (`true`: deleted).
    Problems(bool),
    /// REF: a referral ServiceRequest (`true`: cancelled).
    Referral(bool),
    /// RDE, RDS: MedicationRequests or MedicationDispenses.
    Medication(crate::pharmacy::Pharmacy),
    /// SIU: an Appointment left as this.
    Appointment(crate::scheduling::AppointmentStatus),
}

/// The Encounter's status an event leaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum VisitStatus {
    InProgress,
    Planned,
    Finished,
    /// `finished` when PV1-45 (discharge time) is there, else `in-progress` (an update).
    ByDischargeTime,
    /// A pending or planned visit that will not happen (it never began).
    Cancelled,
    /// A visit recorded in error (an admission cancelled after the fact).
    EnteredInError,
}

impl VisitStatus {
    pub(crate) fn fhir(self, discharged: bool) -> &'static str {
        match self {
            VisitStatus::InProgress => "in-progress",
            VisitStatus::Planned => "planned",
            VisitStatus::Finished => "finished",
            VisitStatus::ByDischargeTime if discharged => "finished",
            VisitStatus::ByDischargeTime => "in-progress",
            VisitStatus::Cancelled => "cancelled",
            VisitStatus::EnteredInError => "entered-in-error",
        }
    }
}

/// One event the mapping takes.
pub(crate) struct Event {
    pub code: &'static str,
    pub trigger: &'static str,
    pub effect: Effect,
}

const fn adt(trigger: &'static str, effect: Effect) -> Event {
    Event {
        code: "ADT",
        trigger,
        effect,
    }
}

use crate::documents::DocumentEvent::{
    Addendum, Cancel, Edit, Original, Replacement, StatusChange,
};
use crate::pharmacy::Pharmacy::{Dispense, Order};
use crate::scheduling::AppointmentStatus::{
    Booked, Cancelled as Unbooked, EnteredInError as Deleted, Noshow,
};
use Effect::{
    AccountMerge, Appointment, IdentifierMove, Immunisation, Merge, Orders, Person, PersonDeleted,
    Results, Visit,
};
use Effect::{Document, Medication, Problems, Referral};
use VisitStatus::{ByDischargeTime, Cancelled, EnteredInError, Finished, InProgress, Planned};

/// Every event mapped, in the order the README lists them.
pub(crate) const EVENTS: &[Event] = &[
    adt("A01", Visit(InProgress)),      // admit
    adt("A02", Visit(InProgress)),      // transfer
    adt("A03", Visit(Finished)),        // discharge
    adt("A04", Visit(InProgress)),      // register an outpatient
    adt("A05", Visit(Planned)),         // pre-admit
    adt("A06", Visit(InProgress)),      // outpatient becomes inpatient (PV1-2)
    adt("A07", Visit(InProgress)),      // inpatient becomes outpatient (PV1-2)
    adt("A08", Visit(ByDischargeTime)), // update
    adt("A09", Visit(InProgress)),      // patient departing (tracking)
    adt("A10", Visit(InProgress)),      // patient arriving (tracking)
    adt("A11", Visit(EnteredInError)),  // cancel admit
    adt("A12", Visit(InProgress)),      // cancel transfer: PV1-3 is where the patient stays
    adt("A13", Visit(InProgress)),      // cancel discharge
    adt("A14", Visit(Planned)),         // pending admit
    adt("A15", Visit(InProgress)),      // pending transfer
    adt("A16", Visit(InProgress)),      // pending discharge
    adt("A25", Visit(InProgress)),      // cancel pending discharge
    adt("A26", Visit(InProgress)),      // cancel pending transfer
    adt("A27", Visit(Cancelled)),       // cancel pending admit
    adt("A28", Person),                 // add person
    adt("A29", PersonDeleted),          // delete person information
    adt("A31", Person),                 // update person
    adt("A38", Visit(Cancelled)),       // cancel pre-admit
    adt("A40", Merge),                  // merge patient
    adt("A41", AccountMerge),           // merge account
    adt("A45", Visit(ByDischargeTime)), // move visit: PV1-19's visit to PID's patient
    adt("A47", IdentifierMove),         // change patient identifier list
    adt("A60", Person),                 // update adverse reactions (IAM)
    other("ORU", "R01", Results),
    other("OUL", "R22", Results), // specimen oriented
    other("OUL", "R23", Results), // specimen container oriented
    other("OUL", "R24", Results), // order oriented
    other("ORM", "O01", Orders),
    other("OML", "O21", Orders),
    other("OMG", "O19", Orders),
    other("SIU", "S12", Appointment(Booked)), // new booking
    other("SIU", "S13", Appointment(Booked)), // rescheduled
    other("SIU", "S14", Appointment(Booked)), // modified
    other("SIU", "S15", Appointment(Unbooked)), // cancelled
    other("SIU", "S16", Appointment(Unbooked)), // discontinued
    other("SIU", "S17", Appointment(Deleted)), // deleted
    other("SIU", "S26", Appointment(Noshow)), // not attended
    other("VXU", "V04", Immunisation),
    other("MDM", "T01", Document(Original)),
    other("MDM", "T02", Document(Original)),
    other("MDM", "T03", Document(StatusChange)),
    other("MDM", "T04", Document(StatusChange)),
    other("MDM", "T05", Document(Addendum)),
    other("MDM", "T06", Document(Addendum)),
    other("MDM", "T07", Document(Edit)),
    other("MDM", "T08", Document(Edit)),
    other("MDM", "T09", Document(Replacement)),
    other("MDM", "T10", Document(Replacement)),
    other("MDM", "T11", Document(Cancel)),
    other("PPR", "PC1", Problems(false)), // add
    other("PPR", "PC2", Problems(false)), // update
    other("PPR", "PC3", Problems(true)),  // delete
    other("REF", "I12", Referral(false)), // new
    other("REF", "I13", Referral(false)), // modified
    other("REF", "I14", Referral(true)),  // cancelled
    other("RDE", "O11", Medication(Order)),
    other("RDE", "O25", Medication(Order)),
    other("RDS", "O13", Medication(Dispense)),
];

const fn other(code: &'static str, trigger: &'static str, effect: Effect) -> Event {
    Event {
        code,
        trigger,
        effect,
    }
}

/// What `code^trigger` does, if it is mapped.
pub(crate) fn effect(code: &str, trigger: &str) -> Option<Effect> {
    EVENTS
        .iter()
        .find(|e| e.code == code && e.trigger == trigger)
        .map(|e| e.effect)
}

/// The mapped events in words, runs of ADT events joined (`ADT A01–A16, A25–A29, …; ORU^R01`):
/// what a refusal and the README say.
pub fn mapped_events() -> String {
    let adt: Vec<u32> = EVENTS
        .iter()
        .filter(|e| e.code == "ADT")
        .filter_map(|e| e.trigger.strip_prefix('A')?.parse().ok())
        .collect();
    let mut runs: Vec<String> = Vec::new();
    let mut i = 0;
    while i < adt.len() {
        let mut j = i;
        while j + 1 < adt.len() && adt[j + 1] == adt[j] + 1 {
            j += 1;
        }
        runs.push(match j - i {
            0 => format!("A{:02}", adt[i]),
            1 => format!("A{:02}, A{:02}", adt[i], adt[j]),
            _ => format!("A{:02}–A{:02}", adt[i], adt[j]),
        });
        i = j + 1;
    }
    let mut others: Vec<String> = Vec::new();
    for e in EVENTS.iter().filter(|e| e.code != "ADT") {
        match others.last_mut() {
            Some(last) if last.starts_with(e.code) => {
                last.push('/');
                last.push_str(e.trigger);
            }
            _ => others.push(format!("{}^{}", e.code, e.trigger)),
        }
    }
    format!("ADT {}; {}", runs.join(", "), others.join(", "))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_list_in_words_is_made_from_the_table() {
        assert_eq!(
            mapped_events(),
            "ADT A01–A16, A25–A29, A31, A38, A40, A41, A45, A47, A60; ORU^R01, OUL^R22/R23/R24, ORM^O01, OML^O21, OMG^O19, SIU^S12/S13/S14/S15/S16/S17/S26, VXU^V04, MDM^T01/T02/T03/T04/T05/T06/T07/T08/T09/T10/T11, PPR^PC1/PC2/PC3, REF^I12/I13/I14, RDE^O11/O25, RDS^O13"
        );
        assert_eq!(effect("ADT", "A11"), Some(Visit(EnteredInError)));
        assert_eq!(effect("ADT", "A17"), None);
    }
}
