//! `wyvern`: the HL7v2/FHIR interface engine's command line. Each subcommand lives in its own
//! module; this file only parses arguments, sets up logging and dispatches.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod allocator;
mod api_tokens;
mod audit;
mod bench;
mod bench_backlog;
mod bench_bridge;
mod bench_e2e;
mod bench_nodes;
mod bench_server;
mod cluster;
mod dev_certs;
mod dev_fhir;
mod dlq;
mod fhir_codec;
mod inbox;
mod input;
mod map;
mod plugin;
mod remote;
mod replay;
mod report;
mod route_tests;
mod run;
mod send;
mod shadow;
mod store;
mod store_migrate;
mod tls_args;
mod validate;

const ABOUT: &str = "Wyvern: an HL7v2/FHIR interface engine for shared care records.";

const AFTER_HELP: &str = "\
Quick start:
  wyvern run --config examples/quickstart          # listen for MLLP on 127.0.0.1:2575
  wyvern send examples/quickstart/messages/         # send the sample messages, print each ACK
  wyvern inbox list --config examples/quickstart   # see what was stored

A config is a folder: wyvern.yaml (engine settings, optional) and one YAML file per route.
Every message Wyvern acknowledges with AA/CA is on disk first. See README.md and ARCHITECTURE.md.";

#[derive(Debug, Parser)]
#[command(name = "wyvern", version, about = ABOUT, after_help = AFTER_HELP)]
struct Cli {
    /// Log format on stderr.
    #[arg(
        long,
        global = true,
        value_enum,
        default_value = "text",
        env = "WYVERN_LOG_FORMAT"
    )]
    log_format: LogFormat,
    /// Log filter, e.g. `info`, `debug`, `wyvern_connectors=debug` (RUST_LOG syntax).
    #[arg(long, global = true, default_value = "info", env = "WYVERN_LOG")]
    log: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the engine: listen on every route's source, store and acknowledge messages.
    ///
    /// Stops gracefully on Ctrl-C or SIGTERM: no new connections, every message already read is
    /// stored and acknowledged, then the store is closed.
    Run {
        /// A config folder (wyvern.yaml + route files) or a single route file.
        #[arg(long, short, env = "WYVERN_CONFIG")]
        config: PathBuf,
    },
    /// Check a config and print every problem as file:line:col. Opens no sockets, reads no secrets.
    Validate {
        #[arg(long, short, env = "WYVERN_CONFIG")]
        config: PathBuf,
    },
    /// Send HL7v2 messages over MLLP and print each ACK. Exits 1 if any answer is not AA/CA.
    ///
    /// Inputs are files, folders (every file inside, sorted) or `-` for stdin; a file may hold
    /// one message, several, or an FHS/BHS batch. LF or CRLF segment ends are sent as CR.
    Send(send::SendArgs),
    /// Search and show what the inbox stored (works while the engine runs).
    Inbox {
        #[command(subcommand)]
        command: inbox::InboxCommand,
    },
    /// The audit log of who read or acted on which message: verify its hash chain, export it as
    /// FHIR AuditEvent.
    Audit {
        #[command(subcommand)]
        command: audit::AuditCommand,
    },
    /// The operator API (/api/v1 on the http listener): its bearer tokens.
    Api {
        #[command(subcommand)]
        command: api_tokens::ApiCommand,
    },
    /// The store's journal: check it, or repair it when the engine refuses to start on damage;
    /// move what a store still owes its destinations to the other kind of store.
    Store {
        #[command(subcommand)]
        command: store::StoreCommand,
    },
    /// Several nodes on one PostgreSQL (`store.shared`): who delivers what, and what waits.
    Cluster {
        #[command(subcommand)]
        command: cluster::ClusterCommand,
    },
    /// Dead letters: list, show, retry or purge messages a destination could not take.
    Dlq {
        #[command(subcommand)]
        command: dlq::DlqCommand,
    },
    /// Map one HL7v2 message to FHIR R4 UK Core with the built-in mapping and print the Bundle.
    ///
    /// Shows what a `map: hl7v2-to-fhir` step would send, with the mapping's warnings (an
    /// invalid NHS number kept as a local identifier, a missing PV1 …). With --config, that
    /// config's mappings folder is used. Exits 1 when the message cannot be mapped.
    Map(map::MapArgs),
    /// Run the route tests (NAME.test.yaml beside each route) offline and print a diff for each
    /// failure; exits 1 if any fails, 2 if a test file has problems.
    ///
    /// Each case's message goes through its route as the engine would take it (filters, edits,
    /// plugins in test mode, the FHIR mapping); what each destination would be sent is compared
    /// with the case's expectations. Nothing is stored or sent. Example:
    ///   wyvern test routes/                       # every test file in the folder
    ///   wyvern test routes/acute-adt.test.yaml --case admission
    ///   wyvern test routes/ --update              # write body_file files after a deliberate change
    Test(route_tests::TestArgs),
    /// Deliver again what a route received in a time range (`--since 2h`, `--since "2026-11-25 09:00"`).
    Replay(replay::ReplayArgs),
    /// Tools for development and tests.
    Dev {
        #[command(subcommand)]
        command: DevCommand,
    },
    /// Measure MLLP throughput and ACK latency against Wyvern and two baselines.
    Bench(bench::BenchArgs),
    /// A baseline MLLP server for `wyvern bench` (echo ACKs, or fsync each message).
    #[command(hide = true)]
    BenchServer(bench_server::BenchServerArgs),
    /// WebAssembly transform plugins: new, build, check, run (guide: plugins/README.md).
    Plugin {
        #[command(subcommand)]
        command: plugin::PluginCommand,
    },
    /// Print the JSON Schema of route files (or of wyvern.yaml, or of a code table), for editors.
    ///
    /// VS Code (YAML extension): put `# yaml-language-server: $schema=schema/route.schema.json`
    /// at the top of a route file, or map `routes/*.yaml` to it in settings. The repository's
    /// `schema/` folder holds all three schemas.
    Schema {
        /// Which file kind.
        #[arg(value_enum, default_value_t = SchemaKind::Route)]
        kind: SchemaKind,
    },
    /// Print the version.
    Version,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum SchemaKind {
    /// A route file.
    Route,
    /// wyvern.yaml.
    Engine,
    /// bridge.yaml (the federated read).
    Bridge,
    /// A code table in the mappings folder.
    CodeTable,
    /// A route test (NAME.test.yaml).
    RouteTest,
}

