//! A route's `tls:` settings, loaded: the listener's identity (MLLP, FHIR) or a destination's
//! client setup, each registered for reload on SIGHUP. Loading reads and checks the files, so a
//! missing, expired or mismatched certificate stops the route from starting, with the file
//! named.

use std::sync::Arc;

use wyvern_connectors::tls::{
    ClientTls, ClientTlsSettings, ServerTls, ServerTlsSettings, TlsError,
};

/// Loads a listener's identity; `owner` names it in logs (e.g. `route adt-in`).
pub fn server(owner: String, t: &wyvern_config::ServerTls) -> Result<Arc<ServerTls>, TlsError> {
    ServerTls::load(
        owner,
        ServerTlsSettings {
            cert: t.cert.clone(),
            key: t.key.clone(),
            client_ca: t.client_ca.clone(),
        },
    )
}

/// Loads a destination's client setup.
pub fn client(owner: String, t: &wyvern_config::ClientTls) -> Result<Arc<ClientTls>, TlsError> {
    ClientTls::load(
        owner,
        ClientTlsSettings {
            ca: t.ca.clone(),
            cert: t.cert.clone(),
            key: t.key.clone(),
            server_name: t.server_name.clone(),
        },
    )
}
