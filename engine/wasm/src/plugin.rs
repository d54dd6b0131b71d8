//! Loading a plugin and calling it under limits, with a pool of warm instances.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use wasmtime::component::{HasSelf, Linker};
use wasmtime::{Config, Engine, Store, StoreLimitsBuilder, Trap};

use crate::bindings::{Plugin as World, PluginPre as WorldPre};
use crate::error::{CallError, LoadError};
use crate::host::{CodeTables, HostState};
use crate::{Message, PluginError, cache, ticker};

/// The only interface a plugin may import.
const HOST_INTERFACE: &str = "wyvern:plugin/host@0.1.";
/// Warm instances kept per plugin (more are made under load and dropped after).
const POOL: usize = 8;

/// Per-call limits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Wall-clock time per call (and for `configure`).
    pub time: Duration,
    /// Linear memory per instance.
    pub memory: usize,
    /// Fuel per call (about one unit per wasm instruction); `None`: not metered.
    pub fuel: Option<u64>,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            time: Duration::from_millis(100),
            memory: 64 << 20,
            fuel: None,
        }
    }
}

/// The wasmtime engine all plugins share, with its deadline clock and compile cache.
#[derive(Clone)]
pub struct PluginEngine {
    engine: Engine,
    cache_dir: Option<PathBuf>,
}

impl std::fmt::Debug for PluginEngine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PluginEngine")
            .field("cache_dir", &self.cache_dir)
            .finish_non_exhaustive()
    }
}

impl PluginEngine {
    /// `cache_dir`: where compiled plugins are kept (`None`: compile on every load).
    pub fn new(cache_dir: Option<PathBuf>) -> Result<PluginEngine, String> {
        Self::build(cache_dir, false)
    }

    /// An engine that meters fuel (for plugins with `limits.fuel`). Fuel costs ~10% on every
    /// call, so only plugins that ask for it run on this one.
    pub fn with_fuel(cache_dir: Option<PathBuf>) -> Result<PluginEngine, String> {
        Self::build(cache_dir, true)
    }

    fn build(cache_dir: Option<PathBuf>, fuel: bool) -> Result<PluginEngine, String> {
        let mut config = Config::new();
        config.wasm_component_model(true);
        config.epoch_interruption(true);
        config.consume_fuel(fuel);
        let engine = Engine::new(&config).map_err(|e| format!("cannot start wasmtime: {e}"))?;
        ticker::start(&engine);
        Ok(PluginEngine { engine, cache_dir })
    }
}

/// How to load one plugin.
#[derive(Debug, Clone, Default)]
pub struct PluginOptions {
    /// The route's `config:` block as JSON text (empty: none).
    pub config: String,
    pub limits: Limits,
    pub tables: Arc<CodeTables>,
    /// Fixed clock and sequential ids (route tests, `wyvern plugin run --test-mode`).
    pub deterministic: bool,
}

struct Warm {
    store: Store<HostState>,
    world: World,
}

/// A loaded plugin: compiled, linked, its config accepted.
pub struct Plugin {
    name: Arc<str>,
    engine: PluginEngine,
    pre: WorldPre<HostState>,
    options: PluginOptions,
    pool: Mutex<Vec<Warm>>,
    /// Whether the compiled code came from the cache.
    pub from_cache: bool,
    /// How long compiling (or loading from the cache) took.
    pub compile_time: Duration,
}

impl std::fmt::Debug for Plugin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Plugin")
            .field("name", &self.name)
            .field("limits", &self.options.limits)
            .finish_non_exhaustive()
    }
}

fn name_of(path: &Path) -> String {
    path.file_stem().map_or_else(
        || path.display().to_string(),
        |s| s.to_string_lossy().into_owned(),
    )
}

