//! `wyvern store migrate`: moves what a store still owes its destinations to the other kind of
//! store — from a node's embedded store to the shared PostgreSQL store when a site joins a
//! cluster, and back. Every engine is stopped while it runs; what is moved is delivered once by
//! whichever engine starts next on the target, in each key's order.
//!
//! The source is settled only after the target has everything (see `wyvern_store::moving`), so
//! a run cut short is simply run again.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Context, bail};
use wyvern_store::{AuditAction, EmbeddedMove, HeldKey, MoveBatch, Store, StoreOptions};

/// Which store the owed deliveries go to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Target {
    /// From this node's embedded store (`store.path`) to the shared one (`store.shared`).
    Shared,
    /// From the shared store back to this node's embedded store.
    Embedded,
}

/// Deliveries per transaction, and about how many bytes of messages (a batch holds at least
/// one, however large).
const BATCH: usize = 1000;
const BATCH_BYTES: usize = 8 << 20;

/// Progress is logged every so many deliveries.
const PROGRESS_EVERY: u64 = 10_000;

pub async fn migrate(config_dir: &Path, to: Target) -> anyhow::Result<ExitCode> {
    let config = wyvern_config::load(config_dir).map_err(crate::validate::diagnostics)?;
    let Some(shared) = &config.engine.shared else {
        bail!(
            "{} has no store.shared: say which PostgreSQL store to move to or from (see `wyvern run --help`)",
            config_dir.display()
        );
    };
    let url = crate::run::shared_url(shared)?;
    let dir = config.engine.store_dir.clone();
    let mut client = wyvern_store_pg::connect(&url).await?;
    wyvern_store_pg::migrate(&mut client).await?;
    let live = wyvern_store_pg::moving::live_nodes(&client).await?;
    if !live.is_empty() {
        bail!(
            "the shared store is in use by {}: stop every node (a node counts as running until {} s after its last heartbeat, or while it holds a lease); nothing was moved",
            live.join(", "),
            wyvern_store_pg::moving::QUIET.as_secs()
        );
    }
    // The engine's lock for the whole move, and the journal replayed into the index first.
    let store = Store::open(StoreOptions::new(&dir)).with_context(|| {
        format!(
            "opening the embedded store {} (stop its engine first); nothing was moved",
            dir.display()
        )
    })?;
    // Moving messages out of a store is an export of patient data: recorded before anything
    // moves (no record, nothing done), and what moved once it has.
    let trail = wyvern_store_pg::PgAudit::new(url, Some(shared.node.clone()));
    let (from, into) = match to {
        Target::Shared => (
            format!("the embedded store {}", dir.display()),
            "the shared store".to_string(),
        ),
        Target::Embedded => (
            "the shared store".to_string(),
            format!("the embedded store {}", dir.display()),
        ),
    };
    crate::audit::record(
        &trail,
        AuditAction::Export,
        None,
        None,
        Some(format!(
            "store migrate: moving what {from} owes its destinations to {into}"
        )),
    )
    .await?;
    let outcome = match to {
        Target::Shared => to_shared(&dir, &mut client).await,
        Target::Embedded => to_embedded(&dir, &mut client).await,
    };
    store.close().await;
    if let Some(moved) = outcome? {
        println!("{moved}");
        crate::audit::record(&trail, AuditAction::Export, None, None, Some(moved)).await?;
    }
    Ok(ExitCode::SUCCESS)
}

/// What a move has done so far.
#[derive(Default)]
struct Tally {
    /// Deliveries and messages taken from the source.
    deliveries: u64,
    messages: u64,
    /// What the target did not hold already.
    added: wyvern_store::Imported,
}

impl Tally {
    fn add(&mut self, batch: &MoveBatch, imported: wyvern_store::Imported) {
        let before = self.deliveries;
        self.deliveries += batch.deliveries.len() as u64;
        self.messages += batch.messages.len() as u64;
        self.added.messages += imported.messages;
        self.added.deliveries += imported.deliveries;
        if self.deliveries / PROGRESS_EVERY > before / PROGRESS_EVERY {
            tracing::info!(deliveries = self.deliveries, "moving");
        }
    }

