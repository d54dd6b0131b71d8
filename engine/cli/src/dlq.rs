//! `wyvern dlq list|show|retry|purge`: the dead letters of every destination — messages that
//! failed permanently or ran out of retries — and putting them back in their outbox.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;

use crate::inbox::{OperatorStore, StoreArgs, open_store};

#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// List dead letters, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        /// Only this destination.
        #[arg(long)]
        destination: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one dead letter: why it failed, and what was sent.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        /// The outbox number (first column of `dlq list`).
        seq: i64,
    },
    /// Put dead letters back in their outbox with fresh attempts (one, or all that match).
    Retry(Selection),
    /// Give dead letters up (kept for audit; no longer listed, no longer holding their key).
    Purge(Selection),
}

/// Which dead letters: one by SEQ, or `--all` (narrowed by route and destination).
#[derive(Debug, clap::Args)]
pub struct Selection {
    #[command(flatten)]
    store: StoreArgs,
    /// The outbox number (first column of `dlq list`).
    seq: Option<i64>,
    /// Only this route's (with --all).
    #[arg(long)]
    route: Option<String>,
    /// Only this destination's (with --all).
    #[arg(long)]
    destination: Option<String>,
    /// Required to act on more than one.
    #[arg(long)]
    all: bool,
}

impl Selection {
    /// The audit record of acting on this selection (written before it is acted on).
    async fn audit(
        &self,
        trail: &dyn wyvern_store::AuditTrail,
        action: wyvern_store::AuditAction,
    ) -> anyhow::Result<()> {
        let what = match (self.seq, self.all) {
            (Some(seq), _) => format!("dead letter {seq}"),
            (None, _) => format!(
                "all dead letters (route {}, destination {})",
                self.route.as_deref().unwrap_or("any"),
                self.destination.as_deref().unwrap_or("any")
            ),
        };
        crate::audit::record(trail, action, None, None, Some(what)).await
    }
}

impl Selection {
    /// What to act on, after checking that the selection says which.
    fn which(&self) -> anyhow::Result<wyvern_store::Selection> {
        if self.seq.is_none() && !self.all {
            anyhow::bail!(
                "say which: a SEQ from `wyvern dlq list`, or --all (with --route/--destination to narrow it)"
            );
        }
        Ok(wyvern_store::Selection {
            seq: self.seq,
            route: self.route.clone(),
            destination: self.destination.clone(),
        })
    }
}

impl Selection {
    /// Retry or purge one dead letter through the API (one at a time: `--all` is local).
    fn remote(&self, verb: &str) -> anyhow::Result<ExitCode> {
        let Some(seq) = self.seq else {
            anyhow::bail!("over --remote, give one SEQ (--all works on a local store)");
        };
        let remote = crate::remote::Remote::from_args(&self.store.remote)?.context("--remote")?;
        let v = remote.post(&format!("/api/v1/dead-letters/{seq}/{verb}"), None)?;
        println!("dead letter {seq}: {verb} done ({} changed)", v["changed"]);
        Ok(ExitCode::SUCCESS)
    }
}

fn now_ms() -> i64 {
    wyvern_core::Clock::now_millis(&wyvern_core::SystemClock)
}

pub async fn dlq(cmd: DlqCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        DlqCommand::List {
            store,
            route,
            destination,
            limit,
        } => {
            if let Some(remote) = crate::remote::Remote::from_args(&store.remote)? {
                use crate::remote::text;
                let q = crate::remote::query(&[
                    ("route", route),
                    ("destination", destination),
                    ("limit", Some(limit.to_string())),
                ]);
                let v = remote.get(&format!("/api/v1/dead-letters{q}"))?;
                for r in v["dead_letters"].as_array().into_iter().flatten() {
                    println!(
                        "{:>7}  {:<6}  {:<14}  {:<14}  {:>8}  {:<26}  {}",
                        text(r, "seq"),
                        text(r, "state"),
                        text(r, "route"),
                        text(r, "destination"),
                        text(r, "attempts"),
                        text(r, "message_id"),
                        text(r, "last_error")
                    );
                }
                return Ok(ExitCode::SUCCESS);
            }
            let rows = open_store(&store)?
                .ops
                .dead_letters(route, destination, limit)
                .await?;
            println!(
                "{:>7}  {:<6}  {:<14}  {:<14}  {:>8}  {:<26}  REASON",
                "SEQ", "STATE", "ROUTE", "DESTINATION", "ATTEMPTS", "MESSAGE"
            );
            for r in &rows {
                println!(
                    "{:>7}  {:<6}  {:<14}  {:<14}  {:>8}  {:<26}  {}",
                    r.seq,
                    r.state.as_str(),
                    r.route,
                    r.destination,
                    r.attempts,
                    r.message_id,
                    r.last_error.as_deref().unwrap_or("-")
                );
            }
            if rows.is_empty() {
                eprintln!("no dead letters");
            }
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Show { store, seq } => {
            let OperatorStore {
                ops, audit: trail, ..
            } = open_store(&store)?;
            let Some(r) = ops.delivery(seq).await? else {
                eprintln!("no outbox entry {seq}");
                return Ok(ExitCode::FAILURE);
            };
            crate::audit::record(
                trail.as_ref(),
                wyvern_store::AuditAction::View,
                Some(&r.message_id),
                None,
                Some(format!(
                    "dead letter {seq} ({} → {})",
                    r.route, r.destination
                )),
            )
            .await?;
            println!(
                "seq:          {}\nstate:        {}\nroute:        {}\ndestination:  {}\nmessage:      {}",
                r.seq,
                r.state.as_str(),
                r.route,
                r.destination,
                r.message_id
            );
            println!(
                "order key:    {}\nattempts:     {}\nlast error:   {}",
                r.order_key,
                r.attempts,
                r.last_error.as_deref().unwrap_or("-")
            );
            println!(
                "\n--- payload\n{}",
                String::from_utf8_lossy(&r.payload).replace('\r', "\n")
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Retry(sel) if sel.store.remote.remote.is_some() => sel.remote("retry"),
        DlqCommand::Purge(sel) if sel.store.remote.remote.is_some() => sel.remote("purge"),
        DlqCommand::Retry(sel) => {
            let which = sel.which()?;
            let store = open_store(&sel.store)?;
            sel.audit(store.audit.as_ref(), wyvern_store::AuditAction::Retry)
                .await?;
            let n = store.ops.requeue(which, now_ms()).await?;
            println!(
                "{n} dead letter(s) back in their outbox; a running engine picks them up within a second"
            );
            Ok(ExitCode::SUCCESS)
        }
        DlqCommand::Purge(sel) => {
            let which = sel.which()?;
            let store = open_store(&sel.store)?;
            sel.audit(store.audit.as_ref(), wyvern_store::AuditAction::Purge)
                .await?;
            let n = store.ops.purge(which).await?;
            println!("{n} dead letter(s) purged");
            Ok(ExitCode::SUCCESS)
        }
    }
}
