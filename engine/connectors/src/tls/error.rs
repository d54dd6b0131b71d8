//! What can go wrong with TLS material, and handshake failures said in words an integration
//! engineer can act on (rustls's own names, e.g. `UnknownIssuer`, come last in brackets).

use std::path::PathBuf;

use rustls::{AlertDescription, CertificateError, Error};

/// Why TLS material could not be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error("cannot read the {what} {}: {source}", path.display())]
    Read {
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the {what} {} holds no PEM certificate{}", path.display(), detail.as_ref().map(|d| format!(" ({d})")).unwrap_or_default())]
    NoCertificate {
        what: &'static str,
        path: PathBuf,
        detail: Option<String>,
    },
    #[error("the key {} holds no PEM private key ({detail})", path.display())]
    NoKey { path: PathBuf, detail: String },
    #[error("the certificate {} ({subject}) expired on {not_after}", path.display())]
    Expired {
        path: PathBuf,
        subject: String,
        not_after: String,
    },
    #[error("the certificate {} ({subject}) is not valid until {not_before}", path.display())]
    NotYetValid {
        path: PathBuf,
        subject: String,
        not_before: String,
    },
    #[error("the certificate {} and the key {} do not make a TLS identity: {detail}", cert.display(), key.display())]
    Identity {
        cert: PathBuf,
        key: PathBuf,
        detail: String,
    },
    #[error("the client_ca {} cannot verify clients: {detail}", path.display())]
    ClientCa { path: PathBuf, detail: String },
    #[error("{name:?} is not a host name or address a server certificate can be checked against")]
    ServerName { name: String },
}

/// A handshake or connection error in words: what the certificate problem is and whose side
/// it is on. Anything that is not TLS comes back as it is.
pub fn describe_io(e: &std::io::Error) -> String {
    match e.get_ref().and_then(|inner| inner.downcast_ref::<Error>()) {
        Some(tls) => describe(tls),
        None => e.to_string(),
    }
}

fn describe(e: &Error) -> String {
    match e {
        Error::InvalidCertificate(c) => {
            format!("the peer's certificate was refused: {}", certificate(c))
        }
        Error::NoCertificatesPresented => {
            "the client sent no certificate; this listener requires one (client_ca)".into()
        }
        Error::AlertReceived(alert) => {
            format!("the peer ended the handshake: {}", alert_text(*alert))
        }
        Error::PeerIncompatible(p) => format!(
            "the peer offers nothing this side accepts (TLS 1.2 or 1.3, modern suites) [{p:?}]"
        ),
        Error::InvalidMessage(m) => {
            format!("not a TLS handshake (plaintext to a TLS port?) [{m:?}]")
        }
        other => other.to_string(),
    }
}

fn certificate(c: &CertificateError) -> String {
    match c {
        CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
            format!("it has expired [{c:?}]")
        }
        CertificateError::NotValidYet | CertificateError::NotValidYetContext { .. } => {
            format!("it is not valid yet (or a clock is wrong) [{c:?}]")
        }
        CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
            format!(
                "it is not issued for the name that was dialled (check connect or server_name) [{c:?}]"
            )
        }
        CertificateError::UnknownIssuer => {
            "it is not signed by a CA this side trusts (check ca / client_ca) [UnknownIssuer]"
                .into()
        }
        CertificateError::BadSignature => "its signature does not verify [BadSignature]".into(),
        CertificateError::Revoked => "it has been revoked [Revoked]".into(),
        other => format!("{other:?}"),
    }
}

fn alert_text(a: AlertDescription) -> String {
    let why = match a {
        AlertDescription::UnknownCA => "it does not trust our certificate's CA",
        AlertDescription::BadCertificate => "it refused our certificate",
        AlertDescription::CertificateExpired => "it says our certificate has expired",
        AlertDescription::CertificateRequired => {
            "it requires a client certificate and we sent none"
        }
        AlertDescription::ProtocolVersion => "no TLS version in common",
        AlertDescription::HandshakeFailure => "no parameters in common",
        _ => "",
    };
    if why.is_empty() {
        format!("{a:?}")
    } else {
        format!("{why} [{a:?}]")
    }
}
