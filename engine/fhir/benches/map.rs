//! HL7v2 → FHIR mapping costs: ADT^A01 (1 KB) → Bundle JSON, ORU^R01 with 20 OBX, and one
//! golden message of each other family (orders, scheduling, immunisation, documents,
//! pharmacy, referrals, problems), each beside its own baseline.
//!
//! The baseline, measured in the same run: serde_json writing the very same Bundle from a
//! `serde_json::Value` already in memory, i.e. the cost of only serialising the output with
//! the usual tool, no HL7 read and no mapping. The mapping should not cost much more.
//!
//! `cargo bench -p wyvern-fhir --bench map`

#![allow(clippy::unwrap_used)] // a benchmark, like a test: a failure should stop it loudly

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use wyvern_fhir::Mapper;

fn oru(n: usize) -> String {
    let mut s = String::from(
        "MSH|^~\\&|LAB|RXX|WYV|CHIE|20261125093000||ORU^R01^ORU_R01|B1|P|2.5.1\rPID|1||9990000018^^^NHS^NH~RXX123^^^RXX^MR||TEST^ALEX||19800102|F\rOBR|1|PL1|FL1^LAB|FBC^Full blood count^LN|||20261125080000|||||||||||||||20261125090000|||F\r",
    );
    for i in 1..=n {
        s.push_str(&format!(
            "OBX|{i}|NM|{i}-0^Test {i}^LN||{}.{}|mmol/L|3.5-5.0|N|||F|||20261125080000\r",
            i % 9 + 1,
            i % 10
        ));
    }
    s
}

fn bench(c: &mut Criterion) {
    let mapper = Mapper::with_defaults().unwrap();
    let adt = wyvern_hl7::synthetic::adt_a01("BENCH0001", 7);
    c.bench_function("ADT^A01 (1 KB) → Bundle JSON", |b| {
        b.iter(|| mapper.map(black_box(adt.as_bytes())).unwrap().json)
    });
    let tree = mapper.map(adt.as_bytes()).unwrap().value();
    c.bench_function(
        "baseline: serde_json writes the same Bundle (8 KB) from a Value",
        |b| b.iter(|| serde_json::to_vec(black_box(&tree)).unwrap()),
    );
    let oru = oru(20);
    c.bench_function("ORU^R01 with 20 OBX → Bundle JSON", |b| {
        b.iter(|| mapper.map(black_box(oru.as_bytes())).unwrap().json)
    });
    let golden = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    for (family, file) in [
        ("orders", "oml-o21-specimen-2.5.1.hl7"),
        ("scheduling", "siu-s12-new-booking-2.4.hl7"),
        ("immunisation", "vxu-v04-given-snomed-2.5.1.hl7"),
        ("documents", "mdm-t02-discharge-letter-text-2.5.1.hl7"),
        ("pharmacy", "rde-o11-new-prescription-2.5.1.hl7"),
        ("referrals", "ref-i12-new-referral-ubrn-2.5.hl7"),
        ("problems", "ppr-pc2-problem-resolved-two-problems-2.4.hl7"),
    ] {
        let raw = wyvern_hl7::with_cr_segments(&std::fs::read(golden.join(file)).unwrap());
        let mapped = mapper.map(&raw).unwrap();
        let tree = mapped.value();
        c.bench_function(&format!("{family}: {file} → Bundle JSON"), |b| {
            b.iter(|| mapper.map(black_box(&raw)).unwrap().json)
        });
        c.bench_function(
            &format!(
                "{family}: baseline, serde_json writes the same Bundle ({} B)",
                mapped.json.len()
            ),
            |b| b.iter(|| serde_json::to_vec(black_box(&tree)).unwrap()),
        );
    }
}

criterion_group!(benches, bench);
criterion_main!(benches);
