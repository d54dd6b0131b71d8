//! Recovery against journals as a crash, a failed write, a power cut or a damaged disk leave
//! them: what is replayed, what is refused, and that a refusal changes nothing.

use std::os::unix::fs::FileExt;
use std::path::Path;

use super::*;
use crate::codec::{encode, tests::sample};
use crate::journal::{JOURNAL_DIR, Journal};
use crate::segment::{FORMAT, HEADER_LEN};
use crate::{InboxReader, InboxStatus, Store, StoreOptions};

/// Appends records `range`, `per_write` to a group commit.
fn write(j: &mut Journal, range: std::ops::Range<u64>, per_write: usize) {
    let all: Vec<u64> = range.collect();
    for chunk in all.chunks(per_write) {
        let mut buf = Vec::new();
        for &n in chunk {
            encode(&sample(n), &mut buf).unwrap();
        }
        j.append(&mut buf, true).unwrap();
    }
}

/// The offset of each frame in a segment file (in a sound segment).
fn frame_offsets(path: &Path) -> Vec<usize> {
    let bytes = std::fs::read(path).unwrap();
    let mut at = HEADER_LEN;
    let mut offsets = Vec::new();
    while let Some(f) = crate::frame::read(&bytes[at..], crate::frame::Framing::Current) {
        offsets.push(at);
        at += f.len;
    }
    offsets.push(at);
    offsets
}

fn stored(dir: &Path) -> usize {
    let reader = InboxReader::open(dir).unwrap();
    reader.control_ids(InboxStatus::Accepted).unwrap().len()
        + reader.control_ids(InboxStatus::Rejected).unwrap().len()
}

fn open(dir: &Path, on_damage: OnDamage) -> Result<Store, StoreError> {
    let mut opts = StoreOptions::new(dir);
    opts.on_damage = on_damage;
    Store::open(opts)
}

fn journal_at(dir: &Path, segment: u64) -> Journal {
    Journal::create(&dir.join(JOURNAL_DIR), segment, 1 << 20, false).unwrap()
}

fn seg(dir: &Path, n: u64) -> PathBuf {
    segment_path(&dir.join(JOURNAL_DIR), n)
}

/// What a killed engine leaves: journal segments the index never saw, the last one ending in
/// a torn write. The next open replays them, skips the torn tail, and empties the journal.
#[tokio::test]
async fn a_killed_engines_journal_is_replayed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::create(&dir.path().join(JOURNAL_DIR), 7, 1200, false).unwrap();
    write(&mut j, 1..13, 1);
    let last = j.segment();
    j.finish();
    let end = *frame_offsets(&seg(dir.path(), last)).last().unwrap();
    let mut torn = Vec::new();
    encode(&sample(99), &mut torn).unwrap();
    crate::frame::stamp(&mut torn, end as u64, last);
    let file = std::fs::OpenOptions::new()
        .write(true)
        .open(seg(dir.path(), last))
        .unwrap();
    file.write_all_at(&torn[..torn.len() / 2], end as u64)
        .unwrap();

    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    let r = store.recovered();
    assert_eq!((r.records, r.added), (12, 12));
    assert!(r.segments > 1 && r.torn_bytes > 0, "{r:?}");
    store.close().await;
    drop(store);
    assert_eq!(stored(dir.path()), 12);
    assert!(
        existing_segments(&dir.path().join(JOURNAL_DIR))
            .unwrap()
            .is_empty()
    );

    // Replaying what the index already holds adds nothing (no duplicates).
    let mut j = journal_at(dir.path(), 1);
    write(&mut j, 3..4, 1);
    // As a real engine does before it stops: wait for the segment being prepared.
    j.finish();
    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    assert_eq!((store.recovered().records, store.recovered().added), (1, 0));
    store.close().await;
}

