//! The audit log: who looked at or acted on what, when and from where — append-only and
//! hash-chained in the store, so an edit, a deletion or a reordering of any record is found
//! by [`verify`].
//!
//! Each record's hash is SHA-256 over the previous record's hash and this record's fields
//! (length-prefixed, in a fixed order); the first record chains from 32 zero bytes. A record
//! is appended in one IMMEDIATE transaction (read the last hash, insert) with
//! `synchronous=FULL`, so concurrent writers (the engine, a CLI in another process) chain in
//! order and an appended record survives a power cut. What a chain cannot show alone is the
//! loss of its newest records: [`verify`] returns the head (count and hash), which an operator
//! or a log shipper keeps elsewhere to compare with later.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, TransactionBehavior, params};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuditAction {
    /// A message (its body) was shown.
    View,
    /// Messages were searched or listed (metadata).
    Search,
    /// Messages were written out of the store.
    Export,
    /// A dead letter was put back in its outbox.
    Retry,
    /// A dead letter was purged.
    Purge,
    /// A time range was delivered again.
    Replay,
    /// A connection was refused (outside allow_from, over a cap).
    Refused,
    /// An operator API token was made or revoked.
    Token,
    /// An API request was refused (no token, or a role that does not allow it).
    Denied,
    /// A route's intake was stopped or started, or its delivery paused or resumed.
    Control,
    /// The engine started with a config, or stopped.
    Engine,
    /// A patient's records were read through the bridge (who, which patient, which members).
    Access,
}

impl AuditAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AuditAction::View => "view",
            AuditAction::Search => "search",
            AuditAction::Export => "export",
            AuditAction::Retry => "retry",
            AuditAction::Purge => "purge",
            AuditAction::Replay => "replay",
            AuditAction::Refused => "refused",
            AuditAction::Token => "token",
            AuditAction::Denied => "denied",
            AuditAction::Control => "control",
            AuditAction::Engine => "engine",
            AuditAction::Access => "access",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        [
            AuditAction::View,
            AuditAction::Search,
            AuditAction::Export,
            AuditAction::Retry,
            AuditAction::Purge,
            AuditAction::Replay,
            AuditAction::Refused,
            AuditAction::Token,
            AuditAction::Denied,
            AuditAction::Control,
            AuditAction::Engine,
            AuditAction::Access,
        ]
        .into_iter()
        .find(|a| a.as_str() == s)
    }
}

/// One audit record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    pub at_ms: i64,
    /// Who: `local:NAME` (a person at the CLI), `token:NAME`, `cert:SUBJECT`.
    pub actor: String,
    pub action: AuditAction,
    /// The message acted on, if one.
    pub message_id: Option<String>,
    /// The patient whose message it was, if known.
    pub nhs_number: Option<String>,
    /// Where from: a peer address, or `cli`.
    pub from: Option<String>,
    /// What else: the query of a search, the range of a replay.
    pub detail: Option<String>,
}

/// A stored record with its place in the chain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRecord {
    pub seq: i64,
    pub entry: AuditEntry,
    pub hash: [u8; 32],
}

/// Where a chain breaks.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuditBreak {
    #[error("audit record {seq} does not match its hash: it was edited")]
    Edited { seq: i64 },
    #[error(
        "audit record {seq} does not follow record {before}: records between them were deleted, or the order changed"
    )]
    Unlinked { seq: i64, before: i64 },
    #[error("audit record {seq} cannot be read: {reason}")]
    Unreadable { seq: i64, reason: String },
}

/// The chain as verified: how many records, and the newest one's hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditHead {
    pub records: u64,
    pub last_seq: i64,
    pub hash: [u8; 32],
}

/// What the first record follows.
pub const GENESIS: [u8; 32] = [0; 32];

