//! `steps:` as written and as validated. Each step is a map with one key, its kind:
//! - `filter: CONDITION` — a message that does not match is acknowledged AA, recorded as
//!   filtered and not delivered;
//! - `set: { PV1-3.4: RHX01, MSH-5: DCR }` — put values at HL7 paths (escaped for the
//!   message's delimiters; an absent segment is not invented);
//! - `remove: [NK1, PID-13]` — drop every segment of an id, or clear what a path selects;
//! - `split: batch` — a batch (`FHS`/`BHS` … `BTS`/`FTS`, or several `MSH` in one frame) becomes
//!   its messages; the steps after it run on each, and each is delivered on its own. It must
//!   be the first step: the inbox keeps the batch as received and acknowledges it as a whole.
//!
//! - `wasm: { plugin: FILE, config: …, limits: … }` — a WebAssembly transform plugin
//!   ([`crate::wasm_step`]).
//!
//! - `map: hl7v2-to-fhir` — the built-in HL7v2 → FHIR R4 UK Core mapping (tables and field
//!   maps from the mappings folder); the message becomes a transaction Bundle. It must be the
//!   last step: every other step reads HL7v2.
//! - `map: fhir-to-hl7v2` — the way back, the only step a fhir source takes: its resources
//!   become an HL7v2 message for MLLP (or other v2) destinations.

use serde::Deserialize;
use serde_saphyr::Spanned;
use wyvern_hl7::Path;

use crate::at::At;
use crate::filter::{Condition, ConditionFile, condition};

const KINDS: &str = "filter, set, remove, split, wasm or map";

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StepFile {
    #[serde(default)]
    #[schemars(with = "Option<ConditionFile>")]
    pub filter: Option<Spanned<ConditionFile>>,
    #[serde(default)]
    /// In order: a later path may overwrite what an earlier one set.
    #[schemars(with = "Option<indexmap::IndexMap<String, String>>")]
    pub set: Option<Spanned<indexmap::IndexMap<String, String>>>,
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub remove: Option<Vec<Spanned<String>>>,
    #[serde(default)]
    #[schemars(with = "Option<SplitFile>")]
    pub split: Option<Spanned<SplitFile>>,
    #[serde(default)]
    pub wasm: Option<crate::wasm_step::WasmStepFile>,
    #[serde(default)]
    #[schemars(with = "Option<MapKind>")]
    pub map: Option<Spanned<MapKind>>,
}

/// What `map:` maps to. One built-in mapping today.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
pub enum MapKind {
    /// HL7v2 ADT/ORU → a FHIR R4 UK Core transaction Bundle.
    #[serde(rename = "hl7v2-to-fhir")]
    Hl7v2ToFhir,
    /// FHIR (a fhir source's Patient/Encounter or DiagnosticReport/Observations) → HL7v2
    /// ADT^A08/A31 or ORU^R01, for receivers that take only v2. The only step of a fhir source.
    #[serde(rename = "fhir-to-hl7v2")]
    FhirToHl7v2,
}

/// What `split:` splits. Only batches for now; the enum leaves room (e.g. per-OBR results).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SplitFile {
    Batch,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Step {
    /// Keep the message only if the condition holds.
    Filter(Condition),
    /// Put each value at its path.
    Set(Vec<(Path, String)>),
    /// Drop segments or clear fields.
    Remove(Vec<Removal>),
    /// Split a batch into its messages (always the first step).
    Split,
    /// Run a WebAssembly plugin.
    Wasm(crate::wasm_step::WasmStep),
    /// Map to FHIR (always the last step).
    Map(MapKind),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Removal {
    /// Every segment with this id (not MSH).
    Segment(String),
    /// Clear what the path selects.
    Field(Path),
}

fn path(at: &mut At<'_>, p: &Spanned<String>) -> Option<Path> {
    match p.value.parse::<Path>() {
        Ok(path) => Some(path),
        Err(e) => {
            at.err(p, e.to_string());
            None
        }
    }
}

pub(crate) fn steps(
    at: &mut At<'_>,
    base: &std::path::Path,
    files: &[Spanned<StepFile>],
) -> Vec<Step> {
    let mut out = Vec::new();
    for (i, s) in files.iter().enumerate() {
        let f = &s.value;
        let kinds = usize::from(f.filter.is_some())
            + usize::from(f.set.is_some())
            + usize::from(f.remove.is_some())
            + usize::from(f.split.is_some())
            + usize::from(f.wasm.is_some())
            + usize::from(f.map.is_some());
        if kinds != 1 {
            let what = if kinds == 0 {
                "a step needs a kind"
            } else {
                "a step has more than one kind"
            };
            at.err(s, format!("{what}: expected exactly one of {KINDS}"));
            continue;
        }
        if let Some(m) = &f.map {
            if i + 1 == files.len() {
                out.push(Step::Map(m.value));
            } else {
                at.err(
                    m,
                    "map must be the last step: after it the message is FHIR, and the other steps read HL7v2",
                );
            }
        } else if let Some(w) = &f.wasm {
            if let Some(step) = crate::wasm_step::wasm_step(at, base, w) {
                out.push(Step::Wasm(step));
            }
        } else if let Some(split) = &f.split {
            if i == 0 {
                out.push(Step::Split);
            } else {
                at.err(
                    split,
                    "split must be the first step: it turns a batch into messages, and the steps after it run on each",
                );
            }
        } else if let Some(c) = &f.filter {
            if let Some(c) = condition(at, c) {
                out.push(Step::Filter(c));
            }
        } else if let Some(pairs) = &f.set {
            if pairs.value.is_empty() {
                at.err(
                    pairs,
                    "set is empty: expected PATH: VALUE pairs such as PV1-3.4: RHX01",
                );
            }
            let set: Vec<Option<(Path, String)>> = pairs
                .value
                .iter()
                .map(|(p, v)| match p.parse::<Path>() {
                    Ok(path) => Some((path, v.clone())),
                    Err(e) => {
                        at.err(pairs, e.to_string());
                        None
                    }
                })
                .collect();
            if let Some(set) = set.into_iter().collect::<Option<Vec<_>>>() {
                out.push(Step::Set(set));
            }
        } else if let Some(items) = &f.remove {
            let mut removals = Vec::new();
            for item in items {
                let v = item.value.trim();
                let is_segment = v.len() == 3
                    && v.bytes()
                        .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
                if v == "MSH" {
                    at.err(item, "MSH cannot be removed");
                } else if is_segment {
                    removals.push(Removal::Segment(v.to_string()));
                } else if let Some(p) = path(at, item) {
                    removals.push(Removal::Field(p));
                }
            }
            out.push(Step::Remove(removals));
        }
    }
    out
}
