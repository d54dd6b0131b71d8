//! Publisher confirms, tracked per channel by delivery tag.
//!
//! In confirm mode the broker numbers a channel's publishes 1, 2, 3… and answers each with
//! `basic.ack` or `basic.nack`, often many at once (`multiple`: every tag up to this one).
//! An unroutable `mandatory` message comes back as `basic.return` *before* its ack, carrying
//! its properties: it is recognised by its `message-id`, which the publisher makes unique
//! among the messages in flight. A channel the broker closes, or a connection that breaks,
//! answers everything still waiting on it with the reason.
//!
//! Pure bookkeeping, no I/O: the connection's reader feeds it, [`super::Unconfirmed`] reads it.

use std::collections::VecDeque;

/// One publish's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Slot {
    Waiting,
    Acked,
    Nacked,
    /// Collected by its batch; popped once everything before it is too.
    Taken,
}

/// What became of one publish.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Acked,
    /// Acked, but returned first: no queue was bound for it. The broker's reply text.
    Returned(String),
    Nacked,
    /// The channel or connection ended before the broker said.
    Lost(String),
}

#[derive(Debug, Default)]
struct Channel {
    /// The tag of `slots[0]`.
    first: u64,
    slots: VecDeque<Slot>,
    /// `message-id`s returned and not yet collected, with the broker's reply text.
    returned: Vec<(String, String)>,
    /// Why the broker closed the channel.
    closed: Option<String>,
}

impl Channel {
    /// Frees the collected slots at the front (tags are collected in any order; the front
    /// moves once everything before it is).
    fn trim(&mut self) {
        while self.slots.front() == Some(&Slot::Taken) {
            self.slots.pop_front();
            self.first += 1;
        }
    }
}

/// Every channel's confirms on one connection.
#[derive(Debug)]
pub(crate) struct Confirms {
    channels: Vec<Channel>,
    /// Why the connection ended.
    broken: Option<String>,
}

impl Confirms {
    /// `channels` channels, numbered from 1 on the wire and from 0 here.
    pub(crate) fn new(channels: usize) -> Confirms {
        Confirms {
            channels: (0..channels)
                .map(|_| Channel {
                    first: 1,
                    ..Channel::default()
                })
                .collect(),
            broken: None,
        }
    }

    /// Why nothing more can be published on `channel`, if so.
    pub(crate) fn refusal(&self, channel: usize) -> Option<&str> {
        self.broken
            .as_deref()
            .or(self.channels[channel].closed.as_deref())
    }

    /// Registers the next publish on `channel`; returns its delivery tag.
    pub(crate) fn publish(&mut self, channel: usize) -> u64 {
        let c = &mut self.channels[channel];
        c.slots.push_back(Slot::Waiting);
        c.first + c.slots.len() as u64 - 1
    }

    /// `basic.ack` (or `basic.nack` when `!positive`) of `tag`, or of every tag up to it.
    pub(crate) fn settle(&mut self, channel: usize, tag: u64, multiple: bool, positive: bool) {
        let Some(c) = self.channels.get_mut(channel) else {
            return;
        };
        let to = if positive { Slot::Acked } else { Slot::Nacked };
        let last = c.first + c.slots.len() as u64;
        // A multiple with tag 0 means every outstanding one.
        let upto = if multiple && tag == 0 {
            last.saturating_sub(1)
        } else {
            tag
        };
        let from = if multiple { c.first } else { tag };
        for t in from.max(c.first)..=upto.min(last.saturating_sub(1)) {
            let slot = &mut c.slots[(t - c.first) as usize];
            if *slot == Slot::Waiting {
                *slot = to;
            }
        }
    }

