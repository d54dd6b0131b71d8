//! A delivery worker's view of the shared store: the same [`DeliveryLog`] the embedded store
//! gives it (a pass, then its settle), over partitions this node holds a lease on.
//!
//! A lane's deliveries are split into partitions by their key's hash, and each partition is
//! delivered by whichever node holds its lease (`lease.rs`). Every pass comes from one
//! partition, taken in turn among those this node holds, so passes read ahead never overlap
//! (two partitions share no key). Inside a partition everything is as in the embedded store:
//! the due head of each key with an exception first, then the log from the partition's cursor
//! (read below the snapshot's `xmin`, `log.rs`); a row whose key has an open exception waits
//! behind it; settling records only what did not simply succeed and moves the cursor.
//!
//! Fencing: a settle first locks its partition's row *with the token its pass was read
//! under*. If another node has taken the partition since (this one was cut off, or paused past
//! its lease), nothing is written and the settle fails: the worker drops the pass, and the new
//! holder sends those messages again from the cursor — at least once, never a cursor moved by
//! a stale holder. The database decides, not this node's clock: a pass that took long to send
//! is recorded if nobody took the partition meanwhile. A node stops reading a partition once
//! its own clock says the lease ran out ([`Lease::is_valid`]).
//!
//! Leases are renewed by a task of their own every quarter of their life, however long a
//! pass takes to send (a slow destination would otherwise lose its lease mid-pass and send
//! the same pass again for ever); each pass also takes, at most once a second, partitions
//! that are free or expired. So a node takes every free partition of a lane it delivers;
//! spreading them across nodes is not built yet. The trait is
//! blocking (the worker calls it on a blocking thread): each call runs its queries on the
//! runtime it was made on.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::runtime::Handle;
use tokio_postgres::{Client, Row};
use wyvern_core::ContentType;
use wyvern_store::{
    Ahead, DeliveryLog, LaneId, OutboxItem, OutboxState, Pass, PassBudget, Position, Settle,
    StoreError, Update,
};

use crate::log::ENDED;
use crate::{Lease, Leases, PgStoreError, connect, live_client};

/// How often a worker looks for free partitions of its lane.
const TAKE_EVERY: Duration = Duration::from_secs(1);

/// The shared store's delivery log, for one node's workers.
pub struct PgDeliveryLog {
    runtime: Handle,
    url: String,
    leases: Leases,
    /// Shared with the renewal task (`renew_every_quarter`), which ends with the log.
    state: Arc<tokio::sync::Mutex<State>>,
}

impl std::fmt::Debug for PgDeliveryLog {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgDeliveryLog")
            .field("url", &crate::redact(&self.url))
            .field("leases", &self.leases)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct State {
    client: Option<Client>,
    lanes: HashMap<LaneId, Held>,
}

/// What this node holds of one lane.
struct Held {
    route: String,
    destination: String,
    partitions: i16,
    leases: Vec<Lease>,
    /// The partition the next pass starts looking at.
    turn: usize,
    last_take: Option<Instant>,
}

impl PgDeliveryLog {
    /// Connects (so a wrong URL fails at start). `node` names this node in the leases; `ttl`
    /// is how long a lease lasts without renewal (the failover time).
    pub async fn open(
        url: impl Into<String>,
        node: impl Into<String>,
        ttl: Duration,
    ) -> Result<PgDeliveryLog, PgStoreError> {
        let url = url.into();
        let client = connect(&url).await?;
        let leases = Leases::new(node, ttl);
        let state = Arc::new(tokio::sync::Mutex::new(State {
            client: Some(client),
            lanes: HashMap::new(),
        }));
        tokio::spawn(renew_every_quarter(
            Arc::downgrade(&state),
            leases.clone(),
            url.clone(),
            ttl,
        ));
        Ok(PgDeliveryLog {
            runtime: Handle::current(),
            url,
            leases,
            state,
        })
    }

