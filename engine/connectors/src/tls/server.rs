//! The server side: a listener's certificate and key, and optionally the CA its clients'
//! certificates must chain to. Held behind a lock so a reload swaps it for new handshakes only.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use rustls_pki_types::PrivateKeyDer;
use rustls_pki_types::pem::PemObject;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;

use super::certificate::{PeerCertificate, inspect_pem, unix_now};
use super::{Reloadable, TlsError};

/// A listener's TLS files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerTlsSettings {
    /// The certificate chain (PEM, leaf first).
    pub cert: PathBuf,
    /// Its private key (PEM: PKCS#8, PKCS#1 or SEC1).
    pub key: PathBuf,
    /// With this CA bundle (PEM), every client must present a certificate that chains to it.
    pub client_ca: Option<PathBuf>,
}

/// A listener's TLS identity, reloadable.
#[derive(Debug)]
pub struct ServerTls {
    settings: ServerTlsSettings,
    config: Arc<Reloadable<ServerConfig>>,
}

/// A completed handshake: the stream, and the client's verified certificate if it sent one.
#[derive(Debug)]
pub struct Handshake<S> {
    pub stream: TlsStream<S>,
    pub peer: Option<PeerCertificate>,
}

impl ServerTls {
    /// Reads the files now: an error names the file and what is wrong (missing, not PEM,
    /// expired, key not matching the certificate).
    pub fn load(
        owner: impl Into<String>,
        settings: ServerTlsSettings,
    ) -> Result<Arc<ServerTls>, TlsError> {
        let first = build(&settings)?;
        let again = settings.clone();
        let config = Reloadable::new(owner, first, move || {
            build(&again).map_err(|e| e.to_string())
        });
        Ok(Arc::new(ServerTls { settings, config }))
    }

    pub fn settings(&self) -> &ServerTlsSettings {
        &self.settings
    }

    /// The config new handshakes use.
    pub fn config(&self) -> Arc<ServerConfig> {
        self.config.get()
    }

    /// Reads the files again now (what SIGHUP does for every listener).
    pub fn reload(&self) -> Result<(), String> {
        super::Reload::reload(&*self.config)
    }

    /// Runs the server handshake on `io` within `timeout`; an error says why in words.
    pub async fn accept<S>(&self, io: S, timeout: Duration) -> Result<Handshake<S>, String>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let acceptor = TlsAcceptor::from(self.config());
        match tokio::time::timeout(timeout, acceptor.accept(io)).await {
            Err(_) => Err(format!("no TLS handshake within {timeout:?}")),
            Ok(Err(e)) => Err(super::describe_io(&e)),
            Ok(Ok(stream)) => {
                let peer = stream
                    .get_ref()
                    .1
                    .peer_certificates()
                    .and_then(|chain| chain.first())
                    .and_then(|leaf| PeerCertificate::from_der(leaf));
                Ok(Handshake { stream, peer })
            }
        }
    }
}

/// How a connection's TLS start went.
#[derive(Debug)]
pub enum Opened<S> {
    Handshake(Box<Handshake<S>>),
    /// Closed before sending a byte: a port probe or a health check, not a refusal.
    Probe,
    /// The handshake failed; why, in words.
    Failed(String),
}

impl ServerTls {
    /// [`ServerTls::accept`] on a TCP connection, telling a probe that connects and closes
    /// without a byte (a load balancer's check) from a failed handshake, all within `timeout`.
    pub async fn open(
        &self,
        tcp: tokio::net::TcpStream,
        timeout: Duration,
    ) -> Opened<tokio::net::TcpStream> {
        let started = tokio::time::Instant::now();
        let mut first = [0u8; 1];
        match tokio::time::timeout(timeout, tcp.peek(&mut first)).await {
            Err(_) => return Opened::Failed(format!("no TLS handshake within {timeout:?}")),
            Ok(Ok(0)) | Ok(Err(_)) => return Opened::Probe,
            Ok(Ok(_)) => {}
        }
        match self
            .accept(tcp, timeout.saturating_sub(started.elapsed()))
            .await
        {
            Ok(h) => Opened::Handshake(Box::new(h)),
            Err(reason) => Opened::Failed(reason),
        }
    }
}

fn build(s: &ServerTlsSettings) -> Result<ServerConfig, TlsError> {
    super::install_provider();
    let (certs, facts) = inspect_pem("certificate", &s.cert)?;
    let leaf = &facts[0];
    let now = unix_now();
    if now > leaf.not_after {
        return Err(TlsError::Expired {
            path: s.cert.clone(),
            subject: leaf.subject.clone(),
            not_after: leaf.not_after_text.clone(),
        });
    }
    if now < leaf.not_before {
        return Err(TlsError::NotYetValid {
            path: s.cert.clone(),
            subject: leaf.subject.clone(),
            not_before: leaf.not_before_text.clone(),
        });
    }
    let key = read_key(&s.key)?;
    let builder = ServerConfig::builder();
    let builder = match &s.client_ca {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let (ders, _) = inspect_pem("client_ca", ca)?;
            let bad = |detail: String| TlsError::ClientCa {
                path: ca.clone(),
                detail,
            };
            let mut roots = RootCertStore::empty();
            for der in ders {
                roots.add(der).map_err(|e| bad(e.to_string()))?;
            }
            let verifier = WebPkiClientVerifier::builder(Arc::new(roots))
                .build()
                .map_err(|e| bad(e.to_string()))?;
            builder.with_client_cert_verifier(verifier)
        }
    };
    let config = builder
        .with_single_cert(certs, key)
        .map_err(|e| TlsError::Identity {
            cert: s.cert.clone(),
            key: s.key.clone(),
            detail: e.to_string(),
        })?;
    Ok(config)
}

/// A PEM private key (PKCS#8, PKCS#1 or SEC1).
pub(super) fn read_key(path: &std::path::Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let pem = std::fs::read(path).map_err(|source| TlsError::Read {
        what: "key",
        path: path.to_path_buf(),
        source,
    })?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| TlsError::NoKey {
        path: path.to_path_buf(),
        detail: e.to_string(),
    })
}
