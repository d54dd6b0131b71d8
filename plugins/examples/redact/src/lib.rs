//! Redaction for a feed that leaves its organisation (a social-care system sharing with a
//! care record): whole segments dropped (next of kin, insurance), named fields blanked or
//! masked. What to remove is configuration, so an information-governance change is a config
//! change, not a rebuild.
//!
//! ```yaml
//! - wasm:
//!     plugin: ../plugins/dist/redact.wasm
//!     config:
//!       drop_segments: [NK1, IN1, GT1]
//!       blank: [PID-13, PID-14, PID-19]         # phone numbers, SSN-style numbers
//!       mask: { PID-11.1: "REDACTED" }           # street address line
//! ```
//!
//! MSH and PID-3 (the identifiers the record matches on) cannot be redacted: the config is
//! refused at load.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use wyvern_plugin_sdk::hl7::{Path, edit};
use wyvern_plugin_sdk::{Config, Message, Plugin, PluginError, export_plugin};

#[derive(Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    drop_segments: Vec<String>,
    #[serde(default)]
    blank: Vec<String>,
    #[serde(default)]
    mask: BTreeMap<String, String>,
}

#[derive(Debug)]
struct Rules {
    drop: Vec<String>,
    /// Path and the value to put there ("" blanks it).
    set: Vec<(Path, String)>,
}

static RULES: OnceLock<Rules> = OnceLock::new();

fn path(p: &str) -> Result<Path, String> {
    let path: Path = p.parse().map_err(|e| format!("{e}"))?;
    if path.segment == "MSH" || (path.segment == "PID" && path.field == 3) {
        return Err(format!(
            "{p}: MSH and PID-3 carry routing and matching; they cannot be redacted"
        ));
    }
    Ok(path)
}

struct Redact;

impl Plugin for Redact {
    fn configure(config: &Config) -> Result<(), String> {
        let s: Settings = if config.0.is_null() {
            Settings::default()
        } else {
            config.parse()?
        };
        let mut drop = Vec::new();
        for seg in s.drop_segments {
            let ok = seg.len() == 3
                && seg
                    .bytes()
                    .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit());
            if !ok || seg == "MSH" || seg == "PID" {
                return Err(format!(
                    "drop_segments: {seg:?} is not a segment that can be dropped"
                ));
            }
            drop.push(seg);
        }
        let mut set = Vec::new();
        for p in s.blank {
            set.push((path(&p)?, String::new()));
        }
        for (p, v) in s.mask {
            set.push((path(&p)?, v));
        }
        if drop.is_empty() && set.is_empty() {
            return Err("nothing to redact: give drop_segments, blank or mask".into());
        }
        let _ = RULES.set(Rules { drop, set });
        Ok(())
    }

    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        let Some(rules) = RULES.get() else {
            return Err(PluginError::Error("redact was not initialised".into()));
        };
        msg.parse_hl7()?;
        let mut body = msg.body.clone();
        for seg in &rules.drop {
            body = edit::remove_segments(&body, seg)
                .map_err(|e| PluginError::Reject(e.to_string()))?;
        }
        for (p, v) in &rules.set {
            // Blanking a whole field takes every repetition with it (all the phone numbers).
            body = if v.is_empty() && p.component.is_none() {
                edit::set_field_encoded(&body, p, b"")
            } else {
                edit::set(&body, p, v)
            }
            .map_err(|e| PluginError::Reject(e.to_string()))?;
        }
        Ok(vec![Message::hl7v2(body, &msg)])
    }
}

export_plugin!(Redact);
