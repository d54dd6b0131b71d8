//! `steps:` as written and as validated. Each step is a map with one key, its kind. Today:
//! `filter` (a message that does not match is acknowledged AA, recorded as filtered and not
//! delivered). `set`, `remove`, `split`, `map` and `wasm` come with later work.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::filter::{Condition, ConditionFile, condition};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    #[serde(default)]
    pub filter: Option<Spanned<ConditionFile>>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Keep the message only if the condition holds.
    Filter(Condition),
}

pub(crate) fn steps(at: &mut At<'_>, files: &[Spanned<StepFile>]) -> Vec<Step> {
    let mut out = Vec::new();
    for s in files {
        match &s.value.filter {
            Some(c) => {
                if let Some(c) = condition(at, c) {
                    out.push(Step::Filter(c));
                }
            }
            None => at.err(s, "a step needs a kind: expected filter"),
        }
    }
    out
}
