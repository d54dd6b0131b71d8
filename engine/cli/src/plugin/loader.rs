//! The engine's step loader: `wasm:` steps run on wasmtime through `wyvern-wasm`, `map:` steps
//! on the built-in FHIR mapping (`wyvern-fhir`). Compiled
//! plugins are cached in the store folder (`plugin-cache/`), so a restart loads them in
//! microseconds.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wyvern_config::{CodeTables, MapKind, WasmStep};
use wyvern_runtime::transform::{Transform, TransformError, TransformLoader, TransformMessage};
use wyvern_wasm::{CallError, Limits, Message, Plugin, PluginEngine, PluginOptions};

/// Loads plugins into one shared wasmtime engine (a second one, metering fuel, on demand).
pub struct WasmLoader {
    cache: Option<PathBuf>,
    plain: Mutex<Option<PluginEngine>>,
    fueled: Mutex<Option<PluginEngine>>,
    deterministic: bool,
    tables: CodeTables,
    /// Where a config's own FHIR field map may be (`map:` steps).
    mappings_dir: Option<PathBuf>,
}

impl WasmLoader {
    /// `tables`: the config's code tables; each plugin sees only those its step lists.
    pub fn new(cache: Option<PathBuf>, deterministic: bool, tables: CodeTables) -> WasmLoader {
        WasmLoader {
            cache,
            plain: Mutex::new(None),
            fueled: Mutex::new(None),
            deterministic,
            tables,
            mappings_dir: None,
        }
    }

    /// The config's mappings folder, for `map:` steps (its field map, when it has one).
    pub fn with_mappings_dir(mut self, mappings_dir: &std::path::Path) -> WasmLoader {
        self.mappings_dir = Some(mappings_dir.to_path_buf());
        self
    }

    fn engine(&self, fuel: bool) -> Result<PluginEngine, String> {
        let slot = if fuel { &self.fueled } else { &self.plain };
        let mut guard = slot.lock().map_err(|_| "plugin engine lock poisoned")?;
        if let Some(e) = guard.as_ref() {
            return Ok(e.clone());
        }
        let e = if fuel {
            PluginEngine::with_fuel(self.cache.clone())?
        } else {
            PluginEngine::new(self.cache.clone())?
        };
        *guard = Some(e.clone());
        Ok(e)
    }

    /// Loads one plugin file with these options (for `wyvern plugin check|run`).
    pub fn load_file(
        &self,
        path: &std::path::Path,
        options: PluginOptions,
    ) -> Result<Plugin, String> {
        let engine = self.engine(options.limits.fuel.is_some())?;
        Plugin::load(&engine, path, options).map_err(|e| e.to_string())
    }
}

impl TransformLoader for WasmLoader {
    fn fhir_codec(&self) -> Result<Arc<dyn wyvern_runtime::source::fhir::FhirCodec>, String> {
        Ok(Arc::new(crate::fhir_codec::ModelCodec))
    }

    fn mapper(&self, kind: MapKind) -> Result<Arc<dyn Transform>, String> {
        let mappings = match &self.mappings_dir {
            Some(dir) => wyvern_fhir::Mappings::load(dir, &self.tables),
            None => wyvern_fhir::Mappings::with(None, &self.tables),
        }
        .map_err(|e| e.to_string())?;
        let mapper = wyvern_fhir::Mapper::new(mappings);
        Ok(match kind {
            MapKind::Hl7v2ToFhir => Arc::new(FhirMapTransform(mapper)),
            MapKind::FhirToHl7v2 => Arc::new(Hl7v2MapTransform(mapper)),
        })
    }

    fn load(&self, step: &WasmStep) -> Result<Arc<dyn Transform>, String> {
        let options = PluginOptions {
            config: step.config.clone(),
            limits: Limits {
                time: step.time,
                memory: usize::try_from(step.memory).unwrap_or(usize::MAX),
                fuel: step.fuel,
            },
            tables: Arc::new(host_tables(
                &self.tables,
                step.tables.iter().map(|t| &*t.name),
            )),
            deterministic: self.deterministic,
        };
        let plugin = self.load_file(&step.plugin, options)?;
        tracing::info!(
            plugin = plugin.name(),
            from_cache = plugin.from_cache,
            compile = ?plugin.compile_time.max(Duration::ZERO),
            "plugin loaded"
        );
        Ok(Arc::new(WasmTransform(plugin)))
    }
}

