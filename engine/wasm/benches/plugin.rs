//! Plugin costs on a 1 KB ADT^A01: a warm call of the no-op plugin (the host's per-message
//! overhead), warm calls of the PID-3 normaliser, the code-table mapper and the JavaScript
//! plugin, and loading a plugin cold (compile) and from the compiled cache.
//!
//! `cargo bench -p wyvern-wasm --bench plugin` (builds plugins/ first if needed).

#![allow(clippy::unwrap_used)] // a benchmark, like a test: a failure should stop it loudly

use std::path::{Path, PathBuf};

use criterion::{Criterion, criterion_group, criterion_main};
use wyvern_wasm::{Message, Plugin, PluginEngine, PluginOptions};

fn plugins() -> Vec<PathBuf> {
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    wyvern_wasm::guest::build(&repo.join("plugins"), &repo.join("plugins/dist")).expect("build")
}

fn find(all: &[PathBuf], name: &str) -> PathBuf {
    all.iter()
        .find(|p| p.file_stem().is_some_and(|s| s == name))
        .expect("plugin")
        .clone()
}

fn adt() -> Message {
    // The synthetic 1 KB ADT^A01, with the NHS number second in PID-3 as feeds send it.
    let raw = wyvern_hl7::synthetic::adt_a01("BENCH0001", 7);
    Message {
        content_type: "hl7v2".into(),
        body: raw.into_bytes(),
        metadata: vec![("id".into(), "01BENCH".into())],
    }
}

fn bench(c: &mut Criterion) {
    let all = plugins();
    let engine = PluginEngine::new(None).expect("engine");
    let msg = adt();
    let noop = Plugin::load(&engine, &find(&all, "test-noop"), PluginOptions::default()).unwrap();
    c.bench_function("noop plugin, warm call, 1 KB ADT", |b| {
        b.iter(|| noop.process("01BENCH", &msg).unwrap())
    });
    let pid3 = Plugin::load(
        &engine,
        &find(&all, "pid3-normalise"),
        PluginOptions::default(),
    )
    .unwrap();
    c.bench_function("pid3-normalise, warm call, 1 KB ADT", |b| {
        b.iter(|| pid3.process("01BENCH", &msg).unwrap())
    });
    let code_map = Plugin::load(
        &engine,
        &find(&all, "code-map"),
        PluginOptions {
            config: r#"{"maps":[{"from":"PV1-3.1","to":"PV1-3.4","table":"ward-to-ods"}]}"#.into(),
            tables: std::sync::Arc::new(
                [(
                    "ward-to-ods".to_string(),
                    [("WARD7".to_string(), "RXX01".to_string())].into(),
                )]
                .into(),
            ),
            ..PluginOptions::default()
        },
    )
    .unwrap();
    c.bench_function("code-map (ward → ODS lookup), warm call, 1 KB ADT", |b| {
        b.iter(|| code_map.process("01BENCH", &msg).unwrap())
    });
    let js = Plugin::load(
        &engine,
        &find(&all, "drop-zsegments"),
        PluginOptions::default(),
    )
    .unwrap();
    c.bench_function("drop-zsegments (JavaScript), warm call, 1 KB ADT", |b| {
        b.iter(|| js.process("01BENCH", &msg).unwrap())
    });
    let bytes = std::fs::read(find(&all, "pid3-normalise")).unwrap();
    let mut g = c.benchmark_group("load pid3-normalise");
    g.sample_size(10);
    g.bench_function("cold: compile + instantiate + configure", |b| {
        b.iter(|| Plugin::from_bytes(&engine, "pid3", &bytes, PluginOptions::default()).unwrap())
    });
    let cache = tempfile::tempdir().unwrap();
    let cached = PluginEngine::new(Some(cache.path().to_path_buf())).unwrap();
    Plugin::from_bytes(&cached, "pid3", &bytes, PluginOptions::default()).unwrap();
    g.bench_function("from the compiled cache + instantiate + configure", |b| {
        b.iter(|| Plugin::from_bytes(&cached, "pid3", &bytes, PluginOptions::default()).unwrap())
    });
    g.finish();
    // The JavaScript component carries QuickJS (1.6 MB): the compiled cache matters most here.
    let js_bytes = std::fs::read(find(&all, "drop-zsegments")).unwrap();
    let mut g = c.benchmark_group("load drop-zsegments (JavaScript)");
    g.sample_size(10);
    g.bench_function("cold: compile + instantiate + configure", |b| {
        b.iter(|| Plugin::from_bytes(&engine, "js", &js_bytes, PluginOptions::default()).unwrap())
    });
    Plugin::from_bytes(&cached, "js", &js_bytes, PluginOptions::default()).unwrap();
    g.bench_function("from the compiled cache + instantiate + configure", |b| {
        b.iter(|| Plugin::from_bytes(&cached, "js", &js_bytes, PluginOptions::default()).unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
