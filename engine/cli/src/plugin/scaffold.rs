//! `wyvern plugin new`: a plugin that builds and passes `plugin check` as created, in Rust
//! (the SDK) or JavaScript (componentize-qjs), with the next commands printed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// The languages `plugin new` scaffolds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Lang {
    Rust,
    Js,
}

pub fn new(name: &str, dir: &Path, lang: Lang) -> anyhow::Result<ExitCode> {
    if name.is_empty()
        || !name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        anyhow::bail!(
            "plugin name {name:?}: expected lower-case letters, digits and '-', such as ward-codes"
        );
    }
    let root = dir.join(name);
    if root.exists() {
        anyhow::bail!("{} already exists", root.display());
    }
    std::fs::create_dir_all(root.join("src"))?;
    let in_workspace = dir.ends_with("plugins/examples");
    if lang == Lang::Js {
        return new_js(name, &root, in_workspace);
    }
    let cargo = if in_workspace {
        format!(
            "[package]\nname = \"{name}\"\nversion.workspace = true\nedition.workspace = true\nlicense.workspace = true\npublish.workspace = true\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nwyvern-plugin-sdk.workspace = true\n"
        )
    } else {
        let sdk =
            std::fs::canonicalize("plugins/sdk").unwrap_or_else(|_| PathBuf::from("plugins/sdk"));
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\nwyvern-plugin-sdk = {{ path = \"{}\" }}\n\n\
             [workspace]\n\n[profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\n",
            sdk.display()
        )
    };
    std::fs::write(root.join("Cargo.toml"), cargo)?;
    let type_name: String = name
        .split('-')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_ascii_uppercase().to_string() + c.as_str())
                .unwrap_or_default()
        })
        .collect();
    std::fs::write(
        root.join("src/lib.rs"),
        format!(
            "//! {name}: what it does, in one line.\n\n\
             use wyvern_plugin_sdk::{{Config, Message, Plugin, PluginError, export_plugin, host}};\n\n\
             struct {type_name};\n\n\
             impl Plugin for {type_name} {{\n    \
                 fn configure(_config: &Config) -> Result<(), String> {{\n        Ok(())\n    }}\n\n    \
                 fn process(msg: Message) -> Result<Vec<Message>, PluginError> {{\n        \
                     let hl7 = msg.parse_hl7()?;\n        \
                     host::info(&format!(\"{name} saw {{}}\", hl7.control_id()));\n        \
                     Ok(vec![msg])\n    }}\n}}\n\n\
             export_plugin!({type_name});\n"
        ),
    )?;
    println!("{}: created. Next:", root.display());
    let build_dir = if in_workspace {
        Path::new("plugins")
    } else {
        root.as_path()
    };
    println!("  wyvern plugin build {}", build_dir.display());
    println!("  wyvern plugin check plugins/dist/{name}.wasm");
    println!(
        "  wyvern plugin run plugins/dist/{name}.wasm --input examples/quickstart/messages/01-adt-a01-admit.hl7"
    );
    Ok(ExitCode::SUCCESS)
}

/// The componentize-qjs version the examples are built and tested with.
const QJS_VERSION: &str = "0.4.5";

fn new_js(name: &str, root: &Path, in_workspace: bool) -> anyhow::Result<ExitCode> {
    std::fs::write(
        root.join("package.json"),
        format!(
            "{{\n  \"name\": \"{name}\",\n  \"version\": \"0.1.0\",\n  \"private\": true,\n  \
             \"main\": \"src/plugin.js\",\n  \"devDependencies\": {{\n    \"componentize-qjs\": \"{QJS_VERSION}\"\n  }}\n}}\n"
        ),
    )?;
    std::fs::write(root.join("sample-config.json"), "{}\n")?;
    std::fs::write(
        root.join("src/plugin.js"),
        format!(
            "// {name}: what it does, in one line.\n\
             //\n\
             // configure(json): return, or throw a string to refuse the config.\n\
             // process(msg): return an array of messages ([] filters), or throw\n\
             // {{ tag: \"reject\" | \"error\" | \"transient\", val: \"why\" }}.\n\
             // msg.body is a Uint8Array; keep work in built-ins (string methods, set, subarray):\n\
             // QuickJS interprets loops at about 250 ns a step.\n\n\
             import host from \"wyvern:plugin/host@0.1.0\";\n\n\
             let settings = {{}};\n\n\
             export function configure(config) {{\n  settings = config.trim() === \"\" ? {{}} : JSON.parse(config);\n}}\n\n\
             export function process(msg) {{\n  host.log(\"info\", `{name} saw ${{msg.body.length}} bytes`);\n  return [msg];\n}}\n"
        ),
    )?;
    if in_workspace {
        exclude_from_workspace(root)?;
    }
    println!("{}: created (JavaScript). Next:", root.display());
    let build_dir = if in_workspace {
        Path::new("plugins")
    } else {
        root
    };
    println!(
        "  wyvern plugin build {}       # npm ci, then componentize-qjs",
        build_dir.display()
    );
    println!("  wyvern plugin check plugins/dist/{name}.wasm");
    println!(
        "  wyvern plugin run plugins/dist/{name}.wasm --input examples/quickstart/messages/01-adt-a01-admit.hl7"
    );
    Ok(ExitCode::SUCCESS)
}

/// A folder under plugins/examples without a Cargo.toml would break the cargo workspace's
/// `examples/*` glob: list it in the workspace's `exclude`.
fn exclude_from_workspace(root: &Path) -> anyhow::Result<()> {
    let Some(manifest) = root
        .parent()
        .and_then(Path::parent)
        .map(|p| p.join("Cargo.toml"))
    else {
        return Ok(());
    };
    let Ok(text) = std::fs::read_to_string(&manifest) else {
        return Ok(());
    };
    let entry = format!(
        "\"examples/{}\"",
        root.file_name()
            .map(|n| n.to_string_lossy())
            .unwrap_or_default()
    );
    let text = if text.contains("exclude = [") {
        text.replacen("exclude = [", &format!("exclude = [{entry}, "), 1)
    } else {
        text.replacen(
            "[workspace]\n",
            &format!("[workspace]\nexclude = [{entry}]\n"),
            1,
        )
    };
    std::fs::write(&manifest, text)?;
    Ok(())
}
