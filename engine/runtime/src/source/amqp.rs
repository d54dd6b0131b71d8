//! The AMQP source's consumer loop: each delivery goes through the route's inbox in arrival
//! order; the broker gets its ack only when the commit is durable. A message the engine could
//! not take — a store failure, or a message it would not accept (AE: a plugin failed on it, its
//! control id was refused) — is handed back with a nack and requeue after a pause, so the
//! broker keeps it; one that was stored (with its reason) but still not accepted after
//! [`poison::MAX_ATTEMPTS`] is parked — acked, and kept in the inbox — rather than requeued for
//! ever. A message that could not be stored is always requeued. A dropped connection is re-opened with
//! backoff; what was in flight comes again as a redelivery, and duplicate detection answers
//! for whatever had already been committed.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;
use wyvern_connectors::amqp_consumer::{AmqpSubscriber, AmqpSubscription};
use wyvern_connectors::mllp::MllpFrame;

use crate::Hl7Inbox;
use crate::poison::{self, Attempts};

#[derive(Debug)]
pub struct AmqpSource {
    pub route: String,
    pub subscription: AmqpSubscription,
    pub inbox: Arc<Hl7Inbox>,
}

const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// How long a message the engine could not take (store failure, plugin failure) waits
/// before it goes back to the queue, so a failing store is not hammered and a quorum queue's
/// delivery limit is not used up in milliseconds. Its prefetch slot stays taken meanwhile,
/// which slows the consumer down while things fail.
const REQUEUE_DELAY: Duration = Duration::from_secs(2);

impl AmqpSource {
    pub async fn run(self, shutdown: CancellationToken) {
        let queue = self.subscription.queue.clone();
        let mut backoff = Duration::from_millis(500);
        while !shutdown.is_cancelled() {
            match self.subscription.open().await {
                Ok(sub) => {
                    tracing::info!(route = %self.route, %queue, "consuming from the AMQP queue");
                    if self.consume(sub, &shutdown).await {
                        backoff = Duration::from_millis(500);
                    }
                    // The subscription ended: pause before the next, so a broker that keeps
                    // cancelling consumers is not hammered.
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
                Err(e) => {
                    tracing::warn!(route = %self.route, %queue, error = %e, retry_in = ?backoff, "AMQP source cannot subscribe; will retry");
                    tokio::select! {
                        _ = shutdown.cancelled() => break,
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(MAX_BACKOFF);
                }
            }
        }
        tracing::info!(route = %self.route, %queue, "AMQP source stopped");
    }

    /// Consumes until the stream ends, fails or `shutdown`; then waits for the acks in flight.
    /// Returns whether any message arrived (a healthy subscription resets the backoff).
    async fn consume(&self, mut sub: AmqpSubscriber, shutdown: &CancellationToken) -> bool {
        let mut any = false;
        let origin = format!("amqp:{}", self.subscription.queue);
        let mut acks = JoinSet::new();
        let attempts = Arc::new(std::sync::Mutex::new(Attempts::default()));
        loop {
            let next = tokio::select! {
                _ = shutdown.cancelled() => break,
                next = sub.next() => next,
            };
            let delivery = match next {
                Some(Ok(d)) => d,
                Some(Err(e)) => {
                    tracing::warn!(route = %self.route, error = %e, "AMQP consumer failed; reconnecting");
                    break;
                }
                None => {
                    tracing::warn!(route = %self.route, "the broker ended the subscription; reconnecting");
                    break;
                }
            };
            any = true;
            if delivery.redelivered {
                tracing::debug!(route = %self.route, "redelivered by the broker");
            }
            let data = Bytes::from(delivery.data);
            let received = self
                .inbox
                .receive(MllpFrame::Message(data.clone()), origin.clone())
                .await;
            let settle = delivery.settle;
            let route = self.route.clone();
            let attempts = attempts.clone();
            acks.spawn(async move {
                let r = received.await;
                // Only a message that was stored (with its reason) may be parked; one that was
                // not is always requeued.
                let park = r.stored
                    && attempts
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .offered(&data, !r.retry);
                if park {
                    tracing::error!(%route, attempts = poison::MAX_ATTEMPTS, "message still not accepted; parked: acked and kept in the inbox with the reason");
                }
                let outcome = if r.retry && !park {
                    tokio::time::sleep(REQUEUE_DELAY).await;
                    settle.requeue().await
                } else {
                    settle.ack().await
                };
                if let Err(e) = outcome {
                    // The broker will deliver it again; duplicate detection answers then.
                    tracing::debug!(%route, error = %e, "cannot settle an AMQP delivery");
                }
            });
            while acks.try_join_next().is_some() {}
        }
        while acks.join_next().await.is_some() {}
        sub.close().await;
        any
    }
}

impl super::Source for AmqpSource {
    fn name(&self) -> String {
        format!("AMQP source {}", self.route)
    }

    fn run(
        self: Box<Self>,
        shutdown: CancellationToken,
    ) -> futures_util::future::BoxFuture<'static, ()> {
        Box::pin(AmqpSource::run(*self, shutdown))
    }
}

/// The queue consumer of `route` (it connects when it runs, and reconnects).
pub(super) fn build(
    route: &wyvern_config::Route,
    a: &wyvern_config::AmqpSource,
    inbox: Hl7Inbox,
) -> Result<Box<dyn super::Source>, crate::engine::BuildError> {
    let url = a
        .url
        .resolve()
        .map_err(|reason| crate::engine::BuildError::Source {
            route: route.name.clone(),
            reason,
        })?;
    Ok(Box::new(AmqpSource {
        route: route.name.clone(),
        subscription: AmqpSubscription {
            url,
            queue: a.queue.clone(),
            prefetch: a.prefetch,
            declare_quorum: a.declare.map(|q| q == wyvern_config::QueueType::Quorum),
            consumer_tag: format!("wyvern:{}", route.name),
        },
        inbox: Arc::new(inbox),
    }))
}
