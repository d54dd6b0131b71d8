//! Code tables: `mappings/*.yaml`, one table per file, local code → mapped code, each with its
//! provenance. Plugins read them through the host's `lookup` (a `wasm:` step lists the tables
//! it may see); an integration team changes a table without touching code.
//!
//! ```yaml
//! table: ward-to-ods
//! description: The acute trust's PAS ward codes → ODS site codes
//! provenance: Trust PAS ward list, 2026-10 extract; ODS site codes from the ODS portal
//! codes:
//!   AMU: RXX01
//!   W12: RXX02
//! ```

use std::collections::BTreeMap;

use rustc_hash::FxHashMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::validate::{parse, valid_name};
use crate::{Diagnostic, SourceFile};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CodeTableFile {
    /// The name steps use (`tables: [ward-to-ods]`, `lookup("ward-to-ods", code)`).
    #[schemars(with = "String")]
    pub table: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    /// Where the codes come from and when: required, so a table can be trusted and refreshed.
    pub provenance: String,
    /// The code system of the mapped codes (a FHIR system URI), when they are codes of one.
    #[serde(default)]
    pub system: Option<String>,
    /// Local code → mapped code.
    pub codes: BTreeMap<String, String>,
    /// Mapped code → its display text (FHIR `Coding.display`).
    #[serde(default)]
    pub display: BTreeMap<String, String>,
    /// Mapped code → the local code to write when mapping back (FHIR → HL7v2), where several
    /// local codes map to it (`other: O` when both O and A map to `other`).
    #[serde(default)]
    pub reverse: BTreeMap<String, String>,
}

/// One loaded table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeTable {
    pub name: String,
    pub file: PathBuf,
    pub system: Option<String>,
    pub codes: FxHashMap<String, String>,
    pub display: FxHashMap<String, String>,
    /// Mapped code → local code, for mapping back: the file's `reverse`, and every mapped code
    /// only one local code maps to.
    pub reverse: FxHashMap<String, String>,
}

/// Every table of a config, by name.
pub type CodeTables = BTreeMap<String, CodeTable>;

/// A step's reference to a table, with where it was written (for errors after loading).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableRef {
    pub name: String,
    pub line: u64,
    pub column: u64,
}

/// The code-table files of a mappings folder (`*.yaml` but `*.map.yaml`); an absent folder has
/// none.
pub fn read_code_table_files(dir: &Path) -> Result<Vec<SourceFile>, Vec<Diagnostic>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let io =
        |p: &Path, e: std::io::Error| vec![Diagnostic::error(p, 0, 0, format!("cannot read: {e}"))];
    let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| io(dir, e))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file() && p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
        // Field maps (`*.map.yaml`, read by wyvern-fhir) share the folder.
        .filter(|p| !p.to_string_lossy().ends_with(".map.yaml"))
        .collect();
    paths.sort();
    paths
        .into_iter()
        .map(|path| match std::fs::read_to_string(&path) {
            Ok(text) => Ok(SourceFile { path, text }),
            Err(e) => Err(io(&path, e)),
        })
        .collect()
}

/// Parses and checks table files (pure): names valid and unique, no empty codes.
pub fn parse_code_tables(files: &[SourceFile]) -> Result<CodeTables, Vec<Diagnostic>> {
    let mut tables = CodeTables::new();
    let mut errors = Vec::new();
    for src in files {
        let f = match parse::<CodeTableFile>(src) {
            Ok(f) => f,
            Err(d) => {
                errors.push(d);
                continue;
            }
        };
        let mut at = At::new(&src.path);
        let name = f.table.value.clone();
        if !valid_name(&name) {
            at.err(&f.table, format!("table name {name:?} is not valid: expected lower-case letters, digits and '-', such as ward-to-ods"));
        } else if let Some(other) = tables.get(&name) {
            at.err(
                &f.table,
                format!(
                    "table {name:?} is already defined in {}",
                    other.file.display()
                ),
            );
        }
        if f.provenance.trim().is_empty() {
            at.err(
                &f.table,
                "provenance is empty: say where the codes come from and when",
            );
        }
        if let Some((k, _)) = f
            .codes
            .iter()
            .find(|(k, v)| k.trim().is_empty() || v.trim().is_empty())
        {
            at.err(&f.table, format!("table {name:?} maps {k:?} to an empty code, or an empty code to something: leave the row out instead"));
        }
        for (mapped, local) in &f.reverse {
            if f.codes.get(local) != Some(mapped) {
                at.err(&f.table, format!("table {name:?}: reverse says {mapped:?} maps back to {local:?}, but codes does not map {local:?} to {mapped:?}"));
            }
        }
        // Mapping back: the file's choice, else the one local code that maps to each code.
        let mut reverse: FxHashMap<String, String> = FxHashMap::default();
        let mut ambiguous = Vec::new();
        for (local, mapped) in &f.codes {
            if f.reverse.contains_key(mapped) {
                continue;
            }
            if reverse.insert(mapped.clone(), local.clone()).is_some() {
                ambiguous.push(mapped.clone());
            }
        }
        for mapped in ambiguous {
            reverse.remove(&mapped);
        }
        reverse.extend(f.reverse.clone());
        if at.errors.is_empty() {
            tables.insert(
                name.clone(),
                CodeTable {
                    name,
                    file: src.path.clone(),
                    system: f.system,
                    codes: f.codes.into_iter().collect(),
                    display: f.display.into_iter().collect(),
                    reverse,
                },
            );
        }
        errors.extend(at.errors);
    }
    if errors.is_empty() {
        Ok(tables)
    } else {
        Err(errors)
    }
}

/// Every table a step names exists.
pub(crate) fn check_table_refs(config: &crate::Config, tables: &CodeTables) -> Vec<Diagnostic> {
    let known = || tables.keys().cloned().collect::<Vec<_>>().join(", ");
    let mut errors = Vec::new();
    for route in &config.routes {
        for step in &route.steps {
            let crate::Step::Wasm(w) = step else { continue };
            for r in w.tables.iter().filter(|r| !tables.contains_key(&r.name)) {
                errors.push(Diagnostic::error(
                    &route.file,
                    r.line,
                    r.column,
                    format!(
                        "table {:?} is not in {}: expected one of [{}] (a file there with `table: {}`)",
                        r.name,
                        config.engine.mappings_dir.display(),
                        known(),
                        r.name
                    ),
                ));
            }
        }
    }
    errors
}
