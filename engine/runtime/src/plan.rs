//! What a route does with an accepted message before it is stored: run its steps, and if the
//! message survives, name the outbox entries it needs (one per destination, each with the
//! ordering key the route asked for). Pure, so it runs before the commit and the ACK can say
//! what happened.

use std::sync::Arc;

use bytes::Bytes;
use wyvern_config::{OrderBy, Removal, Route, Step};
use wyvern_hl7::{Message, edit};
use wyvern_store::Delivery;

use crate::condition::holds;
use crate::transform::{Transform, TransformError, TransformLoader, TransformMessage};

/// The parts of a validated route the inbox needs on every message.
#[derive(Debug, Clone)]
pub struct RoutePlan {
    pub route: String,
    pub steps: Vec<Step>,
    /// The loaded plugin of each `wasm:` step, by step index.
    pub transforms: Vec<Option<Arc<dyn Transform>>>,
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
    /// A step refused the message: AR (`reject`) or AE; stored, not delivered.
    Refused {
        step: usize,
        reject: bool,
        reason: String,
    },
}

/// What the steps made of one message: its versions to deliver (`None`: as received), or
/// why there are none.
enum Outcome {
    Deliver(Vec<Option<Vec<u8>>>),
    Filtered(usize),
    Refused {
        step: usize,
        reject: bool,
        reason: String,
    },
}

impl RoutePlan {
    /// A route without plugins (a `wasm:` step would be refused at its first message).
    pub fn of(route: &Route) -> RoutePlan {
        RoutePlan {
            route: route.name.clone(),
            steps: route.steps.clone(),
            transforms: route.steps.iter().map(|_| None).collect(),
            destinations: route.destinations.iter().map(|d| d.name.clone()).collect(),
            order_by: route.order_by,
        }
    }

    /// The plan with every `wasm:` step's plugin loaded (and its config accepted).
    pub fn load(route: &Route, loader: &dyn TransformLoader) -> Result<RoutePlan, String> {
        let mut plan = RoutePlan::of(route);
        for (i, step) in route.steps.iter().enumerate() {
            match step {
                Step::Wasm(w) => plan.transforms[i] = Some(loader.load(w)?),
                Step::Map(kind) => plan.transforms[i] = Some(loader.mapper(*kind)?),
                _ => {}
            }
        }
        Ok(plan)
    }

    /// Whether any step runs a plugin.
    pub fn has_plugins(&self) -> bool {
        self.transforms.iter().any(Option::is_some)
    }

    /// Whether the route splits batches (its first step is `split`).
    pub fn splits(&self) -> bool {
        matches!(self.steps.first(), Some(Step::Split))
    }

