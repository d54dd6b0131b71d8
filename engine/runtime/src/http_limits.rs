//! Limits for an HTTP listener facing other organisations (the FHIR source): who may connect
//! (`allow_from`), connections in all and per peer address, and a connection that sends nothing for `idle_timeout` is closed —
//! while its headers or body trickle in, or between requests. axum sets no timer of its own, so
//! without this one client could hold every connection open for ever (slowloris).

use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Sleep;
use wyvern_connectors::peers::{PeerPolicy, PeerSlot, Refusals};

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
}

/// A TCP listener for `axum::serve` that enforces [`HttpLimits`].
#[derive(Debug)]
pub struct LimitedListener {
    tcp: TcpListener,
    limits: HttpLimits,
    slots: Arc<Semaphore>,
    peers: PeerPolicy,
    /// Route name, for logs.
    name: String,
}

impl LimitedListener {
    pub fn new(tcp: TcpListener, limits: HttpLimits, name: &str) -> Self {
        LimitedListener {
            tcp,
            slots: Arc::new(Semaphore::new(limits.max_connections)),
            peers: PeerPolicy::new(
                &limits.allow_from,
                limits.max_connections_per_peer,
                limits.refusals.clone(),
            ),
            limits,
            name: name.to_string(),
        }
    }
}

impl axum::serve::Listener for LimitedListener {
    type Io = Limited;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            let (tcp, peer) = accept(&self.tcp).await;
            let Ok(permit) = self.slots.clone().try_acquire_owned() else {
                self.peers.listener_full();
                tracing::warn!(route = %self.name, %peer, max_connections = self.limits.max_connections, "connection refused: max_connections reached");
                continue;
            };
            let slot = match self.peers.admit(peer.ip()) {
                Ok(slot) => slot,
                Err(refusal) => {
                    tracing::warn!(route = %self.name, %peer, reason = refusal.reason(), "connection refused");
                    continue;
                }
            };
            let _ = tcp.set_nodelay(true);
            return (
                Limited {
                    io: tcp,
                    idle: self.limits.idle_timeout,
                    deadline: None,
                    _held: (permit, slot),
                },
                peer,
            );
        }
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
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

/// The peer's address, as handlers see it (`ConnectInfo<PeerAddr>`).
#[derive(Debug, Clone, Copy)]
pub struct PeerAddr(pub SocketAddr);

impl axum::extract::connect_info::Connected<axum::serve::IncomingStream<'_, LimitedListener>>
    for PeerAddr
{
    fn connect_info(stream: axum::serve::IncomingStream<'_, LimitedListener>) -> Self {
        PeerAddr(*stream.remote_addr())
    }
}

/// A connection that fails its read once nothing has arrived for `idle`, and gives its slots
/// back when dropped.
#[derive(Debug)]
pub struct Limited {
    io: TcpStream,
    idle: Duration,
    /// Armed while a read waits; cleared whenever bytes arrive.
    deadline: Option<Pin<Box<Sleep>>>,
    _held: (OwnedSemaphorePermit, PeerSlot),
}

impl AsyncRead for Limited {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        let this = &mut *self;
        match Pin::new(&mut this.io).poll_read(cx, buf) {
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
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }
}
