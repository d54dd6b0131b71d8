//! PID-3 normalisation for feeds that put the NHS number anywhere in PID-3 (or mark it in
//! their own way): the NHS number goes first as `NNNNNNNNNN^^^NHS^NH`, after a modulus-11
//! check; every other identifier (local MRNs) is kept, in its order, after it.
//!
//! An identifier counts as an NHS number when its assigning authority (PID-3.4) or type
//! (PID-3.5) is one of `nhs_markers` (default `NHS`, `NH`, `NHSNBR`). A marked number that fails
//! the check is handled per `invalid`: `keep` (default: left where it was, with a warning)
//! or `reject` (AR).
//!
//! ```yaml
//! - wasm:
//!     plugin: plugins/dist/pid3-normalise.wasm
//!     config: { invalid: keep, nhs_markers: [NHS, NH, NHSNBR] }
//! ```

use std::sync::OnceLock;

use wyvern_plugin_sdk::hl7::{NhsNumber, Path, edit};
use wyvern_plugin_sdk::{Config, Message, Plugin, PluginError, export_plugin, host};

#[derive(Debug, Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Settings {
    #[serde(default)]
    invalid: Invalid,
    #[serde(default = "markers")]
    nhs_markers: Vec<String>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
enum Invalid {
    #[default]
    Keep,
    Reject,
}

fn markers() -> Vec<String> {
    ["NHS", "NH", "NHSNBR"].map(String::from).to_vec()
}

static SETTINGS: OnceLock<Settings> = OnceLock::new();

struct Pid3Normalise;

impl Plugin for Pid3Normalise {
    fn configure(config: &Config) -> Result<(), String> {
        let s: Settings = if config.0.is_null() {
            Settings {
                invalid: Invalid::Keep,
                nhs_markers: markers(),
            }
        } else {
            config.parse()?
        };
        let _ = SETTINGS.set(s);
        Ok(())
    }

    fn process(msg: Message) -> Result<Vec<Message>, PluginError> {
        let settings = SETTINGS.get().cloned().unwrap_or(Settings {
            invalid: Invalid::Keep,
            nhs_markers: markers(),
        });
        let parsed = msg.parse_hl7()?;
        let d = *parsed.delimiters();
        let Some(pid3) = parsed.segment("PID", 1).and_then(|s| s.field(3)) else {
            return Ok(vec![msg]);
        };
        let reps: Vec<Vec<u8>> = pid3.repetitions().map(|r| r.raw().to_vec()).collect();
        let component = |rep: &[u8], n: usize| -> String {
            rep.split(|&b| b == d.component)
                .nth(n - 1)
                .map(|c| String::from_utf8_lossy(c).trim().to_string())
                .unwrap_or_default()
        };
        let is_marked = |rep: &[u8]| {
            let (auth, kind) = (component(rep, 4), component(rep, 5));
            settings
                .nhs_markers
                .iter()
                .any(|m| m.eq_ignore_ascii_case(&auth) || m.eq_ignore_ascii_case(&kind))
        };
        let Some(at) = reps.iter().position(|r| is_marked(r)) else {
            return Ok(vec![msg]);
        };
        let candidate = component(&reps[at], 1).replace(' ', "");
        let nhs = match NhsNumber::parse(&candidate) {
            Ok(n) => n,
            Err(e) if settings.invalid == Invalid::Reject => {
                return Err(PluginError::Reject(format!(
                    "PID-3 repetition {} holds {candidate:?}, which is not a valid NHS number: {e}",
                    at + 1
                )));
            }
            Err(e) => {
                host::warn(&format!(
                    "PID-3 repetition {} holds {candidate:?}, not a valid NHS number ({e}); left as it was",
                    at + 1
                ));
                return Ok(vec![msg]);
            }
        };
        let mut out: Vec<Vec<u8>> = Vec::with_capacity(reps.len());
        let mut first = nhs.as_str().as_bytes().to_vec();
        for part in [&b""[..], b"", b"NHS", b"NH"] {
            first.push(d.component);
            first.extend_from_slice(part);
        }
        out.push(first);
        out.extend(
            reps.iter()
                .enumerate()
                .filter(|(i, r)| *i != at && !r.is_empty())
                .map(|(_, r)| r.clone()),
        );
        let field = out.join(&d.repetition);
        let path: Path = "PID-3"
            .parse()
            .map_err(|e| PluginError::Error(format!("{e}")))?;
        let body = edit::set_field_encoded(&msg.body, &path, &field)
            .map_err(|e| PluginError::Reject(format!("cannot edit PID-3: {e}")))?;
        Ok(vec![Message::hl7v2(body, &msg)])
    }
}

export_plugin!(Pid3Normalise);
