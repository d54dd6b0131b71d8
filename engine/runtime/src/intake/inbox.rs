//! The HL7v2 inbox of one route: the [`FrameHandler`] that commits each frame to the store and
//! releases its ACK only when the commit is durable.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use tracing::Instrument;
use wyvern_connectors::mllp::{AckFuture, FrameHandler, MllpFrame};
use wyvern_core::{Clock, ContentType, Envelope, MessageId, hl7_timestamp};
use wyvern_store::{InboxReader, InboxRecord, InboxStatus, Stored};

use super::ingest::Ingest;

use super::ack::{Override, answer};
use super::assess::{Assessment, Context, ExpectedSender, assess};
use super::dedup::{DedupWindow, Seen, key};
use crate::RoutePlan;
use wyvern_config::{ControlIdReuse, SenderIdentity, SenderMismatch, SenderRule};
use wyvern_connectors::peers::Peer;

/// Per-route counters (exported as metrics), and the operator's switches on the route.
#[derive(Debug, Default)]
pub struct RouteCounters {
    /// Intake stopped, delivery paused ([`crate::control`]).
    pub control: Arc<crate::control::RouteControl>,
    pub received: AtomicU64,
    pub accepted: AtomicU64,
    pub rejected: AtomicU64,
    pub filtered: AtomicU64,
    pub duplicates: AtomicU64,
    pub conflicts: AtomicU64,
    /// Accepted although their control id was used before for other content
    /// (`control_id_reuse: accept`).
    pub reused: AtomicU64,
    /// Answered AE because a step (a plugin) failed on the message.
    pub failed: AtomicU64,
    /// From a network whose `senders` facility is not the message's MSH-4 (rejected or
    /// flagged, as `sender_mismatch` says).
    pub sender_mismatch: AtomicU64,
    pub store_failures: AtomicU64,
    pub ack_latency: crate::metrics::Histogram,
    /// Connections the route's listener refused, by reason.
    pub refusals: Arc<wyvern_connectors::peers::Refusals>,
}

/// Receives one route's HL7v2 frames into the durable inbox.
#[derive(Debug)]
pub struct Hl7Inbox {
    route: String,
    plan: RoutePlan,
    dedup: Arc<DedupWindow>,
    /// For the original ACK of a resend (opened on first need).
    reader: Arc<Mutex<Option<InboxReader>>>,
    store: Ingest,
    clock: Arc<dyn Clock>,
    max_frame: usize,
    control_id_reuse: ControlIdReuse,
    /// The facility each network sends as (`senders`), and what a mismatch gets.
    senders: Vec<SenderRule>,
    sender_mismatch: SenderMismatch,
    counters: Arc<RouteCounters>,
}

/// A message's claim in the duplicate window, settled when its commit is known.
#[derive(Debug)]
struct Claim {
    key: u64,
    id: String,
}

/// What the duplicate check decided beyond the assessment it updated.
#[derive(Debug, Default)]
struct DuplicateCheck {
    /// The window claim to confirm after the commit (or release if it fails).
    claim: Option<Claim>,
    /// A resend that arrived while its original was being committed: offer it again later.
    retry_later: bool,
    /// The content digest, when it was taken (the index stores it: computed once).
    digest: Option<wyvern_core::ContentDigest>,
}

impl Hl7Inbox {
    pub fn new(
        plan: RoutePlan,
        store: impl Into<Ingest>,
        clock: Arc<dyn Clock>,
        max_frame: usize,
        dedup: Arc<DedupWindow>,
    ) -> Self {
        Hl7Inbox {
            route: plan.route.clone(),
            plan,
            dedup,
            reader: Arc::default(),
            store: store.into(),
            clock,
            max_frame,
            control_id_reuse: ControlIdReuse::default(),
            senders: Vec::new(),
            sender_mismatch: SenderMismatch::default(),
            counters: Arc::default(),
        }
    }

    /// The facility (MSH-4.1) each network sends as, and what a message naming another gets.
    pub fn with_senders(mut self, senders: Vec<SenderRule>, mismatch: SenderMismatch) -> Self {
        self.senders = senders;
        self.sender_mismatch = mismatch;
        self
    }

