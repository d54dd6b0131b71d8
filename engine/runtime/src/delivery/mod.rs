//! Delivery: one worker per route destination, taking messages from that destination's
//! outbox and sending them until each is delivered or dead-lettered.
//!
//! The worker reads its destination's outbox as a log from a cursor (`wyvern_store::Outbox::
//! next_pass`): what fell due among the exceptions first, then the log in receipt order. A
//! plain delivery costs nothing but the cursor's move at the end of the pass; what fails is
//! written down as an exception. Order: a key's messages go out in the order they were
//! received (the route's `order_by`) while other keys carry on: a transient failure reschedules
//! that message (exponential backoff with jitter) and later messages of its key wait behind it;
//! a permanent failure — or running out of retries — dead-letters it (`on_permanent: park` lets
//! its key go on; `hold` stops the key until `wyvern dlq retry`). A message counts as delivered
//! only on a positive receipt. Memory stays bounded however large the backlog: a pass reads at
//! most `PIPELINE` rows and `PASS_BYTES`; the rest wait on disk, and reading the next pass
//! costs the same however many wait.
//!
//! A destination that fails a whole pass is probably down: the worker then sends one message
//! per pass (a probe), pausing between failed probes from the route's first retry delay,
//! doubling, up to `PROBE_MAX`, so an outage costs a few attempts, not one per waiting message;
//! the first success goes back to full passes.

mod backoff;
mod guard;
mod lapse;
mod nrl;
mod sink;

use std::collections::HashSet;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use wyvern_config::{Destination, OnPermanent, RetryPolicy};
use wyvern_core::{Clock, ErrorClass};
use wyvern_store::{Ahead, DeliveryLog, LaneId, Outbox, OutboxItem, Settle, StoreError, Update};

pub use backoff::{delay, exhausted};
pub use sink::{Failure, Sending, Sink, fhir_client, fhir_request, judge_ack};

/// Rows read per pass for destinations that send one message at a time or in parallel.
const BATCH: usize = 512;
/// The longest pause between probes of a destination that seems down.
const PROBE_MAX: Duration = Duration::from_secs(10);
/// Messages in flight at once for a destination that pipelines (AMQP): spread over the
/// publisher's lanes, enough to keep a quorum queue's confirm round trips overlapped
/// (measured: 256 → 7,050, 2,048 with 8 lanes → 9,086 msgs/s end to end; ARCHITECTURE.md).
const PIPELINE: usize = 2048;
/// Payload bytes a pass reads at most (past its first message, which always goes): with
/// 16 MiB messages, `PIPELINE` rows alone would be 32 GiB.
const PASS_BYTES: usize = 16 << 20;
/// Longest sleep between passes when nothing wakes the worker.
const IDLE: Duration = Duration::from_secs(1);
/// Longest pause after outcomes could not be recorded (the store is failing, e.g. disk full):
/// the batch is due again, and sending it at once, in a loop, would flood the receiver.
const STORE_BACKOFF_MAX: Duration = Duration::from_secs(30);

/// Per-destination counters (exported as metrics).
#[derive(Debug, Default)]
pub struct DeliveryCounters {
    pub delivered: AtomicU64,
    pub retried: AtomicU64,
    pub dead: AtomicU64,
    /// Panics caught in the worker (a client library's defect); each one's message is
    /// dead-lettered, and the worker goes on.
    pub panics: AtomicU64,
    /// The worker's latest pass panicked (cleared by the next pass that does not): `/ready`
    /// answers 503 meanwhile.
    pub faulted: std::sync::atomic::AtomicBool,
    pub latency: crate::metrics::Histogram,
}

/// How a pass ended.
enum Pass {
    /// Something was sent (or failed) and recorded: look again at once.
    Delivered,
    /// Nothing due; the earliest retry falls due after this long.
    Idle(Duration),
    /// Nothing got through: the destination is probably down; probe again after this long.
    Probe(Duration),
    /// The store could not be read or written: pause, growing, before the next pass.
    StoreFailed,
}

