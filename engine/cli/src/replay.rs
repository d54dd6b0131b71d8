//! `wyvern replay`: deliver again what a route received in a time range — after a receiving
//! system restored a backup, say. Works on a running engine (its workers pick the rows up).

use std::process::ExitCode;

use anyhow::Context;
use clap::Args;
use wyvern_core::{Clock, SystemClock};

use crate::inbox::{OperatorStore, StoreArgs, open_store};

#[derive(Debug, Args)]
pub struct ReplayArgs {
    #[command(flatten)]
    store: StoreArgs,
    /// The route whose messages to send again (with --shadow: default, the candidate's name).
    #[arg(long, required_unless_present = "shadow")]
    route: Option<String>,
    /// Only to this destination (default: all of the route's).
    #[arg(long)]
    destination: Option<String>,
    /// From: a time (`2026-11-25 09:00:00`, RFC 3339, UTC) or an age (`2h`, `30m`).
    #[arg(long)]
    since: String,
    /// Until (exclusive), same forms; default now.
    #[arg(long)]
    until: Option<String>,
    /// Send nothing: run the stored messages through this candidate version of the route (a
    /// route file) and report each whose ACK, destinations or bodies would differ from what
    /// the live route did. Exit 0 when nothing differs, 1 when something does, 2 when no message was found.
    #[arg(long, value_name = "CANDIDATE.yaml", conflicts_with = "destination")]
    shadow: Option<std::path::PathBuf>,
    /// With --shadow: one JSON object per message compared, then a summary object.
    #[arg(long, requires = "shadow")]
    json: bool,
}

/// Milliseconds since the epoch for a time or an age before `now_ms`.
pub fn parse_when(s: &str, now_ms: i64) -> anyhow::Result<i64> {
    if let Ok(age) = humantime::parse_duration(s) {
        return Ok(now_ms - i64::try_from(age.as_millis()).unwrap_or(i64::MAX));
    }
    let t = humantime::parse_rfc3339_weak(s).with_context(|| {
        format!("{s:?} is neither a time such as 2026-11-25 09:00:00 nor an age such as 2h")
    })?;
    let ms = t
        .duration_since(std::time::UNIX_EPOCH)
        .context("time before 1970")?
        .as_millis();
    Ok(i64::try_from(ms).unwrap_or(i64::MAX))
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<ExitCode> {
    let now = SystemClock.now_millis();
    let since = parse_when(&args.since, now)?;
    let until = args
        .until
        .as_deref()
        .map_or(Ok(now + 1), |u| parse_when(u, now))?;
    if since >= until {
        anyhow::bail!("--since must be before --until");
    }
    if let Some(candidate) = &args.shadow {
        let shadow = crate::shadow::Shadow {
            candidate,
            route: args.route.as_deref(),
            since_ms: since,
            until_ms: until,
            json: args.json,
        };
        return crate::shadow::shadow(&args.store, shadow).await;
    }
    let route = args.route.clone().unwrap_or_default();
    if let Some(remote) = crate::remote::Remote::from_args(&args.store.remote)? {
        let mut body = serde_json::json!({"route": route, "since_ms": since, "until_ms": until});
        if let Some(d) = &args.destination {
            body["destination"] = serde_json::json!(d);
        }
        let v = remote.post("/api/v1/replay", Some(body))?;
        println!("{} deliveries of route {route} queued again", v["queued"]);
        return Ok(ExitCode::SUCCESS);
    }
    let OperatorStore {
        ops, audit: trail, ..
    } = open_store(&args.store)?;
    crate::audit::record(
        trail.as_ref(),
        wyvern_store::AuditAction::Replay,
        None,
        None,
        Some(format!(
            "route {route} destination {} from {} to {}",
            args.destination.as_deref().unwrap_or("all"),
            wyvern_core::display_timestamp(since),
            wyvern_core::display_timestamp(until)
        )),
    )
    .await?;
    let replay = wyvern_store::Replay {
        route: route.clone(),
        destination: args.destination.clone(),
        since_ms: since,
        until_ms: until,
    };
    let n = ops.replay(replay, now).await?;
    println!(
        "{n} deliveries of route {route} queued again ({} to {})",
        wyvern_core::display_timestamp(since),
        wyvern_core::display_timestamp(until)
    );
    Ok(ExitCode::SUCCESS)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_and_ages() {
        let now = 1_795_617_000_000;
        assert_eq!(parse_when("2h", now).unwrap(), now - 7_200_000);
        assert_eq!(
            parse_when("2026-11-25 14:30:00", now).unwrap(),
            1_795_617_000_000
        );
        assert!(parse_when("yesterday", now).is_err());
    }
}
