//! The journal reader on any bytes: a segment damaged every way a disk can damage it. It must
//! never panic, and what it counts must add up.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let report = wyvern_store::scan_segment(data);
    // A torn write and damage are told apart: never both for the same bytes.
    if let Some(t) = report.torn {
        assert!(t.offset as usize + t.bytes as usize <= data.len());
    }
    // Every record takes at least a frame header: no count larger than the bytes allow.
    assert!((report.records + report.salvageable) * 20 <= data.len());
});