/// One destination's worker, ready to run.
#[derive(Debug)]
pub struct DeliveryWorker {
    pub route: String,
    pub destination: String,
    sink: Sink,
    retry: RetryPolicy,
    on_permanent: OnPermanent,
    /// The store as the worker sees it: its lane's log, cursor and exceptions.
    outbox: Arc<Mutex<Box<dyn DeliveryLog>>>,
    lane: LaneId,
    clock: Arc<dyn Clock>,
    indexed: watch::Receiver<u64>,
    counters: Arc<DeliveryCounters>,
    /// The route's switches: nothing is sent while delivery is paused.
    control: Arc<crate::control::RouteControl>,
    /// Set while the destination fails whole passes: the pause before the next probe.
    probing: Option<Duration>,
    /// A streaming destination's pass on the wire, its outcomes not yet recorded.
    in_flight: Option<InFlight>,
}

/// A pass sent to a streaming destination and not yet recorded.
#[derive(Debug)]
struct InFlight {
    pass: wyvern_store::Pass,
    sending: Sending,
    timing: Timing,
    /// Keys that failed in the pass before this one, recorded after this one was sent.
    carried: HashSet<String>,
}

/// When a pass started, and how long reading it took (for the pass's debug line).
#[derive(Debug, Clone, Copy)]
struct Timing {
    started: std::time::Instant,
    read: Duration,
}

/// How often a paused worker looks whether it was resumed.
const PAUSED_POLL: Duration = Duration::from_millis(200);

impl DeliveryWorker {
    pub fn build(
        route: &wyvern_config::Route,
        destination: &Destination,
        store_dir: &Path,
        clock: Arc<dyn Clock>,
        indexed: watch::Receiver<u64>,
    ) -> Result<DeliveryWorker, crate::BuildError> {
        let sink = sink_of(route, destination)?;
        let outbox = Outbox::open(store_dir)?;
        let lane = outbox.lane(&route.name, &destination.name)?;
        Ok(Self::assemble(
            route,
            destination,
            sink,
            Box::new(outbox),
            lane,
            clock,
            indexed,
        ))
    }

    /// A worker on a store several nodes share: `log` is its own, `committed` moves when this
    /// node commits.
    pub async fn build_shared(
        route: &wyvern_config::Route,
        destination: &Destination,
        log: Box<dyn DeliveryLog>,
        clock: Arc<dyn Clock>,
        committed: watch::Receiver<u64>,
    ) -> Result<DeliveryWorker, crate::BuildError> {
        let sink = sink_of(route, destination)?;
        // The shared log's calls block on the network: never on the runtime's threads.
        let (name, dest) = (route.name.clone(), destination.name.clone());
        let (log, lane) = tokio::task::spawn_blocking(move || {
            let lane = log.lane(&name, &dest);
            (log, lane)
        })
        .await
        .map_err(StoreError::Task)?;
        Ok(Self::assemble(
            route,
            destination,
            sink,
            log,
            lane?,
            clock,
            committed,
        ))
    }

    fn assemble(
        route: &wyvern_config::Route,
        destination: &Destination,
        sink: Sink,
        log: Box<dyn DeliveryLog>,
        lane: LaneId,
        clock: Arc<dyn Clock>,
        indexed: watch::Receiver<u64>,
    ) -> DeliveryWorker {
        DeliveryWorker {
            route: route.name.clone(),
            destination: destination.name.clone(),
            sink,
            retry: route.retry,
            on_permanent: route.on_permanent,
            lane,
            outbox: Arc::new(Mutex::new(log)),
            clock,
            indexed,
            counters: Arc::default(),
            control: Arc::default(),
            probing: None,
            in_flight: None,
        }
    }

    /// Obeys the route's switches (the engine passes the route's).
    pub fn with_control(mut self, control: Arc<crate::control::RouteControl>) -> Self {
        self.control = control;
        self
    }

    pub fn counters(&self) -> Arc<DeliveryCounters> {
        self.counters.clone()
    }

