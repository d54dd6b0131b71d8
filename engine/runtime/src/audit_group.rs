//! Audit records from many requests at once, appended together. Each caller still waits until
//! its own record is durable — the bridge answers nothing before its query is audited — but
//! the callers waiting at one moment share one transaction and one sync instead of taking
//! turns (measured: `wyvern bench --bridge`, README). The same idea as the journal's group
//! commit.

use std::sync::Arc;

use tokio::sync::{mpsc, oneshot};
use wyvern_store::{AuditEntry, AuditTrail};

/// Records waiting to be written, at most (past it, callers wait to queue theirs).
const QUEUE: usize = 1024;
/// Records written in one transaction, at most.
const GROUP: usize = 256;

type Waiting = (AuditEntry, oneshot::Sender<Result<i64, String>>);

/// A handle on the writer task; cheap to clone.
#[derive(Debug, Clone)]
pub struct GroupAudit {
    queue: mpsc::Sender<Waiting>,
}

impl GroupAudit {
    /// Starts the writer on the current runtime; it ends when every handle is dropped.
    pub fn start(trail: Arc<dyn AuditTrail>) -> GroupAudit {
        let (queue, waiting) = mpsc::channel(QUEUE);
        tokio::spawn(write(trail, waiting));
        GroupAudit { queue }
    }

    /// Appends `entry` with whatever else is waiting; its sequence number once it is durable,
    /// or why it could not be written.
    pub async fn append(&self, entry: AuditEntry) -> Result<i64, String> {
        let stopped = || "the audit writer has stopped".to_string();
        let (done, written) = oneshot::channel();
        self.queue
            .send((entry, done))
            .await
            .map_err(|_| stopped())?;
        written.await.map_err(|_| stopped())?
    }
}

async fn write(trail: Arc<dyn AuditTrail>, mut waiting: mpsc::Receiver<Waiting>) {
    while let Some(first) = waiting.recv().await {
        let mut group = vec![first];
        while group.len() < GROUP
            && let Ok(next) = waiting.try_recv()
        {
            group.push(next);
        }
        let (entries, callers): (Vec<AuditEntry>, Vec<_>) = group.into_iter().unzip();
        match trail.append_all(entries).await {
            Ok(seqs) if seqs.len() == callers.len() => {
                for (caller, seq) in callers.into_iter().zip(seqs) {
                    let _ = caller.send(Ok(seq));
                }
            }
            Ok(_) => {
                for caller in callers {
                    let _ = caller.send(Err(
                        "the audit log answered for a different number of records".into(),
                    ));
                }
            }
            Err(e) => {
                let why = e.to_string();
                for caller in callers {
                    let _ = caller.send(Err(why.clone()));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use wyvern_store::{AuditAction, EmbeddedAudit};

    fn entry(n: i64) -> AuditEntry {
        AuditEntry {
            at_ms: n,
            actor: format!("token:caller-{n}"),
            action: AuditAction::Access,
            message_id: None,
            nhs_number: Some("9990000018".into()),
            from: None,
            detail: None,
        }
    }

    #[tokio::test]
    async fn many_callers_at_once_each_get_their_own_durable_record_in_one_chain() {
        let dir = tempfile::tempdir().expect("dir");
        let store = wyvern_store::Store::open(wyvern_store::StoreOptions::new(dir.path()))
            .expect("a store");
        let trail: Arc<dyn AuditTrail> = Arc::new(EmbeddedAudit {
            dir: dir.path().to_path_buf(),
        });
        let audit = GroupAudit::start(trail.clone());
        let calls: Vec<_> = (0..200)
            .map(|n| {
                let audit = audit.clone();
                tokio::spawn(async move { audit.append(entry(n)).await })
            })
            .collect();
        let mut seqs = Vec::new();
        for c in calls {
            seqs.push(c.await.expect("task").expect("written"));
        }
        seqs.sort_unstable();
        assert_eq!(seqs, (1..=200).collect::<Vec<i64>>());
        let head = wyvern_store::verify_trail(trail.as_ref())
            .await
            .expect("read")
            .expect("the chain is whole");
        assert_eq!(head.records, 200);
        store.close().await;
    }
}
