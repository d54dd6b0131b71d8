//! The store when the disk misbehaves, through the real binary: a power cut that really loses
//! what was not fsynced (faultfs, FUSE), and a journal damaged on disk. Counted against what
//! the senders were told AA.

use std::collections::HashSet;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use wyvern_faultfs::FaultFs;
use wyvern_store::{InboxReader, InboxStatus};

use crate::crash::sender;
use crate::harness::EngineProcess;

fn stored(store: &Path) -> HashSet<String> {
    InboxReader::open(store)
        .expect("store")
        .control_ids(InboxStatus::Accepted)
        .expect("ids")
        .into_iter()
        .collect()
}

/// One sender mid-stream, the power cut after `cut_after` ACKs, a restart on what the disk
/// kept, the rest sent. Returns (ACKed before the cut, of those not stored afterwards).
async fn power_cut(durability: &str, cut_after: usize) -> (usize, Vec<String>) {
    let mut fs = FaultFs::mount();
    let store = fs.mount.join("store");
    let mut engine = EngineProcess::start_with_store(
        Some(&store),
        &format!("  durability: {durability}\n"),
        "",
        "",
        "",
        &["--log", "info"],
    );
    let acked_total = Arc::new(AtomicUsize::new(0));
    let ids: Vec<String> = (0..cut_after * 2).map(|i| format!("P{i:05}")).collect();
    let task = tokio::spawn(sender(engine.addr, ids, acked_total.clone()));
    while acked_total.load(Ordering::Relaxed) < cut_after {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.kill();
    let before_cut = acked_total.load(Ordering::Relaxed);
    fs.power_cut();
    engine.restart();
    let acked = task.await.expect("sender");
    let status = engine.terminate();
    assert!(status.success(), "{}", engine.log());
    let kept = stored(&store);
    let lost: Vec<String> = acked[..before_cut]
        .iter()
        .filter(|id| !kept.contains(*id))
        .cloned()
        .collect();
    println!(
        "power cut, durability {durability}: {before_cut} ACKed before the cut, {} of them lost; {} stored after the rest was sent",
        lost.len(),
        kept.len()
    );
    (before_cut, lost)
}

/// SIGKILL keeps the page cache, so the crash test would pass with every fsync removed. Here
/// the power cut undoes every write not fsynced: `durability: fsync` must lose nothing it
/// ACKed, and the same test must see `durability: buffered` (no fsync) lose what it ACKed —
/// or it could not tell either.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_loses_nothing_acked_with_fsync_and_the_buffered_control_shows_loss() {
    let (acked, lost) = power_cut("fsync", 300).await;
    assert!(acked >= 300);
    assert!(
        lost.is_empty(),
        "ACKed, then lost in the power cut: {lost:?}"
    );
    // The control: buffered loses what was ACKed since the index's last fsync (every 250 ms).
    // The cut can land just after one, so it gets three tries.
    let mut control = Vec::new();
    for _ in 0..3 {
        control = power_cut("buffered", 300).await.1;
        if !control.is_empty() {
            break;
        }
    }
    assert!(
        !control.is_empty(),
        "durability: buffered lost nothing in three power cuts: the test cannot tell a synced store from one that is not"
    );
}

fn wyvern(args: &[&str], store: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["--log", "warn"])
        .args(args)
        .arg("--store")
        .arg(store)
        .output()
        .expect("run wyvern")
}

/// The reproduction: messages ACKed, SIGKILL, the index removed so the journal must
/// be replayed, one byte flipped a third of the way into the journal. The engine used to start,
/// replay a third, call the rest a torn tail and log "nothing acknowledged was lost".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flipped_journal_byte_stops_the_engine_until_an_operator_repairs_it() {
    let mut engine = EngineProcess::start("");
    let counter = Arc::new(AtomicUsize::new(0));
    let mut tasks = Vec::new();
    for s in 0..2 {
        let ids: Vec<String> = (0..1_000).map(|i| format!("F{s}M{i:04}")).collect();
        tasks.push(tokio::spawn(sender(engine.addr, ids, counter.clone())));
    }
    let mut acked = Vec::new();
    for t in tasks {
        acked.extend(t.await.expect("sender"));
    }
    engine.kill();
    let store = engine.store_dir();
    for f in ["wyvern.db", "wyvern.db-wal", "wyvern.db-shm"] {
        let _ = std::fs::remove_file(store.join(f));
    }
    let journal = store.join("journal");
    let mut segments: Vec<_> = std::fs::read_dir(&journal)
        .expect("journal")
        .map(|e| e.expect("entry").path())
        .collect();
    segments.sort();
    let first = segments.first().expect("a segment").clone();
    let mut bytes = std::fs::read(&first).expect("segment");
    let written = bytes.iter().rposition(|&b| b != 0).expect("records");
    bytes[written / 3] ^= 0x20;
    std::fs::write(&first, &bytes).expect("flip");

    let status = engine.start_expecting_exit(Duration::from_secs(30));
    assert!(!status.success());
    let log = engine.log();
    let name = first.file_name().unwrap().to_string_lossy().to_string();
    assert!(
        log.contains("holds damage a crash does not explain") && log.contains(&name),
        "{log}"
    );
    assert!(!log.contains("nothing acknowledged was lost"), "{log}");
    assert_eq!(
        std::fs::read(&first).expect("kept"),
        bytes,
        "the refusal changed nothing"
    );

    let check = wyvern(&["store", "check"], &store);
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(
        out.contains("DAMAGED: corrupt at offset") && out.contains(&name),
        "{out}"
    );

    let repair = wyvern(&["store", "repair"], &store);
    let out = String::from_utf8_lossy(&repair.stdout);
    assert!(
        repair.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&repair.stderr)
    );
    assert!(store.join("quarantine").join(&name).exists(), "{out}");

    engine.restart();
    assert!(engine.terminate().success());
    let kept = stored(&store);
    let lost: Vec<&String> = acked.iter().filter(|id| !kept.contains(*id)).collect();
    println!(
        "corrupt journal: {} ACKed; after the repair {} stored, lost {lost:?} (the record the flipped byte was in)",
        acked.len(),
        kept.len()
    );
    assert!(lost.len() <= 1, "{lost:?}");
}
