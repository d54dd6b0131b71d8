//! Answering a checked request: the members asked (those the patient index names), their
//! answers merged, and what the audit record says of each member. One path for a search and
//! for `$everything`, so both are asked, bounded and audited alike.

use wyvern_federation::{
    Answer, Everything, MAX_OFFSET, Origin, Page, Query, SearchType, combine, federate,
    federate_page,
};
use wyvern_hl7::NhsNumber;

use super::index::Reach;
use super::member::MemberClient;

/// What a caller asked: one search, or a patient's whole record.
#[derive(Debug)]
pub(crate) enum Asked {
    Search(Query),
    Everything(Everything),
}

impl Asked {
    pub fn patient(&self) -> NhsNumber {
        match self {
            Asked::Search(q) => q.patient,
            Asked::Everything(e) => e.patient,
        }
    }

    /// The request as the audit log names it.
    pub fn what(&self) -> String {
        match self {
            Asked::Search(q) => q.ty.to_string(),
            Asked::Everything(e) => format!(
                "Patient/$everything ({})",
                e.types
                    .iter()
                    .map(|t| t.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Whether `m` serves any of what is asked.
    pub fn served_by(&self, m: &MemberClient) -> bool {
        match self {
            Asked::Search(q) => m.serves(q.ty),
            Asked::Everything(e) => e.types.iter().any(|t| m.serves(*t)),
        }
    }

    /// The types it asks each member for: one answer each.
    fn types(&self) -> usize {
        match self {
            Asked::Search(_) => 1,
            Asked::Everything(e) => e.types.len(),
        }
    }

    /// The searches it makes of each member: the turns it takes of the bridge's fan-out
    /// budget, so `$everything` holds no more member answers at once than as many searches.
    pub fn searches(&self) -> u32 {
        u32::try_from(self.types()).unwrap_or(u32::MAX).max(1)
    }

    /// Where `member` starts on this page: `None` when earlier pages gave all it holds.
    pub fn offset(&self, member: &str) -> Option<usize> {
        match self {
            Asked::Search(Query {
                page: Some(page), ..
            }) => page.offset(member),
            _ => Some(0),
        }
    }

    /// Each member's answers (one per type asked), in member order, and how many of its
    /// matches a search's answer took (where its next page starts); members `reach` leaves
    /// out are not asked.
    pub async fn ask(
        &self,
        members: &[MemberClient],
        reach: &[Reach],
    ) -> (Vec<Vec<Answer>>, Vec<usize>) {
        let types = self.types();
        futures_util::future::join_all(members.iter().zip(reach).map(|(m, r)| async move {
            match (r, self) {
                (Reach::NotInIndex | Reach::PagedPast, _) => (vec![Answer::Skipped; types], 0),
                (Reach::Ask, Asked::Search(q)) => {
                    let (answer, took) = m.ask(q, self.offset(&m.name).unwrap_or(0)).await;
                    (vec![answer], took)
                }
                (Reach::Ask, Asked::Everything(e)) => (m.everything(e).await, 0),
            }
        }))
        .await
        .into_iter()
        .unzip()
    }

    /// The URL of a search's next page under `base`: the members that hold more than this
    /// page gave, each where it goes on. `None`: this page ends the search (and always for
    /// `$everything`). `took`: how many of each member's matches this page took
    /// ([`Asked::ask`]).
    pub fn next_link(
        &self,
        base: impl FnOnce() -> String,
        members: &[MemberClient],
        answers: &[Vec<Answer>],
        took: &[usize],
    ) -> Option<String> {
        let Asked::Search(q) = self else {
            return None;
        };
        let next: Vec<(String, usize)> = members
            .iter()
            .zip(answers)
            .zip(took)
            .filter_map(|((m, a), &took)| match a.first() {
                // A member that says it holds more but gave nothing would page for ever.
                Some(Answer::Entries { more: true, .. }) if took > 0 => {
                    let at = self.offset(&m.name)? + took;
                    (at <= MAX_OFFSET).then(|| (m.name.clone(), at))
                }
                _ => None,
            })
            .collect();
        (!next.is_empty()).then(|| page_url(&base(), q, &Page(next)))
    }

    /// The searchset: one type merged, or every type merged and put together. Takes the
    /// answers: they are moved into the merge, not copied.
    pub fn bundle(&self, origins: &[Origin<'_>], answers: Vec<Vec<Answer>>) -> serde_json::Value {
        let types = self.types();
        // Member × type, turned into type × member.
        let mut by_type: Vec<Vec<(Origin<'_>, Answer)>> = (0..types)
            .map(|_| Vec::with_capacity(origins.len()))
            .collect();
        for (o, list) in origins.iter().zip(answers) {
            let mut list = list.into_iter();
            for of_type in &mut by_type {
                of_type.push((*o, list.next().unwrap_or(Answer::Skipped)));
            }
        }
        match self {
            Asked::Search(q) => federate_page(q.ty, &by_type[0]),
            Asked::Everything(e) => combine(
                e.types
                    .iter()
                    .zip(&by_type)
                    .map(|(&ty, answers)| federate(ty, answers))
                    .collect(),
            ),
        }
    }
}

/// The URL of a search's page `page`, under the bridge's base.
fn page_url(base: &str, q: &Query, page: &Page) -> String {
    let patient = format!(
        "{}|{}",
        wyvern_federation::NHS_NUMBER_SYSTEM,
        q.patient.as_str()
    );
    let name = if q.ty == SearchType::Patient {
        "identifier"
    } else {
        "patient.identifier"
    };
    let query = form_urlencoded::Serializer::new(String::new())
        .append_pair(name, &patient)
        .append_pair("_count", &q.count.to_string())
        .append_pair("_page", &page.to_param())
        .finish();
    format!("{base}/{}?{query}", q.ty)
}

/// What one member gave a request, for the audit record and the failure count.
#[derive(Debug, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    pub entries: usize,
    pub withheld: usize,
    /// Why its first failed answer failed.
    pub failed: Option<String>,
    /// Not asked for any type.
    pub skipped: bool,
}

impl Tally {
    pub fn of(answers: &[Answer]) -> Tally {
        let mut t = Tally {
            skipped: !answers.is_empty(),
            ..Tally::default()
        };
        for a in answers {
            match a {
                Answer::Entries {
                    entries, withheld, ..
                } => {
                    t.skipped = false;
                    t.entries += entries.len();
                    t.withheld += withheld;
                }
                Answer::Skipped => {}
                Answer::Failed(why) => {
                    t.skipped = false;
                    t.failed.get_or_insert_with(|| why.clone());
                }
            }
        }
        t
    }

    /// How the audit record names this member's part, e.g. `chie (3 entries)`.
    pub fn describe(&self, member: &str, reach: Reach, what: &str) -> String {
        match (self, reach) {
            (_, Reach::NotInIndex) => format!(
                "{member} (not asked: the patient index shows other members' feeds carried this patient, none of its own)"
            ),
            (_, Reach::PagedPast) => format!(
                "{member} (not asked: a later page asks only the members that held more on the page before)"
            ),
            (Tally { skipped: true, .. }, _) => {
                format!("{member} (not asked: it does not serve {what})")
            }
            (
                Tally {
                    failed: Some(why), ..
                },
                _,
            ) if self.entries == 0 => format!("{member} (failed: {why})"),
            (
                Tally {
                    failed: Some(why), ..
                },
                _,
            ) => format!("{member} ({} entries; part failed: {why})", self.entries),
            (Tally { withheld: 0, .. }, _) => format!("{member} ({} entries)", self.entries),
            _ => format!(
                "{member} ({} entries, {} withheld as restricted)",
                self.entries, self.withheld
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_members_part_is_told_in_the_audit_record() {
        let entries = |n: usize, withheld: usize| Answer::Entries {
            entries: vec![serde_json::Value::Null; n],
            withheld,
            more: false,
        };
        let says =
            |answers: &[Answer], reach| Tally::of(answers).describe("dcr", reach, "Condition");
        assert_eq!(says(&[entries(1, 0)], Reach::Ask), "dcr (1 entries)");
        assert_eq!(
            says(&[entries(2, 0), entries(1, 1)], Reach::Ask),
            "dcr (3 entries, 1 withheld as restricted)"
        );
        assert_eq!(
            says(&[Answer::Failed("no answer within 2s".into())], Reach::Ask),
            "dcr (failed: no answer within 2s)"
        );
        assert_eq!(
            says(&[entries(2, 0), Answer::Failed("x".into())], Reach::Ask),
            "dcr (2 entries; part failed: x)"
        );
        assert_eq!(
            says(&[Answer::Skipped], Reach::Ask),
            "dcr (not asked: it does not serve Condition)"
        );
        assert!(says(&[Answer::Skipped], Reach::NotInIndex).contains("patient index"));
        assert!(says(&[Answer::Skipped], Reach::PagedPast).contains("held more"));
    }
}
