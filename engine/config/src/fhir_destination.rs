//! `fhir:` destinations: a FHIR R4 server (CHIE, the Dorset Care Record) over HTTPS, with a
//! bearer token or the NHS pattern of OAuth2 client credentials with a signed JWT.
//!
//! ```yaml
//! fhir:
//!   base: "${CHIE_FHIR_BASE}"                 # https://host/fhir/R4
//!   auth:
//!     oauth2:
//!       token_url: https://auth.example.nhs.uk/oauth2/token
//!       client_id: "${CHIE_CLIENT_ID}"
//!       key: "file:/run/secrets/chie-jwt.pem"  # RSA private key (PKCS#8 PEM), signs RS512
//!       kid: chie-1
//!   tls: { ca: certs/chie-ca.pem }            # extra trusted roots (private PKI, tests)
//!   timeout: 30s
//! ```

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;
use crate::destination::{DestinationKind, secret};
use crate::{HumanDuration, SecretValue};

/// `fhir: { base: "${CHIE_FHIR_BASE}", auth: { bearer: "${CHIE_TOKEN}" } }`: POST to a FHIR R4
/// server. FHIR JSON goes as it is (a Bundle to the base, a resource to base/Type); HL7v2 goes as
/// a `Binary` until the built-in UK Core mapping is a step of the route.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FhirDestinationFile {
    #[schemars(with = "String")]
    pub base: Spanned<String>,
    #[serde(default)]
    pub auth: Option<FhirAuthFile>,
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub timeout: Option<Spanned<HumanDuration>>,
    #[serde(default)]
    pub tls: Option<TlsFile>,
}

/// How to authenticate (one key: the kind).
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
pub enum FhirAuthFile {
    /// A fixed token: `bearer: "${CHIE_TOKEN}"`.
    Bearer(#[schemars(with = "String")] Spanned<String>),
    /// OAuth2 client credentials with a signed JWT (RFC 7523), the NHS pattern.
    Oauth2(Box<OAuth2File>),
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OAuth2File {
    #[schemars(with = "String")]
    pub token_url: Spanned<String>,
    /// The client id (the API key): the JWT's `iss` and `sub`.
    #[schemars(with = "String")]
    pub client_id: Spanned<String>,
    /// The RSA private key as PKCS#8 PEM, from `file:` or `${VAR}`; signs the JWT (RS512).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// The key id the server knows the public key by (the JWT header's `kid`).
    #[serde(default)]
    pub kid: Option<String>,
    #[serde(default)]
    pub scope: Option<String>,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TlsFile {
    /// A PEM file of extra trusted CA certificates (relative to the config folder); the
    /// system's roots stay trusted too.
    #[schemars(with = "String")]
    pub ca: Spanned<String>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FhirDestination {
    pub base: SecretValue,
    pub auth: FhirAuth,
    pub timeout: Duration,
    pub ca: Option<PathBuf>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FhirAuth {
    None,
    Bearer(SecretValue),
    OAuth2(OAuth2Client),
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuth2Client {
    pub token_url: String,
    pub client_id: SecretValue,
    pub key: SecretValue,
    pub kid: Option<String>,
    pub scope: Option<String>,
}

fn url_ok(u: &str) -> bool {
    ["http://", "https://", "${", "file:"]
        .iter()
        .any(|p| u.starts_with(p))
}

pub(crate) fn fhir(
    at: &mut At<'_>,
    base: &Path,
    f: &FhirDestinationFile,
) -> Option<DestinationKind> {
    fhir_target(at, base, f).map(DestinationKind::Fhir)
}

/// A FHIR server to reach, checked: a `fhir` destination, or a bridge's member.
pub(crate) fn fhir_target(
    at: &mut At<'_>,
    base: &Path,
    f: &FhirDestinationFile,
) -> Option<FhirDestination> {
    let b = f.base.value.as_str();
    if !url_ok(b) {
        at.err(
            &f.base,
            format!("base {b:?} is not a URL: expected https://host/fhir/R4 or ${{VAR}}"),
        );
        return None;
    }
    let url = secret(at, &f.base);
    let ca = match &f.tls {
        None => Some(None),
        Some(t) if t.ca.value.trim().is_empty() => {
            at.err(
                &t.ca,
                "ca is empty: expected a PEM file such as certs/chie-ca.pem",
            );
            None
        }
        Some(t) => Some(Some(base.join(&t.ca.value))),
    };
    let auth = match &f.auth {
        None => Some(FhirAuth::None),
        Some(FhirAuthFile::Bearer(b)) => secret(at, b).map(FhirAuth::Bearer),
        Some(FhirAuthFile::Oauth2(o)) => oauth2(at, o).map(FhirAuth::OAuth2),
    };
    let timeout = f
        .timeout
        .as_ref()
        .map_or(Duration::from_secs(30), |t| t.value.0);
    if let Some(t) = f.timeout.as_ref().filter(|t| t.value.0.is_zero()) {
        at.err(
            t,
            "timeout must be longer than zero: expected a duration such as 30s",
        );
        return None;
    }
    Some(FhirDestination {
        base: url?,
        auth: auth?,
        timeout,
        ca: ca?,
    })
}

fn oauth2(at: &mut At<'_>, o: &OAuth2File) -> Option<OAuth2Client> {
    let t = o.token_url.value.as_str();
    if !(t.starts_with("https://") || t.starts_with("http://")) {
        at.err(
            &o.token_url,
            format!("token_url {t:?} is not a URL: expected https://host/oauth2/token"),
        );
    }
    let looks_inline = o.key.value.contains("PRIVATE KEY");
    if looks_inline {
        at.err(
            &o.key,
            "the private key is written inline: expected file:/path/key.pem or ${VAR} (secrets never go in route files)",
        );
    }
    let client_id = secret(at, &o.client_id);
    let key = secret(at, &o.key);
    if looks_inline || !(t.starts_with("https://") || t.starts_with("http://")) {
        return None;
    }
    Some(OAuth2Client {
        token_url: t.to_string(),
        client_id: client_id?,
        key: key?,
        kid: o.kid.clone(),
        scope: o.scope.clone(),
    })
}
