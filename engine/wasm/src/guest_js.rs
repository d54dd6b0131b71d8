//! Building JavaScript plugins: a folder with a `package.json` that depends on
//! `componentize-qjs` (QuickJS compiled to wasm, from npm). Its CLI embeds the script in a
//! component of our world; `--sync` keeps the component-model async ABI out and `--stub-wasi`
//! replaces the WASI imports QuickJS would have with traps, so the component imports nothing
//! but the host interface, like a Rust plugin.
//!
//! The WIT it builds against is the one this engine was compiled with (embedded below), so a
//! JS plugin never drifts from the host that loads it.

use std::path::{Path, PathBuf};
use std::process::Command;

/// The contract, as compiled into this engine.
pub const WIT: &str = include_str!("../../../plugins/wit/plugin.wit");

const TOOL: &str = "componentize-qjs";

/// Whether `dir` holds a JavaScript plugin.
pub fn is_js_plugin(dir: &Path) -> bool {
    std::fs::read_to_string(dir.join("package.json")).is_ok_and(|t| t.contains(TOOL))
}

/// JavaScript plugins at `dir` or up to two folders below it (`plugins/examples/NAME`).
pub fn find(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    if is_js_plugin(dir) {
        found.push(dir.to_path_buf());
    } else {
        walk(dir, 1, &mut found);
    }
    found
}

fn walk(dir: &Path, depth: usize, found: &mut Vec<PathBuf>) {
    let mut children: Vec<PathBuf> = std::fs::read_dir(dir)
        .into_iter()
        .flatten()
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_dir() && !p.ends_with("node_modules") && !p.ends_with("target"))
        .collect();
    children.sort();
    for c in children {
        if is_js_plugin(&c) {
            found.push(c);
        } else if depth < 2 {
            walk(&c, depth + 1, found);
        }
    }
}

/// Builds the JavaScript plugin in `dir` into `out/NAME.wasm` (NAME from package.json).
pub fn build(dir: &Path, out: &Path) -> Result<PathBuf, String> {
    let manifest = std::fs::read_to_string(dir.join("package.json"))
        .map_err(|e| format!("cannot read {}/package.json: {e}", dir.display()))?;
    let manifest: serde_json::Value = serde_json::from_str(&manifest)
        .map_err(|e| format!("{}/package.json is not JSON: {e}", dir.display()))?;
    let name = manifest["name"]
        .as_str()
        .filter(|n| !n.is_empty())
        .ok_or_else(|| format!("{}/package.json has no name", dir.display()))?;
    let main = dir.join(manifest["main"].as_str().unwrap_or("src/plugin.js"));
    let tool = dir.join("node_modules/.bin").join(TOOL);
    if !tool.exists() {
        // The lock file pins the exact version; `npm ci` installs it and nothing else.
        let verb = if dir.join("package-lock.json").exists() {
            "ci"
        } else {
            "install"
        };
        let status = Command::new("npm")
            .current_dir(dir)
            .args([verb, "--no-audit", "--no-fund"])
            .status()
            .map_err(|e| {
                format!("cannot run npm ({e}): JavaScript plugins need Node.js and npm (apt-get install nodejs npm)")
            })?;
        if !status.success() {
            return Err(format!("npm {verb} failed in {}", dir.display()));
        }
    }
    let wit_dir = std::env::temp_dir().join(format!("wyvern-wit-{}", std::process::id()));
    std::fs::create_dir_all(&wit_dir)
        .map_err(|e| format!("cannot create {}: {e}", wit_dir.display()))?;
    std::fs::write(wit_dir.join("plugin.wit"), WIT)
        .map_err(|e| format!("cannot write the WIT: {e}"))?;
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let target = out.join(format!("{name}.wasm"));
    let output = Command::new(&tool)
        .arg("--wit")
        .arg(&wit_dir)
        .arg("--js")
        .arg(&main)
        .args(["--world", "plugin", "--sync", "--stub-wasi", "--output"])
        .arg(&target)
        .output()
        .map_err(|e| format!("cannot run {}: {e}", tool.display()))?;
    let _ = std::fs::remove_dir_all(&wit_dir);
    if !output.status.success() {
        return Err(format!(
            "{TOOL} failed for {}:\n{}{}",
            main.display(),
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ));
    }
    Ok(target)
}
