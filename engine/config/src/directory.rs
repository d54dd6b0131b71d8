//! The directory source: files dropped into a folder (overnight extracts, systems that cannot
//! speak MLLP). Each file may hold one message, several, or an FHS/BHS batch; once every
//! message in it is committed the file moves to `done/` (so a crash before that re-reads it,
//! and duplicate detection keeps it from being delivered twice).
//!
//! ```yaml
//! source:
//!   directory: { path: in/gp-extracts, poll: 2s, max_file: 64MiB }
//! ```
//!
//! A file is read whole, so `max_file` (default 64 MiB) bounds the memory one file takes; a
//! larger one is moved to `failed/` untouched, with an error in the log.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::HumanDuration;
use crate::at::At;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DirectorySourceFile {
    /// The folder to watch, relative to the config folder.
    #[schemars(with = "String")]
    pub path: Spanned<String>,
    /// How often to look (default 1s).
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub poll: Option<Spanned<HumanDuration>>,
    /// The largest file read (default 64MiB); larger ones go to `failed/` unread.
    #[serde(default)]
    #[schemars(with = "Option<crate::ByteSize>")]
    pub max_file: Option<Spanned<crate::ByteSize>>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectorySource {
    pub path: PathBuf,
    /// Where finished files go: `PATH/done`.
    pub done: PathBuf,
    /// Where files go that were offered `poison::MAX_ATTEMPTS` times and still not accepted
    /// (their messages are kept in the inbox with the reason): `PATH/failed`.
    pub failed: PathBuf,
    pub poll: Duration,
    pub max_file: u64,
}

pub(crate) fn directory(at: &mut At<'_>, base: &Path, d: &DirectorySourceFile) -> DirectorySource {
    if d.path.value.trim().is_empty() {
        at.err(
            &d.path,
            "path is empty: expected a folder such as in/gp-extracts",
        );
    }
    let poll = match &d.poll {
        Some(p) if p.value.0.is_zero() => {
            at.err(
                p,
                "poll must be longer than zero: expected a duration such as 1s",
            );
            Duration::from_secs(1)
        }
        Some(p) => p.value.0,
        None => Duration::from_secs(1),
    };
    let max_file = crate::validate::size(
        at,
        d.max_file.as_ref(),
        64 << 20,
        "max_file",
        1024..=1 << 30,
    );
    let path = base.join(&d.path.value);
    DirectorySource {
        done: path.join("done"),
        failed: path.join("failed"),
        path,
        poll,
        max_file,
    }
}
