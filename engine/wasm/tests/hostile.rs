//! Real compiled plugins (built from plugins/ by the same code as `wyvern plugin build`)
//! against the host: the examples work, and hostile plugins — an infinite loop, a memory bomb,
//! a trap, one that imports WASI — never take the host down or let a message through.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use wyvern_wasm::{CallError, LoadError, Message, Plugin, PluginEngine, PluginOptions};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// Builds plugins/ once per test binary (incremental after the first time).
fn plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let built = BUILT.get_or_init(|| {
        wyvern_wasm::guest::build(&repo().join("plugins"), &repo().join("plugins/dist"))
            .expect("the plugins build (see plugins/README.md for the toolchain)")
    });
    built
        .iter()
        .find(|p| p.file_stem().is_some_and(|s| s == name))
        .unwrap_or_else(|| panic!("{name} not among {built:?}"))
        .clone()
}

fn engine() -> PluginEngine {
    PluginEngine::new(None).expect("engine")
}

fn msg(body: &str) -> Message {
    Message {
        content_type: "hl7v2".into(),
        body: body.as_bytes().to_vec(),
        metadata: vec![("id".into(), "01TEST".into())],
    }
}

const ADT: &str = "MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|C1|P|2.4\rPID|1||RX12345^^^RX1^MR~9990000018^^^NHS^NHSNBR||TEST^ALEX\r";

#[test]
fn pid3_normalise_puts_the_nhs_number_first() {
    let p = Plugin::load(
        &engine(),
        &plugin("pid3-normalise"),
        PluginOptions::default(),
    )
    .unwrap();
    let out = p.process("01TEST", &msg(ADT)).unwrap();
    assert_eq!(out.len(), 1);
    let body = String::from_utf8(out[0].body.clone()).unwrap();
    assert!(
        body.contains("PID|1||9990000018^^^NHS^NH~RX12345^^^RX1^MR||TEST^ALEX"),
        "{body}"
    );
    // An invalid check digit is left alone (default) or rejected (configured).
    let bad = ADT.replace("9990000018", "9990000017");
    assert_eq!(p.process("x", &msg(&bad)).unwrap()[0].body, bad.as_bytes());
    let strict = Plugin::load(
        &engine(),
        &plugin("pid3-normalise"),
        PluginOptions {
            config: r#"{"invalid":"reject"}"#.into(),
            ..Default::default()
        },
    )
    .unwrap();
    let e = strict.process("x", &msg(&bad)).unwrap_err();
    assert!(matches!(e, CallError::Reject { .. }), "{e}");
    assert!(e.to_string().contains("not a valid NHS number"), "{e}");
}

#[test]
fn a_config_the_plugin_refuses_stops_it_loading() {
    let e = Plugin::load(
        &engine(),
        &plugin("pid3-normalise"),
        PluginOptions {
            config: r#"{"invalid":"sometimes"}"#.into(),
            ..Default::default()
        },
    )
    .unwrap_err();
    assert!(matches!(e, LoadError::Init { .. }), "{e}");
    assert!(e.to_string().contains("unknown variant"), "{e}");
}

#[test]
fn an_infinite_loop_is_stopped_at_its_deadline_and_the_next_message_flows() {
    let p = Plugin::load(
        &engine(),
        &plugin("test-infinite-loop"),
        PluginOptions::default(),
    )
    .unwrap();
    let started = Instant::now();
    let e = p.process("x", &msg("MSH|LOOP")).unwrap_err();
    let took = started.elapsed();
    println!("infinite loop stopped after {took:?} (limit 100 ms): {e}");
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    assert!(e.to_string().contains("time limit"), "{e}");
    assert!(
        took < Duration::from_secs(5),
        "stopped, not hung ({took:?})"
    );
    assert_eq!(p.process("x", &msg("MSH|ok")).unwrap().len(), 1);
}

