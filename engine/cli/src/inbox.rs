//! `wyvern inbox list|show|stats`: read the store directly, read-only, even while the engine
//! runs; with a node's config on a shared store, the cluster's messages.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::{Args, Subcommand};
use wyvern_store::{InboxQuery, InboxStatus};

#[derive(Debug, Args)]
pub struct StoreArgs {
    /// The config whose store to read (its wyvern.yaml says where the store is).
    #[arg(long, short, env = "WYVERN_CONFIG", conflicts_with_all = ["store", "remote"])]
    config: Option<PathBuf>,
    /// The store folder itself.
    #[arg(long, conflicts_with = "remote")]
    store: Option<PathBuf>,
    #[command(flatten)]
    pub remote: crate::remote::RemoteArgs,
}

#[derive(Debug, Subcommand)]
pub enum InboxCommand {
    /// List stored messages, newest first.
    List {
        #[command(flatten)]
        store: StoreArgs,
        /// Only this MSH-10 message control id.
        #[arg(long)]
        control_id: Option<String>,
        /// Only this NHS number (from PID-3).
        #[arg(long)]
        nhs_number: Option<String>,
        /// Only `accepted` or `rejected`.
        #[arg(long)]
        status: Option<String>,
        /// Only this route.
        #[arg(long)]
        route: Option<String>,
        #[arg(long, default_value_t = 50)]
        limit: usize,
    },
    /// Show one message (by id or sequence number): metadata, the ACK sent, and the raw bytes.
    Show {
        #[command(flatten)]
        store: StoreArgs,
        id: String,
        /// Print only the raw message bytes (segments on separate lines).
        #[arg(long)]
        raw: bool,
    },
    /// Count stored messages by status.
    Stats {
        #[command(flatten)]
        store: StoreArgs,
    },
}

/// The store folder a command should read: given directly, or from a config.
pub fn store_dir(args: &StoreArgs) -> anyhow::Result<std::path::PathBuf> {
    Ok(match (&args.store, &args.config) {
        (Some(s), _) => s.clone(),
        (None, Some(c)) => {
            let config = wyvern_config::load(c).map_err(crate::validate::diagnostics)?;
            config.engine.store_dir
        }
        (None, None) => bail!("say which store: --config FOLDER or --store FOLDER"),
    })
}

/// The store these arguments name, as an operator sees it: the shared store's side when the
/// config has `store.shared`, else the embedded store's.
pub struct OperatorStore {
    pub ops: Box<dyn wyvern_store::Operations>,
    pub audit: Box<dyn wyvern_store::AuditTrail>,
    pub tokens: Box<dyn wyvern_store::TokenStore>,
}

pub fn open_store(args: &StoreArgs) -> anyhow::Result<OperatorStore> {
    if let (None, Some(c)) = (&args.store, &args.config) {
        let config = wyvern_config::load(c).map_err(crate::validate::diagnostics)?;
        if let Some(shared) = &config.engine.shared {
            let url = crate::run::shared_url(shared)?;
            return Ok(OperatorStore {
                ops: Box::new(wyvern_store_pg::PgOperations::new(url.clone())),
                audit: Box::new(wyvern_store_pg::PgAudit::new(
                    url.clone(),
                    Some(shared.node.clone()),
                )),
                tokens: Box::new(wyvern_store_pg::PgTokens::new(url)),
            });
        }
    }
    let dir = store_dir(args)?;
    if !dir.join(wyvern_store::DB_FILE).exists() {
        bail!(
            "cannot open the store in {}: it does not exist (has the engine run with this config yet?)",
            dir.display()
        );
    }
    Ok(OperatorStore {
        ops: Box::new(wyvern_store::EmbeddedOperations { dir: dir.clone() }),
        audit: Box::new(wyvern_store::EmbeddedAudit { dir: dir.clone() }),
        tokens: Box::new(wyvern_store::EmbeddedTokens { dir }),
    })
}

