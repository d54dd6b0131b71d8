//! The embedded durable store: one folder holding a journal and a SQLite index.
//!
//! The inbox is where the delivery contract starts: an ACK goes back only after its message is
//! in the journal (and, with `durability: fsync`, fdatasync'd). One journal thread takes every
//! pending write from a queue and appends them with one write and one fdatasync, so one disk
//! flush serves every connection that was waiting — group commit. Behind it, off the ACK path,
//! the index thread inserts the records into SQLite (WAL mode) where readers (the CLI, the
//! console) search them from their own connections, even from another process, without ever
//! blocking the writers. At start, recovery replays whatever the journal holds into the index.
//!
//! Why a journal in front of SQLite, with the numbers: see ARCHITECTURE.md ("The store").

mod audit;
mod audit_trail;
mod checkpoint;
mod cluster;
mod codec;
mod error;
mod frame;
mod inbox;
mod indexer;
mod journal;
mod moving;
mod nhs_index;
mod operations;
mod outbox;
mod patient_index;
mod reader;
mod recovery;
mod retention;
mod schema;
mod segment;
mod shared;
mod tokens;
mod traffic;
mod writer;

pub use audit::{
    AuditAction, AuditBreak, AuditEntry, AuditEntryText, AuditHead, AuditLog, AuditRecord,
    AuditRow, ChainCheck, GENESIS as AUDIT_GENESIS, chain as audit_hash, read_audit,
    verify as verify_audit,
};
pub use audit_trail::{AuditTrail, EmbeddedAudit, verify_trail, walk as walk_audit};
pub use cluster::{ClusterStatus, LaneStatus, NodeStatus};
pub use error::{CommitError, StoreError};
pub use inbox::{Delivery, InboxRecord, InboxStatus};
pub use moving::{EmbeddedMove, HeldKey, Imported, MoveBatch, MovingDelivery, MovingMessage};
pub use operations::{EmbeddedOperations, Operations, Replay, Selection};
pub use outbox::{
    Ahead, DeliveryLog, Fence, LaneId, Outbox, OutboxItem, OutboxState, Pass, PassBudget, Position,
    Settle, Update,
};
pub use reader::{InboxQuery, InboxReader, InboxRow, RecentKey, StatusCount};
pub use recovery::{
    JournalReport, OnDamage, QUARANTINE_DIR, Recovered, SegmentReport, check, scan_segment,
};
pub use retention::{MIN_RETENTION, Pruned};
pub use segment::{Problem, Torn, Unsynced};
pub use shared::{SharedStore, StoreFuture};
pub use tokens::{EmbeddedTokens, TokenInfo, TokenRole, TokenStore, Tokens, token_hash};
pub use traffic::{Queued, StoredTraffic, TrafficQuery};
pub use writer::{CommitStats, Durability, PendingCommit, Store, StoreOptions, Stored};

/// The database file inside a store folder.
pub const DB_FILE: &str = "wyvern.db";
/// The lock file a running engine holds so two engines never share one store.
pub const LOCK_FILE: &str = "engine.lock";
