//! `wyvern plugin new|build|check|run`: from an empty folder to a checked component, and
//! trying one message through it. The plugin author's guide is plugins/README.md.

pub mod loader;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use wyvern_wasm::{Limits, Message, PluginOptions};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Start a plugin: a Rust crate using the SDK, ready to build.
    ///
    /// Inside this repository's plugins/ workspace by default (plugins/examples/NAME).
    New {
        /// Lower-case letters, digits and '-', such as ward-codes.
        name: String,
        /// Where to create it.
        #[arg(long, default_value = "plugins/examples")]
        dir: PathBuf,
    },
    /// Build a plugin crate (or a workspace of them) into components.
    ///
    /// Uses rustup's wasm32-unknown-unknown target if installed, else Debian's rustc-web
    /// (apt-get install rustc-web cargo-web rust-web-src lld-22).
    Build {
        /// The crate or workspace folder.
        dir: PathBuf,
        /// Where the .wasm components go.
        #[arg(long, default_value = "plugins/dist")]
        out: PathBuf,
    },
    /// Load a component as the engine would: its world and imports, and init with a config.
    Check {
        file: PathBuf,
        /// The route's `config:` block, as JSON (or @FILE).
        #[arg(long, default_value = "")]
        config: String,
    },
    /// Run one message through a component and print what comes out.
    Run {
        file: PathBuf,
        /// The route's `config:` block, as JSON (or @FILE).
        #[arg(long, default_value = "")]
        config: String,
        /// The message (HL7v2; LF or CR segment ends).
        #[arg(long)]
        input: PathBuf,
        /// A fixed clock and sequential ids, as route tests use.
        #[arg(long)]
        test_mode: bool,
    },
}

pub fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New { name, dir } => new(&name, &dir),
        PluginCommand::Build { dir, out } => {
            let started = Instant::now();
            let built = wyvern_wasm::guest::build(&dir, &out).map_err(anyhow::Error::msg)?;
            for b in &built {
                let size = std::fs::metadata(b).map(|m| m.len()).unwrap_or(0);
                println!("{}  ({} KiB)", b.display(), size / 1024);
            }
            eprintln!(
                "{} component(s) in {:.1} s; try one with `wyvern plugin check {}`",
                built.len(),
                started.elapsed().as_secs_f64(),
                built
                    .first()
                    .map_or_else(String::new, |b| b.display().to_string())
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Check { file, config } => {
            let loader = loader::WasmLoader::new(None, true);
            let plugin = loader
                .load_file(&file, options(&config, true)?)
                .map_err(anyhow::Error::msg)?;
            println!(
                "{}: ok — world wyvern:plugin/plugin@0.1.0, imports only wyvern:plugin/host, init accepted the config; compiled in {:.1} ms",
                file.display(),
                plugin.compile_time.as_secs_f64() * 1000.0
            );
            Ok(ExitCode::SUCCESS)
        }
        PluginCommand::Run {
            file,
            config,
            input,
            test_mode,
        } => {
            let loader = loader::WasmLoader::new(None, test_mode);
            let plugin = loader
                .load_file(&file, options(&config, test_mode)?)
                .map_err(anyhow::Error::msg)?;
            let raw =
                std::fs::read(&input).with_context(|| format!("reading {}", input.display()))?;
            let body = wyvern_hl7::with_cr_segments(&raw);
            let msg = Message {
                content_type: "hl7v2".into(),
                body,
                metadata: vec![("id".into(), "01PLUGINRUN000000000000000".into())],
            };
            let started = Instant::now();
            let result = plugin.process("01PLUGINRUN000000000000000", &msg);
            let took = started.elapsed();
            match result {
                Ok(out) if out.is_empty() => {
                    println!("filtered: no message comes out ({took:?})");
                    Ok(ExitCode::SUCCESS)
                }
                Ok(out) => {
                    for (i, m) in out.iter().enumerate() {
                        println!(
                            "--- output {} of {} ({}) ---",
                            i + 1,
                            out.len(),
                            m.content_type
                        );
                        println!(
                            "{}",
                            String::from_utf8_lossy(&m.body)
                                .replace('\r', "\n")
                                .trim_end()
                        );
                    }
                    eprintln!("({took:?})");
                    Ok(ExitCode::SUCCESS)
                }
                Err(e) => {
                    println!("{e}");
                    Ok(ExitCode::from(1))
                }
            }
        }
    }
}

fn options(config: &str, deterministic: bool) -> anyhow::Result<PluginOptions> {
    let config = match config.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => config.to_string(),
    };
    if !config.trim().is_empty() {
        serde_json::from_str::<serde_json::Value>(&config).context("--config is not JSON")?;
    }
    Ok(PluginOptions {
        config,
        limits: Limits::default(),
        tables: Arc::default(),
        deterministic,
    })
}

fn new(name: &str, dir: &Path) -> anyhow::Result<ExitCode> {
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
             [workspace]\n\n[profile.release]\nopt-level = \"s\"\nlto = true\npanic = \"abort\"\nstrip = true\n",
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
                 fn init(_config: &Config) -> Result<(), String> {{\n        Ok(())\n    }}\n\n    \
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
