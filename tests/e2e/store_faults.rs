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

use crate::crash::{sender, sender_of};
use crate::harness::{EngineProcess, wyvern_on_store};

fn stored(store: &Path) -> HashSet<String> {
    InboxReader::open(store)
        .expect("store")
        .control_ids(InboxStatus::Accepted)
        .expect("ids")
        .into_iter()
        .collect()
}

/// How the power goes.
#[derive(Debug, Clone, Copy)]
enum Cut {
    /// Every unsynced write lost.
    Clean,
    /// Each page of an unsynced write kept or lost at random.
    Torn(u64),
}

/// One sender mid-stream, the power cut after `cut_after` ACKs, a restart on what the disk
/// kept, the rest sent. Returns (ACKed before the cut, of those not stored afterwards).
async fn power_cut(durability: &str, cut_after: usize, cut: Cut) -> (usize, Vec<String>) {
    power_cut_of(durability, cut_after, cut, crate::harness::adt, |_| {}).await
}

/// As [`power_cut`], each message made by `body`; `at_cut` sees the store as the cut left it.
async fn power_cut_of(
    durability: &str,
    cut_after: usize,
    cut: Cut,
    body: fn(&str, u64) -> Vec<u8>,
    at_cut: impl Fn(&Path),
) -> (usize, Vec<String>) {
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
    let task = tokio::spawn(sender_of(engine.addr, ids, body, acked_total.clone()));
    while acked_total.load(Ordering::Relaxed) < cut_after {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    engine.kill();
    let before_cut = acked_total.load(Ordering::Relaxed);
    match cut {
        Cut::Clean => fs.power_cut(),
        Cut::Torn(seed) => fs.power_cut_torn(seed),
    }
    at_cut(&store);
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
        "power cut ({cut:?}), durability {durability}: {before_cut} ACKed before the cut, {} of them lost; {} stored after the rest was sent",
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
    let (acked, lost) = power_cut("fsync", 300, Cut::Clean).await;
    assert!(acked >= 300);
    assert!(
        lost.is_empty(),
        "ACKed, then lost in the power cut: {lost:?}"
    );
    // Torn writes with holes: the journal must still tell its cut-short last write from damage
    // (the engine starts) and SQLite its WAL; nothing ACKed is lost either way.
    for seed in 1..=3 {
        let (_, lost) = power_cut("fsync", 300, Cut::Torn(seed)).await;
        assert!(
            lost.is_empty(),
            "ACKed, then lost in a torn power cut: {lost:?}"
        );
    }
    // The control: buffered loses what the index had not fsynced yet (the checkpoint, every
    // 250 ms, syncs it). Should a cut land just after one, it gets three tries.
    let mut control = Vec::new();
    for _ in 0..3 {
        control = power_cut("buffered", 300, Cut::Clean).await.1;
        if !control.is_empty() {
            break;
        }
    }
    assert!(
        !control.is_empty(),
        "durability: buffered lost nothing in three power cuts: the test cannot tell a synced store from one that is not"
    );
}

/// The journal writes new segments over retired ones. A power cut while it writes into one
/// leaves that file with what was synced to it this time and, after it, its previous life's
/// frames (and the spare, renamed, with its previous header): the engine must start and lose
/// nothing ACKed (that nothing retired is replayed is `a_recycled_segment_replays_only_what_
/// was_written_to_it`). 60 KB messages, so 900 fill a few 16 MiB segments and the journal is
/// writing over a retired one when the power goes.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_power_cut_while_the_journal_writes_over_a_retired_segment_loses_nothing_acked() {
    let recycled_at_cut = std::sync::Mutex::new(0);
    for cut in [Cut::Clean, Cut::Torn(4)] {
        let (acked, lost) = power_cut_of("fsync", 900, cut, large_adt, |store| {
            *recycled_at_cut.lock().unwrap() += recycled_segments(&store.join("journal"));
        })
        .await;
        assert!(acked >= 900);
        assert!(lost.is_empty(), "ACKed, then lost ({cut:?}): {lost:?}");
    }
    assert!(
        *recycled_at_cut.lock().unwrap() > 0,
        "no segment was being written over a retired one at either cut: the test showed nothing"
    );
}

