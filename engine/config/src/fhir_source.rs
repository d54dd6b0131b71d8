//! `source: { fhir: { listen, max_body } }`: FHIR REST inbound. Systems that already speak FHIR
//! POST resources and Bundles to `http://LISTEN/fhir`; each accepted one is stored and
//! delivered like any message, and answered 200/201 only after the commit.
//!
//! ```yaml
//! source:
//!   fhir: { listen: 0.0.0.0:8443, max_body: 10MiB }
//! ```
//!
//! Callers authenticate with client certificates (`tls.client_ca`), OAuth2 bearer tokens
//! (`auth.jwt`), or both:
//!
//! ```yaml
//! source:
//!   fhir:
//!     listen: 0.0.0.0:8443
//!     tls: { cert: certs/wyvern.pem, key: certs/wyvern.key }
//!     auth:
//!       jwt:
//!         keys: certs/issuer-jwks.json        # a JWKS file, or a PEM public key
//!         issuer: https://auth.example.nhs.uk  # optional
//!         audience: https://wyvern.example.nhs.uk/fhir
//!         scopes: [system/Patient.write]       # every one required
//!         organisation_claim: ods              # the caller's ODS code (default ods); kept as MSH-4 is
//! ```
//!
//! Limits with defaults: `max_connections` 256, `max_connections_per_peer` 32 (one address
//! cannot take every connection), `idle_timeout` 60s (a connection that sends nothing for that
//! long — headers, body or the next request — is closed).

use std::net::SocketAddr;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::ByteSize;
use crate::at::At;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FhirSourceFile {
    /// IP:PORT to serve `/fhir` on.
    #[schemars(with = "String")]
    pub listen: Spanned<String>,
    /// The largest body accepted (default 10MiB); larger ones get 413 and an OperationOutcome.
    #[serde(default)]
    #[schemars(with = "Option<ByteSize>")]
    pub max_body: Option<Spanned<ByteSize>>,
    /// Connections at once (default 256).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_connections: Option<Spanned<u32>>,
    /// Connections one peer address may hold at once (default 32).
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_connections_per_peer: Option<Spanned<u32>>,
    /// The addresses that may connect, as CIDR blocks or single addresses (e.g.
    /// `[10.20.0.0/16, 192.0.2.7]`); others are refused before anything is read. Absent: any.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_from: Option<Vec<Spanned<String>>>,
    /// A connection that sends nothing for this long is closed (default 60s).
    #[serde(default)]
    #[schemars(with = "Option<crate::HumanDuration>")]
    pub idle_timeout: Option<Spanned<crate::HumanDuration>>,
    /// Serve HTTPS: `{ cert, key }`, with `client_ca` to require client certificates (mTLS)
    /// and `allow_subjects` to name which.
    #[serde(default)]
    pub tls: Option<crate::tls::ServerTlsFile>,
    /// Require an OAuth2 bearer token on every request: `{ jwt: { keys, audience, … } }`.
    #[serde(default)]
    pub auth: Option<FhirInboundAuthFile>,
}

/// How callers authenticate (one key: the kind).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FhirInboundAuthFile {
    /// A JWT bearer token, verified here against configured keys.
    Jwt(JwtAuthFile),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JwtAuthFile {
    /// A JWKS file or a PEM public key (relative to the config folder): RS256, RS512, ES256.
    #[schemars(with = "String")]
    pub keys: Spanned<String>,
    /// The `iss` every token must carry (optional).
    #[serde(default)]
    pub issuer: Option<String>,
    /// A value the token's `aud` must hold: this endpoint's URL, usually.
    #[schemars(with = "String")]
    pub audience: Spanned<String>,
    /// Scopes the token must grant, every one (`scope` or `scp`).
    #[serde(default)]
    pub scopes: Option<Vec<String>>,
    /// The claim naming the calling organisation (its ODS code); required in every token,
    /// and kept with the message as its sending facility. Default `ods`.
    #[serde(default)]
    pub organisation_claim: Option<String>,
    /// Clock skew allowed on exp and nbf (default 60s).
    #[serde(default)]
    #[schemars(with = "Option<crate::HumanDuration>")]
    pub leeway: Option<Spanned<crate::HumanDuration>>,
}

/// Bearer tokens a FHIR source requires.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtAuth {
    pub keys: std::path::PathBuf,
    pub issuer: Option<String>,
    pub audience: String,
    pub scopes: Vec<String>,
    pub organisation_claim: String,
    pub leeway: std::time::Duration,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirSource {
    pub listen: SocketAddr,
    pub max_body: u64,
    pub max_connections: u32,
    pub max_connections_per_peer: u32,
    /// Addresses that may connect (empty: any).
    pub allow_from: Vec<ipnet::IpNet>,
    pub idle_timeout: std::time::Duration,
    pub tls: Option<crate::ServerTls>,
    pub auth: Option<JwtAuth>,
}

pub(crate) fn fhir_source(
    at: &mut At<'_>,
    base: &std::path::Path,
    f: &FhirSourceFile,
) -> FhirSource {
    let listen = f.listen.value.parse::<SocketAddr>().unwrap_or_else(|_| {
        at.err(
            &f.listen,
            format!(
                "listen {:?} is not an address: expected IP:PORT such as 0.0.0.0:8443",
                f.listen.value
            ),
        );
        SocketAddr::from(([0, 0, 0, 0], 0))
    });
    let max_body = crate::validate::size(
        at,
        f.max_body.as_ref(),
        10 << 20,
        "max_body",
        1024..=256 << 20,
    );
    let (max_connections, max_connections_per_peer) = crate::validate::connection_caps(
        at,
        f.max_connections.clone(),
        f.max_connections_per_peer.clone(),
    );
    let idle_timeout = crate::validate::duration(at, f.idle_timeout.clone(), 60, "idle_timeout");
    let allow_from = crate::peers::allow_from(at, &f.listen, listen, f.allow_from.as_deref());
    FhirSource {
        listen,
        max_body,
        max_connections,
        max_connections_per_peer,
        allow_from,
        idle_timeout,
        tls: f.tls.as_ref().and_then(|t| crate::tls::server(at, base, t)),
        auth: match &f.auth {
            None => None,
            Some(FhirInboundAuthFile::Jwt(j)) => jwt(at, base, j),
        },
    }
}

fn jwt(at: &mut At<'_>, base: &std::path::Path, j: &JwtAuthFile) -> Option<JwtAuth> {
    if j.keys.value.trim().is_empty() {
        at.err(
            &j.keys,
            "keys is empty: expected a JWKS file or a PEM public key, e.g. certs/issuer-jwks.json",
        );
        return None;
    }
    if j.audience.value.trim().is_empty() {
        at.err(&j.audience, "audience is empty: expected the value tokens carry in aud, e.g. https://wyvern.example.nhs.uk/fhir");
        return None;
    }
    let leeway = j
        .leeway
        .as_ref()
        .map_or(std::time::Duration::from_secs(60), |l| l.value.0);
    if let Some(l) = j
        .leeway
        .as_ref()
        .filter(|l| l.value.0 > std::time::Duration::from_secs(600))
    {
        at.err(
            l,
            "leeway is longer than 10m: clocks that far apart need fixing, not tolerating",
        );
        return None;
    }
    Some(JwtAuth {
        keys: base.join(j.keys.value.trim()),
        issuer: j.issuer.clone(),
        audience: j.audience.value.trim().to_string(),
        scopes: j.scopes.clone().unwrap_or_default(),
        organisation_claim: j.organisation_claim.clone().unwrap_or_else(|| "ods".into()),
        leeway,
    })
}
