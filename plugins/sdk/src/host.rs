//! What the engine offers a plugin: logging (attributed to the plugin and the message), code
//! tables from `mappings/`, the clock and ids (both fixed in test mode, so outputs repeat).

use crate::bindings::wyvern::plugin::host as imports;

pub use imports::Level;

pub fn log(level: Level, text: &str) {
    imports::log(level, text);
}

pub fn info(text: &str) {
    imports::log(Level::Info, text);
}

pub fn warn(text: &str) {
    imports::log(Level::Warn, text);
}

/// A code-table lookup, e.g. `lookup("ward-to-ods", "W7")`.
pub fn lookup(table: &str, key: &str) -> Option<String> {
    imports::lookup(table, key)
}

pub fn now_millis() -> i64 {
    imports::now_millis()
}

pub fn new_id() -> String {
    imports::new_id()
}