    /// Gives up every lease this node holds (a clean shutdown), so other nodes take over at
    /// once instead of after the TTL.
    pub async fn release_all(&self) -> Result<(), PgStoreError> {
        let mut state = self.state.lock().await;
        let state = &mut *state;
        let client = live_client(&mut state.client, &self.url).await?;
        for held in state.lanes.values_mut() {
            // Forgotten only once released: one that fails stays held (and expires).
            while let Some(lease) = held.leases.last().cloned() {
                self.leases.release(client, lease).await?;
                held.leases.pop();
            }
        }
        Ok(())
    }

    fn block_on<T>(
        &self,
        f: impl std::future::Future<Output = Result<T, PgStoreError>>,
    ) -> Result<T, StoreError> {
        self.runtime
            .block_on(f)
            .map_err(|e| StoreError::Shared(Box::new(e)))
    }

    /// Drops what ran out by this node's clock (renewing is the renewal task's job), and now
    /// and then takes partitions that are free or expired — its own expired ones included,
    /// under a new token.
    async fn keep_leases(
        &self,
        client: &Client,
        lane: i32,
        held: &mut Held,
    ) -> Result<(), PgStoreError> {
        held.leases.retain(Lease::is_valid);
        let due = held.last_take.is_none_or(|at| at.elapsed() >= TAKE_EVERY);
        if due && held.leases.len() < usize::from(held.partitions.unsigned_abs()) {
            held.last_take = Some(Instant::now());
            let mine: Vec<i16> = held.leases.iter().map(|l| l.partition).collect();
            let taken = self
                .leases
                .take(client, lane, i64::from(held.partitions), &mine)
                .await?;
            if !taken.is_empty() {
                tracing::info!(lane, partitions = ?taken.iter().map(|l| l.partition).collect::<Vec<_>>(), "took partitions to deliver");
            }
            held.leases.extend(taken);
            held.leases.sort_by_key(|l| l.partition);
        }
        Ok(())
    }
}

/// Renews the leases, drops those another node took and those that ran out by this node's
/// clock. On an error the leases not yet renewed are kept (the database still names this
/// node; a later renewal, or a take of its own expired partition, settles it).
async fn renew(
    leases: &Leases,
    client: &Client,
    lane: i32,
    held: &mut Vec<Lease>,
) -> Result<(), PgStoreError> {
    let mut failed = None;
    let mut kept = Vec::with_capacity(held.len());
    for mut lease in std::mem::take(held) {
        if failed.is_none() {
            match leases.renew(client, &mut lease).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        lane,
                        partition = lease.partition,
                        "another node took this partition; no longer delivering it"
                    );
                    continue;
                }
                Err(e) => failed = Some(e),
            }
        }
        if lease.is_valid() {
            kept.push(lease);
        }
    }
    *held = kept;
    failed.map_or(Ok(()), Err)
}

/// Keeps this node's leases renewed every quarter of their life, however long a pass takes
/// to send (a slow destination must not lose its lease mid-pass). Ends with the log.
async fn renew_every_quarter(
    state: std::sync::Weak<tokio::sync::Mutex<State>>,
    leases: Leases,
    url: String,
    ttl: Duration,
) {
    let mut tick = tokio::time::interval(ttl / 4);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let Some(state) = state.upgrade() else {
            return;
        };
        let mut state = state.lock().await;
        let state = &mut *state;
        let Ok(client) = live_client(&mut state.client, &url).await else {
            continue;
        };
        for (lane, held) in &mut state.lanes {
            let lane = i32::try_from(*lane).unwrap_or(i32::MAX);
            if let Err(e) = renew(&leases, client, lane, &mut held.leases).await {
                tracing::warn!(lane, error = %e, "cannot renew this node's leases; trying again");
                break;
            }
        }
    }
}

