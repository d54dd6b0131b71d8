//! The engine's numbers in Prometheus text format: counters per route and destination, the
//! journal and index, outbox depth and age, ACK and delivery latency histograms.
//!
//! Hand-rolled on purpose: a handful of atomics rendered as text, no registry crate.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use wyvern_store::{CommitStats, Outbox};

use crate::RouteCounters;
use crate::delivery::DeliveryCounters;

/// Upper bounds of the latency buckets, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

/// A fixed-bucket latency histogram, updated lock-free.
#[derive(Debug, Default)]
pub struct Histogram {
    counts: [AtomicU64; BUCKETS.len() + 1],
    sum_micros: AtomicU64,
}

impl Histogram {
    pub fn observe(&self, d: Duration) {
        let secs = d.as_secs_f64();
        let i = BUCKETS
            .iter()
            .position(|b| secs <= *b)
            .unwrap_or(BUCKETS.len());
        self.counts[i].fetch_add(1, Ordering::Relaxed);
        self.sum_micros.fetch_add(
            u64::try_from(d.as_micros()).unwrap_or(u64::MAX),
            Ordering::Relaxed,
        );
    }

    fn render(&self, out: &mut String, name: &str, labels: &str) {
        let mut cumulative = 0;
        for (i, b) in BUCKETS.iter().enumerate() {
            cumulative += self.counts[i].load(Ordering::Relaxed);
            let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{b}\"}} {cumulative}");
        }
        cumulative += self.counts[BUCKETS.len()].load(Ordering::Relaxed);
        let _ = writeln!(out, "{name}_bucket{{{labels},le=\"+Inf\"}} {cumulative}");
        let _ = writeln!(
            out,
            "{name}_sum{{{labels}}} {}",
            self.sum_micros.load(Ordering::Relaxed) as f64 / 1e6
        );
        let _ = writeln!(out, "{name}_count{{{labels}}} {cumulative}");
    }
}

/// (route, destination) → (deliveries waiting, when the oldest was received), as last read.
pub type SharedDepth = Mutex<std::collections::HashMap<(String, String), (i64, Option<i64>)>>;

/// How often the shared store's depth is read for `/metrics`.
const SHARED_DEPTH_EVERY: Duration = Duration::from_secs(5);

/// Reads every destination's depth from the shared store into `cache`, every
/// [`SHARED_DEPTH_EVERY`], until the cache is dropped (a read that fails keeps the last).
pub async fn refresh_shared_depth(
    store: Arc<dyn wyvern_store::SharedStore>,
    lanes: Vec<(String, String)>,
    cache: std::sync::Weak<SharedDepth>,
) {
    let mut tick = tokio::time::interval(SHARED_DEPTH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        for (route, dest) in &lanes {
            let Ok(depth) = store.depth(route, dest).await else {
                continue;
            };
            let Some(cache) = cache.upgrade() else {
                return;
            };
            if let Ok(mut c) = cache.lock() {
                c.insert((route.clone(), dest.clone()), depth);
            }
        }
        if cache.strong_count() == 0 {
            return;
        }
    }
}

/// Everything `/metrics` shows.
#[derive(Debug, Clone)]
pub struct Metrics {
    pub routes: Vec<(String, Arc<RouteCounters>)>,
    pub destinations: Vec<(String, String, Arc<DeliveryCounters>)>,
    pub store: Arc<CommitStats>,
    /// For outbox depth (opened on first scrape).
    pub outbox: Arc<Mutex<Option<Outbox>>>,
    /// On a shared store, outbox depth comes from here instead: the whole cluster's, read
    /// every few seconds by [`refresh_shared_depth`] (a scrape does not wait on the database).
    pub shared_depth: Option<Arc<SharedDepth>>,
    pub store_dir: std::path::PathBuf,
    /// Messages removed by retention.
    pub pruned: Arc<AtomicU64>,
    /// The bridge's queries and member failures, when the config has a bridge.
    pub bridge: Option<Arc<crate::bridge::BridgeCounters>>,
}

fn help(out: &mut String, name: &str, kind: &str, text: &str) {
    let _ = writeln!(out, "# HELP {name} {text}\n# TYPE {name} {kind}");
}

impl Metrics {
    /// One counter a route: its HELP and TYPE, then a line per route.
    fn route_counter(
        &self,
        out: &mut String,
        name: &str,
        text: &str,
        field: impl Fn(&RouteCounters) -> &AtomicU64,
    ) {
        help(out, name, "counter", text);
        for (route, c) in &self.routes {
            let _ = writeln!(
                out,
                "{name}{{route=\"{route}\"}} {}",
                field(c).load(Ordering::Relaxed)
            );
        }
    }

