//! How a route delivers: `order_by`, `retry` and `on_permanent`.
//!
//! ```yaml
//! order_by: patient            # sender (default) | patient | none
//! retry: { backoff: 1s..5m, max_attempts: 20, max_age: 24h }
//! on_permanent: park           # park (default): dead-letter and move on | hold: stop the key
//! ```

use std::time::Duration;

use serde::Deserialize;
use serde_saphyr::Spanned;

use crate::HumanDuration;
use crate::at::At;

/// Which messages must be delivered in the order they were received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OrderBy {
    /// Per sending application and facility (MSH-3/MSH-4): the HL7 default.
    #[default]
    Sender,
    /// Per patient (NHS number, else the first PID-3): different patients in parallel.
    Patient,
    /// No order: every message on its own.
    None,
}

/// What happens to a message that fails permanently (or runs out of retries).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnPermanent {
    /// Dead-letter it (visible, replayable) and go on with the next message of its key.
    #[default]
    Park,
    /// Dead-letter it and hold its key until a person retries or purges it.
    Hold,
}

#[derive(Debug, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetryFile {
    /// `FIRST..LONGEST`, such as `1s..5m`.
    #[serde(default)]
    #[schemars(with = "Option<String>")]
    pub backoff: Option<Spanned<String>>,
    #[serde(default)]
    #[schemars(with = "Option<u32>")]
    pub max_attempts: Option<Spanned<u32>>,
    #[serde(default)]
    #[schemars(with = "Option<HumanDuration>")]
    pub max_age: Option<Spanned<HumanDuration>>,
}

/// Exponential backoff with jitter between `first` and `longest`, until `max_attempts` or
/// `max_age`, whichever comes first; then the message is dead-lettered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetryPolicy {
    pub first: Duration,
    pub longest: Duration,
    pub max_attempts: Option<u32>,
    pub max_age: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            first: Duration::from_secs(1),
            longest: Duration::from_secs(300),
            max_attempts: None,
            max_age: Duration::from_secs(24 * 3600),
        }
    }
}

pub(crate) fn retry(at: &mut At<'_>, r: Option<&RetryFile>) -> RetryPolicy {
    let mut p = RetryPolicy::default();
    let Some(r) = r else { return p };
    if let Some(b) = &r.backoff {
        let parsed = b.value.split_once("..").and_then(|(a, z)| {
            Some((
                humantime::parse_duration(a.trim()).ok()?,
                humantime::parse_duration(z.trim()).ok()?,
            ))
        });
        match parsed {
            Some((first, longest)) if !first.is_zero() && first <= longest => {
                p.first = first;
                p.longest = longest;
            }
            _ => at.err(b, format!("backoff {:?} is not valid: expected FIRST..LONGEST with FIRST ≤ LONGEST, such as 1s..5m", b.value)),
        }
    }
    if let Some(m) = &r.max_attempts {
        if m.value == 0 {
            at.err(m, "max_attempts 0 is out of range: expected 1 or more");
        } else {
            p.max_attempts = Some(m.value);
        }
    }
    if let Some(a) = &r.max_age {
        if a.value.0.is_zero() {
            at.err(
                a,
                "max_age must be longer than zero: expected a duration such as 24h",
            );
        } else {
            p.max_age = a.value.0;
        }
    }
    p
}
