//! Pure validation: YAML text in, a [`Config`] the runtime can build from — or every problem
//! found, each with its file, line and column. No sockets, DNS, files or secrets are touched:
//! `wyvern validate` on a laptop says the same as the engine on the server.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_saphyr::Spanned;

use crate::at::At;
use crate::model::{DurabilityFile, EngineFile, RouteFile, SourceFileKind};
use crate::{Destination, Diagnostic, OnPermanent, OrderBy, RetryPolicy, SourceFile, Step};

/// A validated configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub engine: EngineSettings,
    pub routes: Vec<Route>,
    /// The federated read (`bridge.yaml`), if the folder has one.
    pub bridge: Option<crate::Bridge>,
    /// Findings that do not stop the engine.
    pub warnings: Vec<Diagnostic>,
    /// The code tables of the mappings folder (filled by [`crate::load`]; empty from
    /// [`validate`] alone).
    pub tables: crate::CodeTables,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineSettings {
    pub store_dir: PathBuf,
    pub durability: Durability,
    /// Where /metrics, /health, /ready and the operator API are served; `None`: not served.
    pub http_listen: Option<SocketAddr>,
    /// HTTPS there (`http.tls`).
    pub http_tls: Option<crate::ServerTls>,
    /// How long finished messages stay in the store (default 30 days, at least an hour).
    pub retention: Duration,
    /// The folder of code tables (default `mappings` in the config folder).
    pub mappings_dir: PathBuf,
    /// Several nodes on one PostgreSQL (`store.shared`); `None`: the embedded store alone.
    pub shared: Option<SharedStore>,
}

/// `store.shared`: the store on a PostgreSQL that several nodes share.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedStore {
    pub postgres: crate::SecretValue,
    pub node: String,
    pub lease: Duration,
}

/// A lease lasts this long unless `store.shared.lease` says otherwise.
pub const DEFAULT_LEASE: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    Fsync,
    Buffered,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Route {
    pub name: String,
    pub description: Option<String>,
    pub file: PathBuf,
    pub source: Source,
    pub steps: Vec<Step>,
    pub destinations: Vec<Destination>,
    pub order_by: OrderBy,
    pub retry: RetryPolicy,
    pub on_permanent: OnPermanent,
    pub control_id_reuse: crate::ControlIdReuse,
}

#[derive(Debug, Clone, PartialEq)]
pub enum Source {
    Mllp(MllpSource),
    Directory(crate::DirectorySource),
    Amqp(crate::AmqpSource),
    Fhir(crate::FhirSource),
}

#[derive(Debug, Clone, PartialEq)]
pub struct MllpSource {
    pub listen: SocketAddr,
    pub max_frame: u64,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Addresses that may connect (empty: any).
    pub allow_from: Vec<ipnet::IpNet>,
    pub tls: Option<crate::ServerTls>,
    /// The facility each network or certificate sends as.
    pub senders: Vec<crate::SenderRule>,
    pub sender_mismatch: crate::SenderMismatch,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub max_in_flight: u32,
}

/// Finished messages are kept this long unless wyvern.yaml says otherwise.
pub const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);
/// The store's floor (see `wyvern_store::MIN_RETENTION`; config does not depend on the store).
const MIN_RETENTION: Duration = Duration::from_secs(3600);

/// `store.shared`, checked: a URL (its variables warned about if unset, never read), a node
/// name fit for logs, a lease of at least 2s (renewals go every quarter of it).
fn shared_store(at: &mut At<'_>, f: &crate::model::SharedStoreFile) -> Option<SharedStore> {
    let postgres = crate::destination::secret(at, &f.postgres);
    let node = f.node.value.trim();
    let named = !node.is_empty()
        && node.len() <= 64
        && node
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b));
    if !named {
        at.err(&f.node, format!("store.shared.node {:?} is not a node name: expected up to 64 letters, digits, '-', '_' or '.', such as node-a", f.node.value));
    }
    let lease = match &f.lease {
        Some(l) if l.value.0 < Duration::from_secs(2) => {
            at.err(
                l,
                "store.shared.lease must be at least 2s: expected a duration such as 10s",
            );
            None
        }
        Some(l) => Some(l.value.0),
        None => Some(DEFAULT_LEASE),
    };
    Some(SharedStore {
        postgres: postgres?,
        node: named.then(|| node.to_string())?,
        lease: lease?,
    })
}

