//! The directory source's poller: every `poll`, read each file in the folder (oldest name
//! first), store every message in it through the route's inbox, and move the file to `done/`
//! only when all of them are accepted (or rejected and kept). A store failure, or a message the
//! engine would not accept (AE: a plugin failed, a control id refused), leaves the file where
//! it is for the next pass — the files after it wait, so their order holds — until it has been
//! offered [`poison::MAX_ATTEMPTS`] times; then it moves to `failed/`. A crash before a move
//! means the file is read again and duplicate detection answers for what was already stored.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use tokio_util::sync::CancellationToken;
use wyvern_config::DirectorySource;
use wyvern_connectors::mllp::MllpFrame;

use crate::Hl7Inbox;
use crate::poison::{self, Attempts};

#[derive(Debug)]
pub struct DirectoryPoller {
    pub route: String,
    pub source: DirectorySource,
    pub inbox: Arc<Hl7Inbox>,
    /// Failed passes per file content.
    pub(crate) attempts: Attempts,
}

/// The messages in one file (see [`wyvern_hl7::messages_in_file`]); bytes that are not HL7 go
/// on as one message, which the inbox rejects with its reason (and keeps).
pub fn messages_in(bytes: &[u8]) -> Vec<Bytes> {
    match wyvern_hl7::messages_in_file(bytes) {
        Some(ms) => ms.into_iter().map(Bytes::from).collect(),
        None => vec![Bytes::copy_from_slice(bytes)],
    }
}

fn ready_files(dir: &Path) -> Vec<PathBuf> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.is_file())
        .filter(|p| {
            p.file_name().and_then(|n| n.to_str()).is_some_and(|n| {
                !n.starts_with('.') && !n.ends_with(".tmp") && !n.ends_with(".part")
            })
        })
        .collect();
    files.sort();
    files
}

impl DirectoryPoller {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let dir = self.source.path.clone();
        tracing::info!(route = %self.route, dir = %dir.display(), "directory source ready");
        if let Err(e) = std::fs::create_dir_all(&self.source.done) {
            tracing::error!(route = %self.route, dir = %self.source.done.display(), error = %e, "cannot create the done folder");
        }
        while !shutdown.is_cancelled() {
            for file in ready_files(&dir) {
                if shutdown.is_cancelled() || !self.take(&file).await {
                    break;
                }
            }
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tokio::time::sleep(self.source.poll) => {}
            }
        }
        tracing::info!(route = %self.route, "directory source stopped");
    }

    /// Stores every message of one file and moves it to done/. False: try again next pass.
    async fn take(&mut self, file: &Path) -> bool {
        let name = file
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        // Read whole, so bounded first: a file over max_file is set aside unread.
        match tokio::fs::metadata(file).await {
            Ok(m) if m.len() > self.source.max_file => {
                tracing::error!(route = %self.route, file = %name, bytes = m.len(), max_file = self.source.max_file, "file larger than max_file; moved to failed/ unread");
                return self.set_aside(file, &name).await;
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(route = %self.route, file = %file.display(), error = %e, "cannot read; will try again");
                return false;
            }
        }
        let bytes = match tokio::fs::read(file).await {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!(route = %self.route, file = %file.display(), error = %e, "cannot read; will try again");
                return false;
            }
        };
        let mut pending = Vec::new();
        for m in messages_in(&bytes) {
            pending.push(
                self.inbox
                    .receive(MllpFrame::Message(m), format!("file:{name}"))
                    .await,
            );
        }
        let count = pending.len();
        let mut not_accepted = 0;
        for p in pending {
            let r = p.await;
            if !r.stored {
                tracing::warn!(route = %self.route, file = %name, "not every message could be stored; the file stays for the next pass");
                return false;
            }
            not_accepted += usize::from(r.retry);
        }
        let park = self.attempts.offered(&bytes, not_accepted == 0);
        let folder = if not_accepted == 0 {
            &self.source.done
        } else if park {
            tracing::error!(route = %self.route, file = %name, not_accepted, attempts = poison::MAX_ATTEMPTS, "messages still not accepted; moved to failed/ (kept in the inbox with the reason)");
            &self.source.failed
        } else {
            tracing::warn!(route = %self.route, file = %name, not_accepted, "messages not accepted (AE); the file stays for the next pass");
            return false;
        };
        self.move_to(file, &name, folder, not_accepted == 0, count)
            .await
    }

    /// Moves a file to `failed/` (the files after it go on).
    async fn set_aside(&self, file: &Path, name: &str) -> bool {
        self.move_to(file, name, &self.source.failed, false, 0)
            .await
    }

    async fn move_to(
        &self,
        file: &Path,
        name: &str,
        folder: &Path,
        taken: bool,
        count: usize,
    ) -> bool {
        if let Err(e) = std::fs::create_dir_all(folder) {
            tracing::error!(route = %self.route, dir = %folder.display(), error = %e, "cannot create the folder");
            return false;
        }
        let target = folder.join(name);
        match tokio::fs::rename(file, &target).await {
            Ok(()) if taken => {
                tracing::info!(route = %self.route, file = %name, messages = count, "file taken");
                true
            }
            Ok(()) => true,
            Err(e) => {
                tracing::error!(route = %self.route, file = %name, to = %folder.display(), error = %e, "cannot move the file; it will be read again (duplicates are detected)");
                false
            }
        }
    }
}

impl super::Source for DirectoryPoller {
    fn name(&self) -> String {
        format!("directory source {}", self.route)
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(DirectoryPoller::run(*self, shutdown))
    }
}

/// The folder poller of `route`.
pub(super) fn build(
    route: &wyvern_config::Route,
    d: &wyvern_config::DirectorySource,
    inbox: Hl7Inbox,
) -> Box<dyn super::Source> {
    Box::new(DirectoryPoller {
        route: route.name.clone(),
        source: d.clone(),
        inbox: Arc::new(inbox),
        attempts: Default::default(),
    })
}