/// A record's hash: SHA-256 over the hash it follows and its fields (the chain's one rule,
/// whichever store keeps it).
pub fn chain(prev: &[u8; 32], e: &AuditEntry) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update(prev);
    h.update(e.at_ms.to_le_bytes());
    for field in [
        Some(e.actor.as_str()),
        Some(e.action.as_str()),
        e.message_id.as_deref(),
        e.nhs_number.as_deref(),
        e.from.as_deref(),
        e.detail.as_deref(),
    ] {
        match field {
            Some(s) => {
                h.update([1]);
                h.update((s.len() as u64).to_le_bytes());
                h.update(s.as_bytes());
            }
            None => h.update([0]),
        }
    }
    h.finalize().into()
}

/// A connection for appending to the audit log of the store in `dir`.
#[derive(Debug)]
pub struct AuditLog {
    conn: Connection,
}

impl AuditLog {
    pub fn open(dir: &Path) -> Result<AuditLog, StoreError> {
        let conn = crate::schema::connect(dir, OpenFlags::default(), Duration::from_secs(10))?;
        // Brings an older store up to the audit table (the engine does the same at start).
        crate::schema::prepare_writer(&conn)?;
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(StoreError::Write)?;
        Ok(AuditLog { conn })
    }

    /// Appends `entry` after the newest record; returns its sequence number.
    pub fn append(&mut self, entry: &AuditEntry) -> Result<i64, StoreError> {
        let seqs = self.append_all(std::slice::from_ref(entry))?;
        Ok(seqs.first().copied().unwrap_or_default())
    }

    /// Appends `entries` in order, each chained to the one before, in one transaction (one
    /// sync for the lot); their sequence numbers.
    pub fn append_all(&mut self, entries: &[AuditEntry]) -> Result<Vec<i64>, StoreError> {
        let tx = self
            .conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(StoreError::Write)?;
        let mut prev: [u8; 32] = tx
            .query_row(
                "SELECT hash FROM audit ORDER BY seq DESC LIMIT 1",
                [],
                |r| r.get::<_, Vec<u8>>(0),
            )
            .optional()
            .map_err(StoreError::Query)?
            .and_then(|h| h.try_into().ok())
            .unwrap_or(GENESIS);
        let mut seqs = Vec::with_capacity(entries.len());
        for entry in entries {
            let hash = chain(&prev, entry);
            tx.execute(
                "INSERT INTO audit (at, actor, action, message_id, nhs_number, source, detail, prev_hash, hash) \
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)",
                params![
                    entry.at_ms,
                    entry.actor,
                    entry.action.as_str(),
                    entry.message_id,
                    entry.nhs_number,
                    entry.from,
                    entry.detail,
                    &prev[..],
                    &hash[..],
                ],
            )
            .map_err(StoreError::Write)?;
            seqs.push(tx.last_insert_rowid());
            prev = hash;
        }
        tx.commit().map_err(StoreError::Write)?;
        Ok(seqs)
    }
}

/// Every record, oldest first, with `f` called on each (for export).
pub fn read_audit(dir: &Path, mut f: impl FnMut(&AuditRecord)) -> Result<(), StoreError> {
    pages(dir, |row| {
        f(&row.record);
        None::<()>
    })?;
    Ok(())
}

/// Calls `f` on every record, oldest first, a page at a time, until it returns something.
fn pages<T>(
    dir: &Path,
    mut f: impl FnMut(&AuditRow) -> Option<T>,
) -> Result<Option<T>, StoreError> {
    let mut after = 0;
    loop {
        let rows = page(dir, after, PAGE)?;
        if let Some(done) = rows.iter().find_map(&mut f) {
            return Ok(Some(done));
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE => after = last.record.seq,
            _ => return Ok(None),
        }
    }
}

/// Records read at a time (memory stays bounded however long the log).
const PAGE: usize = 1000;

