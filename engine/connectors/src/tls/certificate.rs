//! What Wyvern reads out of a certificate: a connected peer's names (to match `allow_subjects`
//! and `senders`) and, for material it loads, subject and validity (to refuse an expired
//! certificate at start and warn before one expires).

use std::path::Path;

use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

use super::TlsError;

/// The names of a peer's verified certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerCertificate {
    /// The subject as written in the certificate (RFC 4514 order), e.g. `CN=pas.rx1.example, O=…`.
    pub subject: String,
    pub common_name: Option<String>,
    /// The DNS names of its subjectAltName.
    pub dns_names: Vec<String>,
}

impl PeerCertificate {
    /// From the leaf certificate's DER (`None` if it does not parse, which a verified
    /// certificate always does).
    pub fn from_der(der: &[u8]) -> Option<PeerCertificate> {
        let (_, cert) = X509Certificate::from_der(der).ok()?;
        Some(PeerCertificate {
            subject: cert.subject().to_string(),
            common_name: cert
                .subject()
                .iter_common_name()
                .next()
                .and_then(|cn| cn.as_str().ok())
                .map(str::to_string),
            dns_names: dns_names(&cert),
        })
    }

    /// Whether `name` is this certificate's common name, one of its DNS names (both without
    /// regard to case) or its whole subject.
    pub fn is_named(&self, name: &str) -> bool {
        self.common_name
            .iter()
            .chain(&self.dns_names)
            .any(|n| n.eq_ignore_ascii_case(name))
            || self.subject == name
    }

    /// For logs and the audit: the common name, else the subject.
    pub fn label(&self) -> &str {
        self.common_name.as_deref().unwrap_or(&self.subject)
    }
}

fn dns_names(cert: &X509Certificate<'_>) -> Vec<String> {
    let Ok(Some(san)) = cert.subject_alternative_name() else {
        return Vec::new();
    };
    san.value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::DNSName(d) => Some(d.to_string()),
            _ => None,
        })
        .collect()
}

/// Subject and validity of one certificate of a PEM file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CertificateFacts {
    pub subject: String,
    /// Seconds since 1970.
    pub not_before: i64,
    pub not_after: i64,
    /// `not_after` as the certificate says it, for messages.
    pub not_after_text: String,
    pub not_before_text: String,
    pub is_ca: bool,
}

impl CertificateFacts {
    /// Whole days from `now` (seconds since 1970) until it expires; negative once it has.
    pub fn days_left(&self, now: i64) -> i64 {
        (self.not_after - now).div_euclid(86_400)
    }
}

/// The certificates of a PEM file: an error naming the file when it is not readable PEM or
/// holds none. `what` names the setting, e.g. "certificate" or "client_ca".
pub fn inspect_pem(
    what: &'static str,
    path: &Path,
) -> Result<(Vec<CertificateDer<'static>>, Vec<CertificateFacts>), TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what,
        path: path.to_path_buf(),
        source,
    })?;
    let no_cert = |detail: Option<String>| TlsError::NoCertificate {
        what,
        path: path.to_path_buf(),
        detail,
    };
    let ders: Vec<CertificateDer<'static>> = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<_, _>>()
        .map_err(|e| no_cert(Some(e.to_string())))?;
    if ders.is_empty() {
        return Err(no_cert(None));
    }
    let mut facts = Vec::with_capacity(ders.len());
    for der in &ders {
        let (_, cert) = X509Certificate::from_der(der)
            .map_err(|e| no_cert(Some(format!("a certificate does not parse: {e}"))))?;
        let v = cert.validity();
        facts.push(CertificateFacts {
            subject: cert.subject().to_string(),
            not_before: v.not_before.timestamp(),
            not_after: v.not_after.timestamp(),
            not_after_text: v.not_after.to_string(),
            not_before_text: v.not_before.to_string(),
            is_ca: cert.is_ca(),
        });
    }
    Ok((ders, facts))
}

/// Seconds since 1970, now.
pub(super) fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}
