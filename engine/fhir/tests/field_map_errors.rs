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

#[test]
fn a_blank_profile_claims_none() {
    let shipped = include_str!("../../../mappings/hl7v2-to-fhir.map.yaml");
    let blank = shipped.replace(
        "Patient: https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient",
        "Patient: \"\"",
    );
    assert_ne!(blank, shipped);
    let mappings = Mappings::with(
        Some(("blank.map.yaml", &blank)),
        &wyvern_config::CodeTables::new(),
    )
    .expect("a blank profile is allowed");
    let msg = "MSH|^~\\&|PAS|RXX|WYV|CHIE|20260101||ADT^A28|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||TEST^ALEX\r";
    let mapped = wyvern_fhir::Mapper::new(mappings)
        .map(msg.as_bytes())
        .expect("maps");
    let bundle = mapped.value();
    let patient = &bundle["entry"][0]["resource"];
    assert_eq!(patient["resourceType"], "Patient");
    assert!(patient.get("meta").is_none(), "{patient}");
}
