//! One journal segment read back: its header, its records, and what ends it — the zero fill
//! (clean), a torn write (expected after a crash; never acknowledged), or damage (never
//! dropped in silence: recovery refuses to start until a person decides).
//!
//! The header (format 3 on) says which format wrote the segment, how large it was made (so a
//! truncated file is noticed), whether it was written with `durability: buffered`, and how far
//! the *previous* segment's last successful write reached (`prev_len`) — so a failed write at
//! the end of a segment, after which the journal moved on, is told from damage exactly.
//! Within the last segment the frames' `batch_start` tells them apart (see [`crate::frame`]).
//! The header is written with the segment's first group commit and synced by its fdatasync.
//!
//! From format 4 on, a segment's file may have been another segment before (`journal.rs`
//! recycles them): until its first write it still carries that segment's header, and after its
//! last write that segment's frames. Both name another segment, and are read as nothing written
//! — as zeros were before.

use crate::frame::{self, Frame, Framing};
use crate::{InboxRecord, codec};

/// Marks a segment written by format 3 or later.
const MAGIC: [u8; 8] = *b"WYVERNJ\n";
/// The segment format this build writes and the newest it reads.
pub(crate) const FORMAT: u32 = 4;
/// Bytes of header; the first frame starts here.
pub(crate) const HEADER_LEN: usize = 48;
const BUFFERED: u32 = 1;
const UNKNOWN: u64 = u64::MAX;

/// What a segment's header says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Header {
    pub segment: u64,
    /// The size it was created with (zero-filled).
    pub size: u64,
    pub buffered: bool,
    /// Where the previous segment's last successful write ended, when it was known.
    pub prev_len: Option<u64>,
}

impl Header {
    pub(crate) fn encode(&self) -> [u8; HEADER_LEN] {
        let mut h = [0u8; HEADER_LEN];
        h[..8].copy_from_slice(&MAGIC);
        h[8..12].copy_from_slice(&FORMAT.to_le_bytes());
        h[12..16].copy_from_slice(&(if self.buffered { BUFFERED } else { 0 }).to_le_bytes());
        h[16..24].copy_from_slice(&self.segment.to_le_bytes());
        h[24..32].copy_from_slice(&self.size.to_le_bytes());
        h[32..40].copy_from_slice(&self.prev_len.unwrap_or(UNKNOWN).to_le_bytes());
        let crc = crc32fast::hash(&h[..40]);
        h[40..44].copy_from_slice(&crc.to_le_bytes());
        h
    }
}

/// What the first bytes of a segment turned out to be.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Start {
    /// A header, and the format that wrote it.
    Header(Header, u32),
    /// Zeros: a segment whose header never reached the disk (or one never written).
    Absent,
    /// Written before segments had headers: legacy frames from byte 0.
    Legacy,
    /// The magic is there but the checksum fails.
    Damaged,
    Newer(u32),
}

fn start(bytes: &[u8]) -> Start {
    let word = |at: usize| u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes"));
    let long = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().expect("8 bytes"));
    if bytes.len() < HEADER_LEN || bytes[..8] != MAGIC {
        return if bytes.iter().take(HEADER_LEN).all(|&b| b == 0) {
            Start::Absent
        } else {
            Start::Legacy
        };
    }
    if crc32fast::hash(&bytes[..40]) != word(40) {
        return Start::Damaged;
    }
    if word(8) > FORMAT {
        return Start::Newer(word(8));
    }
    let prev = long(32);
    let header = Header {
        segment: long(16),
        size: long(24),
        buffered: word(12) & BUFFERED != 0,
        prev_len: (prev != UNKNOWN).then_some(prev),
    };
    Start::Header(header, word(8))
}

/// The `prev_len` in the first bytes of segment `segment`, if it has a readable header of its
/// own (not one left from the file's previous life) that knows it.
pub(crate) fn prev_len(head: &[u8], segment: u64) -> Option<u64> {
    match start(head) {
        Start::Header(h, _) if h.segment == segment => h.prev_len,
        _ => None,
    }
}

/// Whether a segment file may be written over as a later segment: only one whose frames name
/// their segment (format 4), or say they are not this format's (format 3), or that holds none
/// (zeros). A legacy segment's frames say nothing of where they belong, so one left in a
/// recycled file would read as the new segment's.
pub(crate) fn recyclable(head: &[u8]) -> bool {
    matches!(start(head), Start::Header(..) | Start::Absent)
}

