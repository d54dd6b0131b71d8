//! The AMQP source: HL7v2 messages consumed from a RabbitMQ queue (feeds that already sit on a
//! message bus). A message is acknowledged to the broker only after its inbox commit, so a
//! crash in between means the broker delivers it again and duplicate detection answers.
//!
//! ```yaml
//! source:
//!   amqp: { url: "${AMQP_URL}", queue: hl7.inbound, prefetch: 256, declare: quorum }
//! ```

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::SecretValue;
use crate::at::At;

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AmqpSourceFile {
    #[schemars(with = "String")]
    pub url: Spanned<String>,
    #[schemars(with = "String")]
    pub queue: Spanned<String>,
    /// How many unacknowledged messages the broker may send ahead (default 256).
    #[serde(default)]
    #[schemars(with = "Option<u16>")]
    pub prefetch: Option<Spanned<u16>>,
    /// Declare the queue (durable) as `quorum` or `classic`; absent: it must exist already.
    #[serde(default)]
    #[schemars(with = "Option<QueueType>")]
    pub declare: Option<Spanned<QueueType>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum QueueType {
    Quorum,
    Classic,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AmqpSource {
    pub url: SecretValue,
    pub queue: String,
    pub prefetch: u16,
    pub declare: Option<QueueType>,
}

pub(crate) fn amqp_source(at: &mut At<'_>, a: &AmqpSourceFile) -> AmqpSource {
    let url = crate::destination::amqp_url(at, &a.url);
    if a.queue.value.trim().is_empty() {
        at.err(
            &a.queue,
            "queue is empty: expected a queue name such as hl7.inbound",
        );
    }
    let prefetch = match &a.prefetch {
        Some(p) if p.value == 0 => {
            at.err(
                p,
                "prefetch must be at least 1 (it is how many messages may be in flight)",
            );
            1
        }
        Some(p) => p.value,
        None => 256,
    };
    AmqpSource {
        url: url.unwrap_or_else(SecretValue::invalid),
        queue: a.queue.value.clone(),
        prefetch,
        declare: a.declare.as_ref().map(|d| d.value),
    }
}
