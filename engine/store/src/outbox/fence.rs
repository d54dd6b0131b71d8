//! Until when a pass may be sent: the sender's side of a lease.
//!
//! A shared store leases each partition of a lane to one node at a time. A node that loses
//! touch with the database must stop sending *before* its lease can expire there and another
//! node take the partition over — including in the middle of a pass already on its way to a
//! slow destination, or two nodes would send the same keys at once. So a pass carries the
//! fence of the lease it was read under: a deadline on this node's monotonic clock, moved on
//! by each renewal (the same fence is shared by the lease and every pass read under it), and
//! brought to now when the lease is known lost. The worker stops sending a pass once its
//! fence has lapsed. The embedded store's passes carry a fence that never lapses.

use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A pass's deadline; clones share it. `Fence::default()` never lapses.
#[derive(Debug, Clone, Default)]
pub struct Fence(Option<Arc<Mutex<Instant>>>);

impl Fence {
    /// A fence that holds until `at` (unless moved).
    pub fn until(at: Instant) -> Fence {
        Fence(Some(Arc::new(Mutex::new(at))))
    }

    /// When it lapses, as things stand now; `None`: never.
    pub fn deadline(&self) -> Option<Instant> {
        self.0
            .as_ref()
            .map(|at| *at.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    }

    /// Whether sending may go on.
    pub fn holds(&self) -> bool {
        self.deadline().is_none_or(|at| Instant::now() < at)
    }

    /// Moves the deadline (a renewal: later; a lease known lost: now). No effect on a fence
    /// that never lapses.
    pub fn set(&self, at: Instant) {
        if let Some(deadline) = &self.0 {
            *deadline
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner) = at;
        }
    }
}

/// Two fences are equal when they are the same fence (or both never lapse).
impl PartialEq for Fence {
    fn eq(&self, other: &Fence) -> bool {
        match (&self.0, &other.0) {
            (Some(a), Some(b)) => Arc::ptr_eq(a, b),
            (None, None) => true,
            _ => false,
        }
    }
}

impl Eq for Fence {}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn a_fence_lapses_at_its_deadline_and_clones_share_moves() {
        assert!(Fence::default().holds());
        assert_eq!(Fence::default().deadline(), None);
        let now = Instant::now();
        let lease = Fence::until(now + Duration::from_secs(60));
        let pass = lease.clone();
        assert!(pass.holds());
        lease.set(now);
        assert!(
            !pass.holds(),
            "a lease known lost stops the passes read under it"
        );
        lease.set(now + Duration::from_secs(60));
        assert!(pass.holds(), "a renewal moves every pass's deadline on");
        assert_eq!(pass, lease);
        assert_ne!(pass, Fence::until(now));
    }
}