/// Something wrong with a segment that a crash does not explain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Problem {
    /// Bytes that fail their checksum, with records written (and synced) after them.
    Corrupt {
        offset: u64,
        bytes: u64,
        records_after: usize,
    },
    /// Zeros where the next segment's header says records were written.
    Missing { offset: u64, written_to: u64 },
    /// Shorter than the size it was created with.
    Truncated { len: u64, size: u64 },
    /// The header fails its checksum (or is gone while records written after it are there).
    BadHeader,
    /// Written by a later Wyvern: this build does not read it.
    NewerFormat { format: u32 },
    /// A record whose checksum holds but which does not decode (written by a later version).
    Unreadable { offset: u64 },
}

impl std::fmt::Display for Problem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Problem::Corrupt {
                offset,
                bytes,
                records_after,
            } => write!(
                f,
                "corrupt at offset {offset}: {bytes} bytes fail their checksum, and {records_after} intact records were written after them (so they are not a write cut short by a crash)"
            ),
            Problem::Missing { offset, written_to } => write!(
                f,
                "zeros from offset {offset} where records were written up to offset {written_to}"
            ),
            Problem::Truncated { len, size } => {
                write!(
                    f,
                    "truncated: {len} bytes of the {size} it was created with"
                )
            }
            Problem::BadHeader => write!(f, "its header is damaged"),
            Problem::NewerFormat { format } => write!(
                f,
                "written by a newer Wyvern (journal format {format}; this build reads up to {FORMAT}): run that version"
            ),
            Problem::Unreadable { offset } => write!(
                f,
                "the record at offset {offset} is intact but this build cannot read it (a newer version wrote it)"
            ),
        }
    }
}

/// A write cut short: by a crash (the last write), or one that failed before the journal moved
/// to a new segment. Never acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Torn {
    pub offset: u64,
    pub bytes: u64,
}

/// Writes lost in a power cut from a segment written with `durability: buffered`, which
/// acknowledges before the disk has the message: those senders were told AA.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unsynced {
    pub offset: u64,
    pub bytes: u64,
}

/// One segment, read.
#[derive(Debug, Default)]
pub(crate) struct Scan {
    /// Intact records before any damage, in order.
    pub records: Vec<InboxRecord>,
    /// Intact records found beyond damage: what a repair keeps.
    pub salvage: Vec<InboxRecord>,
    pub torn: Option<Torn>,
    pub unsynced: Option<Unsynced>,
    pub problems: Vec<Problem>,
}

/// Reads a segment: `segment` is its number (from its file name; `None` reads the number in
/// its header). `written_to` is the next segment's `prev_len`: where this one's last successful
/// write ended, when known.
pub(crate) fn scan(bytes: &[u8], segment: Option<u64>, written_to: Option<u64>) -> Scan {
    let mut scan = Scan::default();
    let head = match start(bytes) {
        // A header left from the file's previous life: this segment's never reached the disk.
        Start::Header(h, _) if segment.is_some_and(|s| s != h.segment) => Start::Absent,
        head => head,
    };
    let (framing, from, buffered, this) = match head {
        Start::Newer(format) => {
            scan.problems.push(Problem::NewerFormat { format });
            return scan;
        }
        Start::Header(h, format) => {
            if (bytes.len() as u64) < h.size {
                scan.problems.push(Problem::Truncated {
                    len: bytes.len() as u64,
                    size: h.size,
                });
            }
            let framing = if format >= 4 {
                Framing::Current
            } else {
                Framing::V3
            };
            (framing, HEADER_LEN, h.buffered, Some(h.segment))
        }
        Start::Damaged => {
            scan.problems.push(Problem::BadHeader);
            (framing_after_header(bytes), HEADER_LEN, false, segment)
        }
        Start::Absent => (Framing::Current, HEADER_LEN, false, segment),
        Start::Legacy => (Framing::Legacy, 0, false, None),
    };
    // A frame of this segment: one naming another was left by the file's previous life.
    let ours = |f: &Frame<'_>| match (this, f.segment) {
        (Some(this), Some(named)) => this == named,
        _ => true,
    };
    // Frames at or past `written_to` belong to a write that failed (it was answered AE), even
    // if the disk kept them whole.
    let limit = written_to.map_or(bytes.len(), |w| (w as usize).min(bytes.len()));
    let mut at = from;
    // Where the last intact frame's write began.
    let mut last_batch = 0;
    while at < limit {
        let Some(f) = frame::read(&bytes[at..limit], framing).filter(ours) else {
            break;
        };
        take(&mut scan.records, &mut scan.problems, &f, at);
        last_batch = f.batch_start;
        at += f.len;
    }
    // This segment's intact frames after the last record, read once. Only format 4 needs them
    // to tell where its writes end (older segments end in zeros); the others read them below
    // only if there is damage.
    let after = (framing == Framing::Current).then(|| frames_after(bytes, at, framing, &ours));
    let written = written_after(bytes, at, this, after.as_deref());
    if at == limit && limit < bytes.len() {
        if let Some(end) = written {
            scan.torn = Some(Torn {
                offset: at as u64,
                bytes: (end - at) as u64,
            });
        }
        return scan;
    }
    if head == Start::Absent && !scan.records.is_empty() && last_batch > from as u64 {
        // A second write was synced, and with it the header written before the first.
        scan.problems.push(Problem::BadHeader);
    }
    // Where the next segment says this one's writes reached, past its last record.
    let unread = written_to.filter(|&w| (at as u64) < w);
    // Bytes there that are not zeros are damage even when nothing reads as this segment's.
    let before_written_to = || {
        let to = unread?.min(bytes.len() as u64) as usize;
        bytes[at..to].iter().any(|&b| b != 0).then_some(to)
    };
    let Some(end) = written.or_else(before_written_to) else {
        // Nothing of this segment's after the last record: a clean end.
        if let Some(written_to) = unread {
            scan.problems.push(Problem::Missing {
                offset: at as u64,
                written_to,
            });
        }
        return scan;
    };
    let damage = at;
    let mut later = after.unwrap_or_else(|| frames_after(bytes, damage, framing, &ours));
    // Was anything written after the bad bytes by a later (synced) write?
    let later_write = match written_to {
        Some(end) => {
            later.retain(|(pos, _)| (*pos as u64) < end);
            (damage as u64) < end
        }
        None => match framing {
            Framing::Legacy => !later.is_empty(),
            Framing::Current | Framing::V3 => {
                later.iter().any(|(_, f)| f.batch_start > damage as u64)
            }
        },
    };
    let bytes_bad = later.first().map_or(end, |(pos, _)| *pos) - damage;
    if !later_write {
        scan.torn = Some(Torn {
            offset: damage as u64,
            bytes: (end - damage) as u64,
        });
        return scan;
    }
    for (pos, f) in &later {
        take(&mut scan.salvage, &mut scan.problems, f, *pos);
    }
    if buffered {
        scan.unsynced = Some(Unsynced {
            offset: damage as u64,
            bytes: bytes_bad as u64,
        });
    } else {
        scan.problems.push(Problem::Corrupt {
            offset: damage as u64,
            bytes: bytes_bad as u64,
            records_after: scan.salvage.len(),
        });
    }
    scan
}

