//! Duplicate detection: has this sender already had this control id accepted?
//!
//! Senders resend when an ACK goes missing. A resend with the same MSH-3/MSH-4/MSH-10 and the
//! same bytes gets the original ACK again and is not delivered twice; the same control id with
//! other content is a sender's mistake and gets AE. The window remembers the last `capacity`
//! accepted messages of a route (seeded from the store at start, so a restart does not forget),
//! keyed by a hash of MSH-3/4/10 with a CRC-32 of the bytes — 16 bytes an entry, a few MiB for
//! the default 100,000.

use std::collections::{HashMap, VecDeque};
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Mutex;

/// How many accepted messages per route are remembered by default.
pub const DEFAULT_WINDOW: usize = 100_000;

/// What the window knows about a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    New,
    /// Same key, same bytes: a resend of `original`.
    Same {
        original: String,
    },
    /// Same key, other bytes.
    Conflict {
        original: String,
    },
}

#[derive(Debug)]
pub struct DedupWindow {
    capacity: usize,
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    map: HashMap<u64, (u32, String)>,
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

    pub fn check(&self, key: u64, digest: u32) -> Seen {
        let Ok(inner) = self.inner.lock() else {
            return Seen::New;
        };
        match inner.map.get(&key) {
            None => Seen::New,
            Some((d, id)) if *d == digest => Seen::Same {
                original: id.clone(),
            },
            Some((_, id)) => Seen::Conflict {
                original: id.clone(),
            },
        }
    }

    /// Remembers an accepted message, forgetting the oldest past capacity.
    pub fn remember(&self, key: u64, digest: u32, id: String) {
        let Ok(mut inner) = self.inner.lock() else {
            return;
        };
        if inner.map.insert(key, (digest, id)).is_none() {
            inner.order.push_back(key);
            while inner.order.len() > self.capacity {
                if let Some(old) = inner.order.pop_front() {
                    inner.map.remove(&old);
                }
            }
        }
    }

    pub fn len(&self) -> usize {
        self.inner.lock().map(|i| i.map.len()).unwrap_or(0)
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_conflict_and_forgetting() {
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
        assert_eq!(w.check(a, 7), Seen::New);
        w.remember(a, 7, "A".into());
        assert_eq!(
            w.check(a, 7),
            Seen::Same {
                original: "A".into()
            }
        );
        assert_eq!(
            w.check(a, 8),
            Seen::Conflict {
                original: "A".into()
            }
        );
        w.remember(b, 1, "B".into());
        w.remember(c, 1, "C".into());
        assert_eq!(
            w.check(a, 7),
            Seen::New,
            "the oldest is forgotten past capacity"
        );
        assert_eq!(w.len(), 2);
    }
}