/// Segments on their own lines; other control bytes shown as `\xNN` so a binary payload
/// cannot garble the terminal.
pub(crate) fn printable(b: impl AsRef<[u8]>) -> String {
    let b = b.as_ref();
    let text = String::from_utf8_lossy(b);
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\r' => out.push('\n'),
            '\n' | '\t' => out.push(c),
            c if c.is_control() => out.push_str(&format!("\\x{:02X}", u32::from(c))),
            c => out.push(c),
        }
    }
    out
}

fn print_header() {
    println!(
        "{:>7}  {:<26}  {:<24}  {:<9}  {:<10}  {:<20}  {:<10}  NHS NUMBER",
        "SEQ", "ID", "RECEIVED (UTC)", "STATUS", "TYPE", "CONTROL ID", "ROUTE"
    );
}

#[allow(clippy::too_many_arguments)]
fn print_row(
    seq: &str,
    id: &str,
    received: &str,
    status: &str,
    kind: &str,
    control_id: &str,
    route: &str,
    nhs: &str,
) {
    println!(
        "{seq:>7}  {id:<26}  {received:<24}  {status:<9}  {kind:<10}  {control_id:<20}  {route:<10}  {nhs}"
    );
}

/// `inbox show` through the API: metadata and deliveries, then the body and ACK (which needs
/// the operator role).
fn show_remote(remote: &crate::remote::Remote, id: &str, raw: bool) -> anyhow::Result<ExitCode> {
    use crate::remote::text;
    let body = remote.get(&format!("/api/v1/messages/{id}/body"))?;
    if raw {
        print!("{}", printable(text(&body, "body").as_bytes()));
        return Ok(ExitCode::SUCCESS);
    }
    let m = remote.get(&format!("/api/v1/messages/{id}"))?;
    for (label, key) in [
        ("id", "id"),
        ("seq", "seq"),
        ("route", "route"),
        ("peer", "peer"),
        ("status", "status"),
        ("type", "message_type"),
        ("control id", "control_id"),
        ("facility", "sending_facility"),
        ("nhs number", "nhs_number"),
        ("error", "error"),
    ] {
        println!("{:<13} {}", format!("{label}:"), text(&m, key));
    }
    for d in m["deliveries"].as_array().into_iter().flatten() {
        println!(
            "delivery:     {} {} after {} attempt(s) {}",
            text(d, "destination"),
            text(d, "state"),
            text(d, "attempts"),
            text(d, "last_error")
        );
    }
    println!(
        "\n--- ACK sent\n{}",
        printable(text(&body, "ack").as_bytes())
    );
    println!("--- message\n{}", printable(text(&body, "body").as_bytes()));
    Ok(ExitCode::SUCCESS)
}