    pub fn render(&self, now_ms: i64) -> String {
        let mut out = String::with_capacity(4096);
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        help(
            &mut out,
            "wyvern_messages_total",
            "counter",
            "Messages received, by route and outcome.",
        );
        for (route, c) in &self.routes {
            for (status, v) in [
                ("accepted", &c.accepted),
                ("rejected", &c.rejected),
                ("filtered", &c.filtered),
                ("duplicate", &c.duplicates),
                ("conflict", &c.conflicts),
                ("failed", &c.failed),
                ("not_stored", &c.store_failures),
            ] {
                let _ = writeln!(
                    out,
                    "wyvern_messages_total{{route=\"{route}\",outcome=\"{status}\"}} {}",
                    get(v)
                );
            }
        }
        self.route_counter(
            &mut out,
            "wyvern_control_id_reused_total",
            "Messages accepted although their control id (MSH-10) was used before for other content (control_id_reuse: accept); also counted as accepted.",
            |c| &c.reused,
        );
        self.route_counter(
            &mut out,
            "wyvern_sender_mismatch_total",
            "Messages whose MSH-4 is not the facility their connection's network or certificate is bound to (senders): rejected or flagged as sender_mismatch says.",
            |c| &c.sender_mismatch,
        );
        help(
            &mut out,
            "wyvern_route_intake_stopped",
            "gauge",
            "1 while an operator has stopped the route's intake (new messages answered not-now, not stored).",
        );
        for (route, c) in &self.routes {
            let _ = writeln!(
                out,
                "wyvern_route_intake_stopped{{route=\"{route}\"}} {}",
                u8::from(c.control.intake_stopped())
            );
        }
        help(
            &mut out,
            "wyvern_route_delivery_paused",
            "gauge",
            "1 while an operator has paused the route's delivery (messages wait in the outbox).",
        );
        for (route, c) in &self.routes {
            let _ = writeln!(
                out,
                "wyvern_route_delivery_paused{{route=\"{route}\"}} {}",
                u8::from(c.control.delivery_paused())
            );
        }
        help(
            &mut out,
            "wyvern_connections_refused_total",
            "counter",
            "Connections a route's listener refused before reading anything, by reason: not_allowed (outside allow_from), per_peer_cap, listener_cap, tls_handshake (failed: untrusted or missing client certificate, plaintext or an old protocol on a TLS port), subject_not_allowed (a client certificate outside allow_subjects), token (an HTTP request without a valid bearer token: 401/403).",
        );
        for (route, c) in &self.routes {
            for (reason, v) in [
                ("not_allowed", &c.refusals.not_allowed),
                ("per_peer_cap", &c.refusals.per_peer_cap),
                ("listener_cap", &c.refusals.listener_cap),
                ("tls_handshake", &c.refusals.tls_handshake),
                ("subject_not_allowed", &c.refusals.subject_not_allowed),
                ("token", &c.refusals.token),
            ] {
                let _ = writeln!(
                    out,
                    "wyvern_connections_refused_total{{route=\"{route}\",reason=\"{reason}\"}} {}",
                    get(v)
                );
            }
        }
        help(
            &mut out,
            "wyvern_ack_latency_seconds",
            "histogram",
            "From a message's last byte to its ACK being ready (stored).",
        );
        for (route, c) in &self.routes {
            c.ack_latency.render(
                &mut out,
                "wyvern_ack_latency_seconds",
                &format!("route=\"{route}\""),
            );
        }
        help(
            &mut out,
            "wyvern_deliveries_total",
            "counter",
            "Delivery attempts, by route, destination and outcome.",
        );
        for (route, dest, c) in &self.destinations {
            for (outcome, v) in [
                ("delivered", &c.delivered),
                ("retried", &c.retried),
                ("dead_lettered", &c.dead),
            ] {
                let _ = writeln!(
                    out,
                    "wyvern_deliveries_total{{route=\"{route}\",destination=\"{dest}\",outcome=\"{outcome}\"}} {}",
                    get(v)
                );
            }
        }
        help(
            &mut out,
            "wyvern_delivery_latency_seconds",
            "histogram",
            "From receipt to delivery.",
        );
        for (route, dest, c) in &self.destinations {
            c.latency.render(
                &mut out,
                "wyvern_delivery_latency_seconds",
                &format!("route=\"{route}\",destination=\"{dest}\""),
            );
        }
        // One family's samples together: the text format does not allow a family's samples
        // interleaved with another's (two destinations made /metrics invalid).
        let mut depth = String::new();
        let mut age = String::new();
        let mut sample = |route: &str, dest: &str, n: i64, oldest: Option<i64>| {
            let seconds = oldest.map_or(0.0, |t| (now_ms - t).max(0) as f64 / 1000.0);
            let labels = format!("route=\"{route}\",destination=\"{dest}\"");
            let _ = writeln!(depth, "wyvern_outbox_depth{{{labels}}} {n}");
            let _ = writeln!(
                age,
                "wyvern_outbox_oldest_age_seconds{{{labels}}} {seconds}"
            );
        };
        if let Some(shared) = &self.shared_depth {
            if let Ok(cache) = shared.lock() {
                for (route, dest, _) in &self.destinations {
                    if let Some(&(n, oldest)) = cache.get(&(route.clone(), dest.clone())) {
                        sample(route, dest, n, oldest);
                    }
                }
            }
        } else if let Ok(mut guard) = self.outbox.lock() {
            if guard.is_none() {
                *guard = Outbox::open(&self.store_dir).ok();
            }
            if let Some(o) = guard.as_ref() {
                for (route, dest, _) in &self.destinations {
                    if let Ok((n, oldest)) = o.depth(route, dest) {
                        sample(route, dest, n, oldest);
                    }
                }
            }
        }
        help(
            &mut out,
            "wyvern_outbox_depth",
            "gauge",
            "Messages waiting for a destination.",
        );
        out.push_str(&depth);
        help(
            &mut out,
            "wyvern_outbox_oldest_age_seconds",
            "gauge",
            "Age of the oldest message waiting for a destination.",
        );
        out.push_str(&age);
        help(
            &mut out,
            "wyvern_delivery_panics_total",
            "counter",
            "Panics caught in a destination's delivery (a client library's defect); each one's message is dead-lettered.",
        );
        for (route, dest, c) in &self.destinations {
            let _ = writeln!(
                out,
                "wyvern_delivery_panics_total{{route=\"{route}\",destination=\"{dest}\"}} {}",
                get(&c.panics)
            );
        }
        help(
            &mut out,
            "wyvern_journal_commits_total",
            "counter",
            "Group commits (one write and one fdatasync each).",
        );
        let _ = writeln!(
            out,
            "wyvern_journal_commits_total {}",
            get(&self.store.commits)
        );
        help(
            &mut out,
            "wyvern_journal_records_total",
            "counter",
            "Messages written to the journal.",
        );
        let _ = writeln!(
            out,
            "wyvern_journal_records_total {}",
            get(&self.store.records)
        );
        help(
            &mut out,
            "wyvern_indexed_records_total",
            "counter",
            "Messages in the searchable index.",
        );
        let _ = writeln!(
            out,
            "wyvern_indexed_records_total {}",
            get(&self.store.indexed)
        );
        help(
            &mut out,
            "wyvern_journal_failed_commits_total",
            "counter",
            "Group commits whose journal write or fdatasync failed (a full disk, an I/O error): their senders were answered AE.",
        );
        let _ = writeln!(
            out,
            "wyvern_journal_failed_commits_total {}",
            get(&self.store.failed_commits)
        );
        help(
            &mut out,
            "wyvern_store_index_at_risk",
            "gauge",
            "1 after an fsync of the index failed: every journal segment is kept and replayed at the next start; restart once the disk is sound.",
        );
        let _ = writeln!(
            out,
            "wyvern_store_index_at_risk {}",
            u8::from(self.store.index_at_risk.load(Ordering::Relaxed))
        );
        help(
            &mut out,
            "wyvern_retention_pruned_total",
            "counter",
            "Finished messages removed from the store by retention.",
        );
        let _ = writeln!(out, "wyvern_retention_pruned_total {}", get(&self.pruned));
        if let Some(b) = &self.bridge {
            help(
                &mut out,
                "wyvern_bridge_queries_total",
                "counter",
                "Bridge queries, by outcome: answered (200, partial ones too), refused by the access policy (403), bad (400/404), unaudited (503: the audit log could not be written).",
            );
            for (outcome, n) in [
                ("answered", &b.answered),
                ("refused", &b.refused),
                ("bad", &b.bad),
                ("unaudited", &b.unaudited),
            ] {
                let _ = writeln!(
                    out,
                    "wyvern_bridge_queries_total{{outcome=\"{outcome}\"}} {}",
                    get(n)
                );
            }
            help(
                &mut out,
                "wyvern_bridge_member_failures_total",
                "counter",
                "Bridge asks that got nothing from a member (failed, timed out, too large): the answer went without it.",
            );
            for (member, n) in &b.member_failures {
                let _ = writeln!(
                    out,
                    "wyvern_bridge_member_failures_total{{member=\"{member}\"}} {}",
                    get(n)
                );
            }
        }
        out
    }
}
