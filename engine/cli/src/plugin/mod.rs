//! `wyvern plugin new|build|check|run`: from an empty folder to a checked component, and
//! trying one message through it. The plugin author's guide is plugins/README.md.

pub mod loader;
mod scaffold;
mod vendored;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use clap::Subcommand;
use wyvern_wasm::{Limits, Message, PluginOptions};

#[derive(Debug, Subcommand)]
pub enum PluginCommand {
    /// Start a plugin: a Rust crate using the SDK (or, with --lang js, a JavaScript module),
    /// ready to build.
    ///
    /// Inside this repository's plugins/ workspace by default (plugins/examples/NAME).
    New {
        /// Lower-case letters, digits and '-', such as ward-codes.
        name: String,
        /// Where to create it.
        #[arg(long, default_value = "plugins/examples")]
        dir: PathBuf,
        /// The language: rust (the SDK, the engine's own HL7v2 parser) or js (QuickJS via
        /// componentize-qjs from npm; needs Node.js and npm to build).
        #[arg(long, value_enum, default_value_t = scaffold::Lang::Rust)]
        lang: scaffold::Lang,
    },
    /// Build a plugin crate, a JavaScript plugin, or a folder of them into components.
    ///
    /// Rust: rustup's wasm32-unknown-unknown target if installed, else Debian's rustc-web
    /// (apt-get install rustc-web cargo-web rust-web-src lld-22). JavaScript (a package.json
    /// using componentize-qjs): npm ci, then componentize-qjs against the engine's own WIT.
    Build {
        /// The crate or workspace folder.
        dir: PathBuf,
        /// Where the .wasm components go.
        #[arg(long, default_value = "plugins/dist")]
        out: PathBuf,
    },
    /// Load a component as the engine would: its world and imports, and configure it with a config.
    Check {
        file: PathBuf,
        /// The route's `config:` block, as JSON (or @FILE).
        #[arg(long, default_value = "")]
        config: String,
        /// A folder of code tables the plugin may look up (all of them).
        #[arg(long)]
        mappings: Option<PathBuf>,
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
        /// A folder of code tables the plugin may look up (all of them).
        #[arg(long)]
        mappings: Option<PathBuf>,
    },
}

pub fn plugin(command: PluginCommand) -> anyhow::Result<ExitCode> {
    match command {
        PluginCommand::New { name, dir, lang } => scaffold::new(&name, &dir, lang),
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
        PluginCommand::Check {
            file,
            config,
            mappings,
        } => {
            let loader = loader::WasmLoader::new(None, true, Default::default());
            let plugin = loader
                .load_file(&file, options(&config, true, mappings.as_deref())?)
                .map_err(anyhow::Error::msg)?;
            println!(
                "{}: ok — world wyvern:plugin/plugin@0.1.0, imports only wyvern:plugin/host, configure accepted the config; compiled in {:.1} ms",
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
            mappings,
        } => {
            let loader = loader::WasmLoader::new(None, test_mode, Default::default());
            let plugin = loader
                .load_file(&file, options(&config, test_mode, mappings.as_deref())?)
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

fn options(
    config: &str,
    deterministic: bool,
    mappings: Option<&Path>,
) -> anyhow::Result<PluginOptions> {
    let config = match config.strip_prefix('@') {
        Some(path) => std::fs::read_to_string(path).with_context(|| format!("reading {path}"))?,
        None => config.to_string(),
    };
    if !config.trim().is_empty() {
        serde_json::from_str::<serde_json::Value>(&config).context("--config is not JSON")?;
    }
    let tables = match mappings {
        Some(dir) => {
            let files = wyvern_config::read_code_table_files(dir).map_err(diagnostics)?;
            let tables = wyvern_config::parse_code_tables(&files).map_err(diagnostics)?;
            loader::host_tables(&tables, tables.keys().map(String::as_str))
        }
        None => Default::default(),
    };
    Ok(PluginOptions {
        config,
        limits: Limits::default(),
        tables: Arc::new(tables),
        deterministic,
    })
}

use crate::validate::diagnostics;
