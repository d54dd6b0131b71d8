//! The client side: which CAs a server's certificate must chain to (the system's, or a
//! route's own bundle), an optional client certificate for mTLS, and the name the server's
//! certificate must carry.

use std::path::PathBuf;
use std::sync::Arc;

use rustls::{ClientConfig, RootCertStore};
use rustls_pki_types::ServerName;
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::certificate::{inspect_pem, unix_now};
use super::server::read_key;
use super::{Reloadable, TlsError};

/// A client's TLS files and settings.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClientTlsSettings {
    /// CA bundle (PEM) the server's certificate must chain to; absent: the system's roots.
    pub ca: Option<PathBuf>,
    /// A client certificate chain and key (PEM) for servers that ask for one (mTLS).
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// The name the server's certificate must carry; absent: the host dialled.
    pub server_name: Option<String>,
}

/// A client's TLS setup, reloadable.
#[derive(Debug)]
pub struct ClientTls {
    settings: ClientTlsSettings,
    config: Arc<Reloadable<ClientConfig>>,
}

impl ClientTls {
    /// Reads the files now; an error names the file and what is wrong.
    pub fn load(
        owner: impl Into<String>,
        settings: ClientTlsSettings,
    ) -> Result<Arc<ClientTls>, TlsError> {
        if let Some(name) = &settings.server_name {
            server_name(name)?;
        }
        let first = build(&settings)?;
        let again = settings.clone();
        let config = Reloadable::new(owner, first, move || {
            build(&again).map_err(|e| e.to_string())
        });
        Ok(Arc::new(ClientTls { settings, config }))
    }

    /// Runs the client handshake over `io` to `addr` (HOST:PORT; the server's certificate must
    /// name HOST, or `server_name` when set).
    pub async fn connect<S>(&self, io: S, addr: &str) -> std::io::Result<TlsStream<S>>
    where
        S: AsyncRead + AsyncWrite + Unpin,
    {
        let host = self
            .settings
            .server_name
            .as_deref()
            .unwrap_or_else(|| host_of(addr));
        let name = server_name(host).map_err(std::io::Error::other)?;
        TlsConnector::from(self.config.get())
            .connect(name, io)
            .await
    }
}

/// The host of HOST:PORT or [V6]:PORT.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.trim_start_matches('[').trim_end_matches(']')
}

fn server_name(host: &str) -> Result<ServerName<'static>, TlsError> {
    ServerName::try_from(host.to_string()).map_err(|_| TlsError::ServerName {
        name: host.to_string(),
    })
}

fn build(s: &ClientTlsSettings) -> Result<ClientConfig, TlsError> {
    super::install_provider();
    let mut roots = RootCertStore::empty();
    match &s.ca {
        Some(ca) => {
            let (ders, _) = inspect_pem("ca", ca)?;
            for der in ders {
                roots.add(der).map_err(|e| TlsError::NoCertificate {
                    what: "ca",
                    path: ca.clone(),
                    detail: Some(e.to_string()),
                })?;
            }
        }
        None => {
            let native = rustls_native_certs::load_native_certs();
            roots.add_parsable_certificates(native.certs);
        }
    }
    let builder = ClientConfig::builder().with_root_certificates(roots);
    let config = match (&s.cert, &s.key) {
        (Some(cert), Some(key)) => {
            let (certs, facts) = inspect_pem("certificate", cert)?;
            if unix_now() > facts[0].not_after {
                return Err(TlsError::Expired {
                    path: cert.clone(),
                    subject: facts[0].subject.clone(),
                    not_after: facts[0].not_after_text.clone(),
                });
            }
            builder
                .with_client_auth_cert(certs, read_key(key)?)
                .map_err(|e| TlsError::Identity {
                    cert: cert.clone(),
                    key: key.clone(),
                    detail: e.to_string(),
                })?
        }
        _ => builder.with_no_client_auth(),
    };
    Ok(config)
}

#[cfg(test)]
#[test]
fn the_host_is_what_comes_before_the_port() {
    assert_eq!(
        host_of("chie-mllp.example.nhs.uk:2575"),
        "chie-mllp.example.nhs.uk"
    );
    assert_eq!(host_of("127.0.0.1:2575"), "127.0.0.1");
    assert_eq!(host_of("[::1]:2575"), "::1");
}
