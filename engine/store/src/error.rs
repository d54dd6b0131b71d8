//! Store failures, classified: a full disk or an I/O error means the message was *not*
//! committed, so the sender gets AE and resends; nothing half-written is acknowledged.

use std::path::PathBuf;
use std::sync::Arc;

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
    Commit(#[source] CommitError),
    #[error("store query failed: {0}")]
    Query(rusqlite::Error),
    #[error("the store is closed (the engine is shutting down)")]
    Closed,
    /// A blocking task of the store's panicked or was cancelled.
    #[error("a store task failed: {0}")]
    Task(#[source] tokio::task::JoinError),
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

/// Why a record was not committed. One failed group commit answers every record in it, so
/// this is cheap to clone.
#[derive(Debug, Clone, thiserror::Error)]
pub enum CommitError {
    /// Larger than a journal frame holds: the same bytes will never fit.
    #[error("the record is {bytes} bytes; a journal frame holds at most {max}", max = crate::frame::MAX_PAYLOAD)]
    TooLarge { bytes: usize },
    /// The journal's write or fdatasync failed; the journal has moved to a new segment.
    #[error("the journal write failed: {0}")]
    Journal(#[source] Arc<std::io::Error>),
    /// The index has not written while the byte budget for records waiting on it is spent.
    #[error("the store's index cannot write (is the disk full?); send again later")]
    IndexCannotWrite,
    /// The journal was not emptied into the index in time (see `Store::seal_journal`).
    #[error("journal segments before {segment} were not emptied into the index within {waited:?}")]
    NotEmptied {
        segment: u64,
        waited: std::time::Duration,
    },
    /// A store shared by several nodes could not commit the group this record was in.
    #[error("{0}")]
    Shared(#[source] Arc<dyn std::error::Error + Send + Sync>),
    /// The writer stopped before it answered.
    #[error("the store is closed (the engine is shutting down)")]
    Closed,
}

impl From<std::io::Error> for CommitError {
    fn from(e: std::io::Error) -> CommitError {
        CommitError::Journal(Arc::new(e))
    }
}

impl From<crate::frame::TooLarge> for CommitError {
    fn from(e: crate::frame::TooLarge) -> CommitError {
        CommitError::TooLarge { bytes: e.bytes }
    }
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

    /// A store failure on the receive path is an `Error` (the message was not committed, the
    /// sender is told AE and may resend), unless resending the same bytes can never work.
    pub fn class(&self) -> ErrorClass {
        match self {
            StoreError::Commit(CommitError::TooLarge { .. }) => ErrorClass::Reject,
            StoreError::Write(_)
            | StoreError::Commit(_)
            | StoreError::Task(_)
            | StoreError::Closed
            | StoreError::Shared(_)
            | StoreError::Query(_)
            | StoreError::Journal { .. } => ErrorClass::Error,
            _ => ErrorClass::Permanent,
        }
    }
}