/// The reproduction: one flipped byte a third of the way into a segment. Replay used
/// to stop there, count the rest as a torn tail and report nothing lost.
#[tokio::test]
async fn a_flipped_byte_mid_segment_refuses_the_open_and_a_repair_keeps_the_rest() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal_at(dir.path(), 1);
    write(&mut j, 0..30, 1);
    j.finish();
    let path = seg(dir.path(), 1);
    let offsets = frame_offsets(&path);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(b"\xFF", offsets[10] as u64 + 30).unwrap();
    let before = std::fs::read(&path).unwrap();

    let err = open(dir.path(), OnDamage::Refuse).unwrap_err();
    let StoreError::Damaged { report } = &err else {
        panic!("{err}")
    };
    assert_eq!(
        report.segments[0].problems,
        [Problem::Corrupt {
            offset: offsets[10] as u64,
            bytes: (offsets[11] - offsets[10]) as u64,
            records_after: 19
        }]
    );
    let text = err.to_string();
    assert!(
        text.contains("0000000000000001.journal")
            && text.contains(&format!("offset {}", offsets[10])),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&path).unwrap(),
        before,
        "a refusal changes nothing"
    );

    let store = open(dir.path(), OnDamage::Quarantine).unwrap();
    let r = store.recovered();
    assert_eq!((r.records, r.salvaged, r.quarantined), (10, 19, 1), "{r:?}");
    store.close().await;
    drop(store);
    assert_eq!(stored(dir.path()), 29);
    let kept = dir
        .path()
        .join(QUARANTINE_DIR)
        .join("0000000000000001.journal");
    assert_eq!(
        std::fs::read(kept).unwrap(),
        before,
        "quarantined, not deleted"
    );
    assert!(open(dir.path(), OnDamage::Refuse).is_ok(), "repaired");
}

#[tokio::test]
async fn a_truncated_segment_and_a_newer_format_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal_at(dir.path(), 1);
    write(&mut j, 0..5, 5);
    j.finish();
    let path = seg(dir.path(), 1);
    let end = *frame_offsets(&path).last().unwrap();
    std::fs::OpenOptions::new()
        .write(true)
        .open(&path)
        .unwrap()
        .set_len(end as u64 + 100)
        .unwrap();
    let err = open(dir.path(), OnDamage::Refuse).unwrap_err().to_string();
    assert!(err.contains("truncated"), "{err}");

    let dir = tempfile::tempdir().unwrap();
    let mut j = journal_at(dir.path(), 1);
    write(&mut j, 0..5, 5);
    j.finish();
    let path = seg(dir.path(), 1);
    let mut head = std::fs::read(&path).unwrap()[..HEADER_LEN].to_vec();
    head[8..12].copy_from_slice(&(FORMAT + 1).to_le_bytes());
    let crc = crc32fast::hash(&head[..40]);
    head[40..44].copy_from_slice(&crc.to_le_bytes());
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&head, 0).unwrap();
    let err = open(dir.path(), OnDamage::Refuse).unwrap_err().to_string();
    let newer = format!("newer Wyvern (journal format {}", FORMAT + 1);
    assert!(err.contains(&newer), "{err}");
}

/// A power cut during a group commit can keep some of its pages and lose others: a hole with
/// intact frames of the same write after it. That write was never acknowledged: torn, not
/// damage.
#[tokio::test]
async fn a_last_write_with_a_hole_in_it_is_torn_not_corrupt() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = journal_at(dir.path(), 1);
    write(&mut j, 0..4, 1);
    write(&mut j, 4..10, 6);
    j.finish();
    let path = seg(dir.path(), 1);
    let offsets = frame_offsets(&path);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0; offsets[6] - offsets[5]], offsets[5] as u64)
        .unwrap();
    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    let r = store.recovered();
    assert_eq!((r.records, r.salvaged), (5, 0), "{r:?}");
    assert!(r.torn_bytes > 0);
    store.close().await;
}

