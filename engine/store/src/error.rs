//! Store failures, classified: a full disk or an I/O error means the message was *not*
//! committed, so the sender gets AE and resends; nothing half-written is acknowledged.

use std::path::PathBuf;

use wyvern_core::ErrorClass;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("cannot create the store folder {path}: {source}")]
    CreateDir {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("the store {path} is in use by another running engine (lock file {lock} is held)")]
    Locked { path: PathBuf, lock: PathBuf },
    #[error("cannot open the store {path}: {source}")]
    Open {
        path: PathBuf,
        source: rusqlite::Error,
    },
    #[error("the store {path} does not exist (has the engine run with this config yet?)")]
    Missing { path: PathBuf },
    #[error(
        "the store was written by a newer Wyvern (schema {found}, this build knows up to {known})"
    )]
    SchemaTooNew { found: i64, known: i64 },
    #[error("journal {path}: {source}")]
    Journal {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("store write failed: {0}")]
    Write(rusqlite::Error),
    #[error("store commit failed: {0}")]
    Commit(String),
    #[error("store query failed: {0}")]
    Query(rusqlite::Error),
    #[error("the store is closed (the engine is shutting down)")]
    Closed,
    /// A failure of a store shared by several nodes (PostgreSQL): the database away, or this
    /// node's lease on a lane taken over by another.
    #[error("shared store: {0}")]
    Shared(#[source] Box<dyn std::error::Error + Send + Sync>),
    #[error(
        "the journal {journal} holds damage a crash does not explain, so the store will not open (nothing was changed):\n{report}\
         See every segment with `wyvern store check`; `wyvern store repair` replays every intact record and moves \
         the damaged segments to quarantine/ (kept, not deleted).",
        journal = report.journal.display()
    )]
    Damaged { report: crate::JournalReport },
}

impl StoreError {
    /// An I/O error from SQLite (not a full disk): one of its writes or fsyncs failed, so what
    /// it wrote before may not be on disk (see checkpoint.rs).
    pub(crate) fn is_io_failure(&self) -> bool {
        match self {
            StoreError::Write(e) | StoreError::Query(e) => {
                e.sqlite_error_code() == Some(rusqlite::ErrorCode::SystemIoFailure)
            }
            _ => false,
        }
    }

    /// Every store failure on the receive path is an `Error`: the message was not committed,
    /// the sender is told AE and may resend.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Write(_)
            | StoreError::Commit(_)
            | StoreError::Closed
            | StoreError::Shared(_)
            | StoreError::Query(_)
            | StoreError::Journal { .. } => ErrorClass::Error,
            _ => ErrorClass::Permanent,
        }
    }
}
