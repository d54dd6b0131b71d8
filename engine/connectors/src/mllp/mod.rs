//! MLLP (Minimal Lower Layer Protocol): `<VT> message <FS><CR>` over TCP, as every HL7v2
//! system speaks it.

mod client;
mod codec;
mod listener;
mod outbound;

pub use client::{MllpClient, MllpClientError, MllpReceiver, MllpSender};
pub use codec::{MllpCodec, MllpFrame, OVERSIZE_HEAD};
pub use listener::{AckFuture, FrameHandler, MllpListener, MllpListenerOptions};
pub use outbound::{MllpOutbound, OutboundError};