/// The intact frames of this segment that start after `at`, in order.
fn frames_after<'a>(
    bytes: &'a [u8],
    at: usize,
    framing: Framing,
    ours: &dyn Fn(&Frame<'_>) -> bool,
) -> Vec<(usize, Frame<'a>)> {
    let mut found = Vec::new();
    let mut from = at;
    while let Some((pos, f)) = frame::next_after(bytes, from, framing) {
        from = pos + f.len - 1;
        if ours(&f) {
            found.push((pos, f));
        }
    }
    found
}

/// Where what this segment wrote after `at` ends, if it wrote anything there. In a segment
/// that was zero-filled (formats 3 and older, `after` not read) that is its last byte that is
/// not zero; in one that may have been recycled, the end of its last frame after `at` (of
/// `after`), or of the frame whose header starts at `at` (a write cut short), whichever is
/// further.
fn written_after(
    bytes: &[u8],
    at: usize,
    this: Option<u64>,
    after: Option<&[(usize, Frame<'_>)]>,
) -> Option<usize> {
    let Some(after) = after else {
        return zero_end(bytes, at);
    };
    let cut_short = this
        .and_then(|s| frame::claimed_len(&bytes[at..], Framing::Current, s))
        .map(|len| at.saturating_add(len).min(bytes.len()));
    let last_frame = after.last().map(|(pos, f)| pos + f.len);
    // Read without knowing which segment it is (no number given, no header to say): what is
    // not zeros, as in a zero-filled segment.
    cut_short
        .max(last_frame)
        .or_else(|| this.is_none().then(|| zero_end(bytes, at)).flatten())
}

/// The end of the last byte after `at` that is not zero.
fn zero_end(bytes: &[u8], at: usize) -> Option<usize> {
    bytes
        .iter()
        .rposition(|&b| b != 0)
        .filter(|&l| l >= at)
        .map(|l| l + 1)
}

/// Which frames follow a header too damaged to say: the first magic after it decides.
fn framing_after_header(bytes: &[u8]) -> Framing {
    match bytes.get(HEADER_LEN..HEADER_LEN + 4) {
        Some(m) if m == b"WYF3" => Framing::V3,
        _ => Framing::Current,
    }
}

fn take(into: &mut Vec<InboxRecord>, problems: &mut Vec<Problem>, f: &Frame<'_>, at: usize) {
    match codec::decode(f.payload) {
        Some(r) => into.push(r),
        None => problems.push(Problem::Unreadable { offset: at as u64 }),
    }
}
