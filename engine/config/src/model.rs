//! The YAML shapes exactly as written: closed enums, unknown keys refused, values spanned so
//! validation can point at them. Nothing here is trusted until [`crate::validate`] has run.

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::{ByteSize, HumanDuration};

/// `wyvern.yaml`: settings for the whole engine. Every key is optional.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EngineFile {
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    #[serde(default)]
    pub store: Option<StoreFile>,
    /// `http: { listen: 127.0.0.1:9465 }`: /metrics, /health, /ready and the operator API
    /// (`/api/v1`, tokens required). Off when absent.
    #[serde(default)]
    pub http: Option<HttpFile>,
    /// The folder of code tables (`*.yaml`, see mappings/README.md), relative to the config
    /// folder. Default `mappings`; absent folder: no tables.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub mappings: Option<Spanned<String>>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpFile {
    #[schemars(with = "String")]
    pub listen: Spanned<String>,
    /// Serve HTTPS: `{ cert, key }` (and `client_ca` to require client certificates too).
    #[serde(default)]
    pub tls: Option<crate::tls::ServerTlsFile>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct StoreFile {
    /// The store folder, relative to the config folder. Default `wyvern-data`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub path: Option<Spanned<String>>,
    #[serde(default)]
    pub durability: Option<DurabilityFile>,
    /// How long finished messages (every destination done) stay: default 30d, at least 1h.
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub retention: Option<Spanned<HumanDuration>>,

    /// Several nodes on one PostgreSQL: `shared: { postgres: ${WYVERN_PG_URL}, node: node-a }`.
    /// Messages and deliveries go to the database; each destination's deliveries are split by
    /// key and leased to one node at a time. Absent: the embedded store alone.
    #[serde(default)]
    pub shared: Option<SharedStoreFile>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SharedStoreFile {
    /// The database URL (`postgresql://user:password@host:5432/db`); `${VAR}` or `file:`
    /// keeps the password out of the file.
    #[schemars(with = "String")]
    pub postgres: Spanned<String>,
    /// This node's name, unique among the nodes sharing the database (it owns leases).
    #[schemars(with = "String")]
    pub node: Spanned<String>,
    /// How long a node's lease on a destination's deliveries lasts unrenewed: the longest a
    /// stopped node's deliveries wait for another to take them over. Default 10s.
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub lease: Option<Spanned<HumanDuration>>,
}

#[derive(Debug, Clone, Copy, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum DurabilityFile {
    Fsync,
    Buffered,
}

/// One route file.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RouteFile {
    #[schemars(with = "u32")]
    pub version: Spanned<u32>,
    #[schemars(with = "String")]
    pub route: Spanned<String>,
    #[serde(default)]
    pub description: Option<String>,
    pub source: SourceFileKind,
    #[serde(default)]
    #[schemars(with = "Vec<crate::step::StepFile>")]
    pub steps: Vec<Spanned<crate::step::StepFile>>,
    #[serde(default)]
    pub destinations: Vec<crate::destination::DestinationFile>,
    #[serde(default)]
    pub order_by: Option<crate::OrderBy>,
    #[serde(default)]
    pub retry: Option<crate::delivery::RetryFile>,
    #[serde(default)]
    pub on_permanent: Option<crate::OnPermanent>,
    #[serde(default)]
    pub control_id_reuse: Option<crate::ControlIdReuse>,
}

/// Where a route's messages come from (one key: the kind).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum SourceFileKind {
    Mllp(Box<MllpSourceFile>),
    Directory(crate::directory::DirectorySourceFile),
    Amqp(crate::amqp_source::AmqpSourceFile),
    Fhir(Box<crate::fhir_source::FhirSourceFile>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MllpSourceFile {
    #[schemars(with = "String")]
    pub listen: Spanned<String>,
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub max_frame: Option<Spanned<ByteSize>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_connections: Option<Spanned<u32>>,
    /// Connections one peer address may hold at once (default 32), so one sender cannot take
    /// every slot.
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_connections_per_peer: Option<Spanned<u32>>,
    /// The addresses that may connect, as CIDR blocks or single addresses (e.g.
    /// `[10.20.0.0/16, 192.0.2.7]`); others are refused before anything is read. Absent: any.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_from: Option<Vec<Spanned<String>>>,
    /// Serve TLS: `{ cert, key }`, with `client_ca` to require client certificates (mTLS) and
    /// `allow_subjects` to name which.
    #[serde(default)]
    pub tls: Option<crate::tls::ServerTlsFile>,
    /// The sending facility (MSH-4.1) each network or client certificate sends as: a message
    /// from it naming another facility is handled as `sender_mismatch` says.
    #[serde(default)]
    pub senders: Option<Vec<crate::peers::SenderFile>>,
    /// `reject` (default): AR, kept as rejected; `flag`: accepted, counted and logged.
    #[serde(default)]
    pub sender_mismatch: Option<crate::peers::SenderMismatch>,
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub idle_timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub frame_timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_in_flight: Option<Spanned<u32>>,
}
