//! The MLLP listener: accept, read frames, hand each to a [`FrameHandler`], write ACKs back.
//!
//! Per connection a reader decodes frames and asks the handler for each one *in arrival order*
//! (so stores see a sender's messages in order), and a writer awaits the answers in the same
//! order and writes them, so pipelining senders get their ACKs in order. At most `max_in_flight`
//! answers wait per connection, and the frames waiting for an answer on all of a listener's
//! connections together hold at most `max_in_flight_bytes` (a frame larger than that goes
//! alone): memory stays bounded however large the messages, and a fast sender is pushed back
//! through TCP (its reader stops reading until answers go out).
//!
//! Limits: `max_connections` in all and `max_connections_per_peer` per address (extra
//! connections are closed at once with a warning: one address's idle connections cannot lock
//! every other sender out), an idle timeout between frames, a frame timeout from a frame's first
//! byte to its last, and the same timeout for writing an ACK to a peer that stopped reading, so
//! a slow or stuck sender cannot hold a slot forever. On shutdown the listener stops accepting, readers
//! stop reading, and every frame already read is answered before the socket closes.
//!
//! With `tls`, each connection's handshake runs in its own task (a slow or hostile client
//! holds up no one else), limited to [`crate::tls::HANDSHAKE_TIMEOUT`]; a failed one is
//! counted, logged with the reason, and closed before any frame is read. With client
//! certificates, `allow_subjects` is checked next, and the handler sees the certificate in
//! the [`Peer`] of every frame.

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use futures_util::SinkExt;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{Semaphore, mpsc};
use tokio::time::{Instant, timeout_at};
use tokio_util::codec::{Decoder, FramedWrite};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::{MllpCodec, MllpFrame};
use crate::peers::{Peer, PeerPolicy, Refusals};
use crate::tls::ServerTls;

/// The answer to one frame: resolves to the ACK bytes, or `None` when no ACK is to be sent.
pub type AckFuture = Pin<Box<dyn Future<Output = Option<Bytes>> + Send>>;

/// What the listener calls for each frame.
pub trait FrameHandler: Send + Sync + 'static {
    /// Called in arrival order. Should return as soon as the frame is queued (e.g. submitted to
    /// the store); the returned future resolves when the ACK may be sent.
    fn accept(&self, frame: MllpFrame, peer: &Peer) -> impl Future<Output = AckFuture> + Send;
}

/// Listener settings (defaults suit a hospital PAS feed).
#[derive(Debug, Clone)]
pub struct MllpListenerOptions {
    /// The route name, used in logs.
    pub name: String,
    pub listen: SocketAddr,
    pub max_frame: usize,
    pub max_connections: usize,
    pub max_connections_per_peer: usize,
    /// Addresses that may connect (empty: any).
    pub allow_from: Vec<ipnet::IpNet>,
    /// Where refusals are counted.
    pub refusals: Arc<Refusals>,
    /// Serve TLS with this identity (and, with its `client_ca`, require client certificates).
    pub tls: Option<Arc<ServerTls>>,
    /// Client certificate names that may connect (empty: any the client CA verifies).
    pub allow_subjects: Vec<String>,
    pub idle_timeout: Duration,
    pub frame_timeout: Duration,
    pub max_in_flight: usize,
    /// Bytes of frames read and not yet answered, on all connections together.
    pub max_in_flight_bytes: usize,
}

impl MllpListenerOptions {
    pub fn new(name: impl Into<String>, listen: SocketAddr) -> Self {
        MllpListenerOptions {
            name: name.into(),
            listen,
            max_frame: 8 * 1024 * 1024,
            max_connections: 256,
            max_connections_per_peer: 32,
            allow_from: Vec::new(),
            refusals: Arc::default(),
            tls: None,
            allow_subjects: Vec::new(),
            idle_timeout: Duration::from_secs(300),
            frame_timeout: Duration::from_secs(30),
            max_in_flight: 256,
            max_in_flight_bytes: 8 << 20,
        }
    }
}

/// A bound MLLP listener.
#[derive(Debug)]
pub struct MllpListener<H> {
    opts: Arc<MllpListenerOptions>,
    handler: Arc<H>,
    listener: TcpListener,
}