/// Validates the files of one config. `base` is the folder relative paths are resolved against.
pub fn validate(base: &Path, sources: &[SourceFile]) -> Result<Config, Vec<Diagnostic>> {
    let mut errors = Vec::new();
    let mut engine = EngineSettings {
        store_dir: base.join("wyvern-data"),
        durability: Durability::Fsync,
        http_listen: None,
        http_tls: None,
        retention: DEFAULT_RETENTION,
        mappings_dir: base.join("mappings"),
        shared: None,
    };
    let mut routes: Vec<Route> = Vec::new();
    let mut bridge = None;
    let mut bridge_feeds = None;
    let mut warnings = Vec::new();
    let mut names: HashMap<String, (PathBuf, u64)> = HashMap::new();
    let mut listens: HashMap<SocketAddr, (String, PathBuf, u64)> = HashMap::new();

    for src in sources {
        let mut at = At::new(&src.path);
        if src.is_bridge_file() {
            match parse::<crate::BridgeFile>(src) {
                Ok(f) => {
                    let (b, feeds) = crate::bridge::bridge(&mut at, base, &f);
                    bridge_feeds = Some((src.path.clone(), feeds));
                    if let Some((other, file, line)) = listens.get(&b.serve.listen) {
                        at.err(
                            &f.serve.listen,
                            format!(
                                "{} is already the listen address of route {other:?} ({}:{line})",
                                b.serve.listen,
                                file.display()
                            ),
                        );
                    } else {
                        listens.insert(
                            b.serve.listen,
                            (
                                "(bridge)".into(),
                                src.path.clone(),
                                f.serve.listen.referenced.line(),
                            ),
                        );
                    }
                    bridge = Some(b);
                }
                Err(d) => at.errors.push(d),
            }
        } else if src.is_engine_file() {
            match parse::<EngineFile>(src) {
                Ok(f) => {
                    check_version(&mut at, &f.version);
                    if let Some(store) = f.store {
                        if let Some(p) = store.path {
                            if p.value.trim().is_empty() {
                                at.err(
                                    &p,
                                    "store.path is empty: expected a folder such as wyvern-data",
                                );
                            } else {
                                engine.store_dir = base.join(&p.value);
                            }
                        }
                        if let Some(r) = store.retention {
                            if r.value.0 < MIN_RETENTION {
                                at.err(&r, "store.retention must be at least 1h: expected a duration such as 30d (a younger record may still be in the journal)");
                            } else {
                                engine.retention = r.value.0;
                            }
                        }
                        if let Some(shared) = &store.shared {
                            engine.shared = shared_store(&mut at, shared);
                        }
                        engine.durability = match store.durability {
                            Some(DurabilityFile::Buffered) => Durability::Buffered,
                            _ => Durability::Fsync,
                        };
                    }
                    if let Some(m) = f.mappings {
                        if m.value.trim().is_empty() {
                            at.err(&m, "mappings is empty: expected a folder such as mappings");
                        } else {
                            engine.mappings_dir = base.join(&m.value);
                        }
                    }
                    if let Some(http) = f.http {
                        match http.listen.value.parse::<SocketAddr>() {
                            Ok(a) => {
                                engine.http_listen = Some(a);
                                if !a.ip().is_loopback() && http.tls.is_none() {
                                    at.warn(&http.listen, format!("http.listen {a} serves the operator API to other hosts in plaintext: add http.tls (tokens would cross the network readable)"));
                                }
                            }
                            Err(_) => at.err(&http.listen, format!("http.listen {:?} is not an address: expected IP:PORT such as 127.0.0.1:9465", http.listen.value)),
                        }
                        engine.http_tls = http
                            .tls
                            .as_ref()
                            .and_then(|t| crate::tls::server(&mut at, base, t));
                    }
                }
                Err(d) => at.errors.push(d),
            }
        } else {
            match parse::<RouteFile>(src) {
                Ok(f) => {
                    check_version(&mut at, &f.version);
                    let name = f.route.value.clone();
                    if !valid_name(&name) {
                        at.err(&f.route, format!("route name {name:?} is not valid: expected lower-case letters, digits and '-', such as adt-to-chie"));
                    } else if let Some((file, line)) = names.get(&name) {
                        at.err(
                            &f.route,
                            format!(
                                "route {name:?} is already defined at {}:{line}",
                                file.display()
                            ),
                        );
                    } else {
                        names.insert(name.clone(), (src.path.clone(), f.route.referenced.line()));
                    }
                    let source = match f.source {
                        SourceFileKind::Mllp(m) => {
                            let listen = match m.listen.value.parse::<SocketAddr>() {
                                Ok(a) => {
                                    if let Some((other, file, line)) = listens.get(&a) {
                                        at.err(&m.listen, format!("{a} is already the listen address of route {other:?} ({}:{line})", file.display()));
                                    } else {
                                        listens.insert(
                                            a,
                                            (
                                                name.clone(),
                                                src.path.clone(),
                                                m.listen.referenced.line(),
                                            ),
                                        );
                                    }
                                    a
                                }
                                Err(_) => {
                                    at.err(&m.listen, format!("listen {:?} is not an address: expected IP:PORT such as 0.0.0.0:2575 or 127.0.0.1:2575", m.listen.value));
                                    SocketAddr::from(([0, 0, 0, 0], 0))
                                }
                            };
                            let max_frame = m.max_frame.map_or(8 << 20, |s| {
                                if !(1024..=1 << 30).contains(&s.value.0) {
                                    at.err(
                                        &s,
                                        format!(
                                            "max_frame {} is out of range: expected 1KiB to 1GiB",
                                            s.value
                                        ),
                                    );
                                }
                                s.value.0
                            });
                            let (max_connections, max_connections_per_peer) = connection_caps(
                                &mut at,
                                m.max_connections,
                                m.max_connections_per_peer,
                            );
                            let max_in_flight =
                                positive(&mut at, m.max_in_flight, 256, "max_in_flight", 65_536);
                            let idle_timeout =
                                duration(&mut at, m.idle_timeout, 300, "idle_timeout");
                            let frame_timeout =
                                duration(&mut at, m.frame_timeout, 30, "frame_timeout");
                            let allow_from = crate::peers::allow_from(
                                &mut at,
                                &m.listen,
                                listen,
                                m.allow_from.as_deref(),
                            );
                            let tls = m
                                .tls
                                .as_ref()
                                .and_then(|t| crate::tls::server(&mut at, base, t));
                            let senders = crate::peers::senders(
                                &mut at,
                                m.senders.as_deref(),
                                tls.as_ref().is_some_and(|t| t.client_ca.is_some()),
                            );
                            Source::Mllp(MllpSource {
                                listen,
                                max_frame,
                                max_connections,
                                max_connections_per_peer,
                                allow_from,
                                tls,
                                senders,
                                sender_mismatch: m.sender_mismatch.unwrap_or_default(),
                                idle_timeout,
                                frame_timeout,
                                max_in_flight,
                            })
                        }
                        SourceFileKind::Directory(d) => {
                            Source::Directory(crate::directory::directory(&mut at, base, &d))
                        }
                        SourceFileKind::Amqp(a) => {
                            Source::Amqp(crate::amqp_source::amqp_source(&mut at, &a))
                        }
                        SourceFileKind::Fhir(h) => {
                            let s = crate::fhir_source::fhir_source(&mut at, base, &h);
                            if let Some((other, file, line)) = listens.get(&s.listen) {
                                at.err(&h.listen, format!("{} is already the listen address of route {other:?} ({}:{line})", s.listen, file.display()));
                            } else {
                                listens.insert(
                                    s.listen,
                                    (name.clone(), src.path.clone(), h.listen.referenced.line()),
                                );
                            }
                            let only_back =
                                f.steps.is_empty()
                                    || (f.steps.len() == 1
                                        && f.steps[0].value.map.as_ref().is_some_and(|m| {
                                            m.value == crate::MapKind::FhirToHl7v2
                                        }));
                            if !only_back {
                                at.err(&h.listen, "a fhir source takes no steps but map: fhir-to-hl7v2: its messages are FHIR, and the other steps read HL7v2");
                            }
                            Source::Fhir(s)
                        }
                    };
                    let steps = crate::step::steps(&mut at, base, &f.steps);
                    let destinations =
                        crate::destination::destinations(&mut at, base, &f.destinations);
                    let retry = crate::delivery::retry(&mut at, f.retry.as_ref());
                    let back_to_v2 = steps
                        .iter()
                        .any(|s| matches!(s, Step::Map(crate::MapKind::FhirToHl7v2)));
                    if back_to_v2 && !matches!(source, Source::Fhir(_)) {
                        at.err(&f.route, "map: fhir-to-hl7v2 reads FHIR: it is the step of a fhir source, not of a route whose messages are HL7v2");
                    }
                    if steps
                        .iter()
                        .any(|s| matches!(s, Step::Map(crate::MapKind::Hl7v2ToFhir)))
                        || (matches!(source, Source::Fhir(_)) && !back_to_v2)
                    {
                        for d in &destinations {
                            if matches!(d.kind, crate::DestinationKind::Mllp(_)) {
                                at.err(&f.route, format!("destination {:?} is MLLP, which carries HL7v2, but the route's messages are FHIR (a map step or a fhir source): send FHIR to a fhir, amqp or file destination", d.name));
                            }
                            if matches!(d.kind, crate::DestinationKind::Nrl(_)) {
                                at.err(&f.route, format!("destination {:?} is nrl, which reads the patient from HL7v2 ADT, but the route's messages are FHIR (a map step or a fhir source): feed it from a route that keeps HL7v2", d.name));
                            }
                        }
                        // A routing key that reads HL7 fields would render them empty. (One that
                        // does not parse has its own error already.)
                        for d in &f.destinations {
                            if let Some(a) = &d.amqp
                                && crate::destination::template(&a.routing_key.value).is_ok_and(
                                    |parts| {
                                        parts
                                            .iter()
                                            .any(|p| matches!(p, crate::TemplatePart::Field(_)))
                                    },
                                )
                            {
                                at.err(&a.routing_key, format!("routing_key {:?} reads HL7v2 fields, but the route's messages are FHIR (a map step or a fhir source), so they would be empty: use fixed text", a.routing_key.value));
                            }
                        }
                    }
                    // A patient's messages must reach the NRL in order (a retried create must
                    // not land after the death that followed it).
                    if f.order_by == Some(crate::OrderBy::None) {
                        for d in &f.destinations {
                            if d.nrl.is_some() {
                                at.err(&d.name, format!("destination {:?} is nrl, which needs each patient's messages in order: use order_by: patient (or sender), not none", d.name.value));
                            }
                        }
                    }
                    routes.push(Route {
                        name,
                        description: f.description,
                        file: src.path.clone(),
                        source,
                        steps,
                        destinations,
                        order_by: f.order_by.unwrap_or_default(),
                        retry,
                        on_permanent: f.on_permanent.unwrap_or_default(),
                        control_id_reuse: f.control_id_reuse.unwrap_or_default(),
                    });
                }
                Err(d) => at.errors.push(d),
            }
        }
        errors.extend(at.errors);
        warnings.extend(at.warnings);
    }
    if let Some((file, feeds)) = &bridge_feeds {
        errors.extend(crate::bridge::check_feeds(file, feeds, &routes));
    }
    if routes.is_empty() && bridge.is_none() && errors.is_empty() {
        errors.push(Diagnostic::error(
            base,
            0,
            0,
            "no route files found: expected at least one ROUTE.yaml (or a bridge.yaml) beside wyvern.yaml",
        ));
    }
    if errors.is_empty() {
        Ok(Config {
            engine,
            routes,
            bridge,
            warnings,
            tables: crate::CodeTables::new(),
        })
    } else {
        Err(errors)
    }
}

