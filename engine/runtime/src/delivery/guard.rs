//! A destination's client that panics — a library's bug, an input it did not expect (lapin
//! panicked on a routing key over 255 bytes) — fails the message it panicked on, never the
//! worker: the batch is tried again one message at a time, so the one that panics is found and
//! dead-lettered with the panic's text, and every other message goes on.

use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

use futures_util::FutureExt as _;
use wyvern_core::ErrorClass;
use wyvern_store::OutboxItem;

use super::{Failure, Sending, Sink};

/// [`Sink::deliver_many`], with panics caught; `panics` counts them.
pub(super) async fn deliver_guarded(
    sink: &mut Sink,
    batch: &[OutboxItem],
    panics: &AtomicU64,
) -> Vec<Result<String, Failure>> {
    let first = match AssertUnwindSafe(sink.deliver_many(batch))
        .catch_unwind()
        .await
    {
        Ok(results) => return results,
        Err(p) => panic_text(p.as_ref()),
    };
    panics.fetch_add(1, Ordering::Relaxed);
    sink.reset();
    if let [only] = batch {
        return vec![Err(poisoned(only, &first))];
    }
    tracing::error!(panic = %first, messages = batch.len(), "a delivery panicked; trying the batch one message at a time to find the message it failed on");
    let mut out = Vec::with_capacity(batch.len());
    for item in batch {
        let r = match AssertUnwindSafe(sink.deliver_many(std::slice::from_ref(item)))
            .catch_unwind()
            .await
        {
            Ok(mut r) => match r.pop() {
                Some(r) => r,
                None => break,
            },
            Err(p) => {
                panics.fetch_add(1, Ordering::Relaxed);
                sink.reset();
                Err(poisoned(item, &panic_text(p.as_ref())))
            }
        };
        // As in a normal pass: after a transient failure the rest wait (their keys' order).
        let stop = matches!(&r, Err(f) if f.class == ErrorClass::Transient);
        out.push(r);
        if stop {
            break;
        }
    }
    out
}

/// [`Sink::start`], with panics caught: a batch that panicked is sent as
/// [`deliver_guarded`] sends it.
pub(super) async fn start_guarded(
    sink: &mut Sink,
    batch: &[OutboxItem],
    panics: &AtomicU64,
) -> Sending {
    match AssertUnwindSafe(sink.start(batch)).catch_unwind().await {
        Ok(sending) => sending,
        Err(p) => {
            panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(panic = %panic_text(p.as_ref()), "putting a batch on the wire panicked; sending it again one message at a time");
            sink.reset();
            Sending::Done(deliver_guarded(sink, batch, panics).await)
        }
    }
}

/// [`Sink::confirmed`], with panics caught: the batch is sent again as [`deliver_guarded`]
/// sends it (its first sending may have arrived: at least once).
pub(super) async fn confirmed_guarded(
    sink: &mut Sink,
    sending: Sending,
    batch: &[OutboxItem],
    panics: &AtomicU64,
) -> Vec<Result<String, Failure>> {
    match AssertUnwindSafe(sink.confirmed(sending))
        .catch_unwind()
        .await
    {
        Ok(results) => results,
        Err(p) => {
            panics.fetch_add(1, Ordering::Relaxed);
            tracing::error!(panic = %panic_text(p.as_ref()), "waiting for a batch's confirms panicked; sending it again one message at a time");
            sink.reset();
            deliver_guarded(sink, batch, panics).await
        }
    }
}

fn poisoned(item: &OutboxItem, panic: &str) -> Failure {
    tracing::error!(id = %item.message_id, %panic, "the destination's client panicked on this message; dead-lettering it");
    Failure {
        class: ErrorClass::Permanent,
        reason: format!("the destination's client failed on this message (a defect: {panic})"),
    }
}

/// The text a panic carried, if it was a string.
pub(super) fn panic_text(p: &(dyn std::any::Any + Send)) -> String {
    p.downcast_ref::<&str>()
        .map(|s| (*s).to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".into())
}
