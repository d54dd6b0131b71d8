//! `wyvern plugin new`: a plugin that builds and passes `plugin check` as created, in Rust
//! (the SDK) or JavaScript (componentize-qjs), with a route that runs it and that route's test
//! (`wyvern test NAME/route`), and the next commands printed. Outside the Wyvern source tree
//! a Rust project carries the SDK, the HL7v2 core and the WIT this engine was built with
//! (`vendored.rs`), so it builds anywhere.

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
        super::vendored::write(&root.join("wyvern"))?;
        format!(
            "[package]\nname = \"{name}\"\nversion = \"0.1.0\"\nedition = \"2024\"\npublish = false\n\n\
             [lib]\ncrate-type = [\"cdylib\", \"rlib\"]\n\n[dependencies]\n\
             # The SDK of the engine this plugin runs on (`wyvern/`, written by `wyvern plugin new`).\n\
             wyvern-plugin-sdk = {{ path = \"wyvern/sdk\" }}\n\n\
             [workspace]\n\n[profile.release]\nopt-level = \"s\"\nlto = true\ncodegen-units = 1\npanic = \"abort\"\nstrip = true\n"
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
    route_and_test(name, &root, in_workspace)?;
    println!("{}: created. Next:", root.display());
    next_steps(name, &root, in_workspace, "");
    Ok(ExitCode::SUCCESS)
}

/// Where the built component goes: the plugins workspace's `dist/`, or the project's own.
fn dist(root: &Path, in_workspace: bool) -> PathBuf {
    if in_workspace {
        PathBuf::from("plugins/dist")
    } else {
        root.join("dist")
    }
}

fn next_steps(name: &str, root: &Path, in_workspace: bool, build_note: &str) {
    let dist = dist(root, in_workspace);
    if in_workspace {
        println!("  wyvern plugin build plugins{build_note}");
    } else {
        println!(
            "  wyvern plugin build {} --out {}{build_note}",
            root.display(),
            dist.display()
        );
    }
    println!("  wyvern plugin check {}/{name}.wasm", dist.display());
    println!(
        "  wyvern plugin run {}/{name}.wasm --input {}/route/messages/adt-a01.hl7",
        dist.display(),
        root.display()
    );
    println!(
        "  wyvern test {}/route                # the route's test: edit it as the plugin grows",
        root.display()
    );
}

/// A route that runs the plugin on an MLLP feed, a sample message, and the route's test.
fn route_and_test(name: &str, root: &Path, in_workspace: bool) -> anyhow::Result<()> {
    let route = root.join("route");
    std::fs::create_dir_all(route.join("messages"))?;
    // From route/ to where `plugin build` puts the component.
    let plugin = if in_workspace {
        format!("../../../dist/{name}.wasm")
    } else {
        format!("../dist/{name}.wasm")
    };
    std::fs::write(
        route.join(format!("{name}.yaml")),
        format!(
            "# A route to try {name} on. `wyvern test` runs {name}.test.yaml through it; `wyvern run\n\
             # --config` runs it for real (MLLP on 127.0.0.1:2575, each message written to out/).\n\
             version: 1\nroute: {name}\nsource:\n  mllp: {{ listen: 127.0.0.1:2575 }}\nsteps:\n  - wasm:\n      \
             plugin: {plugin}\n      config: {{}}\ndestinations:\n  - name: out\n    file: {{ dir: out }}\n"
        ),
    )?;
    std::fs::write(
        route.join(format!("{name}.test.yaml")),
        format!(
            "# The route's tests (`wyvern test route`): a message in, what must come out. Add a case\n\
             # for each thing {name} does, and one for each message it must refuse. The file's JSON\n\
             # Schema, for editors: `wyvern schema route-test`.\n\
             version: 1\ncases:\n  - name: an admission passes through {name}\n    \
             file: messages/adt-a01.hl7\n    expect:\n      ack: AA\n      to: [out]\n      at:\n        \
             out:\n          hl7: {{ MSH-9.2: A01, PID-3.1: \"9990000018\" }}\n"
        ),
    )?;
    std::fs::write(
        route.join("messages/adt-a01.hl7"),
        "MSH|^~\\&|PAS|RXX|WYVERN|CHIE|20261125090000||ADT^A01^ADT_A01|PLUGIN0001|P|2.4\n\
         EVN|A01|20261125090000\n\
         PID|1||9990000018^^^NHS^NH||TESTPATIENT^ALEX||19700101|U\n\
         PV1|1|I|W12^BAY2^BED1\n",
    )?;
    Ok(())
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
    route_and_test(name, root, in_workspace)?;
    println!("{}: created (JavaScript). Next:", root.display());
    next_steps(
        name,
        root,
        in_workspace,
        "       # npm ci, then componentize-qjs",
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
