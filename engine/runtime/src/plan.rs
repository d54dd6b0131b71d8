//! What a route does with an accepted message before it is stored: run its steps, and if the
//! message survives, name the outbox entries it needs (one per destination, each with the
//! ordering key the route asked for). Pure, so it runs before the commit and the ACK can say
//! what happened.

use bytes::Bytes;
use wyvern_config::{OrderBy, Removal, Route, Step};
use wyvern_hl7::{Message, edit};
use wyvern_store::Delivery;

use crate::condition::holds;

/// The parts of a validated route the inbox needs on every message.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub route: String,
    pub steps: Vec<Step>,
    pub destinations: Vec<String>,
    pub order_by: OrderBy,
}

/// What the steps decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// A filter did not match: acknowledged, recorded as filtered, not delivered.
    Filtered {
        step: usize,
    },
    Deliver(Vec<Delivery>),
}

impl RoutePlan {
    pub fn of(route: &Route) -> RoutePlan {
        RoutePlan {
            route: route.name.clone(),
            steps: route.steps.clone(),
            destinations: route.destinations.iter().map(|d| d.name.clone()).collect(),
            order_by: route.order_by,
        }
    }

    /// Whether the route splits batches (its first step is `split`).
    pub fn splits(&self) -> bool {
        matches!(self.steps.first(), Some(Step::Split))
    }

    /// Runs the steps in order over `msg`. Filters see the message as earlier steps left it;
    /// if a step changed it, the deliveries carry the changed bytes. The ordering key is read
    /// from the message as received.
    pub fn decide(&self, msg: &Message<'_>, message_id: &str) -> Decision {
        match self.run_steps(msg) {
            Err(step) => Decision::Filtered { step },
            Ok(edited) => {
                let key = self.order_key(msg, &format!("id:{message_id}"));
                Decision::Deliver(self.deliveries(&key, edited.map(Bytes::from)))
            }
        }
    }

    /// [`RoutePlan::decide`] for the messages of a split batch: the steps after `split` run
    /// on each, and each message that survives gets its own deliveries (in batch order, so
    /// they keep that order within their ordering key).
    pub fn decide_split(&self, messages: &[Message<'_>], message_id: &str) -> Decision {
        let mut out = Vec::new();
        let mut filtered_at = None;
        for (n, msg) in messages.iter().enumerate() {
            match self.run_steps(msg) {
                Err(step) => filtered_at = Some(step),
                Ok(edited) => {
                    let key = self.order_key(msg, &format!("id:{message_id}.{n}"));
                    let payload = Bytes::from(edited.unwrap_or_else(|| msg.raw().to_vec()));
                    out.extend(self.deliveries(&key, Some(payload)));
                }
            }
        }
        match filtered_at {
            Some(step) if out.is_empty() => Decision::Filtered { step },
            _ => Decision::Deliver(out),
        }
    }

    /// The edited bytes (`None`: unchanged), or the 1-based step that filtered the message.
    fn run_steps(&self, msg: &Message<'_>) -> Result<Option<Vec<u8>>, usize> {
        let mut edited: Option<Vec<u8>> = None;
        for (i, step) in self.steps.iter().enumerate() {
            let current = edited.as_deref().unwrap_or(msg.raw());
            match step {
                Step::Split => {}
                Step::Filter(c) => {
                    let keep = match &edited {
                        None => holds(c, msg),
                        Some(bytes) => Message::parse(bytes).is_ok_and(|m| holds(c, &m)),
                    };
                    if !keep {
                        return Err(i + 1);
                    }
                }
                Step::Set(pairs) => {
                    let mut bytes = current.to_vec();
                    for (path, value) in pairs {
                        bytes = edit::set(&bytes, path, value).unwrap_or(bytes);
                    }
                    edited = Some(bytes);
                }
                Step::Remove(removals) => {
                    let mut bytes = current.to_vec();
                    for r in removals {
                        bytes = match r {
                            Removal::Segment(id) => edit::remove_segments(&bytes, id),
                            Removal::Field(path) => edit::set(&bytes, path, ""),
                        }
                        .unwrap_or(bytes);
                    }
                    edited = Some(bytes);
                }
            }
        }
        Ok(edited)
    }

    fn deliveries(&self, order_key: &str, payload: Option<Bytes>) -> Vec<Delivery> {
        self.destinations
            .iter()
            .map(|d| Delivery {
                route: self.route.clone(),
                destination: d.clone(),
                order_key: order_key.to_string(),
                payload: payload.clone(),
            })
            .collect()
    }

    /// `sender`: MSH-3@MSH-4. `patient`: the NHS number, else the first PID-3 identifier with
    /// its assigning authority, else the sender (a message without a patient keeps its
    /// sender's order). `none`: `own` (the message's own id), so nothing waits for anything.
    fn order_key(&self, msg: &Message<'_>, own: &str) -> String {
        let sender = || {
            format!(
                "sender:{}@{}",
                msg.sending_application(),
                msg.sending_facility()
            )
        };
        match self.order_by {
            OrderBy::Sender => sender(),
            OrderBy::None => own.to_string(),
            OrderBy::Patient => {
                if let Some(Ok(n)) = msg.nhs_number() {
                    return format!("nhs:{}", n.as_str());
                }
                let id = msg
                    .get("PID-3.1")
                    .map(|v| v.as_str().into_owned())
                    .unwrap_or_default();
                let authority = msg
                    .get("PID-3.4")
                    .map(|v| v.as_str().into_owned())
                    .unwrap_or_default();
                if id.is_empty() {
                    sender()
                } else {
                    format!("pid:{id}^{authority}")
                }
            }
        }
    }
}
