//! Leases: which node delivers which partition of a lane, for how long, and the fencing token
//! that makes a stale holder harmless.
//!
//! A partition row holds its owner, a token and `expires_at` in the *database's* clock, so
//! nodes' clocks never decide who owns what. Taking a partition (free, or expired) increments
//! its token; renewing needs the same owner and token, so a node whose partition was taken
//! learns it at its next renew. Every outcome a holder records carries its token (`WHERE
//! token = $t`): once another node has taken over, the old holder's writes change nothing.
//!
//! A holder also stops by itself: a lease's [`Fence`] lapses once its own monotonic clock,
//! counted from when the last successful take or renew was *sent*, passes the TTL less a
//! quarter. The database's `expires_at` was set after that moment, so a node cut off from
//! PostgreSQL stops sending before anyone else can take its partitions. Every pass read under
//! the lease carries the same fence, so the worker stops a pass in the middle too.

use std::time::{Duration, Instant};

use tokio_postgres::Client;
use wyvern_store::Fence;

use crate::PgStoreError;

/// One partition of one lane, held by this node until its fence lapses.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    pub lane: i32,
    pub partition: i16,
    pub token: i64,
    /// Shared with every pass read under this lease.
    pub fence: Fence,
}

impl Lease {
    /// Whether this node may still send for this partition (its own clock; see the module doc).
    pub fn is_valid(&self) -> bool {
        self.fence.holds()
    }
}

/// This node's side of the leases.
#[derive(Debug, Clone)]
pub struct Leases {
    node: String,
    ttl: Duration,
}

impl Leases {
    pub fn new(node: impl Into<String>, ttl: Duration) -> Leases {
        Leases {
            node: node.into(),
            ttl,
        }
    }

    /// How long a lease stays valid locally after the request that took or renewed it was
    /// sent: the TTL less a quarter, for clocks that run at slightly different rates.
    fn local_validity(&self) -> Duration {
        self.ttl - self.ttl / 4
    }

    fn ttl_ms(&self) -> i64 {
        i64::try_from(self.ttl.as_millis()).unwrap_or(i64::MAX)
    }

    /// Takes up to `want` partitions of `lane` that are free or expired, or that the database
    /// says are this node's but are not in `holding` (a lease it gave up on after a failed
    /// renewal): each under a new token. Skips any another node is taking at this moment.
    pub async fn take(
        &self,
        client: &Client,
        lane: i32,
        want: i64,
        holding: &[i16],
    ) -> Result<Vec<Lease>, PgStoreError> {
        let sent = Instant::now();
        let rows = client
            .query(
                "UPDATE partitions SET owner = $1, token = token + 1,
                     expires_at = now() + make_interval(secs => $2::int8 / 1000.0)
                 WHERE (lane, partition) IN (
                     SELECT lane, partition FROM partitions
                     WHERE lane = $3 AND (owner IS NULL OR expires_at < now() OR owner = $1)
                       AND NOT (partition = ANY($5))
                     ORDER BY partition LIMIT $4 FOR UPDATE SKIP LOCKED)
                 RETURNING partition, token",
                &[&self.node, &self.ttl_ms(), &lane, &want, &holding],
            )
            .await?;
        let valid_until = sent + self.local_validity();
        let mut leases: Vec<Lease> = rows
            .iter()
            .map(|r| Lease {
                lane,
                partition: r.get(0),
                token: r.get(1),
                fence: Fence::until(valid_until),
            })
            .collect();
        leases.sort_by_key(|l| l.partition);
        Ok(leases)
    }

    /// Extends a lease. `Ok(false)`: another node took it (or it was released); stop sending
    /// for it.
    pub async fn renew(&self, client: &Client, lease: &mut Lease) -> Result<bool, PgStoreError> {
        let sent = Instant::now();
        let renewed = client
            .execute(
                "UPDATE partitions SET expires_at = now() + make_interval(secs => $1::int8 / 1000.0)
                 WHERE lane = $2 AND partition = $3 AND owner = $4 AND token = $5",
                &[
                    &self.ttl_ms(),
                    &lease.lane,
                    &lease.partition,
                    &self.node,
                    &lease.token,
                ],
            )
            .await?;
        if renewed == 1 {
            lease.fence.set(sent + self.local_validity());
        } else {
            // Lost: the passes in flight under it stop too.
            lease.fence.set(sent);
        }
        Ok(renewed == 1)
    }

    /// Gives a partition up (a clean shutdown), so another node need not wait for it to expire.
    pub async fn release(&self, client: &Client, lease: Lease) -> Result<(), PgStoreError> {
        client
            .execute(
                "UPDATE partitions SET owner = NULL, expires_at = '-infinity'
                 WHERE lane = $1 AND partition = $2 AND token = $3",
                &[&lease.lane, &lease.partition, &lease.token],
            )
            .await?;
        Ok(())
    }
}

/// Moves a partition's cursor to `(xid, seq)` (everything before it settled) — only while
/// `lease` is still the current one. `Ok(false)`: fenced off (another node holds the partition
/// now); nothing was written.
pub async fn advance(
    client: &Client,
    lease: &Lease,
    xid: u64,
    seq: i64,
) -> Result<bool, PgStoreError> {
    let n = client
        .execute(
            "UPDATE partitions SET done_xid = $1::text::xid8, done_seq = $2
             WHERE lane = $3 AND partition = $4 AND token = $5",
            &[
                &xid.to_string(),
                &seq,
                &lease.lane,
                &lease.partition,
                &lease.token,
            ],
        )
        .await?;
    Ok(n == 1)
}
