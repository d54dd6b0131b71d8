//! A certificate authority made at test time (rcgen, ECDSA P-256), writing PEM files into a
//! folder the test owns: nothing is checked in, nothing outlives the test. Used by the TLS
//! unit tests and the e2e tests (MLLP over TLS, mTLS, FHIR inbound over HTTPS).
//!
//! ```no_run
//! let dir = std::path::Path::new("/tmp/pki");
//! let ca = wyvern_testpki::Ca::new("Wyvern Test CA (synthetic)");
//! let server = ca.issue(dir, "server", &wyvern_testpki::Leaf::server("localhost"));
//! ca.write(dir, "ca");
//! # let _ = server;
//! ```

use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, SanType,
};

/// A CA that signs what tests ask for.
#[derive(Debug)]
pub struct Ca {
    issuer: CertifiedIssuer<'static, KeyPair>,
}

/// What a leaf certificate is for and says.
#[derive(Debug, Clone)]
pub struct Leaf {
    pub common_name: String,
    /// DNS names and IP addresses (as text) for the subjectAltName.
    pub names: Vec<String>,
    pub organisation: Option<String>,
    /// Validity relative to now: starts `valid_from` ago (negative: in the future), lasts
    /// `lifetime` from then.
    pub valid_from: Duration,
    pub lifetime: Duration,
    /// Expired an hour ago.
    pub expired: bool,
    pub client: bool,
}

impl Leaf {
    /// A server certificate for `name` (and 127.0.0.1), valid for a day.
    pub fn server(name: &str) -> Leaf {
        Leaf {
            common_name: name.to_string(),
            names: vec![name.to_string(), "127.0.0.1".to_string()],
            organisation: None,
            valid_from: Duration::from_secs(3600),
            lifetime: Duration::from_secs(86_400),
            expired: false,
            client: false,
        }
    }

    /// A client certificate with this common name.
    pub fn client(common_name: &str) -> Leaf {
        Leaf {
            names: vec![common_name.to_string()],
            client: true,
            ..Leaf::server(common_name)
        }
    }

    pub fn expired(mut self) -> Leaf {
        self.expired = true;
        self
    }
}

/// The files of an issued certificate.
#[derive(Debug, Clone)]
pub struct Issued {
    pub cert: PathBuf,
    pub key: PathBuf,
}

impl Ca {
    pub fn new(name: &str) -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.distinguished_name.push(DnType::CommonName, name);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.not_before = SystemTime::now()
            .checked_sub(Duration::from_secs(86_400))
            .expect("clock")
            .into();
        params.not_after = SystemTime::now()
            .checked_add(Duration::from_secs(10 * 365 * 86_400))
            .expect("clock")
            .into();
        let key = KeyPair::generate().expect("CA key");
        Ca {
            issuer: CertifiedIssuer::self_signed(params, key).expect("CA certificate"),
        }
    }

    /// Writes the CA certificate to `dir/NAME.pem` and returns the path.
    pub fn write(&self, dir: &Path, name: &str) -> PathBuf {
        let path = dir.join(format!("{name}.pem"));
        std::fs::write(&path, self.issuer.pem()).expect("write CA");
        path
    }

    /// Issues `leaf`, writing `dir/NAME.pem` and `dir/NAME.key`.
    pub fn issue(&self, dir: &Path, name: &str, leaf: &Leaf) -> Issued {
        let sans = leaf
            .names
            .iter()
            .map(|n| match n.parse::<std::net::IpAddr>() {
                Ok(ip) => SanType::IpAddress(ip),
                Err(_) => SanType::DnsName(n.clone().try_into().expect("DNS name")),
            })
            .collect();
        let mut params = CertificateParams::new(Vec::<String>::new()).expect("params");
        params.subject_alt_names = sans;
        params
            .distinguished_name
            .push(DnType::CommonName, &leaf.common_name);
        if let Some(o) = &leaf.organisation {
            params.distinguished_name.push(DnType::OrganizationName, o);
        }
        params.extended_key_usages = vec![if leaf.client {
            ExtendedKeyUsagePurpose::ClientAuth
        } else {
            ExtendedKeyUsagePurpose::ServerAuth
        }];
        let now = SystemTime::now();
        let (from, to) = if leaf.expired {
            (
                now - Duration::from_secs(2 * 86_400),
                now - Duration::from_secs(3600),
            )
        } else {
            let from = now - leaf.valid_from;
            (from, from + leaf.lifetime)
        };
        params.not_before = from.into();
        params.not_after = to.into();
        let key = KeyPair::generate().expect("leaf key");
        let cert = params.signed_by(&key, &self.issuer).expect("sign");
        let issued = Issued {
            cert: dir.join(format!("{name}.pem")),
            key: dir.join(format!("{name}.key")),
        };
        std::fs::write(&issued.cert, cert.pem()).expect("write certificate");
        std::fs::write(&issued.key, key.serialize_pem()).expect("write key");
        issued
    }
}