pub(crate) fn parse<T: serde::de::DeserializeOwned>(src: &SourceFile) -> Result<T, Diagnostic> {
    serde_saphyr::from_str::<T>(&src.text).map_err(|e| {
        let (line, col) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
        let mut msg = e.without_snippet().to_string();
        if let Some(i) = msg.find(" at line ") {
            msg.truncate(i);
        }
        Diagnostic::error(&src.path, line, col, msg)
    })
}

pub(crate) fn check_version(at: &mut At<'_>, v: &Spanned<u32>) {
    if v.value != 1 {
        at.err(
            v,
            format!("version {} is not supported: expected version: 1", v.value),
        );
    }
}

/// A name of a route, destination or bridge member: 1 to 64 lower-case letters, digits, '-'
/// and '_'.
pub fn valid_name(n: &str) -> bool {
    !n.is_empty()
        && n.len() <= 64
        && n.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_')
}

pub(crate) fn positive(
    at: &mut At<'_>,
    v: Option<Spanned<u32>>,
    default: u32,
    key: &str,
    max: u32,
) -> u32 {
    match v {
        None => default,
        Some(s) if s.value == 0 || s.value > max => {
            at.err(
                &s,
                format!("{key} {} is out of range: expected 1 to {max}", s.value),
            );
            default
        }
        Some(s) => s.value,
    }
}

