//! An MLLP client: connect, send frames, read ACKs. Used by `wyvern send`, the load tool and
//! tests; the MLLP destination (routes) builds on it.

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio_util::codec::{FramedRead, FramedWrite};

use super::{MllpCodec, MllpFrame};

#[derive(Debug, thiserror::Error)]
pub enum MllpClientError {
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        addr: String,
        source: std::io::Error,
    },
    #[error("connection error: {0}")]
    Io(#[from] std::io::Error),
    #[error("the connection closed before the ACK arrived")]
    Closed,
    #[error("the reply was larger than {0} bytes")]
    Oversized(usize),
}

/// The sending half (pipelining: send many, read answers on the [`MllpReceiver`]).
#[derive(Debug)]
pub struct MllpSender(FramedWrite<OwnedWriteHalf, MllpCodec>);

/// The receiving half.
#[derive(Debug)]
pub struct MllpReceiver(FramedRead<OwnedReadHalf, MllpCodec>);

/// A connected client for stop-and-wait use.
#[derive(Debug)]
pub struct MllpClient {
    tx: MllpSender,
    rx: MllpReceiver,
}

impl MllpClient {
    pub async fn connect(addr: &str, max_frame: usize) -> Result<Self, MllpClientError> {
        let stream = TcpStream::connect(addr)
            .await
            .map_err(|source| MllpClientError::Connect {
                addr: addr.to_string(),
                source,
            })?;
        let _ = stream.set_nodelay(true);
        let (r, w) = stream.into_split();
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
