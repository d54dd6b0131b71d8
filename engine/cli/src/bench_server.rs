//! The two baselines `wyvern bench` measures Wyvern against, served by the same MLLP listener
//! and ACK builder the engine uses, so the only difference is what happens before the ACK:
//!
//! - `echo`: nothing. The ACK goes back at once: the loopback floor of this machine.
//! - `fsync-each`: the message is appended to a file and fsync'd on its own, one at a time
//!   across all connections (no group commit): the naive durable server.

use std::fs::File;
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::Context;
use bytes::Bytes;
use clap::Args;
use tokio_util::sync::CancellationToken;
use wyvern_connectors::mllp::{
    AckFuture, FrameHandler, MllpFrame, MllpListener, MllpListenerOptions,
};
use wyvern_hl7::{AckIntent, Message, build_ack, build_ack_without_message};

#[derive(Debug, Args)]
pub struct BenchServerArgs {
    /// Where to listen.
    #[arg(long)]
    pub listen: SocketAddr,
    /// Which baseline to serve.
    #[arg(long, value_enum)]
    pub mode: BaselineMode,
    /// The file `fsync-each` appends to.
    #[arg(long, required_if_eq("mode", "fsync-each"))]
    pub file: Option<PathBuf>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BaselineMode {
    /// ACK at once, store nothing.
    Echo,
    /// Append and fsync each message on its own before its ACK.
    FsyncEach,
}

#[derive(Debug)]
struct Baseline {
    file: Option<Arc<Mutex<File>>>,
}

pub(crate) fn accept_ack(raw: &[u8]) -> Bytes {
    let ack = match Message::parse(raw) {
        Ok(m) => build_ack(&m, AckIntent::Accept, None, "BENCH", "20261125000000"),
        Err(_) => None,
    };
    Bytes::from(ack.unwrap_or_else(|| {
        build_ack_without_message(AckIntent::Reject, None, "BENCH", "20261125000000")
    }))
}

impl FrameHandler for Baseline {
    async fn accept(&self, frame: MllpFrame, _peer: &wyvern_connectors::peers::Peer) -> AckFuture {
        let MllpFrame::Message(raw) = frame else {
            return Box::pin(async { None });
        };
        let ack = accept_ack(&raw);
        match &self.file {
            None => Box::pin(async move { Some(ack) }),
            Some(file) => {
                let file = file.clone();
                Box::pin(async move {
                    let written = tokio::task::spawn_blocking(move || -> std::io::Result<()> {
                        let mut f = file.lock().map_err(|_| std::io::Error::other("poisoned"))?;
                        f.write_all(&raw)?;
                        f.sync_data()
                    })
                    .await;
                    // A baseline that cannot write answers nothing, so the bench sees it.
                    matches!(written, Ok(Ok(()))).then_some(ack)
                })
            }
        }
    }
}

pub async fn serve(args: BenchServerArgs) -> anyhow::Result<ExitCode> {
    let file = match (args.mode, &args.file) {
        (BaselineMode::FsyncEach, Some(p)) => Some(Arc::new(Mutex::new(
            File::options()
                .create(true)
                .append(true)
                .open(p)
                .with_context(|| format!("opening {}", p.display()))?,
        ))),
        _ => None,
    };
    // Same defaults as a Wyvern MLLP source (max_in_flight 256 per connection, …).
    let opts = MllpListenerOptions::new(
        format!("baseline-{:?}", args.mode).to_lowercase(),
        args.listen,
    );
    let listener = MllpListener::bind(opts, Arc::new(Baseline { file }))
        .await
        .with_context(|| format!("binding {}", args.listen))?;
    listener.run(CancellationToken::new()).await;
    Ok(ExitCode::SUCCESS)
}
