//! [`AmqpPublisher`]: batches on the wire, [`Unconfirmed`]: their confirms to come.
//!
//! A batch is checked (AMQP's 255-byte short strings), given its delivery tags, encoded into
//! one buffer and written at once; the caller may start the next batch before this one's
//! confirms are in, and equal lanes keep their order across batches (one channel each).

use std::sync::Arc;

use super::confirms::Outcome;
use super::connection::{Connection, Shared};
use super::handshake;
use super::wire::{Publish, publish_len, put_publish};
use super::{AmqpTarget, LANES, Outgoing, PublishError};

/// AMQP's short string: at most 255 bytes.
const SHORT_STRING_MAX: usize = 255;

pub struct AmqpPublisher {
    target: AmqpTarget,
    conn: Option<Connection>,
}

impl std::fmt::Debug for AmqpPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpPublisher")
            .field("exchange", &self.target.exchange)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl AmqpPublisher {
    pub fn new(target: AmqpTarget) -> Self {
        AmqpPublisher { target, conn: None }
    }

    /// Forgets the connection (the next publish opens a fresh one), e.g. after a failure whose
    /// effect on the channels is unknown.
    pub fn reset(&mut self) {
        self.conn = None;
    }

    /// Publishes many messages, each lane's back to back on its own channel, and returns
    /// without waiting for their confirms: the caller may publish the next batch while the
    /// broker confirms this one ([`Unconfirmed::confirmed`]).
    pub async fn start_many(&mut self, items: &[Outgoing<'_>]) -> Unconfirmed {
        let mut batch = Unconfirmed {
            shared: None,
            exchange: self.target.exchange.clone(),
            items: Vec::with_capacity(items.len()),
        };
        if self
            .conn
            .as_ref()
            .is_some_and(|c| c.shared.confirms().is_broken())
        {
            self.conn = None;
        }
        if self.conn.is_none() {
            match handshake::open(&self.target, LANES as u16).await {
                Ok(opened) => self.conn = Some(Connection::start(opened, LANES)),
                Err(e) => {
                    let why = e.to_string();
                    batch.items = items
                        .iter()
                        .map(|i| Item::failed(i, PublishError::Transient(why.clone())))
                        .collect();
                    return batch;
                }
            }
        }
        let Some(conn) = self.conn.as_ref() else {
            return batch;
        };
        let exchange = self.target.exchange.as_str();
        let frame_max = conn.frame_max;
        let mut bytes = Vec::with_capacity(
            items
                .iter()
                .map(|i| publish_len(&publish(exchange, i, 0), frame_max))
                .sum(),
        );
        // Tags are taken under the lock (the reader settles them); the encoding, the bulk of
        // the work, is done after it is released.
        {
            let mut confirms = conn.shared.confirms();
            for item in items {
                let channel = (item.lane % LANES as u64) as usize;
                let sent = match too_long(exchange, item) {
                    Some(e) => Err(e),
                    None => match confirms.refusal(channel) {
                        Some(why) => Err(PublishError::Transient(why.to_string())),
                        None => Ok((channel, confirms.publish(channel))),
                    },
                };
                batch.items.push(Item {
                    sent,
                    routing_key: item.routing_key.clone(),
                    message_id: item.message_id.to_string(),
                });
            }
        }
        for (item, sent) in items.iter().zip(&batch.items) {
            if let Ok((channel, _)) = sent.sent {
                put_publish(
                    &mut bytes,
                    &publish(exchange, item, channel as u16 + 1),
                    frame_max,
                );
            }
        }
        batch.shared = Some(conn.shared.clone());
        conn.write(&bytes).await;
        batch
    }

    /// Takes note of a batch's results: after a transient failure the connection's state is
    /// unknown, so it is closed, and the next batch opens a fresh one.
    pub async fn settled(&mut self, results: &[Result<(), PublishError>]) {
        let broken = results
            .iter()
            .any(|r| matches!(r, Err(PublishError::Transient(_))));
        if broken && let Some(conn) = self.conn.take() {
            conn.close("wyvern: reconnecting after a failure").await;
        }
    }
}

fn publish<'a>(exchange: &'a str, item: &'a Outgoing<'_>, channel: u16) -> Publish<'a> {
    Publish {
        channel,
        exchange,
        routing_key: &item.routing_key,
        message_id: item.message_id,
        content_type: item.content_type,
        body: item.body,
    }
}

