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

    /// For each member, whether this patient's query asks it.
    pub async fn reach(&self, nhs_number: &str) -> Vec<Reach> {
        let all = vec![Reach::Ask; self.feeds.len()];
        if self.feeds.iter().all(Vec::is_empty) {
            return all;
        }
        let lanes = match self.operations.lanes_of(nhs_number.to_string()).await {
            Ok(lanes) => lanes,
            Err(e) => {
                tracing::warn!(error = %e, "the patient index cannot be read; asking every bridge member");
                return all;
            }
        };
        reach(&self.feeds, &lanes)
    }
}

/// The rule, pure: indexed members holding the patient, the rest if none does.
fn reach(feeds: &[Vec<(String, String)>], lanes: &[(String, String)]) -> Vec<Reach> {
    let holds: Vec<bool> = feeds
        .iter()
        .map(|f| f.iter().any(|lane| lanes.contains(lane)))
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
        assert_eq!(
            reach(&feeds, &[lane("oru-dcr", "dcr")]),
            [NotInIndex, Ask, Ask]
        );
        assert_eq!(
            reach(&feeds, &[lane("adt-chie", "chie"), lane("adt-dcr", "dcr")]),
            [Ask, Ask, Ask]
        );
        assert_eq!(reach(&feeds, &[]), [Ask, Ask, Ask], "unknown: ask all");
        assert_eq!(
            reach(&feeds, &[lane("other", "archive")]),
            [Ask, Ask, Ask],
            "carried only elsewhere: ask all"
        );
    }
}
