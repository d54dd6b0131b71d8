//! The listener of an HTTP endpoint facing other organisations (the FHIR source; the stand-in
//! FHIR server): who may connect (`allow_from`), connections in all and per peer address, TLS,
//! and a connection that sends nothing for `idle_timeout` is closed — while its headers or
//! body trickle in, or between requests. axum sets no timer of its own, so without this one
//! client could hold every connection open for ever (slowloris).
//!
//! With TLS, each handshake runs in its own task (bounded by `max_connections`, like any
//! connection, and by [`wyvern_connectors::tls::HANDSHAKE_TIMEOUT`]); finished ones reach
//! `accept` through a channel, so a client that stalls its handshake delays no one else.
//! Handlers see the peer, with its client certificate, as `ConnectInfo<ConnectedPeer>`.

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::time::Sleep;
use wyvern_connectors::peers::{Peer, PeerPolicy, PeerSlot, Refusals};
use wyvern_connectors::tls::ServerTls;

/// The limits of one listener.
#[derive(Debug, Clone)]
pub struct HttpLimits {
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    pub idle_timeout: Duration,
    /// Addresses that may connect (empty: any).
    pub allow_from: Vec<ipnet::IpNet>,
    /// Where refusals are counted.
    pub refusals: Arc<Refusals>,
    /// Serve HTTPS with this identity (and its client CA, if it has one).
    pub tls: Option<Arc<ServerTls>>,
    /// Client certificate names that may connect (empty: any the client CA verifies).
    pub allow_subjects: Vec<String>,
}

impl HttpLimits {
    /// The operator's listener (/metrics, /ready, the API): a few people and scrapers, so
    /// small caps — 64 connections, 16 per address — and a minute's idle timeout.
    pub fn operators(tls: Option<Arc<ServerTls>>) -> HttpLimits {
        HttpLimits {
            max_connections: 64,
            max_connections_per_peer: 16,
            ..HttpLimits::local(tls)
        }
    }

    /// Generous limits for a local tool (the stand-in FHIR server).
    pub fn local(tls: Option<Arc<ServerTls>>) -> HttpLimits {
        HttpLimits {
            max_connections: 1024,
            max_connections_per_peer: 1024,
            idle_timeout: Duration::from_secs(60),
            allow_from: Vec::new(),
            refusals: Arc::default(),
            tls,
            allow_subjects: Vec::new(),
        }
    }
}

/// Serves `router` on `listener` within `limits` until `shutdown` (requests in flight are
/// finished), the peer of each connection available as [`ConnectedPeer`]. `name` says whose
/// listener it is in logs. The FHIR source's and the bridge's endpoints.
pub async fn serve(
    listener: TcpListener,
    limits: HttpLimits,
    name: &str,
    router: axum::Router,
    shutdown: tokio_util::sync::CancellationToken,
) -> std::io::Result<()> {
    let listener = LimitedListener::new(listener, limits, name);
    axum::serve(
        listener,
        router.into_make_service_with_connect_info::<ConnectedPeer>(),
    )
    .with_graceful_shutdown(async move { shutdown.cancelled().await })
    .await
}

/// A TCP listener for `axum::serve` that enforces [`HttpLimits`].
#[derive(Debug)]
pub struct LimitedListener {
    gate: Gate,
    /// Finished TLS handshakes.
    handshaken: mpsc::Receiver<(Limited, Peer)>,
}

/// Admits connections and runs their handshakes.
#[derive(Debug)]
struct Gate {
    tcp: TcpListener,
    limits: HttpLimits,
    slots: Arc<Semaphore>,
    peers: PeerPolicy,
    /// Route name, for logs.
    name: Arc<str>,
    ready: mpsc::Sender<(Limited, Peer)>,
}

impl LimitedListener {
    pub fn new(tcp: TcpListener, limits: HttpLimits, name: &str) -> Self {
        let (ready, handshaken) = mpsc::channel(limits.max_connections.max(1));
        LimitedListener {
            gate: Gate {
                tcp,
                slots: Arc::new(Semaphore::new(limits.max_connections)),
                peers: PeerPolicy::new(
                    &limits.allow_from,
                    limits.max_connections_per_peer,
                    limits.refusals.clone(),
                )
                .with_subjects(&limits.allow_subjects),
                limits,
                name: name.into(),
                ready,
            },
            handshaken,
        }
    }
}

