//! The MLLP destination's connection: kept open between messages, opened again on the next
//! message after any failure, one message in flight, each answer read within `ack_timeout`.
//! Judging the answer (MSA-1, MSA-2) belongs to the caller; this only moves bytes.

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

    /// Forgets the connection (after an answer that did not match, for instance).
    pub fn reset(&mut self) {
        self.conn = None;
    }

    async fn try_exchange(&mut self, payload: &[u8]) -> Result<Bytes, OutboundError> {
        if self.conn.is_none() {
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
        }
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