#[derive(Debug, Subcommand)]
enum DevCommand {
    /// A FHIR R4 stand-in for CHIE and DCR: stores what it is sent, can be told to fail
    /// (POST /_control {"mode":"fail","status":503}), stall or refuse. Base: http://LISTEN/fhir.
    FhirServer(dev_fhir::FhirServerArgs),
    /// A throwaway CA and certificates for trying TLS on one machine (never for production),
    /// e.g. `wyvern dev certs routes/certs --client pas.acute.example.nhs.uk`.
    Certs(dev_certs::CertsArgs),
}

fn init_logging(format: LogFormat, filter: &str) {
    let filter = tracing_subscriber::EnvFilter::try_new(filter)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // Colours only for a person at a terminal, never into a log file.
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    allocator::tune();
    // Everything the engine writes — the store, delivered files, compiled plugins — holds
    // patient data or derives from it: readable by this user only (files 0600, folders 0700).
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o077));
    let cli = Cli::parse();
    // A test run's output is its report: the engine's info lines (plugins loaded …) would
    // bury it, so only warnings show unless a filter was asked for.
    let log = match (&cli.command, cli.log.as_str()) {
        (Command::Test(_), "info") => "warn",
        (_, log) => log,
    };
    init_logging(cli.log_format, log);
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    let result = rt.block_on(async {
        match cli.command {
            Command::Run { config } => run::run(&config).await,
            Command::Validate { config } => validate::validate(&config),
            Command::Send(args) => send::send(args).await,
            Command::Inbox { command } => inbox::inbox(command).await,
            Command::Store { command } => store::store(command).await,
            Command::Audit { command } => audit::audit(command).await,
            Command::Api { command } => api_tokens::api(command).await,
            Command::Dlq { command } => dlq::dlq(command).await,
            Command::Cluster { command } => cluster::cluster(command).await,
            Command::Replay(args) => replay::replay(args).await,
            Command::Dev {
                command: DevCommand::FhirServer(args),
            } => dev_fhir::serve(args).await,
            Command::Dev {
                command: DevCommand::Certs(args),
            } => dev_certs::certs(args),
            Command::Bench(args) => bench::bench(args).await,
            Command::BenchServer(args) => bench_server::serve(args).await,
            Command::Plugin { command } => plugin::plugin(command),
            Command::Map(args) => map::map(args),
            Command::Test(args) => route_tests::test(args),
            Command::Schema { kind } => {
                let schema = match kind {
                    SchemaKind::Route => wyvern_config::route_schema(),
                    SchemaKind::Engine => wyvern_config::engine_schema(),
                    SchemaKind::Bridge => wyvern_config::bridge_schema(),
                    SchemaKind::CodeTable => wyvern_config::code_table_schema(),
                    SchemaKind::RouteTest => wyvern_config::route_test_schema(),
                };
                println!("{}", serde_json::to_string_pretty(&schema)?);
                Ok(ExitCode::SUCCESS)
            }
            Command::Version => {
                println!("wyvern {}", env!("CARGO_PKG_VERSION"));
                Ok(ExitCode::SUCCESS)
            }
        }
    });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", report::chain(&e));
            ExitCode::FAILURE
        }
    }
}
