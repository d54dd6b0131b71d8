//! The engine: store + one source per route (listener, folder poller or queue consumer), built from a validated config, run until told
//! to stop.
//!
//! Build does the I/O validation never does (opening the store, binding ports) and reports
//! failures with the route they belong to; it never re-validates.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio_util::sync::CancellationToken;
use wyvern_config::Config;
use wyvern_core::Clock;
use wyvern_store::{Durability, InboxReader, SharedStore, Store, StoreError, StoreOptions};

use crate::audit::RefusalAudit;
use crate::delivery::DeliveryWorker;
use crate::http::OpsServer;
use crate::intake::dedup::key as dedup_key;
use crate::intake::ingest::Ingest;
use crate::metrics::Metrics;
use crate::retention::RetentionSweeper;
use crate::source::{self, Source, SourceContext};
use crate::transform::TransformLoader;
use crate::{DEFAULT_WINDOW, DedupWindow, RouteCounters};

#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("route {route:?}, destination {destination:?}: {reason}")]
    Destination {
        route: String,
        destination: String,
        reason: String,
    },
    #[error("route {route:?}: {reason}")]
    Plugin { route: String, reason: String },
    #[error("route {route:?}, source: {reason}")]
    Source { route: String, reason: String },
    #[error("route {route:?} cannot listen on {addr}: {source}")]
    Bind {
        route: String,
        addr: SocketAddr,
        source: std::io::Error,
    },
}

/// The duplicate window of a route, filled with what the store last accepted for it.
pub(crate) fn seeded_window(store: &Store, route: &str) -> DedupWindow {
    let window = DedupWindow::new(DEFAULT_WINDOW);
    match InboxReader::open(store.dir()).and_then(|r| r.recent_keys(route, DEFAULT_WINDOW)) {
        Ok(keys) => {
            for k in keys.into_iter().rev() {
                window.remember(
                    dedup_key(&k.sending_application, &k.sending_facility, &k.control_id),
                    k.digest,
                    k.id,
                );
            }
        }
        Err(e) => {
            tracing::warn!(route, error = %e, "cannot read recent messages; duplicate detection starts empty")
        }
    }
    window
}

/// Spawns one of the engine's long-running tasks. One that ends before shutdown — returns or
/// panics — is a defect: the log says which, and `/ready` answers 503 from then on, so a
/// load balancer or an operator sees it instead of a feed silently stopping.
fn supervised(
    name: String,
    task: std::pin::Pin<Box<dyn std::future::Future<Output = ()> + Send>>,
    ready: &Arc<AtomicBool>,
    shutdown: &CancellationToken,
) -> tokio::task::JoinHandle<()> {
    use futures_util::FutureExt as _;
    let (ready, shutdown) = (ready.clone(), shutdown.clone());
    tokio::spawn(async move {
        let ended = std::panic::AssertUnwindSafe(task).catch_unwind().await;
        if !shutdown.is_cancelled() {
            ready.store(false, Ordering::Relaxed);
            tracing::error!(task = %name, panicked = ended.is_err(), "an engine task stopped unexpectedly; /ready now answers 503");
        }
    })
}

/// A built engine, ready to run.
#[derive(Debug)]
pub struct Engine {
    store: Store,
    /// Every route's source, whatever its kind.
    sources: Vec<Box<dyn Source>>,
    sweeper: RetentionSweeper,
    refusal_audit: RefusalAudit,
    workers: Vec<DeliveryWorker>,
    counters: Vec<(String, Arc<RouteCounters>)>,
    http: Option<OpsServer>,
    /// The federated read, when the config has a `bridge.yaml`.
    bridge: Option<crate::bridge::BridgeServer>,
    ready: Arc<AtomicBool>,
}

impl Engine {
    /// `plugins` loads the plugins of `wasm:` steps (the binary passes wasmtime's; tests may
    /// pass [`crate::transform::NoPlugins`]).
    pub async fn build(
        config: &Config,
        clock: Arc<dyn Clock>,
        plugins: &dyn TransformLoader,
    ) -> Result<Engine, BuildError> {
        Self::build_on(config, clock, plugins, None).await
    }

