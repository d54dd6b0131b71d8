//! The HL7v2 index against hl7-parser (the named crate) on the same ~1 KB ADT^A01:
//! `parse` alone, then parse + the reads an inbox and a router make (MSH-9.1, MSH-9.2, MSH-10,
//! PID-3[1].1, PID-5.1, PV1-3.1). Numbers and the decision are in ARCHITECTURE.md.
//!
//! Run: `cargo bench -p wyvern-hl7 --bench index`

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wyvern_hl7::Message;
use wyvern_hl7::synthetic::adt_a01;

const PATHS_WYVERN: [&str; 6] = [
    "MSH-9.1",
    "MSH-9.2",
    "MSH-10",
    "PID-3[1].1",
    "PID-5.1",
    "PV1-3.1",
];
const PATHS_HL7_PARSER: [&str; 6] = [
    "MSH.9.1",
    "MSH.9.2",
    "MSH.10",
    "PID.3[1].1",
    "PID.5.1",
    "PV1.3.1",
];

fn benches(c: &mut Criterion) {
    let text = adt_a01("MSG00001", 42);
    let raw = text.as_bytes();
    // Same answers from both, or the comparison means nothing.
    let ours = Message::parse(raw).expect("parses");
    let theirs = hl7_parser::Message::parse(&text).expect("parses");
    for (a, b) in PATHS_WYVERN.iter().zip(PATHS_HL7_PARSER) {
        let x = ours
            .get(a)
            .map(|v| v.as_str().into_owned())
            .unwrap_or_default();
        let y = theirs
            .query(b)
            .map(|v| v.raw_value().to_string())
            .unwrap_or_default();
        assert_eq!(x, y, "{a} vs {b}");
    }

    let mut g = c.benchmark_group(format!("adt_a01_{}_bytes", raw.len()));
    g.bench_function("wyvern_hl7/parse", |b| {
        b.iter(|| Message::parse(black_box(raw)).map(|m| m.segment_count()))
    });
    g.bench_function("hl7_parser/parse", |b| {
        b.iter(|| hl7_parser::Message::parse(black_box(&text)).map(|m| m.segments.len()))
    });
    g.bench_function("wyvern_hl7/acceptance_problems", |b| {
        b.iter(|| wyvern_hl7::check::acceptance_problems(black_box(&ours)).len())
    });
    g.bench_function("wyvern_hl7/parse+6_reads+nhs", |b| {
        b.iter(|| {
            let m = Message::parse(black_box(raw)).expect("parses");
            let mut n = 0;
            for p in PATHS_WYVERN {
                n += m.get(p).map_or(0, |v| v.raw().len());
            }
            n += m
                .nhs_number()
                .and_then(Result::ok)
                .map_or(0, |x| x.as_str().len());
            n
        })
    });
    g.bench_function("hl7_parser/parse+6_reads", |b| {
        b.iter(|| {
            let m = hl7_parser::Message::parse(black_box(&text)).expect("parses");
            let mut n = 0;
            for p in PATHS_HL7_PARSER {
                n += m.query(p).map_or(0, |v| v.raw_value().len());
            }
            n
        })
    });
    g.bench_function("baseline/split_segments_and_fields", |b| {
        b.iter(|| {
            black_box(raw)
                .split(|&c| c == b'\r')
                .map(|s| s.split(|&c| c == b'|').count())
                .sum::<usize>()
        })
    });
    g.finish();
}

criterion_group!(name = index; config = Criterion::default().sample_size(50); targets = benches);
criterion_main!(index);
