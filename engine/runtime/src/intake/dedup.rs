//! Duplicate detection: has this sender already had this control id?
//!
//! Senders resend when an ACK goes missing. A resend with the same MSH-3/MSH-4/MSH-10 and the
//! same bytes gets the original ACK again and is not delivered twice; the same control id with
//! other content is a reused id, which the route's `control_id_reuse` policy accepts (flagged)
//! or answers AE. The window remembers the last `capacity` messages of a route (seeded from the
//! store at start, so a restart does not forget), keyed by a hash of MSH-3/4/10 with 128 bits
//! of SHA-256 of the bytes: about 100 bytes an entry with its message id, ~10 MiB for the
//! default 100,000.
//!
//! Invariant: a message is *claimed* in the window when it is checked, before its commit, and
//! the claim is confirmed after the commit or released if the commit fails. So a resend that
//! arrives while its original is being committed is seen (it used to be checked against a
//! window that learned of the original only after the commit, and was stored and delivered
//! twice), and it is answered "send it again" rather than with an ACK for a commit that may
//! still fail.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

use wyvern_core::ContentDigest;

/// How many messages per route are remembered by default.
pub const DEFAULT_WINDOW: usize = 100_000;

/// What the window knows about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Not seen: claimed now, for the message being received.
    New,
    /// Same key, same bytes, committed: a resend of `original`.
    Same { original: String },
    /// Same key, same bytes, and `original` is still being committed.
    InFlight { original: String },
    /// Same key, other bytes. Nothing is claimed: the caller decides (see [`DedupWindow::take_over`]).
    Reused { original: String },
}

#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Clone)]
struct Entry {
    digest: ContentDigest,
    id: String,
    committed: bool,
    /// What a claim replaced (a reused id taken over), put back if its commit fails.
    previous: Option<Box<Entry>>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, Entry>,
    order: VecDeque<u64>,
}

/// The key of a message: its sender and control id.
pub fn key(application: &str, facility: &str, control_id: &str) -> u64 {
    // DefaultHasher::new() has fixed keys, so keys computed at start from stored rows match
    // keys computed from live messages.
    let mut h = DefaultHasher::new();
    (application, facility, control_id).hash(&mut h);
    h.finish()
}

impl DedupWindow {
    pub fn new(capacity: usize) -> Self {
        DedupWindow {
            capacity: capacity.max(1),
            inner: Mutex::default(),
        }
    }

    /// Looks `key` up and, when it is new, claims it for message `id` in the same step.
    pub fn claim(&self, key: u64, digest: ContentDigest, id: &str) -> Seen {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        match inner.map.get(&key) {
            None => {
                inner.insert(key, Entry::claimed(digest, id, None), self.capacity);
                Seen::New
            }
            Some(e) if e.digest == digest && e.committed => Seen::Same {
                original: e.id.clone(),
            },
            Some(e) if e.digest == digest => Seen::InFlight {
                original: e.id.clone(),
            },
            Some(e) => Seen::Reused {
                original: e.id.clone(),
            },
        }
    }

    /// Claims a reused key for message `id` (its content now the one resends are compared
    /// with); if this message's commit fails, [`DedupWindow::release`] puts the old one back.
    pub fn take_over(&self, key: u64, digest: ContentDigest, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let previous = inner.map.remove(&key).map(Box::new);
        inner.insert(key, Entry::claimed(digest, id, previous), self.capacity);
    }

    /// Message `id`'s commit succeeded: resends of it are now answered with its ACK.
    pub fn confirm(&self, key: u64, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(e) = inner.map.get_mut(&key)
            && e.id == id
        {
            e.committed = true;
            e.previous = None;
        }
    }