    /// As [`Engine::build`]; with `shared`, received messages are committed to a store several
    /// nodes share and delivered from it (the binary opens it from `store.shared`). The
    /// embedded store still holds this node's audit log and API tokens.
    pub async fn build_on(
        config: &Config,
        clock: Arc<dyn Clock>,
        plugins: &dyn TransformLoader,
        shared: Option<Arc<dyn SharedStore>>,
    ) -> Result<Engine, BuildError> {
        let mut opts = StoreOptions::new(&config.engine.store_dir);
        opts.durability = match config.engine.durability {
            wyvern_config::Durability::Fsync => Durability::Fsync,
            wyvern_config::Durability::Buffered => Durability::Buffered,
        };
        let store = Store::open(opts)?;
        let recovered = store.recovered();
        if recovered.records + recovered.salvaged > 0 || recovered.torn_bytes > 0 {
            // What the journal check showed (recovery.rs): every acknowledged record is back,
            // except what a buffered journal lost (logged there as an error).
            tracing::warn!(
                records = recovered.records + recovered.salvaged,
                not_yet_indexed = recovered.added,
                torn_bytes = recovered.torn_bytes,
                "the engine did not stop cleanly last time: the journal was replayed into the index{}",
                match (recovered.unsynced_bytes, recovered.torn_bytes) {
                    (1.., _) => "; acknowledged messages were lost (durability: buffered)",
                    (0, 1..) => {
                        "; every acknowledged message is in the index (the torn write was never acknowledged)"
                    }
                    (0, 0) => "; every acknowledged message is in the index",
                }
            );
        }
        let mut sources = Vec::new();
        let mut counters = Vec::new();
        let ingest = match &shared {
            Some(s) => Ingest::Shared(s.clone()),
            None => Ingest::Embedded(store.clone()),
        };
        let ctx = SourceContext {
            store: &store,
            ingest: &ingest,
            clock: clock.clone(),
            plugins,
        };
        for route in &config.routes {
            let (source, route_counters) = source::build(route, &ctx).await?;
            sources.push(source);
            counters.push((route.name.clone(), route_counters));
        }
        let mut workers = Vec::new();
        for (route, (_, route_counters)) in config.routes.iter().zip(&counters) {
            for d in &route.destinations {
                let worker = match &shared {
                    None => DeliveryWorker::build(
                        route,
                        d,
                        &config.engine.store_dir,
                        clock.clone(),
                        store.indexed(),
                    )?,
                    Some(s) => {
                        let log = s.delivery_log().await?;
                        DeliveryWorker::build_shared(route, d, log, clock.clone(), s.committed())
                            .await?
                    }
                };
                workers.push(worker.with_control(route_counters.control.clone()));
            }
        }
        // Refused peers go to the audit log, tallied (audit.rs).
        let (reports, report_rx) = tokio::sync::mpsc::channel(crate::audit::QUEUE);
        for (route, c) in &counters {
            let _ = c
                .refusals
                .report
                .set((route.as_str().into(), reports.clone()));
        }
        let audit: Arc<dyn wyvern_store::AuditTrail> = match &shared {
            Some(s) => s.audit(),
            None => Arc::new(wyvern_store::EmbeddedAudit {
                dir: store.dir().to_path_buf(),
            }),
        };
        // The operator API and the bridge each get their own (on PostgreSQL, their own
        // connection: an operator's long purge never holds up a clinician's query).
        let operations = || -> Arc<dyn wyvern_store::Operations> {
            match &shared {
                Some(s) => s.operations(),
                None => Arc::new(wyvern_store::EmbeddedOperations {
                    dir: config.engine.store_dir.clone(),
                }),
            }
        };
        let bridge = match &config.bridge {
            None => None,
            Some(b) => {
                let refusals = Arc::new(wyvern_connectors::peers::Refusals::default());
                let _ = refusals.report.set(("(bridge)".into(), reports.clone()));
                Some(
                    crate::bridge::BridgeServer::bind(
                        b,
                        operations(),
                        audit.clone(),
                        clock.clone(),
                        refusals,
                    )
                    .await?,
                )
            }
        };
        let refusal_audit = RefusalAudit {
            audit: audit.clone(),
            clock: clock.clone(),
            reports: report_rx,
        };
        let sweeper = RetentionSweeper {
            store: store.clone(),
            shared: shared.clone(),
            retention: config.engine.retention,
            clock: clock.clone(),
            pruned: Arc::default(),
        };
        let ready = Arc::new(AtomicBool::new(false));
        let http = match config.engine.http_listen {
            None => None,
            Some(addr) => {
                // On a shared store the depth is the cluster's, read in the background.
                let shared_depth = shared.as_ref().map(|s| {
                    let cache = Arc::new(crate::metrics::SharedDepth::default());
                    let lanes = workers
                        .iter()
                        .map(|w| (w.route.clone(), w.destination.clone()))
                        .collect();
                    tokio::spawn(crate::metrics::refresh_shared_depth(
                        s.clone(),
                        lanes,
                        Arc::downgrade(&cache),
                    ));
                    cache
                });
                let metrics = Metrics {
                    routes: counters.clone(),
                    destinations: workers
                        .iter()
                        .map(|w| (w.route.clone(), w.destination.clone(), w.counters()))
                        .collect(),
                    store: store.stats_handle(),
                    outbox: Arc::default(),
                    shared_depth,
                    store_dir: config.engine.store_dir.clone(),
                    pruned: sweeper.pruned.clone(),
                    bridge: bridge.as_ref().map(crate::bridge::BridgeServer::counters),
                };
                let api = crate::api::ApiState {
                    refusals: Arc::default(),
                    operations: operations(),
                    audit: audit.clone(),
                    shared: shared.clone(),
                    tokens: match &shared {
                        Some(s) => s.tokens(),
                        None => Arc::new(wyvern_store::EmbeddedTokens {
                            dir: config.engine.store_dir.clone(),
                        }),
                    },
                    clock: clock.clone(),
                    routes: Arc::new(
                        config
                            .routes
                            .iter()
                            .zip(&counters)
                            .map(|(r, (_, c))| crate::api::RouteView::of(r, c.clone()))
                            .collect(),
                    ),
                };
                let tls = match &config.engine.http_tls {
                    None => None,
                    Some(t) => Some(crate::tls::server("the HTTP listener".into(), t).map_err(
                        |e| BuildError::Source {
                            route: "(http)".into(),
                            reason: e.to_string(),
                        },
                    )?),
                };
                let server = OpsServer::bind(addr, metrics, ready.clone(), api, tls)
                    .await
                    .map_err(|source| BuildError::Bind {
                        route: "(http)".into(),
                        addr,
                        source,
                    })?;
                Some(server)
            }
        };
        Ok(Engine {
            store,
            sources,
            sweeper,
            refusal_audit,
            workers,
            counters,
            http,
            bridge,
            ready,
        })
    }

