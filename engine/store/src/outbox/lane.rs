//! A worker's pass over its lane: what to send now, then settling what became of it.
//!
//! A pass sends, in this order, the due head of every key that has an exception (a retry that
//! fell due, or a message that waited behind one), then the log from the cursor on. A log row
//! whose key has an open exception is not sent: it is settled as `waiting` behind it, so a
//! key's order holds and the other keys never wait. Settling moves the cursor past everything
//! the pass read and records only what did not simply succeed.

use std::collections::HashSet;

use rusqlite::params;

use super::{DeliveryLog, FROM, Fence, ITEM, LaneId, Outbox, OutboxItem, Position, Update, item};
use crate::StoreError;

/// What a worker may send now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// To send, in this order: due exception heads (oldest first), then log rows in order.
    pub items: Vec<OutboxItem>,
    /// Log rows whose key waits behind an exception: settled as waiting, not sent.
    pub waiting: Vec<(Position, String)>,
    /// The cursor this pass was read from: items at or past it came from the log.
    pub from: Position,
    /// Where the cursor goes once every log item of the pass is settled.
    pub to: Position,
    /// With nothing to send: when the earliest waiting retry falls due.
    pub next_at_ms: Option<i64>,
    /// The lease the pass was read under (a shared store's fencing token; 0 for the embedded
    /// store): its settle carries it back, and is refused once another lease replaced it.
    pub lease: i64,
    /// Until when it may be sent (the lease's, renewed with it; see [`Fence`]).
    pub fence: Fence,
}

/// How a pass read while the worker's previous pass is still being sent differs from one read
/// at the cursor: the log is read from where that pass ended, its exception rows are not read
/// again, and (for destinations that send in parallel) its keys count as already in the pass.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ahead {
    /// The previous pass's [`Pass::to`].
    pub from: Position,
    /// The exception rows the previous pass is sending.
    pub seqs: HashSet<i64>,
    /// Keys held back: those waiting in the previous pass, and (with `one_per_key`) those it
    /// is sending.
    pub keys: HashSet<String>,
}

impl Ahead {
    /// How to read the pass after `pass` while `pass` is still being sent. The keys of its
    /// waiting rows are held back (those rows are recorded as waiting only when `pass` is
    /// settled, so nothing in the store holds their keys yet); with `one_per_key` (the
    /// destination sends in parallel) so are the keys it sends.
    pub fn after(pass: &Pass, one_per_key: bool) -> Ahead {
        let items = &pass.items;
        let mut keys: HashSet<String> = pass.waiting.iter().map(|(_, k)| k.clone()).collect();
        if one_per_key {
            keys.extend(items.iter().map(|i| i.order_key.clone()));
        }
        Ahead {
            from: pass.to,
            seqs: items
                .iter()
                .filter(|i| i.position < pass.from)
                .map(|i| i.seq)
                .collect(),
            keys,
        }
    }
}

/// What a worker records after a pass, in one transaction.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Settle {
    /// Each tried item: its seq, its key, and what became of it.
    pub outcomes: Vec<(i64, String, Update)>,
    /// Log rows to keep waiting behind their key (from [`Pass::waiting`]), by seq.
    pub waiting: Vec<(i64, String)>,
    /// The new cursor: every log row below it is delivered or in `outcomes` / `waiting`.
    pub cursor: Position,
    /// The pass's [`Pass::lease`].
    pub lease: i64,
}

/// Open exceptions: a key with one of these waits for it.
macro_rules! open_states {
    () => {
        "('retry', 'waiting', 'held')"
    };
}
const OPEN: &str = open_states!();

/// The exception `e` is its key's head: the oldest open exception of its key.
const KEY_HEAD: &str = concat!(
    "e.seq = (SELECT MIN(x.seq) FROM delivery_exceptions x ",
    "WHERE x.lane = e.lane AND x.order_key = e.order_key AND x.state IN ",
    open_states!(),
    ")"
);

