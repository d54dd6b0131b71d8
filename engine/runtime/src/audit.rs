//! What the engine itself adds to the audit log: connections refused because of who they came
//! from — an address outside `allow_from`, a failed TLS handshake (an untrusted or missing
//! client certificate), a certificate outside `allow_subjects`. Aggregated per route, address,
//! reason and minute — a scan or a flood
//! is one record a minute per address, at most `MAX_PEERS` addresses a minute (the rest summed
//! in one record), so the log can never become the attack's amplifier.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use wyvern_connectors::peers::{Refusal, RefusedPeer};
use wyvern_core::Clock;
use wyvern_store::{AuditAction, AuditEntry};

/// How often the tallies are written.
const EVERY: Duration = Duration::from_secs(60);
/// Addresses tallied on their own per interval; more are summed into one record.
const MAX_PEERS: usize = 1_000;
/// Reports waiting to be tallied; more are dropped (the metrics still count them).
pub const QUEUE: usize = 1_024;

/// Tallies refused peers and writes them to the store's audit log.
#[derive(Debug)]
pub struct RefusalAudit {
    /// Where refusals are recorded (the cluster's audit log on a node of one).
    pub audit: Arc<dyn wyvern_store::AuditTrail>,
    pub clock: Arc<dyn Clock>,
    pub reports: mpsc::Receiver<RefusedPeer>,
}

/// Route, address, reason and the certificate's name (when that was the reason).
type Key = (Arc<str>, IpAddr, Refusal, Option<String>);

#[derive(Debug, Default)]
struct Tally {
    peers: HashMap<Key, u64>,
    /// Refusals from addresses past the first `MAX_PEERS`, per route.
    others: HashMap<Arc<str>, u64>,
}

impl RefusalAudit {
    pub async fn run(mut self, shutdown: CancellationToken) {
        let mut tally = Tally::default();
        let mut tick = tokio::time::interval(EVERY);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => self.write(std::mem::take(&mut tally)).await,
                report = self.reports.recv() => match report {
                    Some(r) => tally.add(r),
                    // No listener reports (none left, or none at all): nothing more can come,
                    // but the task lives as long as the engine, which is what `/ready` watches.
                    None => {
                        shutdown.cancelled().await;
                        break;
                    }
                },
            }
        }
        // What arrived before the stop is written too.
        while let Ok(r) = self.reports.try_recv() {
            tally.add(r);
        }
        self.write(tally).await;
    }

    async fn write(&self, tally: Tally) {
        if tally.peers.is_empty() && tally.others.is_empty() {
            return;
        }
        let at_ms = self.clock.now_millis();
        let mut entries: Vec<AuditEntry> = tally
            .peers
            .into_iter()
            .map(|((route, ip, refusal, certificate), n)| AuditEntry {
                at_ms,
                actor: match &certificate {
                    Some(name) => format!("certificate:{name}"),
                    None => format!("network:{ip}"),
                },
                action: AuditAction::Refused,
                message_id: None,
                nhs_number: None,
                from: Some(ip.to_string()),
                detail: Some(format!(
                    "{n} connection(s) to route {route} refused: {}",
                    refusal.reason()
                )),
            })
            .collect();
        entries.extend(tally.others.into_iter().map(|(route, n)| AuditEntry {
            at_ms,
            actor: "network:(many)".into(),
            action: AuditAction::Refused,
            message_id: None,
            nhs_number: None,
            from: None,
            detail: Some(format!(
                "{n} more connection(s) to route {route} refused, from addresses beyond the first {MAX_PEERS} this minute"
            )),
        }));
        for e in entries {
            if let Err(e) = self.audit.append(e).await {
                tracing::error!(error = %e, "cannot write refused connections to the audit log");
                return;
            }
        }
    }
}

impl Tally {
    fn add(&mut self, r: RefusedPeer) {
        let key = (r.route.clone(), r.ip, r.refusal, r.certificate);
        if let Some(n) = self.peers.get_mut(&key) {
            *n += 1;
        } else if self.peers.len() < MAX_PEERS {
            self.peers.insert(key, 1);
        } else {
            *self.others.entry(r.route).or_default() += 1;
        }
    }
}
