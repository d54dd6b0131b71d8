//! What a plugin instance may call: the `wyvern:plugin/host` interface. Everything else is
//! absent from the linker, so a plugin that wants it is refused at load.

use std::collections::HashMap;
use std::sync::Arc;

use wasmtime::StoreLimits;

use crate::bindings::wyvern::plugin::host::{Host, Level};
use crate::bindings::wyvern::plugin::types;

/// Code tables by name, each a map from local code to mapped code (from `mappings/`).
pub type CodeTables = HashMap<String, HashMap<String, String>>;

/// Per-instance state.
pub struct HostState {
    pub(crate) plugin: Arc<str>,
    pub(crate) limits: StoreLimits,
    pub(crate) tables: Arc<CodeTables>,
    /// The id of the message being processed, for log lines.
    pub(crate) message_id: String,
    /// Test mode: a fixed clock and sequential ids, so outputs are reproducible.
    pub(crate) deterministic: bool,
    /// Test mode: ids given during the current message (numbered from 1 for each message, so
    /// a message's output does not depend on which messages came before it).
    pub(crate) ids: u64,
}

/// The clock plugins see in test mode: 2026-01-01T00:00:00Z.
pub const FIXED_NOW_MS: i64 = 1_767_225_600_000;

impl types::Host for HostState {}

impl Host for HostState {
    fn log(&mut self, level: Level, text: String) {
        let (plugin, id) = (&*self.plugin, self.message_id.as_str());
        match level {
            Level::Trace => tracing::trace!(plugin, id, "{text}"),
            Level::Debug => tracing::debug!(plugin, id, "{text}"),
            Level::Info => tracing::info!(plugin, id, "{text}"),
            Level::Warn => tracing::warn!(plugin, id, "{text}"),
            Level::Error => tracing::error!(plugin, id, "{text}"),
        }
    }

    fn lookup(&mut self, table: String, key: String) -> Option<String> {
        self.tables.get(&table)?.get(&key).cloned()
    }

    fn now_millis(&mut self) -> i64 {
        if self.deterministic {
            return FIXED_NOW_MS;
        }
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
    }

    fn new_id(&mut self) -> String {
        if self.deterministic {
            self.ids += 1;
            return format!("{:026}", self.ids);
        }
        ulid::Ulid::new().to_string()
    }
}