impl DeliveryLog for Outbox {
    fn lane(&self, route: &str, destination: &str) -> Result<LaneId, StoreError> {
        super::lane_id(&self.conn, route, destination)
    }

    /// Reads one pass of `lane`: at most `limit` rows and about `max_bytes` of payload (the
    /// first row always goes, so a message larger than the budget is sent alone). With
    /// `one_per_key` (destinations that send in parallel), a second row of a key already in
    /// the pass waits behind it as an exception, like a row behind a retry. With `ahead`, the
    /// pass follows one still in flight.
    fn next_pass(
        &self,
        lane: LaneId,
        now_ms: i64,
        limit: usize,
        max_bytes: usize,
        one_per_key: bool,
        ahead: Option<&Ahead>,
    ) -> Result<Pass, StoreError> {
        let cursor: i64 = self
            .conn
            .prepare_cached("SELECT done_below FROM lanes WHERE lane = ?1")
            .and_then(|mut s| s.query_row([lane], |r| r.get(0)))
            .map_err(StoreError::Query)?;
        let from = ahead.map_or(cursor, |a| a.from.seq.max(cursor));
        let mut pass = Pass {
            from: Position::at(from),
            to: Position::at(from),
            ..Pass::default()
        };
        let mut budget = PassBudget::new(limit, max_bytes);
        let mut keys = ahead.map(|a| a.keys.clone()).unwrap_or_default();
        {
            let sql = format!(
                "SELECT {ITEM} FROM {FROM} WHERE e.lane = ?1 AND e.state IN ('retry', 'waiting') \
                 AND (e.state = 'waiting' OR e.next_at <= ?2) AND {KEY_HEAD} \
                 ORDER BY e.seq LIMIT ?3"
            );
            let mut stmt = self.conn.prepare_cached(&sql).map_err(StoreError::Query)?;
            let rows = stmt
                .query_map(params![lane, now_ms, budget.limit()], item)
                .map_err(StoreError::Query)?;
            for row in rows {
                let row = row.map_err(StoreError::Query)?;
                if ahead.is_some_and(|a| a.seqs.contains(&row.seq)) {
                    continue;
                }
                if !budget.take(row.payload.len()) {
                    break;
                }
                if one_per_key {
                    keys.insert(row.order_key.clone());
                }
                pass.items.push(row);
            }
        }
        if budget.has_room() {
            let sql = format!(
                "SELECT {ITEM}, EXISTS (SELECT 1 FROM delivery_exceptions x WHERE x.lane = d.lane \
                    AND x.order_key = d.order_key AND x.state IN {OPEN}) \
                 FROM {FROM} WHERE d.lane = ?1 AND d.seq >= ?2 AND e.seq IS NULL \
                 ORDER BY d.seq LIMIT ?3"
            );
            let mut stmt = self.conn.prepare_cached(&sql).map_err(StoreError::Query)?;
            let rows = stmt
                .query_map(params![lane, from, budget.limit()], |r| {
                    Ok((item(r)?, r.get::<_, bool>(14)?))
                })
                .map_err(StoreError::Query)?;
            for row in rows {
                let (row, blocked) = row.map_err(StoreError::Query)?;
                // Behind an open exception, or behind a row of its key already in a pass that
                // is sent in parallel: it waits, and goes once its key's earlier one is done.
                if blocked || keys.contains(&row.order_key) {
                    pass.to = Position::at(row.seq + 1);
                    pass.waiting.push((row.position, row.order_key));
                    continue;
                }
                if !budget.take(row.payload.len()) {
                    break;
                }
                if one_per_key {
                    keys.insert(row.order_key.clone());
                }
                pass.to = Position::at(row.seq + 1);
                pass.items.push(row);
            }
        }
        if pass.items.is_empty() && pass.waiting.is_empty() {
            pass.next_at_ms = self
                .conn
                .prepare_cached(&format!(
                    "SELECT MIN(e.next_at) FROM delivery_exceptions e WHERE e.lane = ?1 \
                     AND e.state = 'retry' AND e.next_at > ?2 AND {KEY_HEAD}"
                ))
                .and_then(|mut s| s.query_row(params![lane, now_ms], |r| r.get(0)))
                .map_err(StoreError::Query)?;
        }
        Ok(pass)
    }