impl<H: FrameHandler> MllpListener<H> {
    /// Binds the socket (so a port clash is reported before anything else starts).
    pub async fn bind(opts: MllpListenerOptions, handler: Arc<H>) -> std::io::Result<Self> {
        let listener = TcpListener::bind(opts.listen).await?;
        Ok(MllpListener {
            opts: Arc::new(opts),
            handler,
            listener,
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// The route this listener serves.
    pub fn route(&self) -> &str {
        &self.opts.name
    }

    /// Serves until `shutdown` is cancelled, then drains every connection.
    pub async fn run(self, shutdown: CancellationToken) {
        let limit = Arc::new(Semaphore::new(self.opts.max_connections));
        let budget = InFlight::new(self.opts.max_in_flight_bytes);
        let peers = PeerPolicy::new(
            &self.opts.allow_from,
            self.opts.max_connections_per_peer,
            self.opts.refusals.clone(),
        )
        .with_subjects(&self.opts.allow_subjects);
        let tracker = TaskTracker::new();
        let name = &self.opts.name;
        let tls = if self.opts.tls.is_some() {
            "TLS"
        } else {
            "plaintext"
        };
        tracing::info!(route = %name, listen = %self.local_addr().map_or(self.opts.listen, |a| a), tls, "MLLP listener ready");
        loop {
            let accepted = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = self.listener.accept() => r,
            };
            match accepted {
                Ok((stream, peer)) => match limit.clone().try_acquire_owned() {
                    Ok(permit) => {
                        // Refused before a byte is read: an address outside allow_from, or a
                        // peer over its own cap (it gives its slot back at once, so one
                        // address's connections never take the slots other senders need).
                        let peer_slot = match peers.admit(peer.ip()) {
                            Ok(slot) => slot,
                            Err(refusal) => {
                                tracing::warn!(route = %name, %peer, reason = refusal.reason(), "connection refused");
                                continue;
                            }
                        };
                        let (opts, handler, stop, policy, budget) = (
                            self.opts.clone(),
                            self.handler.clone(),
                            shutdown.clone(),
                            peers.clone(),
                            budget.clone(),
                        );
                        tracker.spawn(async move {
                            let served = Served {
                                handler,
                                opts: &opts,
                                budget,
                                shutdown: stop,
                            };
                            open_connection(stream, peer, &policy, served).await;
                            drop((permit, peer_slot));
                        });
                    }
                    Err(_) => {
                        peers.listener_full();
                        tracing::warn!(route = %name, %peer, max_connections = self.opts.max_connections, "connection refused: max_connections reached");
                    }
                },
                Err(e) => {
                    // EMFILE and friends: back off instead of spinning.
                    tracing::warn!(route = %name, error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
            }
        }
        drop(self.listener);
        tracker.close();
        tracker.wait().await;
        tracing::info!(route = %name, "MLLP listener stopped");
    }
}

/// The listener-wide budget of bytes read and not yet answered.
#[derive(Debug, Clone)]
struct InFlight {
    bytes: Arc<Semaphore>,
    total: u32,
}

impl InFlight {
    fn new(bytes: usize) -> Self {
        let total = u32::try_from(bytes.max(1)).unwrap_or(u32::MAX);
        InFlight {
            bytes: Arc::new(Semaphore::new(total as usize)),
            total,
        }
    }

    /// Waits until a frame of `len` bytes fits (one larger than the whole budget waits for
    /// all of it); the permit is given back when its answer has been written.
    async fn take(&self, len: usize) -> Option<tokio::sync::OwnedSemaphorePermit> {
        let n = u32::try_from(len).unwrap_or(u32::MAX).clamp(1, self.total);
        self.bytes.clone().acquire_many_owned(n).await.ok()
    }
}

/// What every connection of a listener is served with.
struct Served<'a, H> {
    handler: Arc<H>,
    opts: &'a MllpListenerOptions,
    budget: InFlight,
    shutdown: CancellationToken,
}

/// Plaintext: serves at once. TLS: the handshake, then the certificate check, then serves.
async fn open_connection<H: FrameHandler>(
    stream: TcpStream,
    addr: SocketAddr,
    policy: &PeerPolicy,
    served: Served<'_, H>,
) {
    let route = served.opts.name.as_str();
    let _ = stream.set_nodelay(true);
    let Some(tls) = &served.opts.tls else {
        let (rd, wr) = stream.into_split();
        return serve_connection(rd, wr, Peer::plain(addr), served).await;
    };
    let opened = tokio::select! {
        _ = served.shutdown.cancelled() => return,
        o = policy.open_tls(tls, stream, addr, route) => o,
    };
    let Some((stream, peer)) = opened else {
        return;
    };
    let (rd, wr) = tokio::io::split(stream);
    serve_connection(rd, wr, peer, served).await;
}

async fn serve_connection<H, R, W>(mut rd: R, wr: W, peer: Peer, served: Served<'_, H>)
where
    H: FrameHandler,
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let Served {
        handler,
        opts,
        budget,
        shutdown,
    } = served;
    let route = opts.name.as_str();
    tracing::debug!(route, %peer, "connection open");
    let (ack_tx, mut ack_rx) = mpsc::channel::<(
        AckFuture,
        Option<tokio::sync::OwnedSemaphorePermit>,
    )>(opts.max_in_flight.max(1));
    // A peer that stops reading its ACKs fills the socket buffer; give up on it after
    // `frame_timeout` rather than hold its slot (and its in-flight answers) for ever.
    let write_timeout = opts.frame_timeout;
    let writer_peer = peer.to_string();
    let writer = tokio::spawn(async move {
        let peer = writer_peer;
        let mut sink = FramedWrite::new(wr, MllpCodec::new(usize::MAX));
        let timed =
            |r: Result<std::io::Result<()>, tokio::time::error::Elapsed>| matches!(r, Ok(Ok(())));
        while let Some((answer, _bytes)) = ack_rx.recv().await {
            if let Some(ack) = answer.await
                && !timed(tokio::time::timeout(write_timeout, sink.feed(ack)).await)
            {
                tracing::warn!(%peer, timeout = ?write_timeout, "ACK not written in time (the peer is not reading); closing");
                return;
            }
            if ack_rx.is_empty() && !timed(tokio::time::timeout(write_timeout, sink.flush()).await)
            {
                tracing::warn!(%peer, timeout = ?write_timeout, "ACK not written in time (the peer is not reading); closing");
                return;
            }
        }
        let _ = tokio::time::timeout(write_timeout, sink.flush()).await;
    });

    let mut codec = MllpCodec::new(opts.max_frame);
    let mut buf = BytesMut::with_capacity(16 * 1024);
    let mut last_frame = Instant::now();
    let mut frame_started: Option<Instant> = None;
    let mut frames = 0u64;
    'read: loop {
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    frames += 1;
                    last_frame = Instant::now();
                    frame_started = None;
                    if let MllpFrame::Oversized { len, .. } = &frame {
                        tracing::warn!(route, %peer, len, max_frame = opts.max_frame, "oversized frame");
                    }
                    let len = match &frame {
                        MllpFrame::Message(raw) => raw.len(),
                        MllpFrame::Oversized { head, .. } => head.len(),
                    };
                    // Read, and held until answered: waits here (not reading more) while the
                    // listener's frames in flight fill the budget.
                    let bytes = budget.take(len).await;
                    let answer = handler.accept(frame, &peer).await;
                    if ack_tx.send((answer, bytes)).await.is_err() {
                        break 'read;
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!(route, %peer, error = %e, "framing error");
                    break 'read;
                }
            }
        }
        let junk = codec.take_junk();
        if junk > 0 {
            tracing::warn!(route, %peer, bytes = junk, "discarded bytes outside an MLLP frame");
        }
        if codec.in_frame() {
            frame_started.get_or_insert_with(Instant::now);
        }
        let deadline = match frame_started {
            Some(t) => t + opts.frame_timeout,
            None => last_frame + opts.idle_timeout,
        };
        let read = tokio::select! {
            _ = shutdown.cancelled() => break,
            r = timeout_at(deadline, rd.read_buf(&mut buf)) => r,
        };
        match read {
            Err(_) if frame_started.is_some() => {
                tracing::warn!(route, %peer, timeout = ?opts.frame_timeout, "frame not completed in time; closing");
                break;
            }
            Err(_) => {
                tracing::info!(route, %peer, timeout = ?opts.idle_timeout, "idle connection closed");
                break;
            }
            Ok(Ok(0)) => {
                if codec.in_frame() {
                    tracing::warn!(route, %peer, "connection closed in the middle of a frame; the partial frame was not acknowledged");
                }
                break;
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                tracing::debug!(route, %peer, error = %e, "read failed");
                break;
            }
        }
    }
    drop(ack_tx);
    let _ = writer.await;
    tracing::debug!(route, %peer, frames, "connection closed");
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::io::AsyncWriteExt;

