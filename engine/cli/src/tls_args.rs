//! `--tls-*` options of the commands that dial an MLLP listener (`send`, `bench --to`).

use std::path::PathBuf;
use std::sync::Arc;

use wyvern_connectors::tls::{ClientTls, ClientTlsSettings};

#[derive(Debug, Clone, Default, clap::Args)]
pub struct TlsArgs {
    /// Connect over TLS, trusting the system's CAs (or --tls-ca).
    #[arg(long)]
    pub tls: bool,
    /// Connect over TLS, trusting the CAs in this PEM file.
    #[arg(long, value_name = "PEM")]
    pub tls_ca: Option<PathBuf>,
    /// Present this client certificate chain (PEM) to a listener that requires one.
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
    /// The name the server's certificate must carry (default: the host of --to).
    #[arg(long, value_name = "NAME")]
    pub tls_server_name: Option<String>,
}

impl TlsArgs {
    /// The client TLS setup, when any `--tls*` option asks for TLS.
    pub fn load(&self) -> anyhow::Result<Option<Arc<ClientTls>>> {
        if !self.tls && self.tls_ca.is_none() && self.tls_cert.is_none() {
            return Ok(None);
        }
        Ok(Some(ClientTls::load(
            "client",
            ClientTlsSettings {
                ca: self.tls_ca.clone(),
                cert: self.tls_cert.clone(),
                key: self.tls_key.clone(),
                server_name: self.tls_server_name.clone(),
            },
        )?))
    }
}
