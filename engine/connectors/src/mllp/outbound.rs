//! The MLLP destination's connection: kept open between messages, opened again on the next
//! message after any failure, each answer read within `ack_timeout`. One message in flight
//! (`exchange`), or a window of them (`exchange_window`: up to N frames sent ahead, answers
//! read in order, as MLLP receivers give them). Judging an answer (MSA-1, MSA-2) belongs to
//! the caller; this only moves bytes.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;

use super::{MllpClient, MllpClientError};
use crate::tls::ClientTls;

#[derive(Debug)]
pub struct MllpOutbound {
    addr: String,
    tls: Option<Arc<ClientTls>>,
    ack_timeout: Duration,
    max_frame: usize,
    conn: Option<MllpClient>,
}

/// Why no answer came back. All of these are worth retrying.
#[derive(Debug, thiserror::Error)]
pub enum OutboundError {
    #[error(transparent)]
    Client(#[from] MllpClientError),
    #[error("no ACK from {addr} within {timeout:?}")]
    Timeout { addr: String, timeout: Duration },
}

impl MllpOutbound {
    pub fn new(addr: impl Into<String>, ack_timeout: Duration, max_frame: usize) -> Self {
        MllpOutbound {
            addr: addr.into(),
            tls: None,
            ack_timeout,
            max_frame,
            conn: None,
        }
    }

    /// Connects over TLS.
    pub fn with_tls(mut self, tls: Arc<ClientTls>) -> Self {
        self.tls = Some(tls);
        self
    }

    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one message and returns the answer frame. On any failure the connection is
    /// dropped, so the next call starts clean (no stale ACK can be read as the next answer).
    pub async fn exchange(&mut self, payload: &[u8]) -> Result<Bytes, OutboundError> {
        let result = self.try_exchange(payload).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    /// Sends `payloads` in order keeping up to `window` unanswered, and returns the answer
    /// frames in the same order, for as many as were sent. `accept` judges each answer as it
    /// comes (its index and the frame): after a `false`, nothing more is sent and the answers
    /// of what is already on the wire are still read. A write or a read that fails or takes
    /// longer than `ack_timeout` fails the oldest unanswered message and ends the call (the
    /// rest were not tried). After any of these the connection is dropped, so the next call
    /// starts clean.
    pub async fn exchange_window(
        &mut self,
        payloads: &[&[u8]],
        window: usize,
        mut accept: impl FnMut(usize, &Bytes) -> bool,
    ) -> Vec<Result<Bytes, OutboundError>> {
        let mut out = Vec::with_capacity(payloads.len());
        if payloads.is_empty() {
            return out;
        }
        if let Err(e) = self.connect().await {
            out.push(Err(e));
            return out;
        }
        let (addr, timeout) = (self.addr.clone(), self.ack_timeout);
        let Some(conn) = self.conn.as_mut() else {
            out.push(Err(MllpClientError::Closed.into()));
            return out;
        };
        let (tx, rx) = conn.halves();
        let window = window.max(1);
        let (mut sent, mut sending, mut healthy) = (0, true, true);
        while out.len() < payloads.len() && (out.len() < sent || sending) {
            if sending {
                // Writing is bounded too: a receiver that stops reading fills the socket's
                // buffers, and the write would wait for ever.
                let written = tokio::time::timeout(timeout, async {
                    while sent < payloads.len() && sent - out.len() < window {
                        tx.feed(payloads[sent]).await?;
                        sent += 1;
                    }
                    tx.flush().await
                })
                .await;
                let failed = match written {
                    Ok(Ok(())) => None,
                    Ok(Err(e)) => Some(e.into()),
                    Err(_) => Some(OutboundError::Timeout {
                        addr: addr.clone(),
                        timeout,
                    }),
                };
                if let Some(e) = failed {
                    // The oldest unanswered message fails; those behind it were not tried
                    // (whether they left is unknown: they go again, at least once).
                    out.push(Err(e));
                    healthy = false;
                    break;
                }
            }
            match tokio::time::timeout(timeout, rx.recv()).await {
                Ok(Ok(ack)) => {
                    if !accept(out.len(), &ack) {
                        sending = false;
                        healthy = false;
                    }
                    out.push(Ok(ack));
                }
                // No answer: the oldest unanswered message fails, and those behind it are not
                // tried (they go again: at least once).
                Ok(Err(e)) => {
                    out.push(Err(e.into()));
                    healthy = false;
                    break;
                }
                Err(_) => {
                    out.push(Err(OutboundError::Timeout {
                        addr: addr.clone(),
                        timeout,
                    }));
                    healthy = false;
                    break;
                }
            }
        }
        if !healthy {
            self.conn = None;
        }
        out
    }

    async fn connect(&mut self) -> Result<(), OutboundError> {
        if self.conn.is_some() {
            return Ok(());
        }
        let c = tokio::time::timeout(
            self.ack_timeout,
            MllpClient::connect_with(&self.addr, self.max_frame, self.tls.as_deref()),
        )
        .await
        .map_err(|_| OutboundError::Timeout {
            addr: self.addr.clone(),
            timeout: self.ack_timeout,
        })??;
        self.conn = Some(c);
        Ok(())
    }

    /// Forgets the connection (after an answer that did not match, for instance).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn try_exchange(&mut self, payload: &[u8]) -> Result<Bytes, OutboundError> {
        self.connect().await?;
        let conn = self.conn.as_mut().ok_or(MllpClientError::Closed)?;
        match tokio::time::timeout(self.ack_timeout, conn.send(payload)).await {
            Ok(r) => Ok(r?),
            Err(_) => Err(OutboundError::Timeout {
                addr: self.addr.clone(),
                timeout: self.ack_timeout,
            }),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A receiver that takes the connection and then stops reading: once the socket's buffers
    /// are full, writing a window of large frames blocks. That must end as a timeout within
    /// `ack_timeout`, never stall the destination's worker.
    #[tokio::test]
    async fn a_receiver_that_stops_reading_times_out_instead_of_stalling() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let _held = tokio::spawn(async move {
            let (socket, _) = listener.accept().await.expect("accept");
            tokio::time::sleep(Duration::from_secs(60)).await;
            drop(socket);
        });
        let mut out = MllpOutbound::new(addr.to_string(), Duration::from_millis(500), 64 << 20);
        let big = vec![b'A'; 4 << 20];
        let payloads = vec![&big[..]; 8];
        let answers = tokio::time::timeout(
            Duration::from_secs(20),
            out.exchange_window(&payloads, 8, |_, _| true),
        )
        .await
        .expect("an answer within 20 s, not a stall");
        assert!(
            matches!(answers[..], [Err(OutboundError::Timeout { .. })]),
            "{answers:?}"
        );
    }
}
