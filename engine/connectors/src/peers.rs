//! Connections per peer address, so one sender (or a flood from one address) cannot take every
//! slot of a listener and lock the others out. Shared by the MLLP and HTTP listeners.

use std::sync::Arc;

/// Connections per peer address, capped; a slot is given back when its guard drops.
#[derive(Debug, Clone)]
pub struct PeerSlots {
    max: usize,
    open: Arc<std::sync::Mutex<std::collections::HashMap<std::net::IpAddr, usize>>>,
}

impl PeerSlots {
    pub fn new(max: usize) -> Self {
        PeerSlots {
            max,
            open: Arc::default(),
        }
    }

    /// A slot for `ip`, or `None` when it already holds `max` connections.
    pub fn take(&self, ip: std::net::IpAddr) -> Option<PeerSlot> {
        let mut open = self.open.lock().unwrap_or_else(|p| p.into_inner());
        let n = open.entry(ip).or_insert(0);
        if *n >= self.max {
            return None;
        }
        *n += 1;
        Some(PeerSlot {
            slots: self.clone(),
            ip,
        })
    }
}

/// One connection's slot; given back when dropped.
#[derive(Debug)]
pub struct PeerSlot {
    slots: PeerSlots,
    ip: std::net::IpAddr,
}

impl Drop for PeerSlot {
    fn drop(&mut self) {
        let mut open = self.slots.open.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(n) = open.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                open.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_slots_cap_each_address_and_come_back() {
        let slots = PeerSlots::new(2);
        let (a, b): (std::net::IpAddr, std::net::IpAddr) =
            ("10.0.0.1".parse().unwrap(), "10.0.0.2".parse().unwrap());
        let a1 = slots.take(a).unwrap();
        let _a2 = slots.take(a).unwrap();
        assert!(
            slots.take(a).is_none(),
            "a third from one address is refused"
        );
        assert!(slots.take(b).is_some(), "another address is not");
        drop(a1);
        assert!(
            slots.take(a).is_some(),
            "a closed connection frees its slot"
        );
    }
}
