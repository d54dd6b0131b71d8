//! A pass stops being sent when its lease lapses (`wyvern_store::Fence`): a node cut off from
//! the shared store must go quiet before another node can take its partitions over, even in
//! the middle of a pass to a slow destination — or two nodes would send the same keys at
//! once. The worker sends under [`unless_lapsed`]; requests handed to a task of their own (a
//! FHIR batch, sent while the worker reads the next pass) are aborted by [`abort_on_lapse`]. What was sent and not recorded goes again from whichever node holds the lease next
//! (at least once). The embedded store's fences never lapse, so nothing here ever fires for it.

use std::future::Future;
use std::time::{Duration, Instant};

use wyvern_store::Fence;

/// Runs `send` unless `fence` lapses first (checked before `send` is first polled, so nothing
/// goes on the wire under a fence that has already lapsed). `None`: it lapsed, and `send` was
/// dropped wherever it was.
pub(super) async fn unless_lapsed<T>(fence: &Fence, send: impl Future<Output = T>) -> Option<T> {
    tokio::select! {
        biased;
        () = lapsed(fence) => None,
        out = send => Some(out),
    }
}

/// Aborts `task` if `fence` lapses before it ends: a batch whose requests go on in a task of
/// their own while the worker does something else (reads the next pass, which may hang on a
/// database that cannot be reached) must stop too. Nothing to watch under a fence that never
/// lapses.
pub(super) fn abort_on_lapse(fence: &Fence, task: tokio::task::AbortHandle) {
    if fence.deadline().is_none() {
        return;
    }
    let fence = fence.clone();
    tokio::spawn(async move {
        while !task.is_finished() {
            if !fence.holds() {
                task.abort();
                return;
            }
            tokio::time::sleep(LOOK_EVERY).await;
        }
    });
}

/// How often a wait on a fence looks again: a lease found lost brings its deadline to now.
const LOOK_EVERY: Duration = Duration::from_millis(50);

/// Completes once `fence` has lapsed; a renewal meanwhile moves the wait on.
async fn lapsed(fence: &Fence) {
    loop {
        match fence.deadline() {
            None => std::future::pending::<()>().await,
            Some(at) if Instant::now() >= at => return,
            Some(at) => tokio::time::sleep_until(at.min(Instant::now() + LOOK_EVERY).into()).await,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_send_under_a_lapsed_fence_never_starts() {
        let fence = Fence::until(Instant::now());
        let started = std::sync::atomic::AtomicBool::new(false);
        let out = unless_lapsed(&fence, async {
            started.store(true, std::sync::atomic::Ordering::Relaxed);
        })
        .await;
        assert_eq!(out, None);
        assert!(!started.load(std::sync::atomic::Ordering::Relaxed));
    }

    // Real time (fences are on the std clock), with wide margins.
    #[tokio::test]
    async fn a_renewal_lets_a_long_send_finish_and_a_loss_stops_it() {
        let fence = Fence::until(Instant::now() + Duration::from_millis(300));
        let renewer = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            renewer.set(Instant::now() + Duration::from_secs(60));
        });
        let slow = tokio::time::sleep(Duration::from_millis(600));
        assert_eq!(
            unless_lapsed(&fence, slow).await,
            Some(()),
            "renewed in time"
        );

        let lost = fence.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(50)).await;
            lost.set(Instant::now());
        });
        let slow = tokio::time::sleep(Duration::from_secs(60));
        assert_eq!(unless_lapsed(&fence, slow).await, None, "stopped when lost");
        assert!(unless_lapsed(&Fence::default(), async { 7 }).await == Some(7));
    }

    #[tokio::test]
    async fn a_task_sending_on_its_own_is_aborted_when_its_fence_lapses() {
        let fence = Fence::until(Instant::now() + Duration::from_secs(60));
        let task = tokio::spawn(tokio::time::sleep(Duration::from_secs(60)));
        abort_on_lapse(&fence, task.abort_handle());
        fence.set(Instant::now());
        let ended = tokio::time::timeout(Duration::from_secs(10), task).await;
        assert!(
            ended
                .expect("aborted, not left running")
                .is_err_and(|e| e.is_cancelled()),
            "the task was aborted"
        );
    }
}
