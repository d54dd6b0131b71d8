//! The AMQP 0-9-1 publisher (RabbitMQ), over lapin: one connection with [`LANES`]
//! confirm-mode channels, opened on first use and again after any failure; the exchange (and,
//! when asked, a durable queue and its binding) declared on every (re)connect. A publish counts
//! only when the broker confirms it; `mandatory` makes an unroutable message come back instead
//! of vanishing.
//!
//! Why lanes: a channel's confirms come back in one stream, so one channel is bounded by the
//! broker's confirm round trip (a quorum queue's Raft commit). Messages are spread over the
//! lanes by the caller's lane number (the ordering key's hash), so one key always takes the
//! same channel and keeps its order, while different keys' confirms overlap.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, MAX_SHORT_STRING_LENGTH, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
    PublisherConfirm,
};

/// Where and how to publish.
#[derive(Debug, Clone)]
pub struct AmqpTarget {
    pub url: String,
    pub exchange: String,
    pub queue: Option<AmqpQueueSpec>,
}

#[derive(Debug, Clone)]
pub struct AmqpQueueSpec {
    pub name: String,
    pub bind: String,
    pub quorum: bool,
}

/// What the broker said, or why a message could not be put on the wire.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Worth retrying: the broker is away, the channel closed, a nack.
    #[error("{0}")]
    Transient(String),
    /// This message can never be published as it is (e.g. its routing key is over AMQP's
    /// 255-byte limit); retrying cannot help.
    #[error("{0}")]
    Permanent(String),
}

/// Confirm-mode channels per publisher.
pub const LANES: usize = 8;

/// One message to publish.
#[derive(Debug, Clone)]
pub struct Outgoing<'a> {
    pub routing_key: String,
    pub body: &'a [u8],
    pub message_id: &'a str,
    /// The AMQP `content_type` (a media type such as `application/fhir+json`).
    pub content_type: &'a str,
    /// Any number, taken modulo [`LANES`]; equal lanes keep their relative order.
    pub lane: u64,
}

pub struct AmqpPublisher {
    target: AmqpTarget,
    conn: Option<(Connection, Vec<Channel>)>,
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
    /// broker confirms this one ([`Unconfirmed::confirmed`]). Equal lanes keep their order
    /// across batches too (one channel each).
    pub async fn start_many(&mut self, items: &[Outgoing<'_>]) -> Unconfirmed {
        let mut unconfirmed = Unconfirmed {
            exchange: self.target.exchange.clone(),
            routing_keys: items.iter().map(|i| i.routing_key.clone()).collect(),
            sent: Vec::with_capacity(items.len()),
        };
        if self.conn.is_none() {
            match self.connect().await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    let why = e.to_string();
                    unconfirmed.sent = items
                        .iter()
                        .map(|_| Err(PublishError::Transient(why.clone())))
                        .collect();
                    return unconfirmed;
                }
            }
        }
        let Some((_, channels)) = self.conn.as_ref() else {
            return unconfirmed;
        };
        let mut lanes: Vec<Vec<usize>> = vec![Vec::new(); channels.len()];
        for (i, item) in items.iter().enumerate() {
            lanes[(item.lane % channels.len() as u64) as usize].push(i);
        }
        let exchange = self.target.exchange.as_str();
        let lane_results = futures_util::future::join_all(
            lanes
                .iter()
                .zip(channels)
                .filter(|(idx, _)| !idx.is_empty())
                .map(|(idx, channel)| publish_lane(channel, exchange, items, idx)),
        )
        .await;
        let mut sent: Vec<Option<Sent>> = items.iter().map(|_| None).collect();
        for (i, r) in lane_results.into_iter().flatten() {
            sent[i] = Some(r);
        }
        unconfirmed.sent = sent
            .into_iter()
            .map(|r| r.unwrap_or_else(|| Err(PublishError::Transient("not published".into()))))
            .collect();
        unconfirmed
    }

    /// Takes note of a batch's results: after a transient failure the connection's state is
    /// unknown, so it is closed, and the next batch opens a fresh one.
    pub async fn settled(&mut self, results: &[Result<(), PublishError>]) {
        let broken = results
            .iter()
            .any(|r| matches!(r, Err(PublishError::Transient(_))));
        if broken && let Some((conn, _)) = self.conn.take() {
            let _ = conn
                .close(0, "wyvern: reconnecting after a failure".into())
                .await;
        }
    }

    async fn connect(&self) -> Result<(Connection, Vec<Channel>), PublishError> {
        let t = |what: &str, e: lapin::Error| PublishError::Transient(format!("{what}: {e}"));
        let conn = Connection::connect(
            &self.target.url,
            ConnectionProperties::default().with_connection_name("wyvern".into()),
        )
        .await
        .map_err(|e| t("cannot connect to the broker", e))?;
        let mut channels = Vec::with_capacity(LANES);
        for _ in 0..LANES {
            let channel = conn
                .create_channel()
                .await
                .map_err(|e| t("cannot open a channel", e))?;
            channel
                .confirm_select(ConfirmSelectOptions::default())
                .await
                .map_err(|e| t("cannot enable publisher confirms", e))?;
            channels.push(channel);
        }
        let channel = &channels[0];
        if !self.target.exchange.is_empty() {
            channel
                .exchange_declare(
                    self.target.exchange.as_str().into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions {
                        durable: true,
                        ..ExchangeDeclareOptions::default()
                    },
                    FieldTable::default(),
                )
                .await
                .map_err(|e| t("cannot declare the exchange", e))?;
        }
        if let Some(q) = &self.target.queue {
            let mut args = FieldTable::default();
            if q.quorum {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
            }
            channel
                .queue_declare(q.name.as_str().into(), QueueDeclareOptions::durable(), args)
                .await
                .map_err(|e| t("cannot declare the queue", e))?;
            if !self.target.exchange.is_empty() {
                channel
                    .queue_bind(
                        q.name.as_str().into(),
                        self.target.exchange.as_str().into(),
                        q.bind.as_str().into(),
                        QueueBindOptions::default(),
                        FieldTable::default(),
                    )
                    .await
                    .map_err(|e| t("cannot bind the queue", e))?;
            }
        }
        Ok((conn, channels))
    }
}

