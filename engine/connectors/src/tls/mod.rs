//! TLS for every listener and client Wyvern runs: MLLP in and out, FHIR inbound, the operator
//! API. One way to read certificates and keys, one set of protocol choices, one set of errors.
//!
//! - **Protocols.** rustls with the ring provider: TLS 1.3 and 1.2 only (rustls has nothing
//!   older, so a TLS 1.1 or SSL client fails its handshake), and ring's default suites, all
//!   AEAD with forward secrecy.
//! - **Material** is PEM files named by the route. It is read when the route starts (so a
//!   missing, expired or mismatched certificate stops the start with the file named) and again
//!   on [`Reload::reload`]: every piece loaded in the process is in [`reloader`], and `wyvern
//!   run` reloads them all on SIGHUP. New handshakes use the new material, connections already
//!   open keep theirs, and a reload that fails keeps the old.
//! - **Identity.** With `client_ca`, a listener asks every client for a certificate chaining to
//!   it; the verified leaf's names ([`PeerCertificate`]) are what `allow_subjects` and
//!   `senders` match.

mod certificate;
mod client;
mod error;
mod server;

use std::sync::{Arc, Mutex, Once, OnceLock, Weak};

pub use certificate::{CertificateFacts, PeerCertificate, inspect_pem};
pub use client::{ClientTls, ClientTlsSettings};
pub use error::{TlsError, describe_io};
pub use server::{Handshake, Opened, ServerTls, ServerTlsSettings};

/// How long a client may take over its handshake before the connection is closed.
pub const HANDSHAKE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(10);

/// rustls needs a process-wide crypto provider; ring is the one compiled in.
pub fn install_provider() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        let _ = rustls::crypto::ring::default_provider().install_default();
    });
}

/// Key material that can be read again from its files (TLS identities, token keys).
pub trait Reload: Send + Sync + std::fmt::Debug {
    /// Reads the files again; on success new handshakes (or tokens) use them, on failure
    /// nothing changes. The error says which file and what is wrong.
    fn reload(&self) -> Result<(), String>;
    /// Whose material this is, for the log (e.g. "route adt-in listener").
    fn owner(&self) -> &str;
}

/// The TLS material loaded in this process (held weakly: what is dropped is forgotten).
/// Reloading is process-wide because SIGHUP is.
pub fn reloader() -> &'static Reloader {
    static ONE: OnceLock<Reloader> = OnceLock::new();
    ONE.get_or_init(Reloader::default)
}

/// One piece of key material (a TLS config, token keys) held for readers and read again from
/// its files on [`Reload::reload`]; registered with [`reloader`] when made. The one holder
/// every reloadable thing uses.
pub struct Reloadable<T> {
    owner: String,
    current: std::sync::RwLock<Arc<T>>,
    read: Box<dyn Fn() -> Result<T, String> + Send + Sync>,
}

impl<T: Send + Sync + 'static> Reloadable<T> {
    /// `first` is what `read` gave at start (its error there is the caller's to report).
    pub fn new(
        owner: impl Into<String>,
        first: T,
        read: impl Fn() -> Result<T, String> + Send + Sync + 'static,
    ) -> Arc<Reloadable<T>> {
        let held = Arc::new(Reloadable {
            owner: owner.into(),
            current: std::sync::RwLock::new(Arc::new(first)),
            read: Box::new(read),
        });
        let weak: Weak<dyn Reload> = Arc::downgrade(&held) as _;
        reloader().register(weak);
        held
    }

    /// What new handshakes (or tokens) use now.
    pub fn get(&self) -> Arc<T> {
        self.current
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

impl<T: Send + Sync> Reload for Reloadable<T> {
    fn reload(&self) -> Result<(), String> {
        let fresh = Arc::new((self.read)()?);
        *self.current.write().unwrap_or_else(|p| p.into_inner()) = fresh;
        Ok(())
    }

    fn owner(&self) -> &str {
        &self.owner
    }
}

impl<T> std::fmt::Debug for Reloadable<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reloadable")
            .field("owner", &self.owner)
            .finish()
    }
}

/// TLS material to reload together.
#[derive(Debug, Default)]
pub struct Reloader(Mutex<Vec<Weak<dyn Reload>>>);

impl Reloader {
    pub fn register(&self, material: Weak<dyn Reload>) {
        let mut all = self.lock();
        all.retain(|w| w.strong_count() > 0);
        all.push(material);
    }

    /// Reloads each, logging what happened; returns (reloaded, failed).
    pub fn reload_all(&self) -> (usize, usize) {
        let all: Vec<Arc<dyn Reload>> = self.lock().iter().filter_map(Weak::upgrade).collect();
        let mut failed = 0;
        let total = all.len();
        for m in all {
            match m.reload() {
                Ok(()) => tracing::info!(owner = m.owner(), "keys reloaded"),
                Err(e) => {
                    failed += 1;
                    tracing::error!(owner = m.owner(), error = %e, "reload failed; the previous keys stay in use");
                }
            }
        }
        (total - failed, failed)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<Weak<dyn Reload>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests;