    fn report(&self, target: &str, settled: u64, source: &str, dead: u64) -> String {
        format!(
            "{} deliveries of {} messages moved to {target} ({} deliveries and {} messages new to it; \
             the rest it held already); {settled} marked moved in {source}{}",
            self.deliveries,
            self.messages,
            self.added.deliveries,
            self.added.messages,
            dead_letters(dead, source)
        )
    }
}

/// Refuses while a key waits for a person: the rows behind it would lose their place.
fn refuse_held(held: &[HeldKey], source: &str, dlq: &str) -> anyhow::Result<()> {
    let Some(first) = held.first() else {
        return Ok(());
    };
    bail!(
        "{} key{} of {source} wait{} for a person (on_permanent: hold), first {} -> {} key {} at delivery {}; \
         the rows behind a held key cannot move without it. Retry or purge each ({dlq}) and run this again; \
         nothing was moved",
        held.len(),
        if held.len() == 1 { "" } else { "s" },
        if held.len() == 1 { "s" } else { "" },
        first.route,
        first.destination,
        first.order_key,
        first.seq,
    );
}

fn now_ms() -> i64 {
    wyvern_core::Clock::now_millis(&wyvern_core::SystemClock)
}

fn dead_letters(dead: u64, source: &str) -> String {
    match dead {
        0 => String::new(),
        1 => format!("; 1 dead letter stays in {source}"),
        n => format!("; {n} dead letters stay in {source}"),
    }
}

/// What was moved, or `None` when nothing was owed.
async fn to_shared(
    dir: &Path,
    client: &mut wyvern_store_pg::Client,
) -> anyhow::Result<Option<String>> {
    let source_name = format!("the embedded store {}", dir.display());
    let mut source = EmbeddedMove::open(dir)?;
    refuse_held(
        &source.held()?,
        &source_name,
        &format!(
            "`wyvern dlq list --store {0}`, then `wyvern dlq retry|purge --store {0} SEQ`",
            dir.display()
        ),
    )?;
    let (mut tally, mut after, mut last) = (Tally::default(), 0, None);
    while let (batch, Some(through)) = source.batch(after, BATCH, BATCH_BYTES)? {
        let imported = wyvern_store_pg::moving::import(client, &batch)
            .await
            .context(
                "adding a batch to the shared store (nothing is marked moved yet: run this again)",
            )?;
        tally.add(&batch, imported);
        (after, last) = (through, Some(through));
    }
    let dead = source.dead()?;
    let Some(through) = last else {
        println!(
            "nothing to move: {source_name} owes no destination anything{}",
            dead_letters(dead, &source_name)
        );
        return Ok(None);
    };
    let settled = source.settle(through, now_ms())?;
    Ok(Some(tally.report(
        "the shared store",
        settled,
        &source_name,
        dead,
    )))
}

/// What was moved back, or `None` when nothing was owed.
async fn to_embedded(
    dir: &Path,
    client: &mut wyvern_store_pg::Client,
) -> anyhow::Result<Option<String>> {
    use wyvern_store_pg::moving;
    let source_name = "the shared store";
    let mut target = EmbeddedMove::open(dir)?;
    refuse_held(
        &moving::held(client).await?,
        source_name,
        "`wyvern dlq list -c DIR`, then `wyvern dlq retry|purge -c DIR SEQ`",
    )?;
    let (mut tally, mut after, mut last) = (Tally::default(), (0, 0), None);
    while let (batch, Some(through)) = moving::batch(client, after, BATCH, BATCH_BYTES).await? {
        let imported = target.import(&batch).context(
            "adding a batch to the embedded store (nothing is marked moved yet: run this again)",
        )?;
        tally.add(&batch, imported);
        (after, last) = (through, Some(through));
    }
    let dead = moving::dead(client).await?;
    let Some(through) = last else {
        println!(
            "nothing to move: {source_name} owes no destination anything{}",
            dead_letters(dead, source_name)
        );
        return Ok(None);
    };
    let settled = moving::settle(client, through, now_ms()).await?;
    Ok(Some(tally.report(
        &format!("the embedded store {}", dir.display()),
        settled,
        source_name,
        dead,
    )))
}
