//! Golden tests for the built-in mapping: each `golden/NAME.hl7` (synthetic, LF line ends) is
//! mapped with the compiled-in mappings; the Bundle must equal `golden/NAME.json`, the
//! warnings `golden/NAME.warnings` (when any), and a message that cannot be mapped must fail
//! with `golden/NAME.error`. Every Bundle must also parse strictly with fhirbolt and survive
//! JSON → XML → JSON unchanged. `UPDATE_GOLDEN=1` rewrites the expected files.

use std::path::{Path, PathBuf};

use wyvern_fhir::{Mapper, model};

fn cases() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/golden");
    let mut v: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("golden dir")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "hl7"))
        .collect();
    v.sort();
    v
}

fn check(path: &Path, got: &str, failures: &mut Vec<String>) {
    if std::env::var_os("UPDATE_GOLDEN").is_some() {
        if got.is_empty() {
            let _ = std::fs::remove_file(path);
        } else {
            std::fs::write(path, got).expect("write golden");
        }
        return;
    }
    let expected = std::fs::read_to_string(path).unwrap_or_default();
    if expected != got {
        failures.push(format!(
            "{}: differs\n--- expected\n{expected}\n--- got\n{got}",
            path.display()
        ));
    }
}

#[test]
fn mappings_match_golden_bundles_and_round_trip_through_fhirbolt() {
    let mapper = Mapper::with_defaults().expect("built-in mappings load");
    let cases = cases();
    assert!(cases.len() >= 20, "only {} golden messages", cases.len());
    let mut failures = Vec::new();
    let mut bundles = 0;
    for case in &cases {
        let raw = std::fs::read(case).expect("read");
        let raw = wyvern_hl7::with_cr_segments(&raw);
        match mapper.map(&raw) {
            Ok(mapped) => {
                bundles += 1;
                let json = serde_json::to_string_pretty(&mapped.value()).expect("json") + "\n";
                check(&case.with_extension("json"), &json, &mut failures);
                let warnings: String = mapped.warnings.iter().map(|w| format!("{w}\n")).collect();
                check(&case.with_extension("warnings"), &warnings, &mut failures);
                check(&case.with_extension("error"), "", &mut failures);
                // Strictly valid R4 for fhirbolt, and the same after JSON → XML → JSON.
                match model::from_json(&json) {
                    Ok(r) => {
                        let xml = model::to_xml(&r).expect("to xml");
                        let back = model::from_xml(&xml).expect("xml parses back");
                        let a: serde_json::Value =
                            serde_json::from_str(&model::to_json(&r).unwrap()).unwrap();
                        let b: serde_json::Value =
                            serde_json::from_str(&model::to_json(&back).unwrap()).unwrap();
                        if a != b {
                            failures.push(format!(
                                "{}: JSON → XML → JSON changed the Bundle",
                                case.display()
                            ));
                        }
                    }
                    Err(e) => failures.push(format!(
                        "{}: fhirbolt refuses the Bundle: {e}",
                        case.display()
                    )),
                }
            }
            Err(e) => {
                check(
                    &case.with_extension("error"),
                    &format!("{e}\n"),
                    &mut failures,
                );
                check(&case.with_extension("json"), "", &mut failures);
            }
        }
    }
    assert!(bundles >= 20, "only {bundles} messages mapped");
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

/// The README lists the mapped events as the mapper's own table has them.
#[test]
fn the_readme_lists_the_events_the_mapper_takes() {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../../README.md"))
            .expect("README.md");
    let list = wyvern_fhir::mapped_events();
    assert!(
        readme.contains(&format!("**{list}**")),
        "README.md should list the mapped events as **{list}**"
    );
}
