//! An MLLP client: connect (plaintext or TLS), send frames, read ACKs. Used by `wyvern send`,
//! the load tool and tests; the MLLP destination (routes) builds on it.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{MllpCodec, MllpFrame};
use crate::tls::ClientTls;

type ReadHalf = Box<dyn AsyncRead + Send + Sync + Unpin>;
type WriteHalf = Box<dyn AsyncWrite + Send + Sync + Unpin>;

#[derive(Debug, thiserror::Error)]
pub enum MllpClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("TLS with {addr} failed: {reason}")]
    Tls { addr: String, reason: String },
    #[error("connection error: {}", crate::tls::describe_io(.0))]
    Io(#[from] std::io::Error),
    #[error("the connection closed before the ACK arrived")]
    Closed,
    #[error("the reply was larger than {0} bytes")]
    Oversized(usize),
}

/// The sending half (pipelining: send many, read answers on the [`MllpReceiver`]).
pub struct MllpSender(FramedWrite<WriteHalf, MllpCodec>);

/// The receiving half.
pub struct MllpReceiver(FramedRead<ReadHalf, MllpCodec>);

impl std::fmt::Debug for MllpSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MllpSender")
    }
}

impl std::fmt::Debug for MllpReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("MllpReceiver")
    }
}

/// A connected client for stop-and-wait use.
#[derive(Debug)]
pub struct MllpClient {
    tx: MllpSender,
    rx: MllpReceiver,
}

impl MllpClient {
    pub async fn connect(addr: &str, max_frame: usize) -> Result<Self, MllpClientError> {
        Self::connect_with(addr, max_frame, None).await
    }

    /// Connects, over TLS when `tls` is given (the handshake is complete when this returns;
    /// a server that refuses our certificate may only say so on the first read, with TLS 1.3).
    pub async fn connect_with(
        addr: &str,
        max_frame: usize,
        tls: Option<&ClientTls>,
    ) -> Result<Self, MllpClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| MllpClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (r, w): (ReadHalf, WriteHalf) = match tls {
            None => {
                let (r, w) = stream.into_split();
                (Box::new(r), Box::new(w))
            }
            Some(tls) => {
                let stream = tls
                    .connect(stream, addr)
                    .await
                    .map_err(|e| MllpClientError::Tls {
                        addr: addr.to_string(),
                        reason: crate::tls::describe_io(&e),
                    })?;
                let (r, w) = tokio::io::split(stream);
                (Box::new(r), Box::new(w))
            }
        };
        Ok(MllpClient {
            tx: MllpSender(FramedWrite::new(w, MllpCodec::new(max_frame))),
            rx: MllpReceiver(FramedRead::new(r, MllpCodec::new(max_frame))),
        })
    }

    /// Sends one message and waits for its answer.
    pub async fn send(&mut self, payload: &[u8]) -> Result<Bytes, MllpClientError> {
        self.tx.send(payload).await?;
        self.rx.recv().await
    }

    pub fn split(self) -> (MllpSender, MllpReceiver) {
        (self.tx, self.rx)
    }

    /// Both halves, borrowed (to send ahead of the answers on a connection kept open).
    pub fn halves(&mut self) -> (&mut MllpSender, &mut MllpReceiver) {
        (&mut self.tx, &mut self.rx)
    }
}

impl MllpSender {
    /// Writes and flushes one frame.
    pub async fn send(&mut self, payload: &[u8]) -> Result<(), MllpClientError> {
        Ok(self.0.send(Bytes::copy_from_slice(payload)).await?)
    }

    /// Queues a frame without flushing (call [`MllpSender::flush`]).
    pub async fn feed(&mut self, payload: &[u8]) -> Result<(), MllpClientError> {
        Ok(self.0.feed(Bytes::copy_from_slice(payload)).await?)
    }

    pub async fn flush(&mut self) -> Result<(), MllpClientError> {
        Ok(self.0.flush().await?)
    }
}

impl MllpReceiver {
    /// The next answer frame.
    pub async fn recv(&mut self) -> Result<Bytes, MllpClientError> {
        match self.0.next().await {
            Some(Ok(MllpFrame::Message(b))) => Ok(b),
            Some(Ok(MllpFrame::Oversized { len, .. })) => Err(MllpClientError::Oversized(len)),
            Some(Err(e)) => Err(e.into()),
            None => Err(MllpClientError::Closed),
        }
    }
}