    /// Records a pass's outcomes and moves the cursor, in one transaction.
    fn settle(&self, lane: LaneId, s: &Settle) -> Result<(), StoreError> {
        let tx = self
            .conn
            .unchecked_transaction()
            .map_err(StoreError::Write)?;
        for (seq, key, u) in &s.outcomes {
            let _changed = match u {
                // Only an exception row has anything to change; a log row needs nothing.
                Update::Delivered { at_ms } => self.run(
                    "UPDATE delivery_exceptions SET state = 'delivered', attempts = attempts + 1, \
                     done_at = ?2, last_error = NULL WHERE seq = ?1",
                    params![seq, at_ms],
                )?,
                Update::RetryAt { next_at_ms, error } => self.run(
                    "INSERT INTO delivery_exceptions (seq, lane, order_key, state, attempts, next_at, last_error) \
                     VALUES (?1, ?2, ?3, 'retry', 1, ?4, ?5) ON CONFLICT (seq) DO UPDATE SET \
                     state = 'retry', attempts = attempts + 1, next_at = excluded.next_at, \
                     last_error = excluded.last_error",
                    params![seq, lane, key, next_at_ms, error],
                )?,
                Update::Dead { hold, error, at_ms } => self.run(
                    "INSERT INTO delivery_exceptions (seq, lane, order_key, state, attempts, next_at, last_error, done_at) \
                     VALUES (?1, ?2, ?3, ?4, 1, ?5, ?6, ?5) ON CONFLICT (seq) DO UPDATE SET \
                     state = excluded.state, attempts = attempts + 1, done_at = excluded.done_at, \
                     last_error = excluded.last_error",
                    params![seq, lane, key, if *hold { "held" } else { "dead" }, at_ms, error],
                )?,
            };
        }
        for (seq, key) in &s.waiting {
            self.run(
                "INSERT OR IGNORE INTO delivery_exceptions (seq, lane, order_key, state) \
                 VALUES (?1, ?2, ?3, 'waiting')",
                params![seq, lane, key],
            )?;
        }
        self.run(
            "UPDATE lanes SET done_below = MAX(done_below, ?2) WHERE lane = ?1",
            params![lane, s.cursor.seq],
        )?;
        tx.commit().map_err(StoreError::Write)
    }
}

impl Outbox {
    pub(crate) fn run(&self, sql: &str, p: impl rusqlite::Params) -> Result<usize, StoreError> {
        let mut stmt = self.conn.prepare_cached(sql).map_err(StoreError::Write)?;
        stmt.execute(p).map_err(StoreError::Write)
    }
}

/// What is left of a pass's rows and bytes: the rule every store's `next_pass` follows (at most
/// `limit` rows and about `max_bytes` of payload; the first row always goes).
#[derive(Debug, Clone)]
pub struct PassBudget {
    rows: usize,
    bytes: usize,
    first: bool,
}

impl PassBudget {
    pub fn new(limit: usize, max_bytes: usize) -> PassBudget {
        PassBudget {
            rows: limit,
            bytes: max_bytes,
            first: true,
        }
    }

    /// Rows left, for a query's `LIMIT`.
    pub fn limit(&self) -> i64 {
        i64::try_from(self.rows).unwrap_or(i64::MAX)
    }

    /// Whether another row could still fit.
    pub fn has_room(&self) -> bool {
        self.rows > 0 && self.bytes > 0
    }

    /// Takes a row of `len` bytes if the pass has room: the first row always fits.
    pub fn take(&mut self, len: usize) -> bool {
        if self.rows == 0 || (!self.first && self.bytes == 0) {
            return false;
        }
        self.first = false;
        self.rows -= 1;
        self.bytes = self.bytes.saturating_sub(len);
        true
    }
}
