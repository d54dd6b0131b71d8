//! `wasm:` steps: a WebAssembly transform plugin (see plugins/README.md).
//!
//! ```yaml
//! - wasm:
//!     plugin: plugins/dist/pid3-normalise.wasm    # relative to the config folder
//!     config: { invalid: keep }                    # handed to the plugin's configure, as JSON
//!     limits: { time: 100ms, memory: 64MiB }       # per call; fuel: 5000000 to meter too
//! ```
//!
//! Validation checks the shape and the limits; whether the file is a plugin of the right
//! world is checked when the engine loads it (validation reads no files).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::{ByteSize, HumanDuration};

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WasmStepFile {
    /// The component file (`.wasm`), relative to the config folder.
    #[schemars(with = "String")]
    pub plugin: Spanned<String>,
    /// Anything; the plugin's `configure` gets it as JSON and may refuse it.
    #[serde(default)]
    pub config: Option<serde_json::Value>,
    #[serde(default)]
    pub limits: Option<WasmLimitsFile>,
    /// Code tables from the mappings folder the plugin may `lookup` (none by default).
    #[serde(default)]
    #[schemars(with = "Vec<String>")]
    pub tables: Vec<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WasmLimitsFile {
    /// Wall-clock time per call (default 100ms).
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub time: Option<Spanned<HumanDuration>>,
    /// Memory per instance (default 64MiB).
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub memory: Option<Spanned<ByteSize>>,
    /// Instructions (roughly) per call; absent: not metered.
    #[serde(default)]
    #[schemars(with = "Option<u64>")]
    pub fuel: Option<Spanned<u64>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WasmStep {
    pub plugin: PathBuf,
    /// The `config:` block as JSON text (empty when absent).
    pub config: String,
    pub time: Duration,
    pub memory: u64,
    pub fuel: Option<u64>,
    /// The code tables it may look up; their existence is checked when the config is loaded.
    pub tables: Vec<crate::TableRef>,
}

pub(crate) fn wasm_step(at: &mut At<'_>, base: &Path, w: &WasmStepFile) -> Option<WasmStep> {
    let p = w.plugin.value.trim();
    if p.is_empty() {
        at.err(
            &w.plugin,
            "plugin is empty: expected a component file such as plugins/dist/pid3-normalise.wasm",
        );
        return None;
    }
    let limits = w.limits.as_ref();
    let time = match limits.and_then(|l| l.time.as_ref()) {
        Some(t) if t.value.0.is_zero() || t.value.0 > Duration::from_secs(60) => {
            at.err(
                t,
                "time must be between 1ms and 60s: expected a duration such as 100ms",
            );
            return None;
        }
        Some(t) => t.value.0,
        None => Duration::from_millis(100),
    };
    let memory = match limits.and_then(|l| l.memory.as_ref()) {
        Some(m) if m.value.0 < (1 << 20) || m.value.0 > (4 << 30) => {
            at.err(
                m,
                "memory must be between 1MiB and 4GiB: expected a size such as 64MiB",
            );
            return None;
        }
        Some(m) => m.value.0,
        None => 64 << 20,
    };
    let fuel = match limits.and_then(|l| l.fuel.as_ref()) {
        Some(f) if f.value == 0 => {
            at.err(f, "fuel must be more than 0 (leave it out not to meter)");
            return None;
        }
        f => f.map(|f| f.value),
    };
    let mut tables: Vec<crate::TableRef> = Vec::new();
    for t in &w.tables {
        if !crate::validate::valid_name(&t.value) {
            at.err(
                t,
                format!(
                    "table name {:?} is not valid: expected a table's name such as ward-to-ods",
                    t.value
                ),
            );
            return None;
        }
        let l = t.referenced;
        tables.push(crate::TableRef {
            name: t.value.clone(),
            line: l.line(),
            column: l.column(),
        });
    }
    Some(WasmStep {
        plugin: base.join(p),
        tables,
        config: w.config.as_ref().map(|c| c.to_string()).unwrap_or_default(),
        time,
        memory,
        fuel,
    })
}