pub async fn inbox(cmd: InboxCommand) -> anyhow::Result<ExitCode> {
    match cmd {
        InboxCommand::List {
            store,
            control_id,
            nhs_number,
            status,
            route,
            limit,
        } => {
            if let Some(remote) = crate::remote::Remote::from_args(&store.remote)? {
                let q = crate::remote::query(&[
                    ("control_id", control_id),
                    ("nhs_number", nhs_number),
                    ("status", status),
                    ("route", route),
                    ("limit", Some(limit.to_string())),
                ]);
                let found = remote.get(&format!("/api/v1/messages{q}"))?;
                let rows = found["messages"].as_array().cloned().unwrap_or_default();
                print_header();
                for r in &rows {
                    use crate::remote::text;
                    let received = r["received_at_ms"]
                        .as_i64()
                        .map_or("-".into(), wyvern_core::display_timestamp);
                    print_row(
                        &text(r, "seq"),
                        &text(r, "id"),
                        &received,
                        &text(r, "status"),
                        &text(r, "message_type"),
                        &text(r, "control_id"),
                        &text(r, "route"),
                        &text(r, "nhs_number"),
                    );
                }
                if rows.is_empty() {
                    eprintln!("no messages match");
                }
                return Ok(ExitCode::SUCCESS);
            }
            let status = match status.as_deref() {
                None => None,
                Some(s) => Some(InboxStatus::parse(s).with_context(|| {
                    format!("unknown status {s:?}: expected accepted or rejected")
                })?),
            };
            let detail = [
                control_id.as_ref().map(|c| format!("control id {c}")),
                status.map(|s| format!("status {}", s.as_str())),
                route.as_ref().map(|r| format!("route {r}")),
            ]
            .into_iter()
            .flatten()
            .collect::<Vec<_>>()
            .join(", ");
            let OperatorStore {
                ops, audit: trail, ..
            } = open_store(&store)?;
            crate::audit::record(
                trail.as_ref(),
                wyvern_store::AuditAction::Search,
                None,
                nhs_number.as_deref(),
                Some(if detail.is_empty() {
                    "all".into()
                } else {
                    detail
                }),
            )
            .await?;
            let rows = ops
                .messages(InboxQuery {
                    control_id,
                    nhs_number,
                    status,
                    source: route,
                    before_seq: None,
                    limit,
                })
                .await?;
            print_header();
            for r in &rows {
                print_row(
                    &r.seq.to_string(),
                    &r.id,
                    &wyvern_core::display_timestamp(r.received_at_ms),
                    &r.status,
                    r.message_type.as_deref().unwrap_or("-"),
                    r.control_id.as_deref().unwrap_or("-"),
                    &r.source,
                    r.nhs_number.as_deref().unwrap_or("-"),
                );
            }
            if rows.is_empty() {
                eprintln!("no messages match");
            }
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Show { store, id, raw } => {
            if let Some(remote) = crate::remote::Remote::from_args(&store.remote)? {
                return show_remote(&remote, &id, raw);
            }
            let OperatorStore {
                ops, audit: trail, ..
            } = open_store(&store)?;
            let Some(r) = ops.message(id.clone()).await? else {
                eprintln!("no message with id or sequence {id}");
                return Ok(ExitCode::FAILURE);
            };
            crate::audit::record(
                trail.as_ref(),
                wyvern_store::AuditAction::View,
                Some(&r.id),
                r.nhs_number.as_deref(),
                None,
            )
            .await?;
            if raw {
                print!("{}", printable(r.raw.as_deref().unwrap_or_default()));
                return Ok(ExitCode::SUCCESS);
            }
            println!(
                "id:           {}\nseq:          {}\nreceived:     {}\nroute:        {}\npeer:         {}",
                r.id,
                r.seq,
                wyvern_core::display_timestamp(r.received_at_ms),
                r.source,
                r.peer.as_deref().unwrap_or("-")
            );
            println!(
                "status:       {}\ntype:         {}\ncontrol id:   {}\nsender:       {} / {}",
                r.status,
                r.message_type.as_deref().unwrap_or("-"),
                r.control_id.as_deref().unwrap_or("-"),
                r.sending_application.as_deref().unwrap_or("-"),
                r.sending_facility.as_deref().unwrap_or("-")
            );
            println!(
                "nhs number:   {}\nsize:         {} bytes",
                r.nhs_number.as_deref().unwrap_or("-"),
                r.raw_len
            );
            if let Some(e) = &r.error {
                println!("error:        {e}");
            }
            println!(
                "\n--- ACK sent\n{}",
                r.ack
                    .as_deref()
                    .map(printable)
                    .unwrap_or_else(|| "(none: enhanced mode asked for no accept ACK)\n".into())
            );
            let body = r.raw.as_deref().unwrap_or_default();
            let note = if (body.len() as i64) < r.raw_len {
                format!(" (first {} of {} bytes)", body.len(), r.raw_len)
            } else {
                String::new()
            };
            println!("--- message{note}\n{}", printable(body));
            Ok(ExitCode::SUCCESS)
        }
        InboxCommand::Stats { store } => {
            for c in open_store(&store)?.ops.counts().await? {
                println!("{:<10} {}", c.status, c.count);
            }
            Ok(ExitCode::SUCCESS)
        }
    }
}
