//! `wasm:` route steps end to end: the real binary loads real compiled plugins (built from
//! plugins/ by the same code as `wyvern plugin build`).

use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use crate::harness::{EngineProcess, Wire, frame, normalise_ack, wait_until};

/// The component built from plugins/ (once per test run).
pub fn built_plugin(name: &str) -> PathBuf {
    static BUILT: OnceLock<Vec<PathBuf>> = OnceLock::new();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let built = BUILT.get_or_init(|| {
        wyvern_wasm::guest::build(&repo.join("plugins"), &repo.join("plugins/dist"))
            .expect("the plugins build (see plugins/README.md for the toolchain)")
    });
    built
        .iter()
        .find(|p| p.file_stem().is_some_and(|s| s == name))
        .unwrap_or_else(|| panic!("{name} not among {built:?}"))
        .canonicalize()
        .expect("built plugin")
}

fn files(dir: &Path) -> Vec<String> {
    let mut out: Vec<String> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|f| f.file_name().to_string_lossy().ends_with(".hl7"))
                .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                .collect()
        })
        .unwrap_or_default();
    out.sort();
    out
}

#[test]
fn a_plugin_step_normalises_pid3_and_a_trapping_plugin_answers_ae_and_delivers_nothing() {
    let pid3 = built_plugin("pid3-normalise");
    let trap = built_plugin("test-trap");
    let e = EngineProcess::start_route(
        "",
        &format!(
            "steps:\n  - wasm: {{ plugin: \"{}\", config: {{ invalid: keep }} }}\n  - wasm: {{ plugin: \"{}\", limits: {{ time: 200ms }} }}\n\
             destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n",
            pid3.display(),
            trap.display()
        ),
    );
    let mut w = Wire::connect(e.addr);
    let ok = b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|P1|P|2.4\rPID|1||RX1^^^RX1^MR~9990000018^^^NHS^NHSNBR||TEST^ALEX\r";
    w.write(&frame(ok));
    let ack = normalise_ack(&w.read_frame());
    assert!(ack.contains("MSA|AA|P1"), "{ack}");
    let trapping = b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|P2|P|2.4\rPID|1||9990000026^^^NHS^NH||TRAP^ALEX\r";
    w.write(&frame(trapping));
    let ack = normalise_ack(&w.read_frame());
    assert!(
        ack.contains("MSA|AE|P2|step 2 of route e2e: plugin test-trap trapped"),
        "{ack}"
    );
    // The next message flows through a fresh instance.
    let after = b"MSH|^~\\&|PAS|RX1|WYV|CHIE|2026||ADT^A01|P3|P|2.4\rPID|1||9990000034^^^NHS^NH||TEST^SAM\r";
    w.write(&frame(after));
    assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|P3"));
    let out = e.dir.path().join("out");
    wait_until(Duration::from_secs(10), || files(&out).len() >= 2);
    std::thread::sleep(Duration::from_millis(200));
    let delivered = files(&out);
    assert_eq!(
        delivered.len(),
        2,
        "P1 and P3, not the trapped P2: {delivered:?}"
    );
    assert!(
        delivered
            .iter()
            .any(|d| d.contains("PID|1||9990000018^^^NHS^NH~RX1^^^RX1^MR||TEST^ALEX")),
        "{delivered:?}"
    );
    assert!(!delivered.iter().any(|d| d.contains("|P2|")));
}

#[test]
fn a_code_map_step_adds_the_ods_site_from_the_mappings_folder() {
    let code_map = built_plugin("code-map");
    let mappings = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mappings");
    let e = EngineProcess::start_route_with_engine(
        &format!(
            "mappings: \"{}\"\n",
            mappings.canonicalize().unwrap().display()
        ),
        "",
        &format!(
            "steps:\n  - wasm:\n      plugin: \"{}\"\n      tables: [ward-to-ods]\n      \
             config: {{ maps: [{{ from: PV1-3.1, to: PV1-3.4, table: ward-to-ods }}], unmapped: reject }}\n\
             destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n",
            code_map.display()
        ),
        &["--log", "info"],
    );
    let mut w = Wire::connect(e.addr);
    let known = b"MSH|^~\\&|PAS|RXX|WYV|CHIE|2026||ADT^A02|M1|P|2.4\rPID|1||9990000018^^^NHS^NH\rPV1|1|I|W3^B2^1\r";
    w.write(&frame(known));
    assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|M1"));
    let unknown = b"MSH|^~\\&|PAS|RXX|WYV|CHIE|2026||ADT^A02|M2|P|2.4\rPID|1||9990000018^^^NHS^NH\rPV1|1|I|W99^B2^1\r";
    w.write(&frame(unknown));
    let ack = normalise_ack(&w.read_frame());
    assert!(
        ack.contains("MSA|AR|M2") && ack.contains("W99") && ack.contains("ward-to-ods"),
        "{ack}"
    );
    let out = e.dir.path().join("out");
    wait_until(Duration::from_secs(10), || !files(&out).is_empty());
    let delivered = files(&out);
    assert_eq!(delivered.len(), 1, "{delivered:?}");
    assert!(
        delivered[0].contains("PV1|1|I|W3^B2^1^RXX02"),
        "{delivered:?}"
    );
}