    /// A `basic.return` of the message with this `message-id` (its ack follows).
    pub(crate) fn returned(&mut self, channel: usize, message_id: String, reply: String) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.returned.push((message_id, reply));
        }
    }

    /// The broker closed `channel`: what waits on it is lost.
    pub(crate) fn close_channel(&mut self, channel: usize, why: String) {
        if let Some(c) = self.channels.get_mut(channel) {
            c.closed.get_or_insert(why);
        }
    }

    /// The connection ended: everything waiting is lost.
    pub(crate) fn break_all(&mut self, why: String) {
        self.broken.get_or_insert(why);
    }

    pub(crate) fn is_broken(&self) -> bool {
        self.broken.is_some()
    }

    /// The outcome of `tag` on `channel` once known (`None` while the broker has not said).
    /// `message_id` finds a return. Taking it frees its slot.
    pub(crate) fn take(&mut self, channel: usize, tag: u64, message_id: &str) -> Option<Outcome> {
        let lost = self.refusal(channel).map(str::to_string);
        let c = &mut self.channels[channel];
        let i = usize::try_from(tag.checked_sub(c.first)?).ok()?;
        let slot = c.slots.get_mut(i)?;
        let outcome = match (*slot, lost) {
            (Slot::Taken, _) => return None,
            (Slot::Acked, _) => match c.returned.iter().position(|(id, _)| id == message_id) {
                Some(at) => Outcome::Returned(c.returned.swap_remove(at).1),
                None => Outcome::Acked,
            },
            (Slot::Nacked, _) => Outcome::Nacked,
            (Slot::Waiting, Some(why)) => Outcome::Lost(why),
            (Slot::Waiting, None) => return None,
        };
        *slot = Slot::Taken;
        c.trim();
        Some(outcome)
    }

    /// Frees a publish whose batch was dropped unread (its outcome no longer matters).
    pub(crate) fn forget(&mut self, channel: usize, tag: u64, message_id: &str) {
        let c = &mut self.channels[channel];
        if let Some(at) = c.returned.iter().position(|(id, _)| id == message_id) {
            c.returned.swap_remove(at);
        }
        if let Some(slot) = tag
            .checked_sub(c.first)
            .and_then(|i| c.slots.get_mut(i as usize))
        {
            *slot = Slot::Taken;
        }
        c.trim();
    }

    /// Publishes registered and not yet collected, on every channel (for tests and bounds).
    #[cfg(test)]
    fn outstanding(&self) -> usize {
        self.channels.iter().map(|c| c.slots.len()).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_one_or_many_answer_their_tags_and_free_the_slots() {
        let mut c = Confirms::new(2);
        let tags: Vec<u64> = (0..5).map(|_| c.publish(0)).collect();
        assert_eq!(tags, [1, 2, 3, 4, 5]);
        assert_eq!(c.take(0, 1, "a"), None, "not answered yet");
        c.settle(0, 3, true, true);
        c.settle(0, 5, false, false);
        assert_eq!(c.take(0, 2, "b"), Some(Outcome::Acked));
        assert_eq!(c.take(0, 5, "e"), Some(Outcome::Nacked));
        assert_eq!(c.take(0, 4, "d"), None);
        assert_eq!(c.take(0, 1, "a"), Some(Outcome::Acked));
        assert_eq!(c.take(0, 3, "c"), Some(Outcome::Acked));
        assert_eq!(c.outstanding(), 2, "4 waits; 5 is held behind it");
        c.settle(0, 0, true, true);
        assert_eq!(c.take(0, 4, "d"), Some(Outcome::Acked));
        assert_eq!(c.outstanding(), 0);
        assert_eq!(c.publish(0), 6, "tags go on");
        assert_eq!(c.publish(1), 1, "each channel counts its own");
    }

    #[test]
    fn a_return_marks_the_message_it_names() {
        let mut c = Confirms::new(1);
        let (a, b) = (c.publish(0), c.publish(0));
        c.returned(0, "m-b".into(), "NO_ROUTE".into());
        c.settle(0, b, true, true);
        assert_eq!(c.take(0, a, "m-a"), Some(Outcome::Acked));
        assert_eq!(
            c.take(0, b, "m-b"),
            Some(Outcome::Returned("NO_ROUTE".into()))
        );
    }

    #[test]
    fn a_closed_channel_or_broken_connection_loses_only_what_waits() {
        let mut c = Confirms::new(2);
        let (a, b) = (c.publish(0), c.publish(0));
        let other = c.publish(1);
        c.settle(0, a, false, true);
        c.close_channel(0, "404 NOT_FOUND".into());
        assert_eq!(c.take(0, a, "a"), Some(Outcome::Acked), "answered before");
        assert_eq!(
            c.take(0, b, "b"),
            Some(Outcome::Lost("404 NOT_FOUND".into()))
        );
        assert_eq!(c.refusal(0), Some("404 NOT_FOUND"));
        assert_eq!(c.take(1, other, "o"), None, "the other channel waits on");
        c.break_all("connection reset".into());
        assert_eq!(
            c.take(1, other, "o"),
            Some(Outcome::Lost("connection reset".into()))
        );
    }

    #[test]
    fn tags_past_those_issued_and_unknown_channels_are_harmless() {
        let mut c = Confirms::new(1);
        let a = c.publish(0);
        c.settle(0, 99, false, true);
        assert_eq!(
            c.take(0, a, "a"),
            None,
            "a single ack of a tag never issued"
        );
        c.settle(7, 1, true, true);
        c.settle(0, 99, true, false);
        assert_eq!(
            c.take(0, a, "a"),
            Some(Outcome::Nacked),
            "multiple up to 99 covers 1"
        );
        let b = c.publish(0);
        c.forget(0, b, "b");
        assert_eq!(c.outstanding(), 0);
    }
}
