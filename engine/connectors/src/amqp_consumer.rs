//! The AMQP 0-9-1 consumer (RabbitMQ), over lapin: one connection, one channel with a prefetch
//! window, manual acknowledgements. The caller acknowledges each delivery only once the
//! message is committed; anything not acknowledged when the connection drops is delivered
//! again by the broker (flagged `redelivered`).

use futures_util::StreamExt;
use lapin::Acker;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicQosOptions, QueueDeclareOptions,
};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Channel, Connection, ConnectionProperties, Consumer};

/// Which queue to consume and how.
#[derive(Debug, Clone)]
pub struct AmqpSubscription {
    pub url: String,
    pub queue: String,
    pub prefetch: u16,
    /// Declare the queue durable first: `Some(true)` as a quorum queue, `Some(false)` classic.
    pub declare_quorum: Option<bool>,
    /// Shown in the broker's management UI.
    pub consumer_tag: String,
}

/// An open subscription.
pub struct AmqpSubscriber {
    connection: Connection,
    channel: Channel,
    consumer: Consumer,
}

/// One message from the queue and the means to settle it with the broker.
#[derive(Debug)]
pub struct AmqpMessage {
    pub data: Vec<u8>,
    pub redelivered: bool,
    pub settle: Settle,
}

/// Settles one delivery: `ack` once it is ours, `requeue` to hand it back.
#[derive(Debug)]
pub struct Settle(Acker);

impl Settle {
    pub async fn ack(self) -> Result<(), lapin::Error> {
        self.0.ack(BasicAckOptions::default()).await.map(drop)
    }

    pub async fn requeue(self) -> Result<(), lapin::Error> {
        self.0
            .nack(BasicNackOptions {
                requeue: true,
                ..BasicNackOptions::default()
            })
            .await
            .map(drop)
    }
}

impl AmqpSubscriber {
    /// The next message; `None` when the broker ended the subscription, `Err` when it failed.
    pub async fn next(&mut self) -> Option<Result<AmqpMessage, lapin::Error>> {
        let d = self.consumer.next().await?;
        Some(d.map(|d| AmqpMessage {
            data: d.data,
            redelivered: d.redelivered,
            settle: Settle(d.acker),
        }))
    }

    /// Closes the channel and the connection (unsettled messages go back to the queue).
    pub async fn close(self) {
        let _ = self.channel.close(0, "wyvern: stopping".into()).await;
        let _ = self.connection.close(0, "wyvern: stopping".into()).await;
    }
}

impl std::fmt::Debug for AmqpSubscriber {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AmqpSubscriber").finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
#[error("{what}: {source}")]
pub struct SubscribeError {
    what: &'static str,
    source: lapin::Error,
}

impl AmqpSubscription {
    /// Connects, sets the prefetch window, declares the queue if asked and starts consuming.
    pub async fn open(&self) -> Result<AmqpSubscriber, SubscribeError> {
        let err = |what| move |source| SubscribeError { what, source };
        let connection = Connection::connect(
            &self.url,
            ConnectionProperties::default().with_connection_name("wyvern".into()),
        )
        .await
        .map_err(err("cannot connect to the broker"))?;
        let channel = connection
            .create_channel()
            .await
            .map_err(err("cannot open a channel"))?;
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(err("cannot set the prefetch window"))?;
        if let Some(quorum) = self.declare_quorum {
            let mut args = FieldTable::default();
            if quorum {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("quorum".into()),
                );
            }
            channel
                .queue_declare(
                    self.queue.as_str().into(),
                    QueueDeclareOptions::durable(),
                    args,
                )
                .await
                .map_err(err("cannot declare the queue"))?;
        }
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                self.consumer_tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(err("cannot consume from the queue"))?;
        Ok(AmqpSubscriber {
            connection,
            channel,
            consumer,
        })
    }
}