    /// The facility `peer` must send as: that of the first `senders` rule naming its network
    /// or its certificate.
    fn sender_of(&self, peer: &Peer) -> Option<&str> {
        let ip = peer.addr.ip().to_canonical();
        self.senders
            .iter()
            .find(|r| match &r.from {
                SenderIdentity::Network(net) => net.contains(&ip),
                SenderIdentity::Certificate(name) => {
                    peer.certificate.as_ref().is_some_and(|c| c.is_named(name))
                }
            })
            .map(|r| r.facility.as_str())
    }

    /// What to do with a control id reused for other content (default: accept, flagged).
    pub fn with_control_id_reuse(mut self, policy: ControlIdReuse) -> Self {
        self.control_id_reuse = policy;
        self
    }

    pub fn counters(&self) -> Arc<RouteCounters> {
        self.counters.clone()
    }
}

impl Hl7Inbox {
    /// Turns a resend into `Duplicate` (with the original ACK), and a reused control id into
    /// a flagged acceptance or `Conflict` (AE) as the route says.
    async fn check_duplicate(
        &self,
        a: &mut Assessment,
        id: &str,
        ack_id: &str,
        now: &str,
    ) -> DuplicateCheck {
        if !matches!(a.status, InboxStatus::Accepted | InboxStatus::Filtered) {
            return DuplicateCheck::default();
        }
        let Some(control_id) = a.meta.control_id.as_deref() else {
            return DuplicateCheck::default();
        };
        let k = key(
            a.meta.sending_application.as_deref().unwrap_or(""),
            a.meta.sending_facility.as_deref().unwrap_or(""),
            control_id,
        );
        let digest = wyvern_core::content_digest(&a.raw);
        let claim = Some(Claim {
            key: k,
            id: id.to_string(),
        });
        let (claim, retry_later) = match self.dedup.claim(k, digest, id) {
            Seen::New => (claim, false),
            Seen::Same { original } => {
                tracing::info!(route = %self.route, control_id, %original, "resend of an accepted message: original ACK sent again, not delivered twice");
                a.status = InboxStatus::Duplicate;
                a.deliveries.clear();
                a.error = Some(format!("resend of {original}"));
                if let Some(ack) = self.original_ack(original).await {
                    a.ack = Some(ack);
                }
                (None, false)
            }
            Seen::InFlight { original } => {
                // Its original's commit may still fail: answering with its ACK could lose
                // both. The sender resends, and then gets the original's ACK.
                tracing::info!(route = %self.route, control_id, %original, "resend while the original is being stored: AE, send it again");
                let (ack, why) = answer(
                    &a.raw,
                    Override::ResendInFlight {
                        original: &original,
                    },
                    ack_id,
                    now,
                );
                a.status = InboxStatus::Duplicate;
                a.deliveries.clear();
                a.ack = Some(ack);
                a.error = Some(why);
                (None, true)
            }
            Seen::Reused { original } => match self.control_id_reuse {
                ControlIdReuse::Accept => {
                    tracing::warn!(route = %self.route, control_id, %original, "control id reused for different content: accepted as a new message (control_id_reuse: accept)");
                    self.counters.reused.fetch_add(1, Ordering::Relaxed);
                    self.dedup.take_over(k, digest, id);
                    a.error = Some(format!(
                        "control id {control_id} reused: {original} had other content; accepted as a new message (control_id_reuse: accept)"
                    ));
                    (claim, false)
                }
                ControlIdReuse::Reject => {
                    tracing::warn!(route = %self.route, control_id, %original, "control id reused for different content: AE (control_id_reuse: reject)");
                    let (ack, text) = answer(
                        &a.raw,
                        Override::Conflict {
                            original: &original,
                        },
                        ack_id,
                        now,
                    );
                    a.status = InboxStatus::Conflict;
                    a.deliveries.clear();
                    a.error = Some(text);
                    a.ack = Some(ack);
                    (None, false)
                }
            },
        };
        DuplicateCheck {
            claim,
            retry_later,
            digest: Some(digest),
        }
    }

    async fn original_ack(&self, original: String) -> Option<Bytes> {
        let (reader, dir) = (self.reader.clone(), self.store.local_dir()?.to_path_buf());
        tokio::task::spawn_blocking(move || {
            let mut r = reader.lock().ok()?;
            if r.is_none() {
                *r = InboxReader::open(&dir).ok();
            }
            r.as_ref()?.get(&original).ok()??.ack.map(Bytes::from)
        })
        .await
        .ok()?
    }
}

