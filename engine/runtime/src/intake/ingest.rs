//! Where a received message is committed: the embedded store (the default), or a store several
//! nodes share (`store.shared`, opened by the binary behind `wyvern_store::SharedStore`). The
//! intake sees one `submit` either way; only the embedded store can also be read back locally
//! (a resend's original ACK).

use std::path::Path;
use std::sync::Arc;

use wyvern_store::{InboxRecord, PendingCommit, SharedStore, Store, StoreError};

#[derive(Debug, Clone)]
pub enum Ingest {
    Embedded(Store),
    Shared(Arc<dyn SharedStore>),
}

impl Ingest {
    /// Queues a record for the next group commit; waits only for the store's byte budget.
    pub async fn submit(&self, record: InboxRecord) -> Result<PendingCommit, StoreError> {
        match self {
            Ingest::Embedded(store) => store.submit(record).await,
            Ingest::Shared(shared) => shared.submit(record).await,
        }
    }

    /// The embedded store's folder, where committed records can be read back.
    pub fn local_dir(&self) -> Option<&Path> {
        match self {
            Ingest::Embedded(store) => Some(store.dir()),
            Ingest::Shared(_) => None,
        }
    }
}

impl From<Store> for Ingest {
    fn from(store: Store) -> Ingest {
        Ingest::Embedded(store)
    }
}
