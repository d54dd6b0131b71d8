//! The AMQP 0-9-1 publisher (RabbitMQ), over lapin: one connection and one confirm-mode
//! channel, opened on first use and again after any failure; the exchange (and, when asked, a
//! durable queue and its binding) declared on every (re)connect. A publish counts only when the
//! broker confirms it; `mandatory` makes an unroutable message come back instead of vanishing.

use lapin::options::{
    BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions, QueueBindOptions,
    QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable, ShortString};
use lapin::{
    BasicProperties, Channel, Confirmation, Connection, ConnectionProperties, ExchangeKind,
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

/// What the broker said.
#[derive(Debug, thiserror::Error)]
pub enum PublishError {
    /// Worth retrying: the broker is away, the channel closed, a nack.
    #[error("{0}")]
    Transient(String),
}

pub struct AmqpPublisher {
    target: AmqpTarget,
    conn: Option<(Connection, Channel)>,
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

    /// Publishes many messages back to back, then waits for their confirms (in order): one
    /// round trip to the broker for the lot instead of one each. Results are per message.
    pub async fn publish_many(
        &mut self,
        items: &[(String, &[u8], &str)],
        content_type: &str,
    ) -> Vec<Result<(), PublishError>> {
        if self.conn.is_none() {
            match self.connect().await {
                Ok(c) => self.conn = Some(c),
                Err(e) => {
                    return items
                        .iter()
                        .map(|_| Err(PublishError::Transient(e.to_string())))
                        .collect();
                }
            }
        }
        let Some((_, channel)) = self.conn.as_ref() else {
            return Vec::new();
        };
        let mut confirms = Vec::with_capacity(items.len());
        for (key, payload, id) in items {
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id((*id).into())
                .with_content_type(content_type.into())
                .with_app_id("wyvern".into());
            let sent = channel
                .basic_publish(
                    ShortString::from(self.target.exchange.as_str()),
                    ShortString::from(key.as_str()),
                    BasicPublishOptions {
                        mandatory: true,
                        ..BasicPublishOptions::default()
                    },
                    payload,
                    props,
                )
                .await;
            confirms.push(sent);
        }
        let mut results = Vec::with_capacity(items.len());
        let mut broken = false;
        for (sent, (key, _, _)) in confirms.into_iter().zip(items) {
            let r = match sent {
                Err(e) => Err(PublishError::Transient(format!("publish failed: {e}"))),
                Ok(confirm) => match confirm.await {
                    Err(e) => Err(PublishError::Transient(format!("no confirm: {e}"))),
                    Ok(c) => self.judge(c, key),
                },
            };
            broken |= r.is_err();
            results.push(r);
        }
        if broken && let Some((conn, _)) = self.conn.take() {
            let _ = conn
                .close(0, "wyvern: reconnecting after a failure".into())
                .await;
        }
        results
    }

    fn judge(&self, c: Confirmation, routing_key: &str) -> Result<(), PublishError> {
        match c {
            Confirmation::Ack(None) => Ok(()),
            Confirmation::Ack(Some(returned)) => Err(PublishError::Transient(format!(
                "unroutable: exchange {:?} has no queue bound for routing key {routing_key:?} ({})",
                self.target.exchange, returned.reply_text
            ))),
            Confirmation::Nack(_) => Err(PublishError::Transient(
                "the broker refused the message (nack)".into(),
            )),
            Confirmation::NotRequested => {
                Err(PublishError::Transient("publisher confirms are off".into()))
            }
        }
    }

    async fn connect(&self) -> Result<(Connection, Channel), PublishError> {
        let t = |what: &str, e: lapin::Error| PublishError::Transient(format!("{what}: {e}"));
        let conn = Connection::connect(
            &self.target.url,
            ConnectionProperties::default().with_connection_name("wyvern".into()),
        )
        .await
        .map_err(|e| t("cannot connect to the broker", e))?;
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| t("cannot open a channel", e))?;
        channel
            .confirm_select(ConfirmSelectOptions::default())
            .await
            .map_err(|e| t("cannot enable publisher confirms", e))?;
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
        Ok((conn, channel))
    }
}
