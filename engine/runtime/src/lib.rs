//! Running Wyvern: build the store and listeners from a validated [`wyvern_config::Config`],
//! turn each received frame into a stored envelope and the ACK derived from that outcome, and
//! shut down without dropping anything already read.
//!
//! Invariant: every frame gets exactly one outcome (accepted, rejected, or not stored → AE) and
//! its ACK is derived from that outcome *after* the store has answered.

pub mod api;
mod audit;
pub mod audit_group;
pub(crate) mod body_diff;
pub mod bridge;
mod condition;
pub mod control;
pub mod delivery;
mod engine;
mod http;
pub mod http_limits;
mod intake;
pub mod metrics;
mod plan;
mod poison;
mod retention;
pub mod route_test;
pub mod shadow;
pub mod source;
pub mod tls;
pub mod transform;

pub use condition::holds;
pub use engine::{BuildError, Engine};
pub use intake::assess::{Assessment, assess};
pub use intake::dedup::{DEFAULT_WINDOW, DedupWindow, Seen};
pub use intake::inbox::{Hl7Inbox, Received, ReceivedFuture, RouteCounters};
pub use plan::{Decision, RoutePlan};
pub use source::directory::{DirectoryPoller, messages_in};