    /// Runs the steps in order over `msg`. Filters see the message as earlier steps left it;
    /// if a step changed it, the deliveries carry the changed bytes. The ordering key is read
    /// from the message as received.
    pub fn decide(&self, msg: &Message<'_>, message_id: &str) -> Decision {
        match self.run_steps(msg, message_id) {
            Outcome::Filtered(step) => Decision::Filtered { step },
            Outcome::Refused {
                step,
                reject,
                reason,
            } => Decision::Refused {
                step,
                reject,
                reason,
            },
            Outcome::Deliver(versions) => {
                let key = self.order_key(msg, &format!("id:{message_id}"));
                let mut out = Vec::new();
                for v in versions {
                    out.extend(self.deliveries(&key, v.map(Bytes::from)));
                }
                Decision::Deliver(out)
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
            match self.run_steps(msg, message_id) {
                Outcome::Filtered(step) => filtered_at = Some(step),
                Outcome::Refused {
                    step,
                    reject,
                    reason,
                } => {
                    return Decision::Refused {
                        step,
                        reject,
                        reason: format!("message {} of the batch: {reason}", n + 1),
                    };
                }
                Outcome::Deliver(versions) => {
                    let key = self.order_key(msg, &format!("id:{message_id}.{n}"));
                    for v in versions {
                        let payload = Bytes::from(v.unwrap_or_else(|| msg.raw().to_vec()));
                        out.extend(self.deliveries(&key, Some(payload)));
                    }
                }
            }
        }
        match filtered_at {
            Some(step) if out.is_empty() => Decision::Filtered { step },
            _ => Decision::Deliver(out),
        }
    }

    /// Runs every step over the message. Each step sees every version the earlier steps made
    /// (a plugin may split one message into several); `None` stands for the message as
    /// received, so an unchanged message is not copied.
    fn run_steps(&self, msg: &Message<'_>, message_id: &str) -> Outcome {
        let mut versions: Vec<Option<Vec<u8>>> = vec![None];
        for (i, step) in self.steps.iter().enumerate() {
            let mut next = Vec::with_capacity(versions.len());
            for v in versions {
                let current = v.as_deref().unwrap_or(msg.raw());
                match step {
                    Step::Split => next.push(v),
                    Step::Filter(c) => {
                        let keep = match &v {
                            None => holds(c, msg),
                            Some(bytes) => Message::parse(bytes).is_ok_and(|m| holds(c, &m)),
                        };
                        if keep {
                            next.push(v);
                        }
                    }
                    Step::Set(pairs) => {
                        let mut bytes = current.to_vec();
                        for (path, value) in pairs {
                            bytes = match edit::set(&bytes, path, value) {
                                Ok(b) => b,
                                Err(e) => return unreadable(i, &e),
                            };
                        }
                        next.push(Some(bytes));
                    }
                    Step::Remove(removals) => {
                        let mut bytes = current.to_vec();
                        for r in removals {
                            let edited = match r {
                                Removal::Segment(id) => edit::remove_segments(&bytes, id),
                                Removal::Field(path) => edit::set(&bytes, path, ""),
                            };
                            bytes = match edited {
                                Ok(b) => b,
                                Err(e) => return unreadable(i, &e),
                            };
                        }
                        next.push(Some(bytes));
                    }
                    Step::Map(kind) => {
                        // The last step (validation sees to it): its output goes to the
                        // destinations as it is.
                        let what = || format!("the {kind:?} mapping");
                        match self.transform(i, what, current, msg, message_id) {
                            Ok(outputs) => next.extend(outputs.into_iter().map(|o| Some(o.body))),
                            Err(refused) => return refused,
                        }
                    }
                    Step::Wasm(w) => {
                        let what = || format!("plugin {}", w.plugin.display());
                        let outputs = match self.transform(i, what, current, msg, message_id) {
                            Ok(o) => o,
                            Err(refused) => return refused,
                        };
                        // Later steps and destinations read HL7v2: a plugin that returns
                        // something else fails the message, it is never passed on unread.
                        for o in outputs {
                            if let Err(e) = Message::parse(&o.body) {
                                return Outcome::Refused {
                                    step: i + 1,
                                    reject: false,
                                    reason: format!(
                                        "{} returned {} output that is not HL7v2 ({e})",
                                        what(),
                                        o.content_type
                                    ),
                                };
                            }
                            next.push(Some(o.body));
                        }
                    }
                }
            }
            if next.is_empty() {
                return Outcome::Filtered(i + 1);
            }
            versions = next;
        }
        Outcome::Deliver(versions)
    }

    /// Runs step `i`'s transform over `current`; a refusal comes back as the step's outcome.
    /// `what` names the step in errors (built only when one happens: this is the hot path).
    fn transform(
        &self,
        i: usize,
        what: impl Fn() -> String,
        current: &[u8],
        msg: &Message<'_>,
        message_id: &str,
    ) -> Result<Vec<TransformMessage>, Outcome> {
        let refused = |reject, reason| Outcome::Refused {
            step: i + 1,
            reject,
            reason,
        };
        let Some(t) = self.transforms.get(i).and_then(Option::as_ref) else {
            return Err(refused(false, format!("{} is not loaded", what())));
        };
        let input = TransformMessage {
            content_type: "hl7v2".into(),
            body: current.to_vec(),
            metadata: metadata(msg, message_id, &self.route),
        };
        t.process(message_id, input).map_err(|e| match e {
            TransformError::Reject(reason) => refused(true, reason),
            TransformError::Error(reason) => refused(false, reason),
        })
    }

    fn deliveries(&self, order_key: &str, payload: Option<Bytes>) -> Vec<Delivery> {
        self.destinations
            .iter()
            .map(|d| Delivery {
                route: self.route.clone(),
                destination: d.clone(),
                order_key: order_key.to_string(),
                payload: payload.clone(),
                // After `map:` (always the last step) the message is a FHIR Bundle.
                content_type: matches!(self.steps.last(), Some(Step::Map(_)))
                    .then_some(wyvern_core::ContentType::FhirJson),
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

/// An edit could not read what an earlier step left (a later step must not skip an edit,
/// such as a redaction, and pass the message on unchanged).
fn unreadable(i: usize, e: &wyvern_hl7::ParseError) -> Outcome {
    Outcome::Refused {
        step: i + 1,
        reject: false,
        reason: format!("the message could not be edited: {e}"),
    }
}

/// What a plugin is told about the message besides its bytes.
fn metadata(msg: &Message<'_>, id: &str, route: &str) -> Vec<(String, String)> {
    let mut m = vec![
        ("id".to_string(), id.to_string()),
        ("route".to_string(), route.to_string()),
    ];
    let t = msg.message_type();
    for (k, v) in [
        (
            "sending-application",
            msg.sending_application().into_owned(),
        ),
        ("sending-facility", msg.sending_facility().into_owned()),
        ("control-id", msg.control_id().into_owned()),
        (
            "message-type",
            if t.trigger.is_empty() {
                t.code.into_owned()
            } else {
                format!("{}^{}", t.code, t.trigger)
            },
        ),
    ] {
        if !v.is_empty() {
            m.push((k.to_string(), v));
        }
    }
    if let Some(Ok(n)) = msg.nhs_number() {
        m.push(("nhs-number".into(), n.as_str().to_string()));
    }
    m
}