/// Segments in `journal` whose file holds another segment's header or frames.
fn recycled_segments(journal: &Path) -> usize {
    let mut n = 0;
    for entry in std::fs::read_dir(journal).expect("journal") {
        let path = entry.expect("entry").path();
        let Some(number) = path
            .file_name()
            .and_then(|f| f.to_str()?.strip_suffix(".journal")?.parse::<u64>().ok())
        else {
            continue;
        };
        let bytes = std::fs::read(&path).expect("segment");
        let named = |at: usize| {
            bytes
                .get(at..at + 8)
                .map(|b| u64::from_le_bytes(b.try_into().expect("8 bytes")))
        };
        let other_header = bytes.starts_with(b"WYVERNJ\n") && named(16) != Some(number);
        let other_frames = bytes
            .windows(4)
            .enumerate()
            .any(|(at, w)| w == b"WYF4" && named(at + 20).is_some_and(|s| s != number));
        n += usize::from(other_header || other_frames);
    }
    n
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

    let check = wyvern_on_store(&["store", "check"], &store);
    let out = String::from_utf8_lossy(&check.stdout);
    assert_eq!(check.status.code(), Some(1), "{out}");
    assert!(
        out.contains("DAMAGED: corrupt at offset") && out.contains(&name),
        "{out}"
    );

    let repair = wyvern_on_store(&["store", "repair"], &store);
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

/// A sender as real ones behave: stop-and-wait, and on AE the same message again a little
/// later. Returns the ids ACKed AA; counts the AEs in `refused`.
async fn resending_sender(
    addr: std::net::SocketAddr,
    ids: Vec<String>,
    body: impl Fn(&str, u64) -> Vec<u8>,
    refused: Arc<AtomicUsize>,
) -> Vec<String> {
    let client = wyvern_connectors::mllp::MllpClient::connect(&addr.to_string(), 1 << 20)
        .await
        .expect("connect");
    let (mut tx, mut rx) = client.split();
    let deadline = std::time::Instant::now() + Duration::from_secs(240);
    let mut acked = Vec::new();
    for (n, id) in ids.iter().enumerate() {
        loop {
            assert!(std::time::Instant::now() < deadline, "stuck at {id}");
            tx.send(&body(id, n as u64)).await.expect("send");
            let ack = tokio::time::timeout(Duration::from_secs(60), rx.recv())
                .await
                .expect("an answer within 60 s: the engine must not hang")
                .expect("ack");
            let m = wyvern_hl7::Message::parse(&ack).expect("ACK");
            let code = m.get("MSA-1").map(|v| v.as_str().into_owned());
            match code.as_deref() {
                Some("AA") => {
                    acked.push(id.clone());
                    break;
                }
                Some("AE") => {
                    refused.fetch_add(1, Ordering::Relaxed);
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                _ => panic!("unexpected ACK {}", String::from_utf8_lossy(&ack)),
            }
        }
    }
    acked
}

/// An ADT^A01 with a 60 KB note: a 16 MiB journal segment holds about 270.
fn large_adt(id: &str, n: u64) -> Vec<u8> {
    let mut m = crate::harness::adt(id, n);
    m.extend_from_slice(b"OBX|1|TX|NOTE^Note||");
    m.extend(std::iter::repeat_n(b'x', 60_000));
    m.push(b'\r');
    m
}

/// Every id in `acked` stored exactly once, and nothing else.
fn assert_stored_once(store: &Path, acked: &[String]) {
    let ids = InboxReader::open(store)
        .expect("store")
        .control_ids(InboxStatus::Accepted)
        .expect("ids");
    let distinct: HashSet<&String> = ids.iter().collect();
    assert_eq!(ids.len(), distinct.len(), "a message was stored twice");
    let want: HashSet<&String> = acked.iter().collect();
    assert_eq!(distinct, want, "stored is not what was ACKed AA");
}

/// A mounted tmpfs of a given size, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Tmpfs {
        let dir = tempfile::tempdir().expect("dir");
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir.path())
            .status()
            .expect("mount");
        assert!(
            ok.success(),
            "mount -t tmpfs (the disk-full test needs root)"
        );
        Tmpfs(dir)
    }

    fn resize(&self, size: &str) {
        let ok = Command::new("mount")
            .args(["-o", &format!("remount,size={size}")])
            .arg(self.0.path())
            .status()
            .expect("remount");
        assert!(ok.success());
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(self.0.path()).status();
    }
}