#[test]
fn a_memory_bomb_is_refused() {
    // A generous time limit, so it is the memory limit that stops it.
    let options = PluginOptions {
        limits: wyvern_wasm::Limits {
            time: Duration::from_secs(5),
            ..Default::default()
        },
        ..Default::default()
    };
    let p = Plugin::load(&engine(), &plugin("test-memory-bomb"), options).unwrap();
    let e = p.process("x", &msg("MSH|BOMB")).unwrap_err();
    println!("memory bomb: {e}");
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    assert!(e.to_string().contains("memory limit of 64 MiB"), "{e}");
    assert_eq!(p.process("x", &msg("MSH|ok")).unwrap().len(), 1);
}

#[test]
fn a_trap_fails_closed_and_the_instance_is_replaced() {
    let p = Plugin::load(&engine(), &plugin("test-trap"), PluginOptions::default()).unwrap();
    let e = p.process("x", &msg("MSH|TRAP")).unwrap_err();
    println!("trap: {e}");
    assert!(matches!(e, CallError::Failed { .. }), "{e}");
    assert!(e.to_string().contains("trapped"), "{e}");
    for _ in 0..3 {
        assert_eq!(p.process("x", &msg("MSH|ok")).unwrap().len(), 1);
    }
}

#[test]
fn a_plugin_importing_wasi_is_refused_at_load() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wants-files.wat");
    std::fs::write(
        &path,
        r#"(component
             (import "wasi:filesystem/preopens@0.2.0" (instance))
             (import "wasi:cli/environment@0.2.0" (instance)))"#,
    )
    .unwrap();
    let e = Plugin::load(&engine(), &path, PluginOptions::default()).unwrap_err();
    println!("{e}");
    assert!(matches!(e, LoadError::ForbiddenImports { .. }), "{e}");
    assert!(
        e.to_string().contains("wasi:filesystem/preopens@0.2.0"),
        "{e}"
    );
}

#[test]
fn the_compiled_plugin_is_cached() {
    let cache = tempfile::tempdir().unwrap();
    let engine = PluginEngine::new(Some(cache.path().to_path_buf())).unwrap();
    let first = Plugin::load(&engine, &plugin("test-noop"), PluginOptions::default()).unwrap();
    let second = Plugin::load(&engine, &plugin("test-noop"), PluginOptions::default()).unwrap();
    println!(
        "noop: compiled in {:?}, from the cache in {:?}",
        first.compile_time, second.compile_time
    );
    assert!(!first.from_cache && second.from_cache);
    assert_eq!(
        second.process("x", &msg("MSH|a")).unwrap()[0].body,
        b"MSH|a"
    );
}

#[test]
fn redact_drops_segments_and_blanks_fields_per_config() {
    let p = Plugin::load(
        &engine(),
        &plugin("redact"),
        PluginOptions {
            config:
                r#"{"drop_segments":["NK1"],"blank":["PID-13"],"mask":{"PID-11.1":"REDACTED"}}"#
                    .into(),
            ..Default::default()
        },
    )
    .unwrap();
    let raw = "MSH|^~\\&|SC|LA1|WYV|CHIE|2026||ADT^A08|R1|P|2.4\rPID|1||9990000018^^^NHS^NH||TEST^ALEX||||||1 TEST STREET^^TESTTOWN||01632 960000~07700 900000\rNK1|1|TESTRELATIVE^SAM\rPV1|1|O\r";
    let out = p.process("x", &msg(raw)).unwrap();
    let body = String::from_utf8(out[0].body.clone()).unwrap();
    assert_eq!(
        body,
        "MSH|^~\\&|SC|LA1|WYV|CHIE|2026||ADT^A08|R1|P|2.4\rPID|1||9990000018^^^NHS^NH||TEST^ALEX||||||REDACTED^^TESTTOWN||\rPV1|1|O\r"
    );
    for bad in [
        r#"{"blank":["PID-3"]}"#,
        r#"{"drop_segments":["MSH"]}"#,
        "{}",
    ] {
        let e = Plugin::load(
            &engine(),
            &plugin("redact"),
            PluginOptions {
                config: bad.into(),
                ..Default::default()
            },
        )
        .unwrap_err();
        assert!(matches!(e, LoadError::Init { .. }), "{bad}: {e}");
    }
}

