//! What a route does with an accepted message before it is stored: run its steps, and if the
//! message survives, name the outbox entries it needs (one per destination, each with the
//! ordering key the route asked for). Pure, so it runs before the commit and the ACK can say
//! what happened.

use wyvern_config::{OrderBy, Route, Step};
use wyvern_hl7::Message;
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

    pub fn decide(&self, msg: &Message<'_>, message_id: &str) -> Decision {
        for (i, step) in self.steps.iter().enumerate() {
            match step {
                Step::Filter(c) if !holds(c, msg) => return Decision::Filtered { step: i + 1 },
                Step::Filter(_) => {}
            }
        }
        let order_key = self.order_key(msg, message_id);
        Decision::Deliver(
            self.destinations
                .iter()
                .map(|d| Delivery {
                    route: self.route.clone(),
                    destination: d.clone(),
                    order_key: order_key.clone(),
                    payload: None,
                })
                .collect(),
        )
    }

    /// `sender`: MSH-3@MSH-4. `patient`: the NHS number, else the first PID-3 identifier with
    /// its assigning authority, else the sender (a message without a patient keeps its
    /// sender's order). `none`: the message's own id, so nothing waits for anything.
    fn order_key(&self, msg: &Message<'_>, message_id: &str) -> String {
        let sender = || {
            format!(
                "sender:{}@{}",
                msg.sending_application(),
                msg.sending_facility()
            )
        };
        match self.order_by {
            OrderBy::Sender => sender(),
            OrderBy::None => format!("id:{message_id}"),
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
