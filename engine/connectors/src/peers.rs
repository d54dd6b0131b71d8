//! Who may connect to a listener, and how often: the addresses allowed (`allow_from`, CIDR
//! blocks; empty allows any), and connections per peer address, so one sender (or a flood from
//! one address) cannot take every slot and lock the others out. Shared by the MLLP and HTTP
//! listeners; a refusal is counted and logged with the peer, and nothing it sent is read.
//! Over TLS with client certificates, `allow_subjects` names the certificates that may connect
//! (checked right after the handshake, before any message is read).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// Connections refused, by reason (a route's `wyvern_connections_refused_total`).
#[derive(Debug, Default)]
pub struct Refusals {
    /// From an address outside `allow_from`.
    pub not_allowed: AtomicU64,
    /// From an address already holding `max_connections_per_peer`.
    pub per_peer_cap: AtomicU64,
    /// With the listener at `max_connections`.
    pub listener_cap: AtomicU64,
    /// TLS handshakes that failed: an untrusted or missing client certificate, plaintext or
    /// an old protocol on a TLS port, a handshake not finished in time.
    pub tls_handshake: AtomicU64,
    /// A verified client certificate whose names are not in `allow_subjects`.
    pub subject_not_allowed: AtomicU64,
    /// An HTTP request without a valid bearer token, or one that does not allow it.
    pub token: AtomicU64,
    /// Where refusals of addresses outside `allow_from` are reported (the audit log), with
    /// the route's name. A full channel drops the report; the counters above still count.
    pub report: std::sync::OnceLock<(Arc<str>, tokio::sync::mpsc::Sender<RefusedPeer>)>,
}

impl Refusals {
    /// Sends a refusal of who the peer is to the audit log (a full channel drops it; the
    /// counters still count).
    pub fn report(&self, ip: IpAddr, refusal: Refusal, certificate: Option<String>) {
        if !refusal.audited() {
            return;
        }
        if let Some((route, report)) = self.report.get() {
            let _ = report.try_send(RefusedPeer {
                route: route.clone(),
                ip: ip.to_canonical(),
                refusal,
                certificate,
            });
        }
    }

    /// Counts and reports a request refused for its bearer token.
    pub fn token_refused(&self, ip: IpAddr) {
        self.token.fetch_add(1, Ordering::Relaxed);
        self.report(ip, Refusal::Token, None);
    }
}

/// A connection refused because of who it came from, for the audit log.
#[derive(Debug, Clone)]
pub struct RefusedPeer {
    pub route: Arc<str>,
    pub ip: IpAddr,
    pub refusal: Refusal,
    /// The certificate it presented (its common name), when that was the reason.
    pub certificate: Option<String>,
}

/// Who is at the other end of a connection: its address and, over TLS with client
/// certificates, the certificate it proved it holds.
#[derive(Debug, Clone)]
pub struct Peer {
    pub addr: SocketAddr,
    pub certificate: Option<Arc<crate::tls::PeerCertificate>>,
}

impl Peer {
    pub fn plain(addr: SocketAddr) -> Peer {
        Peer {
            addr,
            certificate: None,
        }
    }
}

impl std::fmt::Display for Peer {
    /// `10.20.1.5:40112`, or `10.20.1.5:40112 (pas.rx1.example)` with a certificate.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match &self.certificate {
            Some(c) => write!(f, "{} ({})", self.addr, c.label()),
            None => write!(f, "{}", self.addr),
        }
    }
}

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    NotAllowed,
    PerPeerCap,
    /// The TLS handshake failed (the reason is logged; it is the peer's or its certificate's).
    Handshake,
    SubjectNotAllowed,
    /// A request's bearer token was missing, invalid or not allowed (401/403).
    Token,
}

impl Refusal {
    /// For the log.
    pub fn reason(self) -> &'static str {
        match self {
            Refusal::NotAllowed => "the address is not in allow_from",
            Refusal::PerPeerCap => "max_connections_per_peer reached",
            Refusal::Handshake => "the TLS handshake failed",
            Refusal::SubjectNotAllowed => "the client certificate is not in allow_subjects",
            Refusal::Token => "no valid bearer token",
        }
    }

    /// Whether the audit log records it: refusals of who the peer is, not of load.
    fn audited(self) -> bool {
        !matches!(self, Refusal::PerPeerCap)
    }
}

/// A listener's rules for its peers.
#[derive(Debug, Clone)]
pub struct PeerPolicy {
    allow_from: Arc<[ipnet::IpNet]>,
    allow_subjects: Arc<[String]>,
    slots: PeerSlots,
    refusals: Arc<Refusals>,
}

impl PeerPolicy {
    /// `allow_from` empty: any address.
    pub fn new(allow_from: &[ipnet::IpNet], per_peer: usize, refusals: Arc<Refusals>) -> Self {
        PeerPolicy {
            allow_from: allow_from.into(),
            allow_subjects: Arc::new([]),
            slots: PeerSlots::new(per_peer),
            refusals,
        }
    }

    /// Whether `ip` may connect now; a slot held for the connection's life if so. Counts a
    /// refusal.
    pub fn admit(&self, ip: IpAddr) -> Result<PeerSlot, Refusal> {
        // An IPv4 peer on a dual-stack socket arrives as ::ffff:a.b.c.d.
        let ip = ip.to_canonical();
        if !self.allow_from.is_empty() && !self.allow_from.iter().any(|net| net.contains(&ip)) {
            self.refusals.not_allowed.fetch_add(1, Ordering::Relaxed);
            self.report(ip, Refusal::NotAllowed, None);
            return Err(Refusal::NotAllowed);
        }
        self.slots.take(ip).ok_or_else(|| {
            self.refusals.per_peer_cap.fetch_add(1, Ordering::Relaxed);
            Refusal::PerPeerCap
        })
    }