#[test]
fn code_map_looks_up_the_tables_it_was_given() {
    let tables: wyvern_wasm::CodeTables = [(
        "ward-to-ods".to_string(),
        [("AMU".to_string(), "RXX01".to_string())].into(),
    )]
    .into();
    let options = |unmapped: &str| PluginOptions {
        config: format!(
            r#"{{"maps":[{{"from":"PV1-3.1","to":"PV1-3.4","table":"ward-to-ods"}}],"unmapped":"{unmapped}"}}"#
        ),
        tables: tables.clone().into(),
        ..PluginOptions::default()
    };
    let adt = |ward: &str| {
        msg(&format!(
            "MSH|^~\\&|PAS|RXX|WYV|CHIE|2026||ADT^A02|C1|P|2.4\rPID|1||9990000018^^^NHS^NH\rPV1|1|I|{ward}^B1^2\r"
        ))
    };
    let keep = Plugin::load(&engine(), &plugin("code-map"), options("keep")).unwrap();
    let out = keep.process("x", &adt("AMU")).unwrap();
    assert!(
        String::from_utf8_lossy(&out[0].body).contains("PV1|1|I|AMU^B1^2^RXX01"),
        "{:?}",
        String::from_utf8_lossy(&out[0].body)
    );
    // Not in the table: passed on unchanged (keep) or refused (reject).
    assert_eq!(
        keep.process("x", &adt("W99")).unwrap()[0].body,
        adt("W99").body
    );
    let reject = Plugin::load(&engine(), &plugin("code-map"), options("reject")).unwrap();
    match reject.process("x", &adt("W99")) {
        Err(CallError::Reject { reason, .. }) => assert!(reason.contains("W99"), "{reason}"),
        other => panic!("expected a reject, got {other:?}"),
    }
    // Without tables the plugin sees none: every code is unmapped.
    let bare = Plugin::load(
        &engine(),
        &plugin("code-map"),
        PluginOptions {
            tables: Default::default(),
            ..options("reject")
        },
    )
    .unwrap();
    assert!(bare.process("x", &adt("AMU")).is_err());
}

#[test]
fn a_javascript_plugin_runs_under_the_same_contract() {
    let p = Plugin::load(
        &engine(),
        &plugin("drop-zsegments"),
        PluginOptions {
            config: r#"{"keep":["ZPD"],"also_drop":["NK1"]}"#.into(),
            ..PluginOptions::default()
        },
    )
    .unwrap();
    let input = "MSH|^~\\&|GP|X|WYV|DCR|2026||ADT^A08|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||TÉST^ALEX\rNK1|1|X\rZPD|1\rZXY|2\rPV1|1|O\r";
    let out = p.process("x", &msg(input)).unwrap();
    assert_eq!(out.len(), 1);
    // Bytes beyond ASCII come out exactly as they went in.
    assert_eq!(
        String::from_utf8(out[0].body.clone()).unwrap(),
        "MSH|^~\\&|GP|X|WYV|DCR|2026||ADT^A08|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||TÉST^ALEX\rZPD|1\rPV1|1|O\r"
    );
    assert_eq!(out[0].metadata, msg(input).metadata);
    // A thrown { tag: "reject" } is a reject, as from Rust.
    assert!(matches!(
        p.process("x", &msg("PID|1\r")),
        Err(CallError::Reject { .. })
    ));
    // A config it refuses stops the load.
    let refused = Plugin::load(
        &engine(),
        &plugin("drop-zsegments"),
        PluginOptions {
            config: r#"{"keep":"ZPD"}"#.into(),
            ..PluginOptions::default()
        },
    );
    assert!(
        matches!(&refused, Err(LoadError::Init { reason, .. }) if reason.contains("keep must be a list")),
        "{refused:?}"
    );
}