/// What became of one received message, once its commit has finished.
#[derive(Debug, Clone)]
pub struct Received {
    /// The answer for the sender (`None` when enhanced mode asked for none).
    pub ack: Option<Bytes>,
    /// False when the store failed: the message is not ours yet, the sender keeps it.
    pub stored: bool,
    /// Not accepted (AE), so the sender still owns it and should offer it again later: not
    /// stored, a step (a plugin) failed on it, its control id was refused, or it is a resend
    /// whose original is still being stored. A folder or queue source keeps such a message
    /// ([`crate::poison`] parks it after a few attempts) instead of letting it go as done.
    pub retry: bool,
}

/// Resolves when a received message's commit has finished.
pub type ReceivedFuture = std::pin::Pin<Box<dyn std::future::Future<Output = Received> + Send>>;

impl FrameHandler for Hl7Inbox {
    async fn accept(&self, frame: MllpFrame, peer: &Peer) -> AckFuture {
        let sender = self.sender_of(peer);
        let received = self.receive_from(frame, peer.to_string(), sender).await;
        Box::pin(async move { received.await.ack })
    }
}

impl Hl7Inbox {
    /// The answer while an operator has stopped this route's intake: AE, nothing stored, so
    /// the sender keeps the message and offers it again later.
    fn not_now(&self, frame: MllpFrame, now: i64) -> ReceivedFuture {
        let raw = match &frame {
            MllpFrame::Message(b) => b.clone(),
            MllpFrame::Oversized { head, .. } => head.clone(),
        };
        let id = MessageId::new(now).to_string();
        let (ack, _) = answer(
            &raw,
            Override::IntakeStopped,
            &id[..20],
            &hl7_timestamp(now),
        );
        tracing::info!(route = %self.route, "intake stopped by an operator: AE, not stored");
        Box::pin(async move {
            Received {
                ack: Some(ack),
                stored: false,
                retry: true,
            }
        })
    }

    /// Assesses, stores and answers one message from `origin` (a peer address, a file name).
    /// Returns once it is queued for the commit; the future resolves after the commit.
    ///
    /// Everything logged about the message, here and when its commit finishes, is inside a
    /// `message` span carrying its id (the delivery workers' `delivery` spans carry the same).
    pub async fn receive(&self, frame: MllpFrame, origin: String) -> ReceivedFuture {
        self.receive_from(frame, origin, None).await
    }

    /// [`Hl7Inbox::receive`], from a peer bound to the facility `sender` (MSH-4.1).
    async fn receive_from(
        &self,
        frame: MllpFrame,
        origin: String,
        sender: Option<&str>,
    ) -> ReceivedFuture {
        let now = self.clock.now_millis();
        if self.counters.control.intake_stopped() {
            return self.not_now(frame, now);
        }
        let id = MessageId::new(now);
        let span = tracing::info_span!("message", %id, route = %self.route);
        let committed = self
            .receive_as(frame, origin, sender, id, now)
            .instrument(span.clone())
            .await;
        Box::pin(committed.instrument(span))
    }