    /// Delivers until `shutdown`; a delivery in progress is finished first. Nothing a message
    /// or a library does stops the loop: a panic in a pass is caught, counted and logged, and
    /// the next pass starts (the delivery guard has already dead-lettered its message).
    pub async fn run(mut self, shutdown: CancellationToken) {
        use futures_util::FutureExt as _;
        tracing::info!(route = %self.route, destination = %self.destination, "delivery worker started");
        let mut store_backoff = Duration::ZERO;
        while !shutdown.is_cancelled() {
            if self.control.delivery_paused() {
                tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep(PAUSED_POLL) => {}
                }
                continue;
            }
            let pass = std::panic::AssertUnwindSafe(self.pass())
                .catch_unwind()
                .await;
            self.counters
                .faulted
                .store(pass.is_err(), Ordering::Relaxed);
            let wait = match pass {
                Ok(Pass::Delivered) => {
                    store_backoff = Duration::ZERO;
                    continue;
                }
                Ok(Pass::Idle(next_wake)) => next_wake,
                Ok(Pass::Probe(pause)) => {
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(pause) => {}
                    }
                    continue;
                }
                Ok(Pass::StoreFailed) => {
                    store_backoff =
                        (store_backoff * 2).clamp(Duration::from_millis(100), STORE_BACKOFF_MAX);
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(store_backoff) => {}
                    }
                    continue;
                }
                Err(p) => {
                    self.counters.panics.fetch_add(1, Ordering::Relaxed);
                    tracing::error!(route = %self.route, destination = %self.destination, panic = %guard::panic_text(p.as_ref()), "delivery pass panicked; starting a new pass");
                    self.sink.reset();
                    // What was on the wire is read and sent again: at least once.
                    self.in_flight = None;
                    IDLE
                }
            };
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = self.indexed.changed() => {}
                _ = tokio::time::sleep(wait) => {}
            }
        }
        if let Some(last) = self.in_flight.take() {
            let _ = self.finish(last).await;
        }
        if let Err(e) = self.db(|o| o.release()).await {
            tracing::warn!(route = %self.route, destination = %self.destination, error = %e, "cannot give back this node's share of the deliveries; other nodes take it over when it expires");
        }
        tracing::info!(route = %self.route, destination = %self.destination, "delivery worker stopped");
    }

    /// One pass: read what is due, send it, record the outcomes and move the cursor. A
    /// streaming destination's pass is recorded one pass later: it is put on the wire, then
    /// the previous pass's confirms are awaited and recorded, so the destination always has
    /// the next pass to work on while the worker waits.
    async fn pass(&mut self) -> Pass {
        let streams = self.sink.streams() && self.probing.is_none();
        if !streams && let Some(prev) = self.in_flight.take() {
            return self.finish(prev).await;
        }
        let limit = match (self.probing, self.sink.pipelines()) {
            (Some(_), _) => 1,
            (None, true) => PIPELINE,
            (None, false) => BATCH,
        };
        let one_per_key = self.sink.parallel();
        let ahead = self
            .in_flight
            .as_ref()
            .map(|f| Ahead::after(&f.pass, one_per_key));
        let (lane, now) = (self.lane, self.clock.now_millis());
        let started = std::time::Instant::now();
        let pass = match self
            .db(move |o| o.next_pass(lane, now, limit, PASS_BYTES, one_per_key, ahead.as_ref()))
            .await
        {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(route = %self.route, destination = %self.destination, error = %e, "cannot read the outbox; retrying");
                return Pass::StoreFailed;
            }
        };
        if pass.items.is_empty() && pass.waiting.is_empty() {
            if let Some(prev) = self.in_flight.take() {
                return self.finish(prev).await;
            }
            let wake = pass.next_at_ms.map_or(IDLE, |at| {
                IDLE.min(Duration::from_millis(u64::try_from(at - now).unwrap_or(0)))
            });
            return Pass::Idle(wake);
        }
        let read = started.elapsed();
        let fence = pass.fence.clone();
        if !streams {
            let delivering =
                guard::deliver_guarded(&mut self.sink, &pass.items, &self.counters.panics);
            let Some(results) = lapse::unless_lapsed(&fence, delivering).await else {
                return self.lapsed();
            };
            let timing = Timing { started, read };
            return self.record(pass, results, HashSet::new(), timing).await.0;
        }
        let starting = guard::start_guarded(&mut self.sink, &pass.items, &self.counters.panics);
        let Some(sending) = lapse::unless_lapsed(&fence, starting).await else {
            return self.lapsed();
        };
        if let Sending::Http(requests) = &sending {
            lapse::abort_on_lapse(&fence, requests.abort_handle());
        }
        let next = InFlight {
            pass,
            sending,
            timing: Timing { started, read },
            carried: HashSet::new(),
        };
        match self.in_flight.replace(next) {
            Some(prev) => self.finish(prev).await,
            None => Pass::Delivered,
        }
    }

    /// Waits for an in-flight pass's outcomes and records them. If it could not be recorded in
    /// full, the pass read ahead of it is forgotten (its messages are read and sent again:
    /// at least once), since recording it would move the cursor past what was not recorded.
    async fn finish(&mut self, f: InFlight) -> Pass {
        let InFlight {
            pass,
            sending,
            timing,
            carried,
        } = f;
        let confirming =
            guard::confirmed_guarded(&mut self.sink, sending, &pass.items, &self.counters.panics);
        let Some(results) = lapse::unless_lapsed(&pass.fence, confirming).await else {
            return self.lapsed();
        };
        let (outcome, failed) = self.record(pass, results, carried, timing).await;
        match (failed, self.in_flight.as_mut()) {
            // The pass sent after this one: what failed here must not pass it.
            (Some(keys), Some(next)) => next.carried = keys,
            (Some(_), None) => {}
            (None, _) => self.in_flight = None,
        }
        outcome
    }

    /// The lease a pass was sent under lapsed (this node cannot reach the shared store to
    /// renew it, or another node took it): nothing more is sent, and nothing is recorded —
    /// what went out goes again from whichever node holds the lease next (at least once).
    /// The pass read ahead goes too (its requests are aborted), and the connection is
    /// dropped (a message may have been cut off half-written).
    fn lapsed(&mut self) -> Pass {
        tracing::warn!(route = %self.route, destination = %self.destination, "this node's lease on these deliveries lapsed while sending (the shared store cannot be reached, or another node took over): stopped sending; whatever went out unrecorded goes again from the lease's next holder");
        self.in_flight = None;
        self.sink.reset();
        Pass::StoreFailed
    }

    /// Turns a pass's results into outcomes, records them with the new cursor, and decides
    /// whether the destination is down. `carried`: keys that failed in the pass before this
    /// one while this one was already on the wire. A log row delivered after an earlier row
    /// of its key failed (in this pass, or in `carried`) went out of order: it is recorded as
    /// waiting behind that one, so it goes again after it. Returns the keys that failed, or
    /// `None` if the pass was not recorded in full (the cursor stopped short of its end, or
    /// the store failed).
    async fn record(
        &mut self,
        pass: wyvern_store::Pass,
        results: Vec<Result<String, Failure>>,
        mut failed_keys: HashSet<String>,
        timing: Timing,
    ) -> (Pass, Option<HashSet<String>>) {
        let sent = timing.started.elapsed();
        let now = self.clock.now_millis();
        let tried = results.len();
        let lane = self.lane;
        let mut got_through = pass.items.is_empty();
        let mut outcomes: Vec<(i64, String, Update)> = Vec::new();
        let mut again: Vec<(i64, String)> = Vec::new();
        for (item, r) in pass.items.iter().zip(results) {
            got_through |= r.is_ok() || matches!(&r, Err(f) if f.class != ErrorClass::Transient);
            let update = self.outcome(item, r, now);
            let from_log = item.position >= pass.from;
            match &update {
                Update::Delivered { .. } if from_log && failed_keys.contains(&item.order_key) => {
                    again.push((item.seq, item.order_key.clone()));
                    continue;
                }
                // A row from the log that was delivered needs nothing but the cursor.
                Update::Delivered { .. } if from_log => continue,
                Update::RetryAt { .. } | Update::Dead { hold: true, .. } => {
                    failed_keys.insert(item.order_key.clone());
                }
                Update::Delivered { .. } | Update::Dead { hold: false, .. } => {}
            }
            outcomes.push((item.seq, item.order_key.clone(), update));
        }
        if !again.is_empty() {
            tracing::warn!(route = %self.route, destination = %self.destination, messages = again.len(), "delivered after an earlier message of their key failed; they go again after it, to keep each key's order");
        }
        // What was not tried (a one-at-a-time destination stops at its first failure) is
        // read again: the cursor stops at the first untried row of the log.
        let cursor = pass.items[tried..]
            .iter()
            .find(|i| i.position >= pass.from)
            .map_or(pass.to, |i| i.position);
        let pass_waiting = pass.waiting.len();
        let mut waiting: Vec<(i64, String)> = pass
            .waiting
            .into_iter()
            .filter(|(at, _)| *at < cursor)
            .map(|(at, key)| (at.seq, key))
            .collect();
        waiting.extend(again);
        let settle = Settle {
            outcomes,
            waiting,
            cursor,
            lease: pass.lease,
        };
        if let Err(e) = self.db(move |o| o.settle(lane, &settle)).await {
            // Delivered (or failed) but not recorded: it will be tried again, which
            // at-least-once allows — after a pause, not in a tight loop.
            tracing::error!(route = %self.route, destination = %self.destination, error = %e, "cannot record delivery outcomes; pausing before the next pass");
            return (Pass::StoreFailed, None);
        }
        let Timing { started, read } = timing;
        tracing::debug!(route = %self.route, destination = %self.destination, messages = tried, waiting = pass_waiting, read = ?read, send = ?(sent - read), settle = ?(started.elapsed() - sent), "delivery pass");
        let recorded = (cursor == pass.to).then_some(failed_keys);
        self.probing = match (got_through, self.probing) {
            (true, Some(_)) => {
                tracing::info!(route = %self.route, destination = %self.destination, "the destination takes messages again");
                None
            }
            (true, None) => None,
            // The first pass that gets nothing through is followed at once by a probe: one
            // message refused for its content must not pause the others.
            (false, None) => {
                tracing::warn!(route = %self.route, destination = %self.destination, "nothing got through in this pass; sending one message at a time until one does");
                self.probing = Some(self.retry.first.min(PROBE_MAX));
                return (Pass::Delivered, recorded);
            }
            (false, Some(pause)) => {
                self.probing = Some((pause * 2).min(PROBE_MAX));
                return (Pass::Probe(pause), recorded);
            }
        };
        (Pass::Delivered, recorded)
    }

    /// Counts, logs and turns one result into the outbox update to record.
    fn outcome(&self, item: &OutboxItem, result: Result<String, Failure>, now: i64) -> Update {
        let (seq, attempts) = (item.seq, item.attempts + 1);
        let (route, dest) = (&self.route, &self.destination);
        // The same `id` as the `message` span at receipt: one id follows a message from the
        // wire to each destination (`--log-format json` puts span fields on every line).
        let _span = tracing::info_span!("delivery", id = %item.message_id, part = item.part, %route, destination = %dest, attempt = attempts).entered();
        match result {
            Ok(receipt) => {
                self.counters.delivered.fetch_add(1, Ordering::Relaxed);
                let waited = u64::try_from(now - item.created_at_ms).unwrap_or(0);
                self.counters.latency.observe(Duration::from_millis(waited));
                tracing::debug!(%route, destination = %dest, id = %item.message_id, %receipt, "delivered");
                Update::Delivered { at_ms: now }
            }
            Err(f)
                if f.class == ErrorClass::Transient
                    && !exhausted(&self.retry, attempts, item.retries_since_ms(), now) =>
            {
                self.counters.retried.fetch_add(1, Ordering::Relaxed);
                let jitter = ((seq as u64)
                    .wrapping_mul(2_654_435_761)
                    .wrapping_add(u64::from(attempts))
                    % 1000) as f64
                    / 1000.0;
                let wait = delay(&self.retry, attempts, jitter);
                tracing::warn!(%route, destination = %dest, id = %item.message_id, attempts, retry_in = ?wait, reason = %f.reason, "delivery failed; will retry");
                Update::RetryAt {
                    next_at_ms: now + i64::try_from(wait.as_millis()).unwrap_or(i64::MAX),
                    error: f.reason,
                }
            }
            Err(f) => {
                self.counters.dead.fetch_add(1, Ordering::Relaxed);
                let hold = self.on_permanent == OnPermanent::Hold;
                let error = if f.class == ErrorClass::Transient {
                    format!("gave up after {attempts} attempts: {}", f.reason)
                } else {
                    f.reason
                };
                tracing::error!(%route, destination = %dest, id = %item.message_id, attempts, hold, reason = %error, "delivery failed permanently; dead-lettered");
                Update::Dead {
                    hold,
                    error,
                    at_ms: now,
                }
            }
        }
    }

    async fn db<T: Send + 'static>(
        &self,
        f: impl FnOnce(&dyn DeliveryLog) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, StoreError> {
        let outbox = self.outbox.clone();
        tokio::task::spawn_blocking(move || {
            let o = outbox.lock().map_err(|_| StoreError::Closed)?;
            f(o.as_ref())
        })
        .await
        .map_err(|_| StoreError::Closed)?
    }
}

/// The sink of one destination, or why it cannot be built.
fn sink_of(
    route: &wyvern_config::Route,
    destination: &Destination,
) -> Result<Sink, crate::BuildError> {
    Sink::build(&destination.kind).map_err(|reason| crate::BuildError::Destination {
        route: route.name.clone(),
        destination: destination.name.clone(),
        reason,
    })
}