    /// Message `id`'s commit failed: forget its claim (restoring what it took over).
    pub fn release(&self, key: u64, id: &str) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        if inner.map.get(&key).is_some_and(|e| e.id == id) {
            match inner.map.remove(&key).and_then(|e| e.previous) {
                Some(previous) => {
                    inner.map.insert(key, *previous);
                }
                None => inner.order.retain(|k| *k != key),
            }
        }
    }

    /// Remembers a committed message (seeding at start).
    pub fn remember(&self, key: u64, digest: ContentDigest, id: String) {
        let mut inner = self.inner.lock().unwrap_or_else(|p| p.into_inner());
        let mut e = Entry::claimed(digest, &id, None);
        e.committed = true;
        inner.insert(key, e, self.capacity);
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Entry {
    fn claimed(digest: ContentDigest, id: &str, previous: Option<Box<Entry>>) -> Entry {
        Entry {
            digest,
            id: id.to_string(),
            committed: false,
            previous,
        }
    }
}

impl Inner {
    /// Inserts or replaces a key's entry, forgetting the oldest keys past capacity.
    fn insert(&mut self, key: u64, e: Entry, capacity: usize) {
        if self.map.insert(key, e).is_none() {
            self.order.push_back(key);
        }
        while self.order.len() > capacity {
            if let Some(old) = self.order.pop_front() {
                self.map.remove(&old);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn d(n: u8) -> ContentDigest {
        [n; 16]
    }

    #[test]
    fn same_reused_and_forgetting() {
        let w = DedupWindow::new(2);
        let (a, b, c) = (
            key("PAS", "RX1", "1"),
            key("PAS", "RX1", "2"),
            key("PAS", "RX1", "3"),
        );
        assert_ne!(
            key("PAS", "RX1", "1"),
            key("PAS", "RX2", "1"),
            "the facility is part of the key"
        );
        assert_eq!(w.claim(a, d(7), "A"), Seen::New);
        w.confirm(a, "A");
        assert_eq!(
            w.claim(a, d(7), "A2"),
            Seen::Same {
                original: "A".into()
            }
        );
        assert_eq!(
            w.claim(a, d(8), "A3"),
            Seen::Reused {
                original: "A".into()
            }
        );
        w.remember(b, d(1), "B".into());
        w.remember(c, d(1), "C".into());
        assert_eq!(
            w.claim(a, d(7), "A4"),
            Seen::New,
            "the oldest is forgotten past capacity"
        );
        assert_eq!(w.len(), 2);
    }

    /// Issue 11 item 5: a resend arriving while its original commits was not seen.
    #[test]
    fn a_resend_during_the_commit_is_seen_and_a_failed_commit_is_forgotten() {
        let w = DedupWindow::new(10);
        let k = key("PAS", "RX1", "9");
        assert_eq!(w.claim(k, d(1), "FIRST"), Seen::New);
        assert_eq!(
            w.claim(k, d(1), "RESEND"),
            Seen::InFlight {
                original: "FIRST".into()
            },
            "seen while the original is being committed"
        );
        w.release(k, "FIRST");
        assert_eq!(
            w.claim(k, d(1), "RESEND"),
            Seen::New,
            "the original was not stored: the resend is the message now"
        );
    }

    #[test]
    fn a_reused_id_taken_over_and_released_restores_the_original() {
        let w = DedupWindow::new(10);
        let k = key("PAS", "RX1", "5");
        w.remember(k, d(1), "OLD".into());
        assert!(matches!(w.claim(k, d(2), "NEW"), Seen::Reused { .. }));
        w.take_over(k, d(2), "NEW");
        w.release(k, "NEW");
        assert_eq!(
            w.claim(k, d(1), "X"),
            Seen::Same {
                original: "OLD".into()
            }
        );
        assert!(matches!(w.claim(k, d(2), "NEW2"), Seen::Reused { .. }));
        w.take_over(k, d(2), "NEW2");
        w.confirm(k, "NEW2");
        assert_eq!(
            w.claim(k, d(2), "Y"),
            Seen::Same {
                original: "NEW2".into()
            }
        );
    }
}
