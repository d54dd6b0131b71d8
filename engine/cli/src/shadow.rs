//! `wyvern replay --shadow CANDIDATE.yaml`: a changed route proven against real traffic before
//! it goes live. The live route's stored messages in a time range are read a page at a time
//! (a read-only connection: a running engine is not disturbed), each run through the candidate
//! — steps, plugins, mapping — and compared with what the live route did (`wyvern_runtime::
//! shadow`). Nothing is stored or sent. One audit record names the range before anything is
//! read.

use std::path::Path;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use wyvern_runtime::RoutePlan;
use wyvern_runtime::shadow::{Comparison, Verdict, compare};
use wyvern_runtime::source::fhir::FhirCodec;
use wyvern_runtime::transform::TransformLoader;
use wyvern_store::{StoredTraffic, TrafficQuery};

use crate::inbox::{OperatorStore, StoreArgs, open_store};

/// Messages read per page, and the bytes of their bodies a page stops at (one message larger
/// than that is a page of its own): what is held at once, besides what was queued for them.
const PAGE: usize = 200;
const PAGE_BYTES: usize = 32 << 20;

pub struct Shadow<'a> {
    pub candidate: &'a Path,
    pub route: Option<&'a str>,
    pub since_ms: i64,
    pub until_ms: i64,
    pub json: bool,
}

/// Counts per verdict, in the verdicts' order.
#[derive(Default)]
struct Tally(std::collections::BTreeMap<Verdict, usize>);

/// Exit 0 when nothing differs, 1 when something does, 2 when nothing could be compared.
pub async fn shadow(store: &StoreArgs, s: Shadow<'_>) -> anyhow::Result<ExitCode> {
    if store.remote.remote.is_some() {
        bail!("--shadow reads the store itself: give --config or --store, not --remote");
    }
    let candidate = wyvern_config::load(s.candidate).map_err(crate::validate::diagnostics)?;
    let [route] = candidate.routes.as_slice() else {
        bail!(
            "{} defines {} routes: a candidate is one route file",
            s.candidate.display(),
            candidate.routes.len()
        );
    };
    let live = s.route.unwrap_or(&route.name).to_string();
    // The candidate's plugins run as the engine runs them (a real clock and ids): a plugin
    // that stamps the time differs from the live run in that stamp.
    let loader = crate::plugin::loader::WasmLoader::new(None, false, candidate.tables.clone())
        .with_mappings_dir(&candidate.engine.mappings_dir);
    let plan = RoutePlan::load(route, &loader)
        .map_err(|e| anyhow::anyhow!("the candidate's steps do not load: {e}"))?;
    let codec: Option<Arc<dyn FhirCodec>> = match route.source {
        wyvern_config::Source::Fhir(_) => Some(loader.fhir_codec().map_err(anyhow::Error::msg)?),
        _ => None,
    };
    let OperatorStore {
        ops, audit: trail, ..
    } = open_store(store)?;
    crate::audit::record(
        trail.as_ref(),
        wyvern_store::AuditAction::Export,
        None,
        None,
        Some(format!(
            "shadow replay of route {live} from {} to {} through {}",
            wyvern_core::display_timestamp(s.since_ms),
            wyvern_core::display_timestamp(s.until_ms),
            s.candidate.display()
        )),
    )
    .await?;
    let started = Instant::now();
    let mut tally = Tally::default();
    let mut after_seq = 0;
    loop {
        let page = ops
            .traffic(TrafficQuery {
                route: live.clone(),
                since_ms: s.since_ms,
                until_ms: s.until_ms,
                after_seq,
                limit: PAGE,
                max_bytes: PAGE_BYTES,
            })
            .await
            .context("reading the stored traffic")?;
        let Some(last) = page.last() else { break };
        after_seq = last.message.seq;
        let plan = plan.clone();
        let codec = codec.clone();
        // Plugins and the mapping take CPU: off the async workers.
        let compared = tokio::task::spawn_blocking(move || {
            page.into_iter()
                .map(|t| {
                    let c = compare(&plan, codec.as_deref(), &t);
                    (t, c)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        for (t, c) in compared {
            *tally.0.entry(c.verdict).or_default() += 1;
            print_one(&t, &c, s.json);
        }
    }
    let total: usize = tally.0.values().sum();
    if total == 0 {
        eprintln!(
            "route {live} holds no messages from {} to {}: nothing was compared (is --route right? the candidate is named {})",
            wyvern_core::display_timestamp(s.since_ms),
            wyvern_core::display_timestamp(s.until_ms),
            route.name
        );
        return Ok(ExitCode::from(2));
    }
    let differ: usize = tally
        .0
        .iter()
        .filter(|(v, _)| !matches!(v, Verdict::Same | Verdict::NotCompared))
        .map(|(_, n)| n)
        .sum();
    let secs = started.elapsed().as_secs_f64();
    let rate = if secs > 0.0 { total as f64 / secs } else { 0.0 };
    if s.json {
        let counts: serde_json::Map<String, serde_json::Value> = tally
            .0
            .iter()
            .map(|(v, n)| (v.as_str().to_string(), (*n).into()))
            .collect();
        println!(
            "{}",
            serde_json::json!({"summary": {"route": live, "candidate": s.candidate.display().to_string(),
                "messages": total, "differ": differ, "verdicts": counts, "seconds": secs}})
        );
    } else {
        let counts: Vec<String> = tally
            .0
            .iter()
            .map(|(v, n)| format!("{n} {}", v.as_str()))
            .collect();
        println!(
            "route {live} through {}: {total} message(s) from {} to {}: {} ({:.0} msgs/s); nothing was sent",
            s.candidate.display(),
            wyvern_core::display_timestamp(s.since_ms),
            wyvern_core::display_timestamp(s.until_ms),
            if counts.is_empty() {
                "none".to_string()
            } else {
                counts.join(", ")
            },
            rate
        );
    }
    Ok(if differ == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn print_one(t: &StoredTraffic, c: &Comparison, json: bool) {
    let m = &t.message;
    if json {
        println!(
            "{}",
            serde_json::json!({
                "id": m.id, "seq": m.seq, "received_at_ms": m.received_at_ms,
                "message_type": m.message_type, "control_id": m.control_id,
                "verdict": c.verdict.as_str(), "differences": c.differences,
            })
        );
        return;
    }
    if matches!(c.verdict, Verdict::Same | Verdict::NotCompared) {
        return;
    }
    println!(
        "{} (seq {}, {}, {} {}): {}",
        m.id,
        m.seq,
        wyvern_core::display_timestamp(m.received_at_ms),
        m.message_type.as_deref().unwrap_or("-"),
        m.control_id.as_deref().unwrap_or("-"),
        c.verdict.as_str()
    );
    // The lines hold a sender's bytes: control characters are shown, never obeyed.
    for line in &c.differences {
        println!("    {}", crate::inbox::printable(line));
    }
}
