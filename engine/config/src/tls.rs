//! `tls:` on listeners (the MLLP and FHIR sources) and on MLLP destinations. Paths are relative
//! to the config folder. The files are read when the route starts and again on SIGHUP; `wyvern
//! validate` reads them too, so a missing, expired or mismatched certificate shows before a
//! deploy.
//!
//! ```yaml
//! source:
//!   mllp:
//!     listen: 0.0.0.0:2575
//!     tls:
//!       cert: certs/wyvern.pem            # the chain this listener presents, leaf first
//!       key: certs/wyvern.key
//!       client_ca: certs/trusts-ca.pem    # every client must present a certificate from this CA (mTLS)
//!       allow_subjects: [pas.rx1.example.nhs.uk]   # and only these (common name or DNS name)
//! destinations:
//!   - name: chie
//!     mllp:
//!       connect: chie-mllp.example.nhs.uk:2575
//!       tls:
//!         ca: certs/chie-ca.pem           # absent: the system's roots
//!         cert: certs/wyvern-client.pem   # for a server that asks for a client certificate
//!         key: certs/wyvern-client.key
//! ```

use std::path::{Path, PathBuf};

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::at::At;

/// A listener's `tls:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ServerTlsFile {
    /// The certificate chain to present (PEM, leaf first).
    #[schemars(with = "String")]
    pub cert: Spanned<String>,
    /// Its private key (PEM).
    #[schemars(with = "String")]
    pub key: Spanned<String>,
    /// A CA bundle (PEM): every client must present a certificate chaining to it (mTLS).
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub client_ca: Option<Spanned<String>>,
    /// The client certificates that may connect, by common name, DNS name or whole subject;
    /// absent: any `client_ca` verifies. Needs `client_ca`.
    #[serde(default)]
    #[schemars(with = "Option<Vec<String>>")]
    pub allow_subjects: Option<Vec<Spanned<String>>>,
}

/// A destination's `tls:` as written.
#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ClientTlsFile {
    /// A CA bundle (PEM) the server's certificate must chain to; absent: the system's roots.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub ca: Option<Spanned<String>>,
    /// A client certificate chain (PEM), for servers that require one; needs `key`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub cert: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub key: Option<Spanned<String>>,
    /// The name the server's certificate must carry; absent: the host of `connect`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub server_name: Option<Spanned<String>>,
}

/// Where in a config file a setting was written (for findings made after validation, such
/// as `wyvern validate` reading the certificate files).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Place {
    pub file: PathBuf,
    pub line: u64,
    pub column: u64,
}

/// A listener's TLS.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
    pub client_ca: Option<PathBuf>,
    pub allow_subjects: Vec<String>,
    /// The `cert:` line.
    pub place: Place,
}

/// A destination's TLS.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTls {
    pub ca: Option<PathBuf>,
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    pub server_name: Option<String>,
    pub place: Option<Place>,
}

fn place<T>(at: &At<'_>, s: &Spanned<T>) -> Place {
    Place {
        file: at.file.to_path_buf(),
        line: s.referenced.line(),
        column: s.referenced.column(),
    }
}

/// A path setting: non-empty, joined to the config folder.
fn path(at: &mut At<'_>, base: &Path, s: &Spanned<String>, what: &str) -> Option<PathBuf> {
    let v = s.value.trim();
    if v.is_empty() {
        let example = match what {
            "key" => "certs/wyvern.key",
            "ca" | "client_ca" => "certs/ca.pem",
            _ => "certs/wyvern.pem",
        };
        at.err(
            s,
            format!("{what} is empty: expected a PEM file such as {example}"),
        );
        return None;
    }
    Some(base.join(v))
}

pub(crate) fn server(at: &mut At<'_>, base: &Path, f: &ServerTlsFile) -> Option<ServerTls> {
    let cert = path(at, base, &f.cert, "cert");
    let key = path(at, base, &f.key, "key");
    let client_ca = match &f.client_ca {
        Some(c) => Some(path(at, base, c, "client_ca")?),
        None => None,
    };
    let mut allow_subjects = Vec::new();
    for s in f.allow_subjects.iter().flatten() {
        let v = s.value.trim();
        if v.is_empty() {
            at.err(s, "allow_subjects has an empty name: expected a certificate's common name or DNS name, e.g. pas.rx1.example.nhs.uk");
        } else if client_ca.is_none() {
            at.err(s, "allow_subjects needs client_ca: without client certificates there is no subject to check");
            return None;
        } else {
            allow_subjects.push(v.to_string());
        }
    }
    Some(ServerTls {
        place: place(at, &f.cert),
        cert: cert?,
        key: key?,
        client_ca,
        allow_subjects,
    })
}

pub(crate) fn client(at: &mut At<'_>, base: &Path, f: &ClientTlsFile) -> Option<ClientTls> {
    let ca = match &f.ca {
        Some(c) => Some(path(at, base, c, "ca")?),
        None => None,
    };
    let (cert, key) = match (&f.cert, &f.key) {
        (Some(c), Some(k)) => (
            Some(path(at, base, c, "cert")?),
            Some(path(at, base, k, "key")?),
        ),
        (Some(c), None) => {
            at.err(
                c,
                "cert needs key: the client certificate's private key (PEM)",
            );
            return None;
        }
        (None, Some(k)) => {
            at.err(k, "key needs cert: the client certificate chain (PEM)");
            return None;
        }
        (None, None) => (None, None),
    };
    let server_name = match &f.server_name {
        Some(s) if s.value.trim().is_empty() => {
            at.err(
                s,
                "server_name is empty: expected the host name the server's certificate carries",
            );
            return None;
        }
        Some(s) => Some(s.value.trim().to_string()),
        None => None,
    };
    let first = [&f.ca, &f.cert, &f.server_name]
        .into_iter()
        .flatten()
        .next()
        .map(|s| place(at, s));
    Some(ClientTls {
        ca,
        cert,
        key,
        server_name,
        place: first,
    })
}
