//! Poison messages at a source that cannot be answered "no" (a folder, a queue): a message the
//! engine would not accept — a plugin fails on it, its control id is refused — is offered
//! again a few times (the failure may pass: a plugin fixed, a store back), then parked instead
//! of being retried for ever and holding up everything behind it. Parking loses nothing: each
//! attempt is kept in the inbox with its reason (`wyvern inbox list --status failed`).

use std::collections::{HashMap, VecDeque};

use wyvern_core::ContentDigest;

/// Attempts before a message (or file) is parked.
pub const MAX_ATTEMPTS: u32 = 5;
/// Distinct failing messages remembered; the oldest are forgotten past this (they simply start
/// counting again), so memory stays bounded.
const REMEMBERED: usize = 10_000;

/// Failed attempts per content digest.
#[derive(Debug, Default)]
pub struct Attempts {
    counts: HashMap<ContentDigest, u32>,
    order: VecDeque<ContentDigest>,
}

impl Attempts {
    /// Counts one more failed attempt; true when it is time to park the message.
    fn failed(&mut self, digest: ContentDigest) -> bool {
        let n = self.counts.entry(digest).or_insert(0);
        *n += 1;
        let park = *n >= MAX_ATTEMPTS;
        if *n == 1 {
            self.order.push_back(digest);
            while self.order.len() > REMEMBERED {
                if let Some(old) = self.order.pop_front() {
                    self.counts.remove(&old);
                }
            }
        }
        if park {
            self.forget(&digest);
        }
        park
    }

    /// One more offer of `body`, `accepted` or not; true when it is time to park it. The
    /// digest is taken only when there is something to count or to forget: a source whose
    /// messages all go through never hashes them.
    pub fn offered(&mut self, body: &[u8], accepted: bool) -> bool {
        if !accepted {
            return self.failed(wyvern_core::content_digest(body));
        }
        if !self.counts.is_empty() {
            self.forget(&wyvern_core::content_digest(body));
        }
        false
    }

    /// The message went through (or was parked): start afresh if it comes again.
    fn forget(&mut self, digest: &ContentDigest) {
        if self.counts.remove(digest).is_some() {
            self.order.retain(|d| d != digest);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parks_after_max_attempts_and_forgets() {
        let mut a = Attempts::default();
        let d = [1u8; 16];
        for _ in 1..MAX_ATTEMPTS {
            assert!(!a.failed(d));
        }
        assert!(a.failed(d), "parked at the last attempt");
        assert!(!a.failed(d), "counting starts afresh");
        a.forget(&d);
        assert!(a.counts.is_empty() && a.order.is_empty());
        for _ in 1..MAX_ATTEMPTS {
            assert!(!a.offered(b"MSH|x", false));
        }
        assert!(!a.offered(b"MSH|x", true), "accepted at last: forgotten");
        assert!(a.counts.is_empty());
        for _ in 1..MAX_ATTEMPTS {
            assert!(!a.offered(b"MSH|x", false), "counting starts afresh");
        }
    }
}