/// The named tables in the host's shape (all of them for `plugin check|run`). A name not in
/// `tables` was already refused when the config loaded.
pub fn host_tables<'a>(
    tables: &CodeTables,
    names: impl Iterator<Item = &'a str>,
) -> wyvern_wasm::CodeTables {
    names
        .filter_map(|n| tables.get(n))
        .map(|t| (t.name.clone(), t.codes.clone().into_iter().collect()))
        .collect()
}

/// `map: fhir-to-hl7v2`: a fhir source's resources as an HL7v2 message. MSH-10 is the last 20
/// characters of the message id (HL7's limit), MSH-7 when it was received: the same message
/// makes the same bytes (route tests, shadow replay).
#[derive(Debug)]
pub struct Hl7v2MapTransform(pub wyvern_fhir::Mapper);

impl Transform for Hl7v2MapTransform {
    fn process(
        &self,
        id: &str,
        msg: TransformMessage,
    ) -> Result<Vec<TransformMessage>, TransformError> {
        let now =
            wyvern_core::hl7_timestamp(wyvern_core::Clock::now_millis(&wyvern_core::SystemClock));
        let from = id.char_indices().rev().nth(19).map_or(0, |(i, _)| i);
        let control_id = &id[from..];
        match self.0.to_hl7v2(&msg.body, &now, control_id) {
            Ok(back) => {
                for w in &back.warnings {
                    tracing::warn!(id, "mapping back to HL7v2: {w}");
                }
                Ok(vec![TransformMessage {
                    content_type: "hl7v2".into(),
                    body: back.message.into_bytes(),
                    metadata: msg.metadata,
                }])
            }
            Err(e) => Err(TransformError::Reject(format!(
                "mapping back to HL7v2: {e}"
            ))),
        }
    }
}

/// A loaded plugin as a route step.
#[derive(Debug)]
pub struct WasmTransform(pub Plugin);

impl Transform for WasmTransform {
    fn process(
        &self,
        id: &str,
        msg: TransformMessage,
    ) -> Result<Vec<TransformMessage>, TransformError> {
        let input = Message {
            content_type: msg.content_type,
            body: msg.body,
            metadata: msg.metadata,
        };
        match self.0.process(id, &input) {
            Ok(out) => Ok(out
                .into_iter()
                .map(|m| TransformMessage {
                    content_type: m.content_type,
                    body: m.body,
                    metadata: m.metadata,
                })
                .collect()),
            Err(e @ CallError::Reject { .. }) => Err(TransformError::Reject(e.to_string())),
            Err(e @ CallError::Failed { .. }) => {
                tracing::warn!(id, error = %e, "plugin failed; message answered AE, not passed on");
                Err(TransformError::Error(e.to_string()))
            }
            Err(e) => Err(TransformError::Error(e.to_string())),
        }
    }
}

/// The built-in HL7v2 → FHIR mapping as a route step (`map: hl7v2-to-fhir`). A message it
/// cannot map is the sender's to fix: AR, with the reason.
#[derive(Debug)]
pub struct FhirMapTransform(pub wyvern_fhir::Mapper);

impl Transform for FhirMapTransform {
    fn process(
        &self,
        id: &str,
        msg: TransformMessage,
    ) -> Result<Vec<TransformMessage>, TransformError> {
        match self.0.map(&msg.body) {
            Ok(mapped) => {
                for w in &mapped.warnings {
                    tracing::warn!(id, "FHIR mapping: {w}");
                }
                Ok(vec![TransformMessage {
                    content_type: "fhir+json".into(),
                    body: mapped.json.into_bytes(),
                    metadata: msg.metadata,
                }])
            }
            Err(e) => Err(TransformError::Reject(format!("FHIR mapping: {e}"))),
        }
    }
}
