//! Which members a query asks: the regional patient index.
//!
//! The engine already knows where it sent every message: the store keeps, per NHS number, the
//! lanes (route and destination) that carried a message about that patient, past retention
//! (`wyvern_store::Operations::lanes_of`). A member that names its feeds (`fed_by`) is asked
//! only when one of them has carried the patient, so a query for a patient only CHIE holds
//! does not wait on DCR.
//!
//! The index is an economy, never a gate: when none of the indexed members' feeds has
//! carried the patient (a patient the feeds have not seen, or one registered some other way),
//! or the index cannot be read, every member is asked. Members without `fed_by` are always
//! asked.

use std::sync::Arc;

use wyvern_store::Operations;

/// Why a member is not asked, for the audit record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reach {
    Ask,
    /// The index shows other members' feeds carrying this patient, and none of this one's.
    NotInIndex,
    /// A later page, and earlier pages gave all this member holds.
    PagedPast,
}

/// The index, and each member's feeds (in the members' order).
#[derive(Debug)]
pub(crate) struct PatientIndex {
    operations: Arc<dyn Operations>,
    /// Per member: the `(route, destination)` lanes that feed it; empty: always asked.
    feeds: Vec<Vec<(String, String)>>,
}

impl PatientIndex {
    pub fn new(operations: Arc<dyn Operations>, feeds: Vec<Vec<(String, String)>>) -> Self {
        PatientIndex { operations, feeds }
    }

    /// For each member, whether this patient's query asks it. `serves`: per member, whether
    /// it serves what is asked (one that does not is no reason to skip the others).
    pub async fn reach(&self, nhs_number: &str, serves: &[bool]) -> Vec<Reach> {
        let all = vec![Reach::Ask; self.feeds.len()];
        if self.feeds.iter().all(Vec::is_empty) {
            return all;
        }
        let read = self.operations.lanes_of(nhs_number.to_string());
        let lanes = match tokio::time::timeout(INDEX_WAIT, read).await {
            Ok(Ok(lanes)) => lanes,
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "the patient index cannot be read; asking every bridge member");
                return all;
            }
            Err(_) => {
                tracing::warn!(wait = ?INDEX_WAIT, "the patient index did not answer in time; asking every bridge member");
                return all;
            }
        };
        reach(&self.feeds, serves, &lanes)
    }
}

/// How long a query waits for the index before asking every member instead.
const INDEX_WAIT: std::time::Duration = std::time::Duration::from_secs(2);

/// The rule, pure: indexed members holding the patient (among those serving what is asked),
/// the rest if none does.
fn reach(
    feeds: &[Vec<(String, String)>],
    serves: &[bool],
    lanes: &[(String, String)],
) -> Vec<Reach> {
    let holds: Vec<bool> = feeds
        .iter()
        .zip(serves)
        .map(|(f, serves)| *serves && f.iter().any(|lane| lanes.contains(lane)))
        .collect();
    if !holds.contains(&true) {
        return vec![Reach::Ask; feeds.len()];
    }
    feeds
        .iter()
        .zip(holds)
        .map(|(f, held)| {
            if f.is_empty() || held {
                Reach::Ask
            } else {
                Reach::NotInIndex
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lane(route: &str, dest: &str) -> (String, String) {
        (route.into(), dest.into())
    }

    #[test]
    fn only_the_indexed_members_that_hold_the_patient_and_the_unindexed_are_asked() {
        let feeds = vec![
            vec![lane("adt-chie", "chie")],
            vec![lane("adt-dcr", "dcr"), lane("oru-dcr", "dcr")],
            vec![],
        ];
        use Reach::{Ask, NotInIndex};
        let all = [true; 3];
        assert_eq!(
            reach(&feeds, &all, &[lane("oru-dcr", "dcr")]),
            [NotInIndex, Ask, Ask]
        );
        assert_eq!(
            reach(
                &feeds,
                &all,
                &[lane("adt-chie", "chie"), lane("adt-dcr", "dcr")]
            ),
            [Ask, Ask, Ask]
        );
        assert_eq!(
            reach(&feeds, &all, &[]),
            [Ask, Ask, Ask],
            "unknown: ask all"
        );
        assert_eq!(
            reach(&feeds, &all, &[lane("other", "archive")]),
            [Ask, Ask, Ask],
            "carried only elsewhere: ask all"
        );
        // The only holder does not serve what is asked: it cannot answer, so it is no
        // reason to skip the others.
        assert_eq!(
            reach(&feeds, &[true, false, true], &[lane("adt-dcr", "dcr")]),
            [Ask, Ask, Ask]
        );
    }
}