    /// The bound address of each route's listener (useful when the config asked for port 0).
    pub fn local_addrs(&self) -> Vec<SocketAddr> {
        self.sources.iter().filter_map(|s| s.local_addr()).collect()
    }

    pub fn counters(&self) -> &[(String, Arc<RouteCounters>)] {
        &self.counters
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Runs until `shutdown` is cancelled; then stops accepting, answers everything already
    /// read, commits what is queued and closes the store.
    /// Where /metrics is served, if it is.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|h| h.local_addr().ok())
    }

    /// Where the bridge is served, if the config has one.
    pub fn bridge_addr(&self) -> Option<SocketAddr> {
        self.bridge.as_ref().and_then(|b| b.local_addr().ok())
    }

    pub async fn run(self, shutdown: CancellationToken) {
        let http_stop = CancellationToken::new();
        let http = self.http.map(|h| tokio::spawn(h.run(http_stop.clone())));
        self.ready.store(true, Ordering::Relaxed);
        let ready = self.ready.clone();
        let not_ready = shutdown.clone();
        tokio::spawn(async move {
            not_ready.cancelled().await;
            ready.store(false, Ordering::Relaxed);
        });
        let watch = |name: String, task| supervised(name, task, &self.ready, &shutdown);
        let workers: Vec<_> = self
            .workers
            .into_iter()
            .map(|w| {
                let name = format!("delivery {}/{}", w.route, w.destination);
                watch(name, Box::pin(w.run(shutdown.clone())))
            })
            .collect();
        let sweeper = watch(
            "retention".into(),
            Box::pin(self.sweeper.run(shutdown.clone())),
        );
        let audit = watch(
            "audit of refused connections".into(),
            Box::pin(self.refusal_audit.run(shutdown.clone())),
        );
        let bridge = self
            .bridge
            .map(|b| watch("bridge".into(), Box::pin(b.run(shutdown.clone()))));
        let tasks: Vec<_> = self
            .sources
            .into_iter()
            .map(|s| watch(s.name(), s.run(shutdown.clone())))
            .chain(bridge)
            .collect();
        // Sources first: every message already read is stored and answered. Workers finish
        // the delivery in hand; what is still in the outbox goes out after the next start.
        for t in tasks.into_iter().chain(workers).chain([sweeper, audit]) {
            let _ = t.await;
        }
        // /metrics answers until everything else has stopped.
        http_stop.cancel();
        if let Some(h) = http {
            let _ = h.await;
        }
        self.store.close().await;
        let s = self.store.stats();
        let get = |a: &std::sync::atomic::AtomicU64| a.load(std::sync::atomic::Ordering::Relaxed);
        tracing::info!(
            records = get(&s.records),
            group_commits = get(&s.commits),
            largest_batch = get(&s.largest_batch),
            indexed = get(&s.indexed),
            "engine stopped"
        );
    }
}
