//! What a route does when a sender reuses a control id (MSH-10) for different content.
//!
//! ```yaml
//! control_id_reuse: accept     # accept (default): take it as a new message, flagged | reject: AE
//! ```
//!
//! Real feeds reuse ids — a PAS counter reset, a test system, a public sample corpus reusing
//! one id thirty times — and most senders block their queue on an AE. So the default takes the
//! message, flags it in the inbox and counts it (`wyvern_control_id_reused_total`); `reject`
//! answers AE as a strict receiver would. A resend of the *same* bytes is always recognised.

use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ControlIdReuse {
    /// Accept it as a new message, with a flag in the inbox and a metric.
    #[default]
    Accept,
    /// Answer AE (the sender must send it with a new control id).
    Reject,
}