    use super::*;

    /// Counts the frames it is given and answers none until `release` is notified.
    #[derive(Debug, Default)]
    struct Holding {
        accepted: AtomicUsize,
        release: Arc<tokio::sync::Notify>,
    }

    impl FrameHandler for Holding {
        async fn accept(&self, _frame: MllpFrame, _peer: &Peer) -> AckFuture {
            self.accepted.fetch_add(1, Ordering::SeqCst);
            let release = self.release.clone();
            Box::pin(async move {
                release.notified().await;
                Some(Bytes::from_static(b"MSA|AA"))
            })
        }
    }

    /// Issue 16: frames waiting for their answer were bounded in count only (256 a connection
    /// × 8 MiB frames): ten 300 KiB frames sent at once were all read while none was answered.
    /// With a 1 MiB budget the reader stops after three.
    #[tokio::test]
    async fn frames_waiting_for_an_answer_are_bounded_in_bytes() {
        let mut opts = MllpListenerOptions::new("budget", "127.0.0.1:0".parse().expect("addr"));
        opts.max_in_flight_bytes = 1 << 20;
        let handler = Arc::new(Holding::default());
        let listener = MllpListener::bind(opts, handler.clone())
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let stop = CancellationToken::new();
        let served = tokio::spawn(listener.run(stop.clone()));
        let mut client = TcpStream::connect(addr).await.expect("connect");
        let frame = [&[0x0b][..], &vec![b'x'; 300 << 10], &[0x1c, 0x0d]].concat();
        let writer = tokio::spawn(async move {
            for _ in 0..10 {
                if client.write_all(&frame).await.is_err() {
                    break;
                }
            }
            client
        });
        while handler.accepted.load(Ordering::SeqCst) < 3 {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(
            handler.accepted.load(Ordering::SeqCst),
            3,
            "three 300 KiB frames fill a 1 MiB budget; the fourth waits for an answer"
        );
        // Answers go out, the budget comes back, and the rest are read.
        while handler.accepted.load(Ordering::SeqCst) < 10 {
            handler.release.notify_waiters();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let _client = writer.await.expect("writer");
        stop.cancel();
        while !served.is_finished() {
            handler.release.notify_waiters();
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }
}