/// The store on a 48 MiB filesystem that fills mid-stream: the sender gets AE (never AA for a
/// message not stored), nothing ACKed is lost, nothing is stored twice, and once there is
/// space again the engine takes messages by itself — no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_answers_ae_and_recovers_by_itself_when_space_returns() {
    let fs = Tmpfs::mount("48m");
    let store = fs.0.path().join("store");
    let mut engine =
        EngineProcess::start_with_store(Some(&store), "", "", "", "", &["--log", "info"]);
    let refused = Arc::new(AtomicUsize::new(0));
    let ids: Vec<String> = (0..1_000).map(|i| format!("D{i:05}")).collect();
    let task = tokio::spawn(resending_sender(
        engine.addr,
        ids,
        large_adt,
        refused.clone(),
    ));
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while refused.load(Ordering::Relaxed) < 5 {
        assert!(
            std::time::Instant::now() < deadline,
            "a full disk never answered AE"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    fs.resize("1g");
    let acked = task.await.expect("sender");
    assert!(engine.terminate().success(), "{}", engine.log());
    println!(
        "disk full: {} ACKed AA, {} answered AE while the disk was full",
        acked.len(),
        refused.load(Ordering::Relaxed)
    );
    assert_eq!(acked.len(), 1_000);
    assert_stored_once(&store, &acked);
}

/// The journal's writes and fdatasyncs failing with EIO: those messages are answered AE, sent
/// again, stored once; the rest is untouched.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn journal_io_errors_answer_ae_and_lose_or_duplicate_nothing() {
    let fs = FaultFs::mount();
    let store = fs.mount.join("store");
    let mut engine =
        EngineProcess::start_with_store(Some(&store), "", "", "", "", &["--log", "info"]);
    let refused = Arc::new(AtomicUsize::new(0));
    let first: Vec<String> = (0..50).map(|i| format!("E{i:04}")).collect();
    let mut acked =
        resending_sender(engine.addr, first, crate::harness::adt, refused.clone()).await;
    fs.control("fail-write .journal 2");
    fs.control("fail-fsync .journal 2");
    let rest: Vec<String> = (50..150).map(|i| format!("E{i:04}")).collect();
    acked.extend(resending_sender(engine.addr, rest, crate::harness::adt, refused.clone()).await);
    assert_eq!(refused.load(Ordering::Relaxed), 4);
    // Killed, so the next start replays the journal, failed writes and all.
    engine.kill();
    engine.restart();
    assert!(engine.terminate().success(), "{}", engine.log());
    assert_stored_once(&store, &acked);
}

/// `durability: buffered` bounds what a power cut takes: the index's checkpoint (every 250 ms)
/// syncs what it holds, so messages ACKed a second before the cut survive it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn buffered_loses_only_the_last_moments_before_a_power_cut() {
    let mut fs = FaultFs::mount();
    let store = fs.mount.join("store");
    let mut engine = EngineProcess::start_with_store(
        Some(&store),
        "  durability: buffered\n",
        "",
        "",
        "",
        &["--log", "info"],
    );
    let ids: Vec<String> = (0..200).map(|i| format!("B{i:05}")).collect();
    let acked = sender(engine.addr, ids, Arc::new(AtomicUsize::new(0))).await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    engine.kill();
    fs.power_cut();
    engine.restart();
    assert!(engine.terminate().success(), "{}", engine.log());
    let kept = stored(&store);
    let lost: Vec<&String> = acked.iter().filter(|id| !kept.contains(*id)).collect();
    assert!(
        lost.is_empty(),
        "ACKed a second before the cut, then lost: {lost:?}"
    );
}
