//! Building plugins from source: `cargo build` for wasm32, then wrapping each core module
//! into a component (wit-component). Used by `wyvern plugin build` and by the tests that need
//! real compiled plugins.
//!
//! JavaScript plugins are built by [`crate::guest_js`].
//!
//! The toolchain: a rustup `wasm32-unknown-unknown` target where one is installed; otherwise
//! Debian's `rustc-web` (`/usr/bin/rustc` with `rust-web-src`), building std for wasm32 itself
//! (`-Zbuild-std`, allowed by `RUSTC_BOOTSTRAP=1`). Either way the plugin imports nothing but
//! the host interface: no WASI.

use std::path::{Path, PathBuf};
use std::process::Command;

const TARGET: &str = "wasm32-unknown-unknown";

/// Which compiler builds guests here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Toolchain {
    /// `cargo` with rustup's wasm32 target installed.
    Rustup,
    /// Debian's rustc-web: `/usr/bin/cargo` + `/usr/bin/rustc`, std built from source.
    DebianWeb,
}

impl Toolchain {
    /// The toolchain present, or what to install.
    pub fn detect() -> Result<Toolchain, String> {
        let rustup = Command::new("rustup")
            .args(["target", "list", "--installed"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .is_some_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .any(|l| l.trim() == TARGET)
            });
        if rustup {
            return Ok(Toolchain::Rustup);
        }
        let debian = Path::new("/usr/bin/rustc").exists()
            && Path::new("/usr/bin/cargo").exists()
            && Path::new("/usr/lib/rustlib/src/rust/library").exists();
        if debian {
            return Ok(Toolchain::DebianWeb);
        }
        Err(format!(
            "no toolchain can build {TARGET} here: `rustup target add {TARGET}`, or on Debian \
             `apt-get install rustc-web cargo-web rust-web-src lld-22` (see plugins/README.md)"
        ))
    }

    fn cargo(&self) -> Command {
        match self {
            Toolchain::Rustup => Command::new("cargo"),
            Toolchain::DebianWeb => {
                let mut c = Command::new("/usr/bin/cargo");
                c.env("RUSTC", "/usr/bin/rustc").env("RUSTC_BOOTSTRAP", "1");
                c
            }
        }
    }
}

/// Builds every plugin in `dir` — Rust crates (a crate or a workspace) and JavaScript plugins
/// (see [`crate::guest_js`]) — and writes one component per plugin into `out`. Returns the
/// components written.
pub fn build(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let js = crate::guest_js::find(dir);
    let mut written = Vec::new();
    if dir.join("Cargo.toml").exists() || js.is_empty() {
        written = build_rust(dir, out)?;
    }
    for j in js {
        written.push(crate::guest_js::build(&j, out)?);
    }
    Ok(written)
}

fn build_rust(dir: &Path, out: &Path) -> Result<Vec<PathBuf>, String> {
    let toolchain = Toolchain::detect()?;
    let mut cmd = toolchain.cargo();
    cmd.current_dir(dir).args([
        "build",
        "--release",
        "--target",
        TARGET,
        "--message-format=json-render-diagnostics",
    ]);
    if std::fs::read_to_string(dir.join("Cargo.toml")).is_ok_and(|t| t.contains("[workspace]")) {
        cmd.arg("--workspace");
    }
    if toolchain == Toolchain::DebianWeb {
        cmd.arg("-Zbuild-std=std,panic_abort");
    }
    cmd.stderr(std::process::Stdio::inherit());
    let output = cmd.output().map_err(|e| format!("cannot run cargo: {e}"))?;
    if !output.status.success() {
        return Err(format!(
            "cargo build failed in {} (see above)",
            dir.display()
        ));
    }
    let mut modules = Vec::new();
    for line in String::from_utf8_lossy(&output.stdout).lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let is_cdylib = v["target"]["kind"]
            .as_array()
            .is_some_and(|k| k.iter().any(|k| k == "cdylib"));
        if v["reason"] == "compiler-artifact" && is_cdylib {
            for f in v["filenames"].as_array().into_iter().flatten() {
                if let Some(f) = f.as_str().filter(|f| f.ends_with(".wasm")) {
                    modules.push(PathBuf::from(f));
                }
            }
        }
    }
    if modules.is_empty() {
        return Err(format!(
            "{} has no plugin crate (a [lib] with crate-type = [\"cdylib\"])",
            dir.display()
        ));
    }
    std::fs::create_dir_all(out).map_err(|e| format!("cannot create {}: {e}", out.display()))?;
    let mut written = Vec::new();
    for m in modules {
        let core = std::fs::read(&m).map_err(|e| format!("cannot read {}: {e}", m.display()))?;
        let component = componentize(&core).map_err(|e| format!("{}: {e}", m.display()))?;
        let name = m
            .file_name()
            .map(|n| n.to_string_lossy().replace('_', "-"))
            .unwrap_or_default();
        let target = out.join(name);
        std::fs::write(&target, component)
            .map_err(|e| format!("cannot write {}: {e}", target.display()))?;
        written.push(target);
    }
    Ok(written)
}

/// A core module built with wit-bindgen (it carries its WIT in a custom section) as a
/// component.
pub fn componentize(core: &[u8]) -> Result<Vec<u8>, String> {
    wit_component::ComponentEncoder::default()
        .module(core)
        .and_then(|e| e.validate(true).encode())
        .map_err(|e| format!("cannot make a component: {e:#}"))
}