/// Up to `limit` records after `after_seq`, oldest first.
pub(crate) fn page(dir: &Path, after_seq: i64, limit: usize) -> Result<Vec<AuditRow>, StoreError> {
    let conn = crate::schema::connect(
        dir,
        OpenFlags::SQLITE_OPEN_READ_ONLY,
        Duration::from_secs(5),
    )?;
    let mut stmt = conn
        .prepare(
            "SELECT seq, at, actor, action, message_id, nhs_number, source, detail, hash, prev_hash \
             FROM audit WHERE seq > ?1 ORDER BY seq LIMIT ?2",
        )
        .map_err(StoreError::Query)?;
    stmt.query_map(params![after_seq, limit as i64], |r| {
        Ok(AuditRow::new(
            r.get(0)?,
            AuditEntryText {
                at_ms: r.get(1)?,
                actor: r.get(2)?,
                action: r.get(3)?,
                message_id: r.get(4)?,
                nhs_number: r.get(5)?,
                from: r.get(6)?,
                detail: r.get(7)?,
            },
            r.get(8)?,
            r.get(9)?,
        ))
    })
    .and_then(Iterator::collect)
    .map_err(StoreError::Query)
}

/// A record's fields as stored (its action still text).
#[derive(Debug, Clone)]
pub struct AuditEntryText {
    pub at_ms: i64,
    pub actor: String,
    pub action: String,
    pub message_id: Option<String>,
    pub nhs_number: Option<String>,
    pub from: Option<String>,
    pub detail: Option<String>,
}

/// A record as stored, with the hash it names as its predecessor and what makes it
/// unreadable, if anything (an unknown action, a hash of the wrong length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    pub record: AuditRecord,
    pub prev_hash: Vec<u8>,
    pub problem: Option<String>,
}

impl AuditRow {
    pub fn new(seq: i64, e: AuditEntryText, hash: Vec<u8>, prev_hash: Vec<u8>) -> AuditRow {
        let mut problem = None;
        let action = AuditAction::parse(&e.action).unwrap_or_else(|| {
            problem = Some(format!("unknown action {:?}", e.action));
            AuditAction::View
        });
        let hash: [u8; 32] = hash.try_into().unwrap_or_else(|_| {
            problem = Some("its hash is not 32 bytes".into());
            [0; 32]
        });
        let entry = AuditEntry {
            at_ms: e.at_ms,
            actor: e.actor,
            action,
            message_id: e.message_id,
            nhs_number: e.nhs_number,
            from: e.from,
            detail: e.detail,
        };
        AuditRow {
            record: AuditRecord { seq, entry, hash },
            prev_hash,
            problem,
        }
    }
}

/// Walks a chain a record at a time, oldest first: the first break, or the head.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainCheck {
    head: AuditHead,
}

impl Default for ChainCheck {
    fn default() -> Self {
        ChainCheck {
            head: AuditHead {
                records: 0,
                last_seq: 0,
                hash: GENESIS,
            },
        }
    }
}

impl ChainCheck {
    /// Takes the next record: where the chain breaks, if it does here.
    pub fn next(&mut self, row: &AuditRow) -> Option<AuditBreak> {
        let record = &row.record;
        if let Some(reason) = &row.problem {
            return Some(AuditBreak::Unreadable {
                seq: record.seq,
                reason: reason.clone(),
            });
        }
        // Each record names the hash it follows: it must be the one before it.
        if row.prev_hash != self.head.hash {
            return Some(AuditBreak::Unlinked {
                seq: record.seq,
                before: self.head.last_seq,
            });
        }
        if chain(&self.head.hash, &record.entry) != record.hash {
            return Some(AuditBreak::Edited { seq: record.seq });
        }
        self.head = AuditHead {
            records: self.head.records + 1,
            last_seq: record.seq,
            hash: record.hash,
        };
        None
    }

    /// The chain so far.
    pub fn head(&self) -> &AuditHead {
        &self.head
    }
}

/// Walks the chain from the first record: the first break, or the head.
pub fn verify(dir: &Path) -> Result<Result<AuditHead, AuditBreak>, StoreError> {
    let mut check = ChainCheck::default();
    Ok(match pages(dir, |row| check.next(row))? {
        Some(broken) => Err(broken),
        None => Ok(check.head().clone()),
    })
}