/// A listener's `max_connections` (default 256) and `max_connections_per_peer` (default 32,
/// at most `max_connections`): the same for every listener that faces other organisations.
pub(crate) fn connection_caps(
    at: &mut At<'_>,
    max_connections: Option<Spanned<u32>>,
    per_peer: Option<Spanned<u32>>,
) -> (u32, u32) {
    let max = positive(at, max_connections, 256, "max_connections", 100_000);
    let per_peer = positive(at, per_peer, 32.min(max), "max_connections_per_peer", max);
    (max, per_peer)
}

/// A size setting within `range` (else an error naming both ends, and the default).
pub(crate) fn size(
    at: &mut At<'_>,
    v: Option<&Spanned<crate::ByteSize>>,
    default: u64,
    key: &str,
    range: std::ops::RangeInclusive<u64>,
) -> u64 {
    match v {
        Some(s) if !range.contains(&s.value.0) => {
            at.err(
                s,
                format!(
                    "{key} must be between {} and {}: expected a size such as {}",
                    crate::ByteSize(*range.start()),
                    crate::ByteSize(*range.end()),
                    crate::ByteSize(default)
                ),
            );
            default
        }
        Some(s) => s.value.0,
        None => default,
    }
}

pub(crate) fn duration(
    at: &mut At<'_>,
    v: Option<Spanned<crate::HumanDuration>>,
    default_secs: u64,
    key: &str,
) -> Duration {
    match v {
        None => Duration::from_secs(default_secs),
        Some(s) if s.value.0.is_zero() => {
            at.err(
                &s,
                format!("{key} must be longer than zero: expected a duration such as 30s"),
            );
            Duration::from_secs(default_secs)
        }
        Some(s) => s.value.0,
    }
}