impl DeliveryLog for PgDeliveryLog {
    fn lane(&self, route: &str, destination: &str) -> Result<LaneId, StoreError> {
        self.block_on(async {
            let mut state = self.state.lock().await;
            let state = &mut *state;
            let client = live_client(&mut state.client, &self.url).await?;
            let (lane, partitions) = crate::lanes::ensure_lane(client, route, destination).await?;
            state
                .lanes
                .entry(LaneId::from(lane))
                .or_insert_with(|| Held {
                    route: route.to_owned(),
                    destination: destination.to_owned(),
                    partitions,
                    leases: Vec::new(),
                    turn: 0,
                    last_take: None,
                });
            Ok(LaneId::from(lane))
        })
    }

    fn next_pass(
        &self,
        lane: LaneId,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
        one_per_key: bool,
        ahead: Option<&Ahead>,
    ) -> Result<Pass, StoreError> {
        self.block_on(async {
            let mut state = self.state.lock().await;
            let state = &mut *state;
            let client = live_client(&mut state.client, &self.url).await?;
            let Some(held) = state.lanes.get_mut(&lane) else {
                return Err(PgStoreError::Corrupt {
                    what: format!("no lane {lane} opened on this node"),
                });
            };
            let lane32 = i32::try_from(lane).unwrap_or(i32::MAX);
            self.keep_leases(client, lane32, held).await?;
            let mut earliest: Option<i64> = None;
            let n = held.leases.len();
            for i in 0..n {
                let at = (held.turn + i) % n;
                let lease = &held.leases[at];
                let read = Read {
                    client,
                    held,
                    lease,
                    now_ms,
                    limit,
                    max_bytes,
                    one_per_key,
                    ahead,
                };
                let pass = read.pass().await?;
                if !pass.items.is_empty() || !pass.waiting.is_empty() {
                    held.turn = at + 1;
                    return Ok(pass);
                }
                earliest = match (earliest, pass.next_at_ms) {
                    (Some(a), Some(b)) => Some(a.min(b)),
                    (a, b) => a.or(b),
                };
            }
            // Nothing held, or nothing due: look again by the earliest retry, or when a lease
            // may have come free.
            let lease_check = now_ms + i64::try_from(TAKE_EVERY.as_millis()).unwrap_or(1000);
            Ok(Pass {
                next_at_ms: Some(earliest.map_or(lease_check, |e| e.min(lease_check))),
                ..Pass::default()
            })
        })
    }

    fn release(&self) -> Result<(), StoreError> {
        self.block_on(self.release_all())
    }

    fn settle(&self, lane: LaneId, s: &Settle) -> Result<(), StoreError> {
        self.block_on(async {
            let mut state = self.state.lock().await;
            let state = &mut *state;
            let (lane32, partition) = (i32::try_from(lane).unwrap_or(i32::MAX), s.cursor.partition);
            let lost = || PgStoreError::LeaseLost { lane, partition };
            let client = match state.client.as_mut() {
                Some(c) if !c.is_closed() => c,
                _ => return Err(PgStoreError::Unreachable),
            };
            let tx = client.transaction().await?;
            // The fence: this partition's row, locked, with the token the pass was read under —
            // or nothing. The database decides, not this node's clock: a pass that outlasted
            // the local validity is still recorded if nobody took the partition meanwhile.
            if tx
                .query_opt(
                    "SELECT 1 FROM partitions WHERE lane = $1 AND partition = $2 AND token = $3 FOR UPDATE",
                    &[&lane32, &partition, &s.lease],
                )
                .await?
                .is_none()
            {
                return Err(lost());
            }
            for (seq, _key, u) in &s.outcomes {
                match u {
                    // Only an exception row has anything to change; a log row needs nothing.
                    Update::Delivered { at_ms } => {
                        tx.execute(
                            "UPDATE delivery_exceptions SET state = 'delivered', \
                             attempts = attempts + 1, done_at = $2, last_error = NULL WHERE seq = $1",
                            &[seq, at_ms],
                        )
                        .await?
                    }
                    Update::RetryAt { next_at_ms, error } => {
                        tx.execute(
                            "INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, \
                                 state, attempts, next_at, last_error) \
                             SELECT seq, xid, lane, partition, order_key, 'retry', 1, $2, $3 \
                             FROM deliveries WHERE seq = $1 \
                             ON CONFLICT (seq) DO UPDATE SET state = 'retry', \
                                 attempts = delivery_exceptions.attempts + 1, \
                                 next_at = excluded.next_at, last_error = excluded.last_error",
                            &[seq, next_at_ms, error],
                        )
                        .await?
                    }
                    Update::Dead { hold, error, at_ms } => {
                        let state = if *hold { "held" } else { "dead" };
                        tx.execute(
                            "INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, \
                                 state, attempts, next_at, last_error, done_at) \
                             SELECT seq, xid, lane, partition, order_key, $2, 1, $3, $4, $3 \
                             FROM deliveries WHERE seq = $1 \
                             ON CONFLICT (seq) DO UPDATE SET state = excluded.state, \
                                 attempts = delivery_exceptions.attempts + 1, \
                                 done_at = excluded.done_at, last_error = excluded.last_error",
                            &[seq, &state, at_ms, error],
                        )
                        .await?
                    }
                };
            }
            for (seq, _key) in &s.waiting {
                tx.execute(
                    "INSERT INTO delivery_exceptions (seq, xid, lane, partition, order_key, state) \
                     SELECT seq, xid, lane, partition, order_key, 'waiting' FROM deliveries WHERE seq = $1 \
                     ON CONFLICT (seq) DO NOTHING",
                    &[seq],
                )
                .await?;
            }
            tx.execute(
                "UPDATE partitions SET done_xid = $3::text::xid8, done_seq = $4 \
                 WHERE lane = $1 AND partition = $2 AND (done_xid, done_seq) < ($3::text::xid8, $4)",
                &[&lane32, &partition, &s.cursor.xid.to_string(), &s.cursor.seq],
            )
            .await?;
            tx.commit().await?;
            Ok(())
        })
    }
}