    async fn receive_as(
        &self,
        frame: MllpFrame,
        origin: String,
        sender: Option<&str>,
        id: MessageId,
        now: i64,
    ) -> ReceivedFuture {
        let peer = origin;
        let started = std::time::Instant::now();
        let id_text = id.to_string();
        // MSH-10 is 20 characters in v2.3-2.5: the ULID's time part and 50 random bits.
        let ack_id = &id_text[..20];
        let now_hl7 = hl7_timestamp(now);
        let cx = Context {
            max_frame: self.max_frame,
            ack_id,
            now: &now_hl7,
            message_id: &id_text,
            plan: &self.plan,
            sender: sender.map(|facility| ExpectedSender {
                facility,
                mismatch: self.sender_mismatch,
            }),
        };
        // Plugins run synchronously (bounded by their time limit): tell tokio this worker
        // thread is busy so other connections keep being served meanwhile.
        let mut a = if self.plan.has_plugins() {
            tokio::task::block_in_place(|| assess(frame, &cx))
        } else {
            assess(frame, &cx)
        };
        if a.sender_mismatch {
            self.counters
                .sender_mismatch
                .fetch_add(1, Ordering::Relaxed);
            tracing::warn!(route = %self.route, %peer, facility = a.meta.sending_facility.as_deref().unwrap_or(""), expected = sender.unwrap_or(""), action = ?self.sender_mismatch, "message names another sending facility than its connection is bound to");
        }
        self.counters.received.fetch_add(1, Ordering::Relaxed);
        let DuplicateCheck {
            claim,
            retry_later,
            digest,
        } = self
            .check_duplicate(&mut a, &id_text, ack_id, &now_hl7)
            .await;
        let status = a.status;
        if status == InboxStatus::Rejected {
            tracing::warn!(route = %self.route, %peer, id = %id, control_id = a.meta.control_id.as_deref().unwrap_or(""), reason = a.error.as_deref().unwrap_or(""), "message rejected (AR)");
        } else {
            tracing::debug!(route = %self.route, %peer, id = %id, control_id = a.meta.control_id.as_deref().unwrap_or(""), "message received");
        }
        let raw = a.raw.clone();
        let mut meta = a.meta;
        meta.source.clone_from(&self.route);
        meta.peer = Some(peer.clone());
        let record = InboxRecord {
            envelope: Envelope {
                id,
                received_at_ms: now,
                content_type: ContentType::Hl7v2,
                raw: a.raw,
                meta,
                parent: None,
            },
            status: a.status,
            error: a.error,
            ack: a.ack.clone(),
            raw_len: a.raw_len,
            deliveries: a.deliveries,
            digest,
        };
        let ack = a.ack;
        let counters = self.counters.clone();
        let route = self.route.clone();
        let ack_id = ack_id.to_string();
        let failed = move |e: wyvern_store::StoreError| -> Option<Bytes> {
            counters.store_failures.fetch_add(1, Ordering::Relaxed);
            tracing::error!(route = %route, id = %id, error = %e, "message not stored; answering AE");
            let reason = e.to_string();
            Some(
                answer(
                    &raw,
                    Override::NotStored { reason: &reason },
                    &ack_id,
                    &now_hl7,
                )
                .0,
            )
        };
        let counters = self.counters.clone();
        let route_name = self.route.clone();
        let dedup = self.dedup.clone();
        let release = {
            let dedup = self.dedup.clone();
            move |claim: Option<Claim>| {
                if let Some(c) = claim {
                    dedup.release(c.key, &c.id);
                }
            }
        };
        match self.store.submit(record).await {
            Ok(pending) => Box::pin(async move {
                match pending.wait().await {
                    Ok(Stored::ResendOf {
                        original,
                        ack: original_ack,
                    }) => {
                        // A shared store already holds the original: taken by another node
                        // (the sender's connection landed elsewhere this time), or by this
                        // one before its own window forgot it. Answered as a resend.
                        tracing::info!(route = %route_name, %original, "resend of a message the shared store already holds: original ACK sent again, not delivered twice");
                        counters.duplicates.fetch_add(1, Ordering::Relaxed);
                        counters.ack_latency.observe(started.elapsed());
                        if let Some(c) = claim {
                            dedup.release(c.key, &c.id);
                            if let Some(digest) = digest {
                                dedup.remember(c.key, digest, original);
                            }
                        }
                        Received {
                            ack: original_ack.map(Bytes::from).or(ack),
                            stored: true,
                            retry: false,
                        }
                    }
                    Ok(Stored::New) => {
                        let c = match status {
                            InboxStatus::Rejected => &counters.rejected,
                            InboxStatus::Filtered => &counters.filtered,
                            InboxStatus::Accepted => &counters.accepted,
                            InboxStatus::Duplicate => &counters.duplicates,
                            InboxStatus::Conflict => &counters.conflicts,
                            InboxStatus::Failed => &counters.failed,
                        };
                        c.fetch_add(1, Ordering::Relaxed);
                        counters.ack_latency.observe(started.elapsed());
                        if let Some(c) = claim {
                            dedup.confirm(c.key, &c.id);
                        }
                        Received {
                            ack,
                            stored: true,
                            retry: matches!(status, InboxStatus::Failed | InboxStatus::Conflict)
                                || retry_later,
                        }
                    }
                    Err(e) => {
                        release(claim);
                        Received {
                            ack: failed(e),
                            stored: false,
                            retry: true,
                        }
                    }
                }
            }),
            Err(e) => {
                release(claim);
                let ack = failed(e);
                Box::pin(async move {
                    Received {
                        ack,
                        stored: false,
                        retry: true,
                    }
                })
            }
        }
    }
}
