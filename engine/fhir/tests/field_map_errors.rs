//! A broken `hl7v2-to-fhir.map.yaml` is refused with where and what: each
//! `field-map-errors/NAME.map.yaml` (the shipped field map with one mistake) must fail to load
//! with exactly `NAME.error` (file:line:col and what was expected). `UPDATE_GOLDEN=1` rewrites.

use std::path::Path;

use wyvern_fhir::Mappings;

#[test]
fn broken_field_maps_are_refused_with_file_line_and_column() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/field-map-errors");
    let mut cases: Vec<_> = std::fs::read_dir(&dir)
        .expect("dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.to_string_lossy().ends_with(".map.yaml"))
        .collect();
    cases.sort();
    assert!(cases.len() >= 5, "only {} cases", cases.len());
    let mut failures = Vec::new();
    for case in &cases {
        let name = case.file_name().unwrap_or_default().to_string_lossy();
        let text = std::fs::read_to_string(case).expect("read");
        let label = format!("mappings/{name}");
        let got = match Mappings::with(Some((&label, &text)), &wyvern_config::CodeTables::new()) {
            Ok(_) => "(loaded: expected an error)\n".to_string(),
            Err(e) => format!("{e}\n"),
        };
        let expected_path = dir.join(name.replace(".map.yaml", ".error"));
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&expected_path, &got).expect("write");
            continue;
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != got {
            failures.push(format!("{name}:\n--- expected\n{expected}--- got\n{got}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