/// One partition's pass.
struct Read<'a> {
    client: &'a Client,
    held: &'a Held,
    lease: &'a Lease,
    now_ms: i64,
    limit: usize,
    max_bytes: usize,
    one_per_key: bool,
    ahead: Option<&'a Ahead>,
}

/// The columns an [`OutboxItem`] is made of (`d` a delivery, `m` its message, `e` its
/// exception row if any).
const ITEM: &str = "d.seq, d.xid::text, m.id, d.part, d.order_key, COALESCE(d.payload, m.raw), \
    COALESCE(e.attempts, 0), m.received_at, COALESCE(e.next_at, 0), e.last_error, e.retry_from, \
    COALESCE(d.content_type, m.content_type)";

/// An open exception: its key waits for it.
const OPEN: &str = "('retry', 'waiting', 'held')";

impl Read<'_> {
    async fn pass(&self) -> Result<Pass, PgStoreError> {
        let (lane, partition) = (self.lease.lane, self.lease.partition);
        let row = self
            .client
            .query_one(
                "SELECT done_xid::text, done_seq FROM partitions WHERE lane = $1 AND partition = $2",
                &[&lane, &partition],
            )
            .await?;
        let cursor = Position {
            partition,
            xid: parse_xid(row.get(0))?,
            seq: row.get(1),
        };
        let ahead = self.ahead.filter(|a| a.from.partition == partition);
        let from = ahead.map_or(cursor, |a| a.from.max(cursor));
        let mut pass = Pass {
            from,
            to: from,
            lease: self.lease.token,
            fence: self.lease.fence.clone(),
            ..Pass::default()
        };
        let mut budget = PassBudget::new(self.limit, self.max_bytes);
        // Keys another partition's pass holds are never this one's.
        let mut keys: HashSet<String> = ahead.map(|a| a.keys.clone()).unwrap_or_default();
        let limit = i64::try_from(self.limit).unwrap_or(i64::MAX);
        // The due head of every key with an open exception, oldest first.
        let heads = self
            .client
            .query(
                &format!(
                    "SELECT {ITEM} FROM (SELECT DISTINCT ON (order_key) * FROM delivery_exceptions \
                         WHERE lane = $1 AND partition = $2 AND state IN {OPEN} \
                         ORDER BY order_key, xid, seq) e \
                     JOIN deliveries d ON d.seq = e.seq JOIN messages m ON m.seq = d.message \
                     WHERE e.state = 'waiting' OR (e.state = 'retry' AND e.next_at <= $3) \
                     ORDER BY e.xid, e.seq LIMIT $4"
                ),
                &[&lane, &partition, &self.now_ms, &limit],
            )
            .await?;
        for row in &heads {
            let item = self.item(row)?;
            if ahead.is_some_and(|a| a.seqs.contains(&item.seq)) {
                continue;
            }
            if !budget.take(item.payload.len()) {
                break;
            }
            if self.one_per_key {
                keys.insert(item.order_key.clone());
            }
            pass.items.push(item);
        }
        // Then the log from the cursor, only what transactions that have ended wrote.
        let log = self
            .client
            .query(
                &format!(
                    "SELECT {ITEM}, EXISTS (SELECT 1 FROM delivery_exceptions x WHERE x.lane = d.lane \
                         AND x.partition = d.partition AND x.order_key = d.order_key AND x.state IN {OPEN}) \
                     FROM deliveries d JOIN messages m ON m.seq = d.message \
                     LEFT JOIN delivery_exceptions e ON e.seq = d.seq \
                     WHERE d.lane = $1 AND d.partition = $2 \
                       AND (d.xid, d.seq) >= ($3::text::xid8, $4) \
                       AND {ENDED} AND e.seq IS NULL \
                     ORDER BY d.xid, d.seq LIMIT $5"
                ),
                &[&lane, &partition, &from.xid.to_string(), &from.seq, &limit],
            )
            .await?;
        for row in &log {
            let item = self.item(row)?;
            let blocked: bool = row.get(12);
            let past = Position {
                seq: item.seq + 1,
                ..item.position
            };
            if blocked || keys.contains(&item.order_key) {
                pass.to = past;
                pass.waiting.push((item.position, item.order_key));
                continue;
            }
            if !budget.take(item.payload.len()) {
                break;
            }
            if self.one_per_key {
                keys.insert(item.order_key.clone());
            }
            pass.to = past;
            pass.items.push(item);
        }
        if pass.items.is_empty() && pass.waiting.is_empty() {
            pass.next_at_ms = self
                .client
                .query_one(
                    &format!(
                        "SELECT MIN(e.next_at) FROM (SELECT DISTINCT ON (order_key) * FROM delivery_exceptions \
                             WHERE lane = $1 AND partition = $2 AND state IN {OPEN} \
                             ORDER BY order_key, xid, seq) e \
                         WHERE e.state = 'retry' AND e.next_at > $3"
                    ),
                    &[&lane, &partition, &self.now_ms],
                )
                .await?
                .get(0);
        }
        Ok(pass)
    }

    fn item(&self, r: &Row) -> Result<OutboxItem, PgStoreError> {
        let seq: i64 = r.get(0);
        let content_type: String = r.get(11);
        Ok(OutboxItem {
            seq,
            position: Position {
                partition: self.lease.partition,
                xid: parse_xid(r.get(1))?,
                seq,
            },
            message_id: r.get(2),
            part: u32::try_from(r.get::<_, i32>(3)).unwrap_or(0),
            route: self.held.route.clone(),
            destination: self.held.destination.clone(),
            order_key: r.get(4),
            payload: r.get(5),
            attempts: u32::try_from(r.get::<_, i32>(6)).unwrap_or(0),
            created_at_ms: r.get(7),
            next_at_ms: r.get(8),
            state: OutboxState::Pending,
            last_error: r.get(9),
            retry_from_ms: r.get(10),
            content_type: ContentType::parse(&content_type).unwrap_or(ContentType::Hl7v2),
        })
    }
}

fn parse_xid(text: &str) -> Result<u64, PgStoreError> {
    text.parse().map_err(|_| PgStoreError::Corrupt {
        what: format!("a transaction id {text:?}"),
    })
}
