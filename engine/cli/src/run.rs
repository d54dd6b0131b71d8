//! `wyvern run`: validate, build, serve until SIGINT/SIGTERM, then drain. SIGHUP reads every
//! TLS certificate and key, and every token keys file, again (new handshakes and tokens use
//! them; open connections keep theirs).

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use tokio_util::sync::CancellationToken;
use wyvern_core::SystemClock;
use wyvern_runtime::Engine;

pub async fn run(config_path: &Path) -> anyhow::Result<ExitCode> {
    let config = match wyvern_config::load(config_path) {
        Ok(c) => c,
        Err(diags) => {
            for d in &diags {
                eprintln!("{d}");
            }
            eprintln!(
                "{}: {} problem(s); not starting",
                config_path.display(),
                diags.len()
            );
            return Ok(ExitCode::from(2));
        }
    };
    for w in &config.warnings {
        tracing::warn!("{w}");
    }
    // Registered before anything listens: a SIGTERM that arrives while the engine starts is a
    // clean stop, not the default action (an unclean kill).
    let term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    // Likewise SIGHUP, whose default action would end the process.
    if let Ok(mut hup) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) {
        tokio::spawn(async move {
            while hup.recv().await.is_some() {
                let (reloaded, failed) = wyvern_connectors::tls::reloader().reload_all();
                tracing::info!(
                    reloaded,
                    failed,
                    "SIGHUP: TLS certificates and keys read again"
                );
            }
        });
    }
    let plugins = crate::plugin::loader::WasmLoader::new(
        Some(config.engine.store_dir.join("plugin-cache")),
        false,
        config.tables.clone(),
    )
    .with_mappings_dir(&config.engine.mappings_dir);
    let shared = match &config.engine.shared {
        None => None,
        Some(settings) => Some(open_shared(settings).await?),
    };
    // On a shared store the engine's account goes in the cluster's audit log.
    let trail: Arc<dyn wyvern_store::AuditTrail> = match &shared {
        Some(s) => s.audit(),
        None => Arc::new(wyvern_store::EmbeddedAudit {
            dir: config.engine.store_dir.clone(),
        }),
    };
    let engine = Engine::build_on(&config, Arc::new(SystemClock), &plugins, shared)
        .await
        .context("cannot start the engine")?;
    // Which config ran, and who started it: the audit log's account of what the engine did.
    crate::audit::record(
        trail.as_ref(),
        wyvern_store::AuditAction::Engine,
        None,
        None,
        Some(format!(
            "started: wyvern {} with {} ({} route(s), config sha256 {})",
            env!("CARGO_PKG_VERSION"),
            config_path.display(),
            config.routes.len(),
            config_digest(config_path)
        )),
    )
    .await?;
    tracing::info!(version = env!("CARGO_PKG_VERSION"), routes = config.routes.len(), store = %config.engine.store_dir.display(), "wyvern running; Ctrl-C to stop");
    let shutdown = CancellationToken::new();
    let signal = shutdown.clone();
    tokio::spawn(async move {
        wait_for_signal(term).await;
        tracing::info!("shutting down: no new connections; answering messages in flight");
        signal.cancel();
    });
    engine.run(shutdown).await;
    crate::audit::record(
        trail.as_ref(),
        wyvern_store::AuditAction::Engine,
        None,
        None,
        Some("stopped".into()),
    )
    .await?;
    Ok(ExitCode::SUCCESS)
}

/// SHA-256 over the config's YAML files (names and bytes, in name order): which config ran,
/// comparable with `sha256sum` of the same files concatenated as `NAME\0BYTES`.
fn config_digest(path: &Path) -> String {
    use sha2::Digest as _;
    let mut files: Vec<std::path::PathBuf> = if path.is_dir() {
        std::fs::read_dir(path)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|x| x == "yaml" || x == "yml"))
            .collect()
    } else {
        vec![path.to_path_buf()]
    };
    files.sort();
    let mut h = sha2::Sha256::new();
    for f in files {
        h.update(
            f.file_name()
                .map(|n| n.as_encoded_bytes())
                .unwrap_or_default(),
        );
        h.update([0]);
        h.update(std::fs::read(&f).unwrap_or_default());
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

async fn wait_for_signal(term: Option<tokio::signal::unix::Signal>) {
    match term {
        Some(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        None => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

/// `store.shared.postgres` with its `${VAR}` or `file:` parts read.
pub(crate) fn shared_url(settings: &wyvern_config::SharedStore) -> anyhow::Result<String> {
    settings
        .postgres
        .resolve()
        .map_err(|e| anyhow::anyhow!("store.shared.postgres: {e}"))
}

/// The store several nodes share (`store.shared`): connected, its schema brought up to date.
async fn open_shared(
    settings: &wyvern_config::SharedStore,
) -> anyhow::Result<Arc<dyn wyvern_store::SharedStore>> {
    let url = shared_url(settings)?;
    let store = wyvern_store_pg::PgShared::open(url, settings.node.clone(), settings.lease)
        .await
        .context("cannot open the shared store (store.shared)")?;
    tracing::info!(node = %settings.node, lease = ?settings.lease, "messages go to the shared PostgreSQL store");
    tracing::info!(
        "messages, dead letters, replays, the audit log and API tokens are the cluster's; what \
         this node's own folder (store.path) still owes its destinations from before is moved \
         with `wyvern store migrate --to shared`"
    );
    Ok(Arc::new(store))
}
