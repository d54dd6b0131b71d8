//! The embedded durable store: one folder, one SQLite database in WAL mode.
//!
//! The inbox is where the delivery contract starts: an ACK goes back only after its message's
//! row is committed (and, with `durability: fsync`, fsync'd). A single writer thread takes
//! every pending write from a queue and commits them in one transaction, so one fsync serves
//! every connection that was waiting — group commit. Readers (the CLI, the console) open their
//! own connections and never block the writer, even from another process.
//!
//! Why SQLite and not a hand-written log: see ARCHITECTURE.md ("The store").

mod checkpoint;
mod error;
mod flusher;
mod inbox;
mod reader;
mod schema;
mod writer;

pub use error::StoreError;
pub use inbox::{InboxRecord, InboxStatus};
pub use reader::{InboxQuery, InboxReader, InboxRow, StatusCount};
pub use writer::{CommitStats, Durability, PendingCommit, Store, StoreOptions};

/// The database file inside a store folder.
pub const DB_FILE: &str = "wyvern.db";
/// The lock file a running engine holds so two engines never share one store.
pub const LOCK_FILE: &str = "engine.lock";
