//! `wyvern store check|repair|migrate`: what the journal holds, and the operator's decision
//! when it holds damage a crash does not explain (the engine refuses to start until then);
//! `migrate` is `store_migrate.rs`.

use std::process::ExitCode;

use anyhow::Context;
use clap::Subcommand;
use wyvern_store::{OnDamage, QUARANTINE_DIR, SegmentReport, Store, StoreOptions};

use crate::inbox::{StoreArgs, store_dir};

#[derive(Debug, Subcommand)]
pub enum StoreCommand {
    /// Read every journal segment and say what it holds: records, a torn last write (normal
    /// after a crash: it was never acknowledged), or damage, with the file and the offset.
    /// Changes nothing. Exits 1 when the journal is damaged.
    Check {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Replay every intact record of a damaged journal — before and after the damage — into
    /// the index, and move the damaged segments to STORE/quarantine/ (kept, not deleted). Run
    /// it with the engine stopped, after `check`.
    Repair {
        #[command(flatten)]
        store: StoreArgs,
    },
    /// Move what the store still owes its destinations (new, retrying, waiting behind its
    /// key) to the other kind of store, with every engine stopped: `--to shared` when a node
    /// joins a cluster on PostgreSQL (`store.shared`), `--to embedded` to leave it. Each moved
    /// delivery is made once, in each key's order, by the engine that starts next on the
    /// target. Dead letters stay; a key held for a person (`on_permanent: hold`) makes it refuse
    /// until it is retried or purged. Safe to run again after an interruption.
    Migrate {
        /// The node's config: its wyvern.yaml names both stores (`store.path`, `store.shared`).
        #[arg(long, short, env = "WYVERN_CONFIG")]
        config: std::path::PathBuf,
        /// Where the owed deliveries go.
        #[arg(long, value_enum)]
        to: crate::store_migrate::Target,
    },
}

pub async fn store(command: StoreCommand) -> anyhow::Result<ExitCode> {
    match command {
        StoreCommand::Check { store } => check(&store),
        StoreCommand::Repair { store } => repair(&store).await,
        StoreCommand::Migrate { config, to } => crate::store_migrate::migrate(&config, to).await,
    }
}

fn check(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let dir = store_dir(args)?;
    let report = wyvern_store::check(&dir)?;
    println!(
        "journal {}: {} segment{}",
        report.journal.display(),
        report.segments.len(),
        if report.segments.len() == 1 { "" } else { "s" }
    );
    for s in &report.segments {
        println!("  {}", describe(s));
    }
    if report.is_sound() {
        println!(
            "sound: the engine replays it into the index at start{}",
            if report.segments.is_empty() {
                " (empty: the engine stopped cleanly)"
            } else {
                ""
            }
        );
        Ok(ExitCode::SUCCESS)
    } else {
        println!(
            "damaged: the engine will not start until `wyvern store repair` has replayed every intact record and moved the damaged segments to {}/",
            dir.join(QUARANTINE_DIR).display()
        );
        Ok(ExitCode::from(1))
    }
}

fn describe(s: &SegmentReport) -> String {
    let name = s.path.file_name().unwrap_or_default().to_string_lossy();
    let mut line = format!("{name}: {} records", s.records);
    if let Some(t) = s.torn {
        line += &format!(
            ", then a torn write of {} bytes at offset {} (a commit cut short; never acknowledged)",
            t.bytes, t.offset
        );
    }
    if let Some(u) = s.unsynced {
        line += &format!(
            ", {} bytes missing at offset {} (written with durability: buffered and lost in a power cut; {} intact records after them)",
            u.bytes, u.offset, s.salvageable
        );
    }
    for p in &s.problems {
        line += &format!("\n    DAMAGED: {p}");
    }
    if !s.problems.is_empty() {
        line += &format!(
            "\n    a repair replays {} records before the damage and {} after it",
            s.records, s.salvageable
        );
    }
    line
}

async fn repair(args: &StoreArgs) -> anyhow::Result<ExitCode> {
    let dir = store_dir(args)?;
    let mut opts = StoreOptions::new(&dir);
    opts.on_damage = OnDamage::Quarantine;
    let store =
        Store::open(opts).with_context(|| format!("repairing the store {}", dir.display()))?;
    let r = store.recovered();
    store.close().await;
    println!(
        "replayed {} records from {} journal segments ({} new to the index, {} found after damage); {} segment{} moved to {}/",
        r.records + r.salvaged,
        r.segments,
        r.added,
        r.salvaged,
        r.quarantined,
        if r.quarantined == 1 { "" } else { "s" },
        dir.join(QUARANTINE_DIR).display()
    );
    Ok(ExitCode::SUCCESS)
}