impl Plugin {
    /// Loads the component at `path` (binary, or component text format).
    pub fn load(
        engine: &PluginEngine,
        path: &Path,
        options: PluginOptions,
    ) -> Result<Plugin, LoadError> {
        let bytes = std::fs::read(path).map_err(|source| LoadError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::from_bytes(engine, &name_of(path), &bytes, options)
    }

    pub fn from_bytes(
        engine: &PluginEngine,
        name: &str,
        bytes: &[u8],
        options: PluginOptions,
    ) -> Result<Plugin, LoadError> {
        let started = Instant::now();
        let (component, from_cache) =
            cache::load(&engine.engine, engine.cache_dir.as_deref(), bytes).map_err(|e| {
                LoadError::Compile {
                    name: name.into(),
                    reason: format!("{e:#}"),
                }
            })?;
        let compile_time = started.elapsed();
        let forbidden: Vec<String> = component
            .component_type()
            .imports(&engine.engine)
            .map(|(n, _)| n.to_string())
            .filter(|n| !n.starts_with(HOST_INTERFACE) && n != "wyvern:plugin/types@0.1.0")
            .collect();
        if !forbidden.is_empty() {
            return Err(LoadError::ForbiddenImports {
                name: name.into(),
                imports: forbidden.join(", "),
            });
        }
        let link = |e: wasmtime::Error| LoadError::Link {
            name: name.into(),
            reason: format!("{e:#}"),
        };
        let mut linker: Linker<HostState> = Linker::new(&engine.engine);
        World::add_to_linker::<_, HasSelf<_>>(&mut linker, |s| s).map_err(link)?;
        let pre = WorldPre::new(linker.instantiate_pre(&component).map_err(link)?).map_err(link)?;
        let plugin = Plugin {
            name: name.into(),
            engine: engine.clone(),
            pre,
            options,
            pool: Mutex::new(Vec::new()),
            from_cache,
            compile_time,
        };
        // One instance now: its configure checks the config while the route loads.
        let warm = plugin.instance().map_err(|reason| LoadError::Init {
            name: name.into(),
            reason,
        })?;
        plugin.give_back(warm);
        Ok(plugin)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A fresh instance with `configure(config)` done.
    fn instance(&self) -> Result<Warm, String> {
        let limits = self.options.limits;
        let state = HostState {
            plugin: self.name.clone(),
            limits: StoreLimitsBuilder::new()
                .memory_size(limits.memory)
                // A component is several core instances (a JS or Python guest: a dozen or more);
                // memory is the real bound.
                .instances(64)
                .trap_on_grow_failure(true)
                .build(),
            tables: self.options.tables.clone(),
            message_id: String::new(),
            deterministic: self.options.deterministic,
            ids: 0,
        };
        let mut store = Store::new(&self.engine.engine, state);
        store.limiter(|s| &mut s.limits);
        self.arm(&mut store);
        let world = self
            .pre
            .instantiate(&mut store)
            .map_err(|e| self.why(&e, "while starting"))?;
        match world.call_configure(&mut store, &self.options.config) {
            Ok(Ok(())) => Ok(Warm { store, world }),
            Ok(Err(reason)) => Err(reason),
            Err(e) => Err(self.why(&e, "in configure")),
        }
    }

    /// Sets the call's deadline (and fuel).
    fn arm(&self, store: &mut Store<HostState>) {
        store.set_epoch_deadline(ticker::ticks(self.options.limits.time));
        store.epoch_deadline_trap();
        if let Some(fuel) = self.options.limits.fuel {
            let _ = store.set_fuel(fuel);
        }
    }

    /// Keeps an instance for the next message. Not in test mode: a plugin's own state (a
    /// counter in its memory) would make a message's output depend on the messages before it.
    fn give_back(&self, warm: Warm) {
        if self.options.deterministic {
            return;
        }
        if let Ok(mut pool) = self.pool.lock()
            && pool.len() < POOL
        {
            pool.push(warm);
        }
    }

    /// What stopped a call, in words.
    fn why(&self, e: &wasmtime::Error, when: &str) -> String {
        let limits = self.options.limits;
        match e.downcast_ref::<Trap>() {
            Some(Trap::Interrupt) => format!(
                "ran past its {} ms time limit {when} and was stopped",
                limits.time.as_millis()
            ),
            Some(Trap::OutOfFuel) => format!("ran out of fuel ({:?}) {when}", limits.fuel),
            Some(trap) => format!("trapped {when}: {trap} (a Rust plugin panicked, or hit a bug)"),
            None => {
                let text = format!("{e:#}");
                if text.contains("forcing trap when growing memory") {
                    format!(
                        "went over its memory limit of {} MiB {when}",
                        limits.memory >> 20
                    )
                } else {
                    let first = text.lines().next().unwrap_or("").to_string();
                    format!("trapped {when}: {first}")
                }
            }
        }
    }

    /// Runs the plugin on one message. `id` is the message id, for the plugin's log lines.
    pub fn process(&self, id: &str, msg: &Message) -> Result<Vec<Message>, CallError> {
        let warm = self.pool.lock().ok().and_then(|mut p| p.pop());
        let mut warm = match warm {
            Some(w) => w,
            None => self.instance().map_err(|reason| CallError::Failed {
                plugin: self.name.to_string(),
                reason,
            })?,
        };
        let state = warm.store.data_mut();
        state.message_id.clear();
        state.message_id.push_str(id);
        state.ids = 0;
        self.arm(&mut warm.store);
        let plugin = self.name.to_string();
        match warm.world.call_process(&mut warm.store, msg) {
            Ok(result) => {
                self.give_back(warm);
                result.map_err(|e| match e {
                    PluginError::Reject(reason) => CallError::Reject { plugin, reason },
                    PluginError::Error(reason) => CallError::Error { plugin, reason },
                    PluginError::Transient(reason) => CallError::Transient { plugin, reason },
                })
            }
            // The instance may be in any state: it is dropped, never reused.
            Err(e) => Err(CallError::Failed {
                reason: self.why(&e, "on this message"),
                plugin,
            }),
        }
    }
}
