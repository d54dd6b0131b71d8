//! Local-to-national code mapping from the engine's code tables (`mappings/*.yaml`): each map
//! reads a local code at `from`, looks it up in `table`, and writes the national code at `to`
//! (default: over `from`). A trust changes the table, not the plugin.
//!
//! A code the table does not hold is handled per `unmapped`: `keep` (default: the message
//! passes unchanged at that place, with a warning naming the code) or `reject` (AR, so the
//! sender's team adds the code). A message without the segment passes untouched.
//!
//! ```yaml
//! - wasm:
//!     plugin: ../plugins/dist/code-map.wasm
//!     tables: [ward-to-ods]
//!     config:
//!       maps: [{ from: PV1-3.1, to: PV1-3.4, table: ward-to-ods }]
//!       unmapped: keep
//! ```

use std::sync::OnceLock;

use wyvern_plugin_sdk::hl7::{Path, edit};
use wyvern_plugin_sdk::{Config, Message, Plugin, PluginError, export_plugin, host};

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    maps: Vec<MapFile>,
    #[serde(default)]
    unmapped: Unmapped,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MapFile {
    from: String,
    #[serde(default)]
    to: Option<String>,
    table: String,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Unmapped {
    #[default]
    Keep,
    Reject,
}

/// One map with its paths parsed once, at configure time.
struct Map {
    from: Path,
    to: Path,
    from_text: String,
    table: String,
}

struct Ready {
    maps: Vec<Map>,
    unmapped: Unmapped,
}

static READY: OnceLock<Ready> = OnceLock::new();

struct CodeMap;

impl Plugin for CodeMap {
    fn configure(config: &Config) -> Result<(), String> {
        if config.0.is_null() {
            return Err(
                "config needed: { maps: [{ from: PV1-3.1, to: PV1-3.4, table: ward-to-ods }] }"
                    .into(),
            );
        }
        let s: Settings = config.parse()?;
        if s.maps.is_empty() {
            return Err("maps is empty: expected at least one { from, to, table }".into());
        }
        let mut maps = Vec::with_capacity(s.maps.len());
        for m in s.maps {
            let path = |p: &str| {
                p.parse::<Path>()
                    .map_err(|e| format!("{p:?} is not a field path: {e}"))
            };
            maps.push(Map {
                from: path(&m.from)?,
                to: path(m.to.as_deref().unwrap_or(&m.from))?,
                from_text: m.from,
                table: m.table,
            });
        }
        let _ = READY.set(Ready {
            maps,
            unmapped: s.unmapped,
        });
        Ok(())
    }

    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        let ready = READY
            .get()
            .ok_or_else(|| PluginError::Error("code-map was not configured".into()))?;
        let mut body = msg.body.clone();
        for map in &ready.maps {
            let parsed = wyvern_plugin_sdk::hl7::Message::parse(&body)
                .map_err(|e| PluginError::Reject(format!("not HL7v2: {e}")))?;
            let Some(local) = parsed
                .query(&map.from)
                .next()
                .map(|v| v.as_str().trim().to_string())
            else {
                continue;
            };
            if local.is_empty() {
                continue;
            }
            match host::lookup(&map.table, &local) {
                Some(national) => {
                    body = edit::set(&body, &map.to, &national).map_err(|e| {
                        PluginError::Error(format!("cannot write {}: {e}", map.from_text))
                    })?;
                }
                None if ready.unmapped == Unmapped::Reject => {
                    return Err(PluginError::Reject(format!(
                        "{} {local:?} is not in code table {:?}",
                        map.from_text, map.table
                    )));
                }
                None => host::warn(&format!(
                    "{} {local:?} is not in code table {:?}; left as it was",
                    map.from_text, map.table
                )),
            }
        }
        Ok(vec![Message::hl7v2(body, &msg)])
    }
}

export_plugin!(CodeMap);
