//! The store on a shared PostgreSQL, so several nodes can be active at once. The design is in
//! ARCHITECTURE.md ("The store on PostgreSQL"); it sits behind the seams the runtime already
//! uses (`SharedStore`, `DeliveryLog`, `Operations`), and only the binary links it
//! (tokio-postgres stays out of the runtime and its tests).
//!
//! Connecting (`connect`, the password kept out of every message); the schema (`schema.rs`:
//! migrations once however many nodes start together, a newer schema refused); the group
//! commit (`commit.rs`); leases with fencing tokens (`lease.rs`); a partition's log read below
//! the snapshot's `xmin` (`log.rs`); the delivery workers' `DeliveryLog` (`delivery.rs`); the
//! engine's handle with its heartbeat (`shared.rs`); the operator's side (`operations.rs`),
//! the cluster's audit log (`audit.rs`) and API tokens (`tokens.rs`),
//! `wyvern cluster status` (`status.rs`), retention (`retention.rs`) and `wyvern store
//! migrate` (`moving.rs`).

mod audit;
/// A delivery `d` its partition `p` has not settled: a partition's cursor `(done_xid,
/// done_seq)` is the first position *not* settled (`delivery.rs` reads from it, inclusive,
/// and settles it to just past the last row it recorded). The one place this is written.
macro_rules! unsettled {
    () => {
        "(d.xid, d.seq) >= (p.done_xid, p.done_seq)"
    };
}
pub(crate) use unsettled;

pub mod commit;
pub mod delivery;
mod error;
mod lanes;
pub mod lease;
pub mod log;
pub mod moving;
mod operations;
mod retention;
pub mod schema;
mod shared;
pub mod status;
mod tokens;

pub use audit::PgAudit;
pub use commit::{CommitOptions, PARTITIONS, PgCommitter};
pub use delivery::PgDeliveryLog;
pub use error::PgStoreError;
pub use lease::{Lease, Leases, advance};
pub use log::{LogRow, read_log};
pub use operations::PgOperations;
pub use retention::prune;
pub use schema::{Migrated, SCHEMA_VERSION, migrate};
pub use shared::{HEARTBEAT, PgShared};
pub use status::{cluster_status, lane_depth};
pub use tokens::PgTokens;
pub use wyvern_store::{ClusterStatus, LaneStatus, NodeStatus};

pub use tokio_postgres::Client;
use tokio_postgres::NoTls;

/// How long the database lets one of our sessions sit in an open transaction waiting for its
/// next statement before it ends the session. Our transactions send their statements back to
/// back, so only a node that vanished mid-transaction (killed, or cut off by the network with
/// the connection still open) ever reaches it — and that transaction holds its partition's row
/// lock (no other node could take the partition) and the cluster's `xmin` (nobody's later
/// deliveries would be read) until it ends. So the lock outlives the node's silence by at most
/// this long: another node's takeover is delayed by at most a second past the lease's expiry
/// (never unsafe — the lease, not the lock, decides who sends).
const IDLE_IN_TRANSACTION: &str = "1s";

/// Opens a connection (its I/O runs as a task of its own until the client is dropped).
pub async fn connect(url: &str) -> Result<Client, PgStoreError> {
    let (client, connection) = tokio_postgres::connect(url, NoTls)
        .await
        .map_err(|source| PgStoreError::Connect {
            at: redact(url),
            source,
        })?;
    tokio::spawn(async move {
        if let Err(e) = connection.await {
            tracing::warn!(error = %e, "PostgreSQL connection ended");
        }
    });
    client
        .batch_execute(&format!(
            "SET idle_in_transaction_session_timeout = '{IDLE_IN_TRANSACTION}'"
        ))
        .await?;
    Ok(client)
}

/// `client`, connected again first if it never was or its connection ended: the one way a
/// long-lived task keeps its session (a worker's delivery log, the heartbeat, the operator's
/// reads).
pub(crate) async fn live_client<'a>(
    client: &'a mut Option<Client>,
    url: &str,
) -> Result<&'a Client, PgStoreError> {
    if client.as_ref().is_none_or(Client::is_closed) {
        *client = Some(connect(url).await?);
    }
    Ok(client.as_ref().expect("just connected"))
}

/// One connection an operator's handle keeps (`PgOperations`, `PgAudit`, `PgTokens`): made on
/// first use, again after it breaks, one call at a time.
#[derive(Debug)]
pub(crate) struct Session {
    url: String,
    client: tokio::sync::Mutex<Option<Client>>,
}

impl Session {
    pub(crate) fn new(url: impl Into<String>) -> Session {
        Session {
            url: url.into(),
            client: tokio::sync::Mutex::new(None),
        }
    }

    /// Runs `f` on the live connection; a failure is the store's.
    pub(crate) async fn run<T>(
        &self,
        f: impl AsyncFnOnce(&Client) -> Result<T, PgStoreError>,
    ) -> Result<T, wyvern_store::StoreError> {
        self.run_mut(async move |c| f(c).await).await
    }

    /// As [`Session::run`], for a call that opens a transaction.
    pub(crate) async fn run_mut<T>(
        &self,
        f: impl AsyncFnOnce(&mut Client) -> Result<T, PgStoreError>,
    ) -> Result<T, wyvern_store::StoreError> {
        let mut guard = self.client.lock().await;
        live_client(&mut guard, &self.url)
            .await
            .map_err(store_error)?;
        let client = guard.as_mut().expect("connected just above");
        f(client).await.map_err(store_error)
    }
}

/// A shared store's failure as the engine's seams carry it.
pub(crate) fn store_error(e: PgStoreError) -> wyvern_store::StoreError {
    wyvern_store::StoreError::Shared(Box::new(e))
}

/// A URL fit for a log line: any password replaced by `***`.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        // The key=value form: `host=db user=w password=x`.
        return url
            .split(' ')
            .map(|kv| match kv.split_once('=') {
                Some(("password", _)) => "password=***",
                _ => kv,
            })
            .collect::<Vec<_>>()
            .join(" ");
    };
    // The user information ends at the last '@' (a password may hold '/' or ':').
    let Some(at) = rest.rfind('@') else {
        return url.to_string();
    };
    let (userinfo, host_and_path) = (&rest[..at], &rest[at + 1..]);
    match userinfo.split_once(':') {
        Some((user, _password)) => format!("{scheme}://{user}:***@{host_and_path}"),
        None => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_password_never_reaches_a_message() {
        for (url, shown) in [
            (
                "postgresql://wyvern:s3cret@db.example:5432/wyvern",
                "postgresql://wyvern:***@db.example:5432/wyvern",
            ),
            (
                "postgresql://wyvern@127.0.0.1:5432/x",
                "postgresql://wyvern@127.0.0.1:5432/x",
            ),
            ("host=db user=w", "host=db user=w"),
            (
                "host=db password=s3cret user=w",
                "host=db password=*** user=w",
            ),
            ("postgresql://w:a/b@c:d@db/x", "postgresql://w:***@db/x"),
        ] {
            assert_eq!(super::redact(url), shown);
        }
    }
}