    /// The certificate names (common name, DNS name or whole subject) that may connect over
    /// TLS; empty: any certificate the client CA verifies.
    pub fn with_subjects(mut self, subjects: &[String]) -> Self {
        self.allow_subjects = subjects.into();
        self
    }

    /// After a completed handshake: whether this certificate (if any) may go on. Counts and
    /// reports a refusal.
    pub fn admit_certificate(
        &self,
        ip: IpAddr,
        certificate: Option<&crate::tls::PeerCertificate>,
    ) -> Result<(), Refusal> {
        if self.allow_subjects.is_empty()
            || certificate.is_some_and(|c| self.allow_subjects.iter().any(|s| c.is_named(s)))
        {
            return Ok(());
        }
        self.refusals
            .subject_not_allowed
            .fetch_add(1, Ordering::Relaxed);
        let label = certificate.map_or("(none)", |c| c.label()).to_string();
        self.report(ip.to_canonical(), Refusal::SubjectNotAllowed, Some(label));
        Err(Refusal::SubjectNotAllowed)
    }

    /// Counts and reports a failed TLS handshake.
    pub fn handshake_failed(&self, ip: IpAddr) {
        self.refusals.tls_handshake.fetch_add(1, Ordering::Relaxed);
        self.report(ip.to_canonical(), Refusal::Handshake, None);
    }

    fn report(&self, ip: IpAddr, refusal: Refusal, certificate: Option<String>) {
        self.refusals.report(ip, refusal, certificate);
    }

    /// The TLS start of an admitted connection, the same for every listener: the handshake
    /// (limited to [`crate::tls::HANDSHAKE_TIMEOUT`]), then `allow_subjects`. A refusal is
    /// counted, reported and logged here with `route`; a probe that sent nothing is not.
    /// `None`: the connection is to be closed.
    pub async fn open_tls(
        &self,
        tls: &crate::tls::ServerTls,
        tcp: tokio::net::TcpStream,
        addr: SocketAddr,
        route: &str,
    ) -> Option<(tokio_rustls::server::TlsStream<tokio::net::TcpStream>, Peer)> {
        use crate::tls::Opened;
        let h = match tls.open(tcp, crate::tls::HANDSHAKE_TIMEOUT).await {
            Opened::Handshake(h) => *h,
            Opened::Probe => {
                tracing::debug!(route, peer = %addr, "closed before a TLS handshake (a probe)");
                return None;
            }
            Opened::Failed(reason) => {
                self.handshake_failed(addr.ip());
                tracing::warn!(route, peer = %addr, %reason, "TLS handshake failed; connection closed");
                return None;
            }
        };
        if let Err(refusal) = self.admit_certificate(addr.ip(), h.peer.as_ref()) {
            let certificate = h.peer.as_ref().map_or("(none)", |c| c.label());
            tracing::warn!(route, peer = %addr, certificate, reason = refusal.reason(), "connection refused");
            return None;
        }
        let peer = Peer {
            addr,
            certificate: h.peer.map(Arc::new),
        };
        Some((h.stream, peer))
    }

    /// Counts a connection refused because the listener is full.
    pub fn listener_full(&self) {
        self.refusals.listener_cap.fetch_add(1, Ordering::Relaxed);
    }
}

/// Connections per peer address, capped; a slot is given back when its guard drops.
#[derive(Debug, Clone)]
pub struct PeerSlots {
    max: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl PeerSlots {
    pub fn new(max: usize) -> Self {
        PeerSlots {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or `None` when it already holds `max` connections.
    pub fn take(&self, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            slots: self.clone(),
            ip,
        })
    }
}

/// One connection's slot; given back when dropped.
#[derive(Debug)]
pub struct PeerSlot {
    slots: PeerSlots,
    ip: std::net::IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_from_admits_its_blocks_only_and_counts_the_rest() {
        let refusals = Arc::new(Refusals::default());
        let nets: Vec<ipnet::IpNet> = vec![
            "10.20.0.0/16".parse().unwrap(),
            "192.0.2.7/32".parse().unwrap(),
        ];
        let policy = PeerPolicy::new(&nets, 8, refusals.clone());
        for ok in ["10.20.3.4", "192.0.2.7", "::ffff:10.20.0.1"] {
            assert!(policy.admit(ok.parse().unwrap()).is_ok(), "{ok}");
        }
        for no in ["10.21.0.1", "192.0.2.8", "127.0.0.1", "::1"] {
            assert_eq!(
                policy.admit(no.parse().unwrap()).unwrap_err(),
                Refusal::NotAllowed,
                "{no}"
            );
        }
        assert_eq!(refusals.not_allowed.load(Ordering::Relaxed), 4);
        let open = PeerPolicy::new(&[], 1, refusals.clone());
        let _held = open.admit("203.0.113.9".parse().unwrap()).unwrap();
        assert_eq!(
            open.admit("203.0.113.9".parse().unwrap()).unwrap_err(),
            Refusal::PerPeerCap
        );
        assert_eq!(refusals.per_peer_cap.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn peer_slots_cap_each_address_and_come_back() {
        let slots = PeerSlots::new(2);
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(
            slots.take(a).is_none(),
            "a third from one address is refused"
        );
        assert!(slots.take(b).is_some(), "another address is not");
        drop(a1);
        assert!(
            slots.take(a).is_some(),
            "a closed connection frees its slot"
        );
    }
}
