//! Where the audit log lives: the seam the API, the engine and the CLI append to and read
//! from. The embedded store keeps it in its folder ([`EmbeddedAudit`], `audit.rs`); a cluster
//! keeps one for all its nodes on the shared store (`wyvern-store-pg`), so who read which
//! patient through any node is in one chain.

use std::path::PathBuf;

use crate::audit::{self, AuditRow};
use crate::{AuditBreak, AuditEntry, AuditHead, AuditLog, ChainCheck, StoreError, StoreFuture};

/// An append-only, hash-chained audit log.
pub trait AuditTrail: Send + Sync + std::fmt::Debug {
    /// Appends `entry` after the newest record (durably); its sequence number.
    fn append(&self, entry: AuditEntry) -> StoreFuture<'_, i64>;
    /// Appends `entries` in order (durably); their sequence numbers. A store that can makes
    /// them one transaction, so many callers' records cost one sync.
    fn append_all(&self, entries: Vec<AuditEntry>) -> StoreFuture<'_, Vec<i64>> {
        Box::pin(async move {
            let mut seqs = Vec::with_capacity(entries.len());
            for e in entries {
                seqs.push(self.append(e).await?);
            }
            Ok(seqs)
        })
    }
    /// Up to `limit` records after `after_seq`, oldest first.
    fn page(&self, after_seq: i64, limit: usize) -> StoreFuture<'_, Vec<AuditRow>>;
}

/// Records read at a time by [`walk`].
const PAGE: usize = 1000;

/// Calls `f` on every record, oldest first, a page at a time.
pub async fn walk(
    trail: &dyn AuditTrail,
    mut f: impl FnMut(&AuditRow) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let mut after = 0;
    loop {
        let rows = trail.page(after, PAGE).await?;
        for row in &rows {
            f(row)?;
        }
        match rows.last() {
            Some(last) if rows.len() == PAGE => after = last.record.seq,
            _ => return Ok(()),
        }
    }
}

/// Walks the chain from the first record: the first break, or the head.
pub async fn verify_trail(
    trail: &dyn AuditTrail,
) -> Result<Result<AuditHead, AuditBreak>, StoreError> {
    let mut check = ChainCheck::default();
    let mut broken = None;
    walk(trail, |row| {
        if broken.is_none() {
            broken = check.next(row);
        }
        Ok(())
    })
    .await?;
    Ok(broken.map_or_else(|| Ok(check.head().clone()), Err))
}

/// The audit log in the embedded store's folder.
#[derive(Debug, Clone)]
pub struct EmbeddedAudit {
    pub dir: PathBuf,
}

impl AuditTrail for EmbeddedAudit {
    fn append(&self, entry: AuditEntry) -> StoreFuture<'_, i64> {
        let dir = self.dir.clone();
        crate::shared::blocking(move || AuditLog::open(&dir)?.append(&entry))
    }

    fn append_all(&self, entries: Vec<AuditEntry>) -> StoreFuture<'_, Vec<i64>> {
        let dir = self.dir.clone();
        crate::shared::blocking(move || AuditLog::open(&dir)?.append_all(&entries))
    }

    fn page(&self, after_seq: i64, limit: usize) -> StoreFuture<'_, Vec<AuditRow>> {
        let dir = self.dir.clone();
        crate::shared::blocking(move || audit::page(&dir, after_seq, limit))
    }
}