impl Gate {
    /// The next admitted TCP connection, with its slots.
    async fn admit(&self) -> (TcpStream, SocketAddr, Held) {
        loop {
            let (tcp, peer) = accept(&self.tcp).await;
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.peers.listener_full();
                tracing::warn!(route = %self.name, %peer, max_connections = self.limits.max_connections, "connection refused: max_connections reached");
                continue;
            };
            match self.peers.admit(peer.ip()) {
                Ok(slot) => {
                    let _ = tcp.set_nodelay(true);
                    return (tcp, peer, (permit, slot));
                }
                Err(refusal) => {
                    tracing::warn!(route = %self.name, %peer, reason = refusal.reason(), "connection refused");
                }
            }
        }
    }

    /// Runs one TLS handshake and the certificate check; a finished one goes to `accept`.
    fn handshake(&self, tls: Arc<ServerTls>, tcp: TcpStream, addr: SocketAddr, held: Held) {
        let (policy, name, idle, ready) = (
            self.peers.clone(),
            self.name.clone(),
            self.limits.idle_timeout,
            self.ready.clone(),
        );
        tokio::spawn(async move {
            let Some((stream, peer)) = policy.open_tls(&tls, tcp, addr, &name).await else {
                return;
            };
            let io = Limited::new(Conn::Tls(Box::new(stream)), idle, held);
            let _ = ready.send((io, peer)).await;
        });
    }
}

type Held = (OwnedSemaphorePermit, PeerSlot);

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = Peer;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        let gate = &self.gate;
        loop {
            tokio::select! {
                Some(done) = self.handshaken.recv() => return done,
                (tcp, addr, held) = gate.admit() => match gate.limits.tls.clone() {
                    None => {
                        let io = Limited::new(Conn::Plain(tcp), gate.limits.idle_timeout, held);
                        return (io, Peer::plain(addr));
                    }
                    Some(tls) => gate.handshake(tls, tcp, addr, held),
                },
            }
        }
    }

    fn local_addr(&self) -> std::io::Result<Peer> {
        self.gate.tcp.local_addr().map(Peer::plain)
    }
}

/// The next connection; a failed accept (EMFILE and friends) is logged and retried after a
/// pause instead of spinning.
pub async fn accept(tcp: &TcpListener) -> (TcpStream, SocketAddr) {
    loop {
        match tcp.accept().await {
            Ok(c) => return c,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

/// The peer, as handlers see it (`ConnectInfo<ConnectedPeer>`): its address and, over mTLS,
/// its certificate.
#[derive(Debug, Clone)]
pub struct ConnectedPeer(pub Peer);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for ConnectedPeer
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        ConnectedPeer(stream.remote_addr().clone())
    }
}

/// A connection, plaintext or TLS.
#[derive(Debug)]
enum Conn {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::server::TlsStream<TcpStream>>),
}

/// A connection that fails its read once nothing has arrived for `idle`, and gives its slots
/// back when dropped.
#[derive(Debug)]
pub struct Limited {
    io: Conn,
    idle: Duration,
    /// Armed while a read waits; cleared whenever bytes arrive.
    deadline: Option<Pin<Box<Sleep>>>,
    _held: Held,
}

impl Limited {
    fn new(io: Conn, idle: Duration, held: Held) -> Limited {
        Limited {
            io,
            idle,
            deadline: None,
            _held: held,
        }
    }
}

/// The stream inside, whichever it is.
trait Io: AsyncRead + AsyncWrite + Unpin + Send {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send> Io for T {}

impl Conn {
    fn io(&mut self) -> Pin<&mut dyn Io> {
        match self {
            Conn::Plain(s) => Pin::new(s),
            Conn::Tls(s) => Pin::new(&mut **s),
        }
    }

    fn is_write_vectored(&self) -> bool {
        match self {
            Conn::Plain(s) => s.is_write_vectored(),
            Conn::Tls(s) => s.is_write_vectored(),
        }
    }
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match this.io.io().poll_read(cx, buf) {
            Poll::Ready(r) => {
                this.deadline = None;
                Poll::Ready(r)
            }
            Poll::Pending => {
                let idle = this.idle;
                let deadline = this
                    .deadline
                    .get_or_insert_with(|| Box::pin(tokio::time::sleep(idle)));
                match deadline.as_mut().poll(cx) {
                    Poll::Ready(()) => Poll::Ready(Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "nothing received within idle_timeout",
                    ))),
                    Poll::Pending => Poll::Pending,
                }
            }
        }
    }
}

impl AsyncWrite for Limited {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.io.io().poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.io.io().poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.io.io().poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        self.io.io().poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
