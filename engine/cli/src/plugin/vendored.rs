//! What a plugin project needs from Wyvern to build on its own: the plugin SDK, the HL7v2 core
//! it re-exports and the WIT contract, exactly as this engine was built with them (compiled
//! into the binary). `wyvern plugin new` outside the Wyvern source tree writes them into the
//! project's `wyvern/` folder, so the project builds on a machine with only a Rust toolchain
//! for wasm32, pinned to the engine it will run on.

use std::path::Path;

/// Each file's place under `wyvern/` and its text.
macro_rules! files {
    ($($from:literal => $to:literal),* $(,)?) => {
        &[$(($to, include_str!(concat!(env!("CARGO_MANIFEST_DIR"), "/../../", $from)))),*]
    };
}

const FILES: &[(&str, &str)] = files![
    "engine/hl7/src/ack.rs" => "hl7/src/ack.rs",
    "engine/hl7/src/batch.rs" => "hl7/src/batch.rs",
    "engine/hl7/src/check.rs" => "hl7/src/check.rs",
    "engine/hl7/src/delimiters.rs" => "hl7/src/delimiters.rs",
    "engine/hl7/src/edit.rs" => "hl7/src/edit.rs",
    "engine/hl7/src/error.rs" => "hl7/src/error.rs",
    "engine/hl7/src/escape.rs" => "hl7/src/escape.rs",
    "engine/hl7/src/indexed.rs" => "hl7/src/indexed.rs",
    "engine/hl7/src/lib.rs" => "hl7/src/lib.rs",
    "engine/hl7/src/message.rs" => "hl7/src/message.rs",
    "engine/hl7/src/nhs.rs" => "hl7/src/nhs.rs",
    "engine/hl7/src/path.rs" => "hl7/src/path.rs",
    "engine/hl7/src/split.rs" => "hl7/src/split.rs",
    "engine/hl7/src/synthetic.rs" => "hl7/src/synthetic.rs",
    "engine/hl7/src/timestamp.rs" => "hl7/src/timestamp.rs",
    "engine/hl7/src/value.rs" => "hl7/src/value.rs",
    "plugins/sdk/src/fhir.rs" => "sdk/src/fhir.rs",
    "plugins/sdk/src/host.rs" => "sdk/src/host.rs",
    "plugins/sdk/src/lib.rs" => "sdk/src/lib.rs",
    "plugins/wit/plugin.wit" => "wit/plugin.wit",
];

/// The SDK's manifest with the versions the plugins workspace pins (`plugins/Cargo.toml`).
const SDK_MANIFEST: &str = r#"[package]
name = "wyvern-plugin-sdk"
description = "Write Wyvern transform plugins in Rust (vendored by `wyvern plugin new`; do not edit)."
version = "VERSION"
edition = "2024"
rust-version = "1.95"
publish = false

[dependencies]
wit-bindgen = { version = "0.46", default-features = false, features = ["macros", "realloc"] }
wyvern-hl7 = { path = "../hl7" }
serde = { version = "1", default-features = false, features = ["derive", "alloc"] }
serde_json = { version = "1", default-features = false, features = ["alloc"] }
"#;

/// The HL7v2 core's manifest with the versions the engine's workspace pins (`Cargo.toml`).
const HL7_MANIFEST: &str = r#"[package]
name = "wyvern-hl7"
description = "Wyvern's HL7v2 core (vendored by `wyvern plugin new`; do not edit)."
version = "VERSION"
edition = "2024"
rust-version = "1.95"
publish = false

[dependencies]
memchr = "2"
thiserror = "2"
"#;

/// Writes the SDK, the HL7v2 core and the WIT under `dir` (the project's `wyvern/`).
pub fn write(dir: &Path) -> std::io::Result<()> {
    let version = env!("CARGO_PKG_VERSION");
    for (to, text) in FILES {
        let path = dir.join(to);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)?;
        }
        std::fs::write(path, text)?;
    }
    std::fs::write(
        dir.join("sdk/Cargo.toml"),
        SDK_MANIFEST.replace("VERSION", version),
    )?;
    std::fs::write(
        dir.join("hl7/Cargo.toml"),
        HL7_MANIFEST.replace("VERSION", version),
    )?;
    std::fs::write(
        dir.join("README.md"),
        format!(
            "The plugin SDK, HL7v2 core and WIT of Wyvern {version}, written by `wyvern plugin new`.\n\
             Do not edit: to move to another engine version, run that engine's `wyvern plugin new`\n\
             in a scratch folder and copy its `wyvern/` over this one.\n"
        ),
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn repo(p: &str) -> std::path::PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(p)
    }

    /// A file added to the SDK or the HL7 core must be added to the list above, or a plugin
    /// project outside the source tree would not build.
    #[test]
    fn every_file_of_the_sdk_and_the_hl7_core_is_carried() {
        for (dir, under) in [
            ("engine/hl7/src", "hl7/src/"),
            ("plugins/sdk/src", "sdk/src/"),
        ] {
            let mut on_disk: Vec<String> = std::fs::read_dir(repo(dir))
                .unwrap()
                .map(|e| format!("{under}{}", e.unwrap().file_name().to_string_lossy()))
                .collect();
            on_disk.sort();
            let mut carried: Vec<String> = FILES
                .iter()
                .map(|(to, _)| to.to_string())
                .filter(|to| to.starts_with(under))
                .collect();
            carried.sort();
            assert_eq!(carried, on_disk);
        }
    }

    /// The names under `[dependencies]` in a manifest's text.
    fn dependencies(manifest: &str) -> Vec<String> {
        let mut names: Vec<String> = manifest
            .lines()
            .skip_while(|l| l.trim() != "[dependencies]")
            .skip(1)
            .take_while(|l| !l.starts_with('['))
            .filter_map(|l| l.split(['=', '.']).next())
            .map(|n| n.trim().to_string())
            .filter(|n| !n.is_empty() && !n.starts_with('#'))
            .collect();
        names.sort();
        names
    }

    /// The vendored crates depend on what the real ones do, no more and no less.
    #[test]
    fn the_manifests_carry_the_same_dependencies() {
        for (real, vendored) in [
            ("engine/hl7/Cargo.toml", HL7_MANIFEST),
            ("plugins/sdk/Cargo.toml", SDK_MANIFEST),
        ] {
            let text = std::fs::read_to_string(repo(real)).unwrap();
            assert_eq!(dependencies(&text), dependencies(vendored), "{real}");
        }
    }

    /// The vendored manifests ask for the versions the workspaces pin.
    #[test]
    fn the_manifests_pin_what_the_workspaces_pin() {
        let engine = std::fs::read_to_string(repo("Cargo.toml")).unwrap();
        let plugins = std::fs::read_to_string(repo("plugins/Cargo.toml")).unwrap();
        for line in HL7_MANIFEST
            .lines()
            .filter(|l| l.starts_with("memchr") || l.starts_with("thiserror"))
        {
            assert!(
                engine.lines().any(|l| l == line),
                "{line} not in Cargo.toml"
            );
        }
        for line in SDK_MANIFEST
            .lines()
            .filter(|l| l.starts_with("wit-bindgen") || l.starts_with("serde"))
        {
            assert!(
                plugins.lines().any(|l| l == line),
                "{line} not in plugins/Cargo.toml"
            );
        }
    }
}
