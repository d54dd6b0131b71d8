//! `wyvern cluster status`: the nodes sharing a PostgreSQL store (`store.shared`), who
//! delivers which share of each destination, what waits, and anything on the database that
//! holds delivery back.

use std::process::ExitCode;

use anyhow::{Context, bail};
use clap::Subcommand;

#[derive(Debug, Subcommand)]
pub enum ClusterCommand {
    /// Nodes, the partitions each holds per destination, deliveries waiting, and the oldest
    /// transaction open on the database (a long one holds every destination back).
    Status {
        /// The config of any node (its wyvern.yaml has `store.shared`).
        #[arg(long, short, env = "WYVERN_CONFIG")]
        config: std::path::PathBuf,
    },
}

pub async fn cluster(command: ClusterCommand) -> anyhow::Result<ExitCode> {
    let ClusterCommand::Status { config } = command;
    let config = wyvern_config::load(&config).map_err(crate::validate::diagnostics)?;
    let Some(shared) = &config.engine.shared else {
        bail!("this config has no store.shared: its node runs alone on its embedded store");
    };
    let url = crate::run::shared_url(shared)?;
    let client = wyvern_store_pg::connect(&url).await?;
    let status = wyvern_store_pg::cluster_status(&client)
        .await
        .context("reading the cluster's state")?;
    println!("nodes:");
    for n in &status.nodes {
        // Three heartbeats missed: stopped, or cut off from the database.
        let silent = n.silent_secs > 3 * wyvern_store_pg::HEARTBEAT.as_secs() as i64;
        println!(
            "  {}  wyvern {}  started {}  holds {} partition{}, {}",
            n.node,
            n.version,
            n.started_at,
            n.holds,
            if n.holds == 1 { "" } else { "s" },
            if silent {
                format!(
                    "SILENT for {} s (stopped, or cut off from the database)",
                    n.silent_secs
                )
            } else {
                format!("last heard {} s ago", n.silent_secs)
            }
        );
    }
    println!("destinations:");
    for l in &status.lanes {
        let held: Vec<String> = l.held.iter().map(|(n, c)| format!("{n} {c}")).collect();
        let free = i64::from(l.partitions) - l.held.iter().map(|(_, c)| c).sum::<i64>();
        println!(
            "  {} -> {}: {} partitions held by {}{}; {} pending, {} waiting for a retry, behind their key or held",
            l.route,
            l.destination,
            l.partitions,
            if held.is_empty() {
                "nobody".to_string()
            } else {
                held.join(", ")
            },
            if free > 0 {
                format!(" ({free} free)")
            } else {
                String::new()
            },
            l.pending,
            l.exceptions
        );
    }
    match &status.oldest_transaction {
        Some((secs, who)) if *secs > 60.0 => println!(
            "oldest open transaction: {secs:.0} s ({who}) — it holds delivery back until it ends"
        ),
        Some((secs, who)) => println!("oldest open transaction: {secs:.1} s ({who})"),
        None => println!("oldest open transaction: none"),
    }
    Ok(ExitCode::SUCCESS)
}