/// One message put on the wire (its confirm to come), or why it was not.
type Sent = Result<PublisherConfirm, PublishError>;

/// A batch published and not yet confirmed. It owns all it needs, so it can be awaited while
/// the publisher sends the next batch.
#[must_use = "a batch counts as published only once its confirms are in"]
pub struct Unconfirmed {
    exchange: String,
    routing_keys: Vec<String>,
    sent: Vec<Sent>,
}

impl std::fmt::Debug for Unconfirmed {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Unconfirmed")
            .field("messages", &self.sent.len())
            .finish()
    }
}

impl Unconfirmed {
    /// Waits for every confirm: what the broker said of each message, in the batch's order.
    pub async fn confirmed(self) -> Vec<Result<(), PublishError>> {
        let mut out = Vec::with_capacity(self.sent.len());
        for (sent, key) in self.sent.into_iter().zip(&self.routing_keys) {
            out.push(match sent {
                Err(e) => Err(e),
                Ok(confirm) => match confirm.await {
                    Ok(c) => judge(c, &self.exchange, key),
                    Err(e) => Err(PublishError::Transient(format!("no confirm: {e}"))),
                },
            });
        }
        out
    }
}

/// What a confirm means for one message.
fn judge(c: Confirmation, exchange: &str, routing_key: &str) -> Result<(), PublishError> {
    match c {
        Confirmation::Ack(None) => Ok(()),
        Confirmation::Ack(Some(returned)) => Err(PublishError::Transient(format!(
            "unroutable: exchange {exchange:?} has no queue bound for routing key {routing_key:?} ({})",
            returned.reply_text
        ))),
        Confirmation::Nack(_) => Err(PublishError::Transient(
            "the broker refused the message (nack)".into(),
        )),
        Confirmation::NotRequested => {
            Err(PublishError::Transient("publisher confirms are off".into()))
        }
    }
}

/// Publishes one lane's messages in order on `channel`; returns each message's index and its
/// confirm to come.
async fn publish_lane(
    channel: &Channel,
    exchange: &str,
    items: &[Outgoing<'_>],
    idx: &[usize],
) -> Vec<(usize, Sent)> {
    let mut pending = Vec::with_capacity(idx.len());
    for &i in idx {
        let Outgoing {
            routing_key: key,
            body: payload,
            message_id: id,
            content_type,
            ..
        } = &items[i];
        // lapin's `ShortString::from` panics past 255 bytes: check first, and refuse only
        // this message (the others of the lane go on).
        let Ok(routing_key) = ShortString::try_new(key.as_str()) else {
            pending.push((
                i,
                Err(PublishError::Permanent(format!(
                    "the routing key is {} bytes; AMQP allows at most {MAX_SHORT_STRING_LENGTH} (shorten the routing_key template or the fields it reads)",
                    key.len()
                ))),
            ));
            continue;
        };
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id((*id).into())
            .with_content_type((*content_type).into())
            .with_app_id("wyvern".into());
        let sent = channel
            .basic_publish(
                ShortString::from(exchange),
                routing_key,
                BasicPublishOptions {
                    mandatory: true,
                    ..BasicPublishOptions::default()
                },
                payload,
                props,
            )
            .await
            .map_err(|e| PublishError::Transient(format!("publish failed: {e}")));
        pending.push((i, sent));
    }
    pending
}