/// A write that failed before the journal moved to a new segment leaves garbage at the end of
/// the old one; the new segment's header says where the last good write ended. Damage before
/// that point, or zeros where records were, is refused.
#[tokio::test]
async fn the_next_segment_says_where_a_failed_write_began() {
    let failed_write_then_more = |damage: &dyn Fn(&std::fs::File, &[usize])| {
        let dir = tempfile::tempdir().unwrap();
        let mut j = journal_at(dir.path(), 1);
        write(&mut j, 0..5, 1);
        assert_eq!(j.seal().unwrap(), 2);
        write(&mut j, 5..8, 1);
        j.finish();
        let path = seg(dir.path(), 1);
        let offsets = frame_offsets(&path);
        let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
        damage(&file, &offsets);
        dir
    };
    let dir = failed_write_then_more(&|f, offsets| {
        let end = *offsets.last().unwrap();
        let mut failed = Vec::new();
        encode(&sample(99), &mut failed).unwrap();
        crate::frame::stamp(&mut failed, end as u64, 1);
        f.write_all_at(&failed[..failed.len() / 2], end as u64)
            .unwrap();
    });
    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    assert_eq!(store.recovered().records, 8);
    assert!(store.recovered().torn_bytes > 0);
    store.close().await;

    let dir = failed_write_then_more(&|f, offsets| {
        f.write_all_at(b"\x01", offsets[4] as u64 + 25).unwrap();
    });
    let err = open(dir.path(), OnDamage::Refuse).unwrap_err().to_string();
    assert!(err.contains("corrupt at offset"), "{err}");

    let dir = failed_write_then_more(&|f, offsets| {
        f.write_all_at(&vec![0; offsets[5] - offsets[4]], offsets[4] as u64)
            .unwrap();
    });
    let err = open(dir.path(), OnDamage::Refuse).unwrap_err().to_string();
    assert!(err.contains("zeros from offset"), "{err}");
}

/// `durability: buffered` acknowledges before the disk has the message: after a power cut an
/// earlier write can be missing while a later one is there. The engine starts (the operator
/// chose that risk) but says what was lost, and keeps what is left.
#[tokio::test]
async fn a_buffered_journal_reports_what_a_power_cut_took() {
    let dir = tempfile::tempdir().unwrap();
    let mut j = Journal::create(&dir.path().join(JOURNAL_DIR), 1, 1 << 20, true).unwrap();
    write(&mut j, 0..10, 1);
    j.finish();
    let path = seg(dir.path(), 1);
    let offsets = frame_offsets(&path);
    let file = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    file.write_all_at(&vec![0; offsets[4] - offsets[3]], offsets[3] as u64)
        .unwrap();
    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    let r = store.recovered();
    assert_eq!((r.records, r.salvaged), (3, 6), "{r:?}");
    assert_eq!(r.unsynced_bytes, (offsets[4] - offsets[3]) as u64);
    store.close().await;
}

/// The fuzzer's seeds are written by an independent encoder (a few lines of Python from the
/// format's description in frame.rs and segment.rs): reading them checks the description.
#[test]
fn segments_written_from_the_format_description_read_as_described() {
    let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fuzz/seeds/journal_segment");
    let read = |name: &str| crate::scan_segment(&std::fs::read(seeds.join(name)).unwrap());
    let sound = read("sound");
    assert_eq!(
        (sound.records, &sound.problems[..], sound.torn),
        (3, &[][..], None)
    );
    let corrupt = read("corrupt");
    assert!(
        matches!(
            corrupt.problems[..],
            [Problem::Corrupt {
                offset: 48,
                records_after: 2,
                ..
            }]
        ),
        "{corrupt:?}"
    );
    let torn = read("torn");
    assert_eq!((torn.records, torn.problems.len()), (2, 1), "{torn:?}"); // and truncated
    assert!(torn.torn.is_some());
    let buffered = read("buffered");
    assert_eq!(buffered.records, 3);
    assert_eq!(read("legacy").records, 3);

    // Format 4: frames name their segment, and a recycled file's leftovers are not read.
    for (name, records) in [("sound4", 3), ("recycled4", 1), ("stale4", 3)] {
        let r = read(name);
        assert_eq!(
            (r.records, &r.problems[..], r.torn),
            (records, &[][..], None),
            "{name}"
        );
    }
    let stale = std::fs::read(seeds.join("stale4")).unwrap();
    let as_nine = crate::segment::scan(&stale, Some(9), None);
    assert_eq!(
        (as_nine.records.len(), &as_nine.problems[..], as_nine.torn),
        (0, &[][..], None),
        "segment 5's file renamed as segment 9 holds nothing of 9's"
    );
}