/// A short string over 255 bytes can never be sent: the message is refused for good (the
/// others of its lane go on).
fn too_long(exchange: &str, item: &Outgoing<'_>) -> Option<PublishError> {
    let (what, len) = [
        ("routing key", item.routing_key.len()),
        ("exchange name", exchange.len()),
        ("message id", item.message_id.len()),
        ("content type", item.content_type.len()),
    ]
    .into_iter()
    .find(|(_, len)| *len > SHORT_STRING_MAX)?;
    let hint = if what == "routing key" {
        " (shorten the routing_key template or the fields it reads)"
    } else {
        ""
    };
    Some(PublishError::Permanent(format!(
        "the {what} is {len} bytes; AMQP allows at most {SHORT_STRING_MAX}{hint}"
    )))
}

/// One message of a batch: on the wire as (channel, delivery tag), or why not.
#[derive(Debug)]
struct Item {
    sent: Result<(usize, u64), PublishError>,
    routing_key: String,
    message_id: String,
}

impl Item {
    fn failed(item: &Outgoing<'_>, e: PublishError) -> Item {
        Item {
            sent: Err(e),
            routing_key: item.routing_key.clone(),
            message_id: item.message_id.to_string(),
        }
    }
}

/// A batch published and not yet confirmed. It owns all it needs, so it can be awaited while
/// the publisher sends the next batch; dropped unread, its confirms are forgotten.
#[must_use = "a batch counts as published only once its confirms are in"]
pub struct Unconfirmed {
    shared: Option<Arc<Shared>>,
    exchange: String,
    items: Vec<Item>,
}

impl std::fmt::Debug for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unconfirmed")
            .field("messages", &self.items.len())
            .finish()
    }
}

impl Unconfirmed {
    /// Waits for every confirm: what the broker said of each message, in the batch's order.
    pub async fn confirmed(mut self) -> Vec<Result<(), PublishError>> {
        let items = &self.items;
        let mut out: Vec<Option<Result<(), PublishError>>> = Vec::with_capacity(items.len());
        // Per channel, the items on it in tag order, and how many of them are answered.
        let mut lanes: Vec<(Vec<usize>, usize)> = vec![(Vec::new(), 0); LANES];
        for (i, item) in items.iter().enumerate() {
            match &item.sent {
                Ok((channel, _)) => {
                    lanes[*channel].0.push(i);
                    out.push(None);
                }
                Err(e) => out.push(Some(Err(e.clone()))),
            }
        }
        if let Some(shared) = self.shared.clone() {
            loop {
                let changed = shared.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                let mut waiting = false;
                {
                    let mut confirms = shared.confirms();
                    for (order, answered) in &mut lanes {
                        // Confirms mostly come in tag order: stop at the first unanswered one.
                        while let Some(&i) = order.get(*answered) {
                            let Ok((channel, tag)) = items[i].sent else {
                                unreachable!("only sent items are in a lane");
                            };
                            let Some(outcome) = confirms.take(channel, tag, &items[i].message_id)
                            else {
                                waiting = true;
                                break;
                            };
                            out[i] = Some(judge(outcome, &self.exchange, &items[i].routing_key));
                            *answered += 1;
                        }
                    }
                }
                if !waiting {
                    break;
                }
                changed.await;
            }
        }
        // Every slot is taken: nothing for `drop` to forget.
        self.shared = None;
        out.into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PublishError::Transient("no confirm".into()))))
            .collect()
    }
}

/// A batch dropped or cancelled before its confirms were all read frees its slots.
impl Drop for Unconfirmed {
    fn drop(&mut self) {
        let Some(shared) = self.shared.take() else {
            return;
        };
        let mut confirms = shared.confirms();
        for item in &self.items {
            if let Ok((channel, tag)) = item.sent {
                confirms.forget(channel, tag, &item.message_id);
            }
        }
    }
}

/// What a confirm means for one message.
fn judge(o: Outcome, exchange: &str, routing_key: &str) -> Result<(), PublishError> {
    match o {
        Outcome::Acked => Ok(()),
        Outcome::Returned(reply) => Err(PublishError::Transient(format!(
            "unroutable: exchange {exchange:?} has no queue bound for routing key {routing_key:?} ({reply})"
        ))),
        Outcome::Nacked => Err(PublishError::Transient(
            "the broker refused the message (nack)".into(),
        )),
        Outcome::Lost(why) => Err(PublishError::Transient(format!("no confirm: {why}"))),
    }
}
