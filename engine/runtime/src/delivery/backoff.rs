//! When to try again: exponential backoff with jitter, and when to stop trying.

use std::time::Duration;

use wyvern_config::RetryPolicy;

/// The delay before attempt `attempts + 1` (after `attempts` failures): `first × 2^(n-1)`,
/// capped at `longest`, then spread by ±20% (`jitter` in 0..1) so a recovering receiver is
/// not hit by every waiting message at the same instant.
pub fn delay(policy: &RetryPolicy, attempts: u32, jitter: f64) -> Duration {
    let exp = attempts.saturating_sub(1).min(30);
    let base = policy.first.saturating_mul(1 << exp).min(policy.longest);
    base.mul_f64(0.8 + 0.4 * jitter.clamp(0.0, 1.0))
}

/// Whether a message that has failed `attempts` times, first received at `created_ms`, has
/// used up its retries at `now_ms`.
pub fn exhausted(policy: &RetryPolicy, attempts: u32, created_ms: i64, now_ms: i64) -> bool {
    let too_many = policy.max_attempts.is_some_and(|max| attempts >= max);
    let age = Duration::from_millis(u64::try_from(now_ms - created_ms).unwrap_or(0));
    too_many || age >= policy.max_age
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_stops() {
        let p = RetryPolicy {
            first: Duration::from_secs(1),
            longest: Duration::from_secs(60),
            max_attempts: Some(5),
            max_age: Duration::from_secs(3600),
        };
        let d: Vec<u64> = (1..=8).map(|n| delay(&p, n, 0.5).as_secs()).collect();
        assert_eq!(d, [1, 2, 4, 8, 16, 32, 60, 60]);
        assert!(delay(&p, 3, 0.0) < delay(&p, 3, 1.0));
        assert!(!exhausted(&p, 4, 0, 1000));
        assert!(exhausted(&p, 5, 0, 1000));
        assert!(exhausted(&p, 1, 0, 3_600_000));
    }
}