/// The journal writes new segments over retired ones: after a crash, a recycled segment's file
/// still holds its previous life's frames after what was written to it this time, and a spare
/// taken but never written holds nothing else. None of it may be replayed (it is in the index,
/// and retention may have removed it there since), nor read as damage; a write cut short in a
/// recycled segment is still torn, and corruption there still refused.
#[tokio::test]
async fn a_recycled_segment_replays_only_what_was_written_to_it() {
    let crashed = || {
        let dir = tempfile::tempdir().unwrap();
        let journal = dir.path().join(JOURNAL_DIR);
        let mut j = Journal::create(&journal, 1, 1200, false).unwrap();
        let mut live = 0..0u64;
        for n in 0..60 {
            if n % 4 == 0 {
                // As the checkpoint does once the index holds them: retire every earlier one.
                j.seal().unwrap();
                remove_segments_before(&journal, j.segment()).unwrap();
                live = n..n;
            }
            write(&mut j, n..n + 1, 1);
            live.end = n + 1;
        }
        let spare = j.finish();
        (dir, (live.end - live.start) as usize, spare)
    };
    let (dir, live, spare) = crashed();
    let journal = dir.path().join(JOURNAL_DIR);
    // Which segments on disk are files that were other segments before.
    let recycled: Vec<u64> = existing_segments(&journal)
        .unwrap()
        .into_iter()
        .filter(|&n| {
            let bytes = std::fs::read(segment_path(&journal, n)).unwrap();
            let named = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
            (bytes.starts_with(b"WYVERNJ\n") && named(16) != n)
                || bytes
                    .windows(4)
                    .enumerate()
                    .any(|(at, w)| w == b"WYF4" && named(at + 20) != n)
        })
        .collect();
    assert!(
        !recycled.is_empty(),
        "segments up to {spare}, none recycled"
    );
    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    let r = store.recovered();
    assert_eq!((r.records, r.added, r.torn_bytes), (live, live, 0), "{r:?}");
    store.close().await;
    drop(store);
    assert_eq!(stored(dir.path()), live);
    let left: Vec<_> = std::fs::read_dir(&journal).unwrap().collect();
    assert!(left.is_empty(), "nothing left, free segments too: {left:?}");

    // A write cut short at the end of the last (recycled) segment.
    let (dir, live, spare) = crashed();
    let last = seg(dir.path(), spare - 1);
    let end = *frame_offsets(&last).last().unwrap();
    let mut torn = Vec::new();
    encode(&sample(99), &mut torn).unwrap();
    crate::frame::stamp(&mut torn, end as u64, spare - 1);
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.write_all_at(&torn[..torn.len() / 2], end as u64)
        .unwrap();
    let store = open(dir.path(), OnDamage::Refuse).unwrap();
    let r = store.recovered();
    assert_eq!(r.records, live, "{r:?}");
    assert!(
        r.torn_bytes > 0 && r.torn_bytes <= torn.len() as u64,
        "{r:?}"
    );
    store.close().await;

    // A flipped byte in the first of several writes to a recycled segment.
    let (dir, _, spare) = crashed();
    let last = seg(dir.path(), spare - 1);
    let offsets = frame_offsets(&last);
    assert!(offsets.len() > 2, "{offsets:?}");
    let file = std::fs::OpenOptions::new().write(true).open(&last).unwrap();
    file.write_all_at(b"\xFF", offsets[0] as u64 + 40).unwrap();
    let err = open(dir.path(), OnDamage::Refuse).unwrap_err().to_string();
    assert!(err.contains("corrupt at offset"), "{err}");
}
