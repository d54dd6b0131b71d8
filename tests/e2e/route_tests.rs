//! `wyvern test`: every shipped route's tests pass (with the real plugins, built from
//! plugins/), and a route broken on purpose — a filter value, a plugin's config, a field of the
//! FHIR mapping — fails with a diff that names the case and the field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn wyvern_test(path: &Path, cache: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .arg("test")
        .arg(path)
        .arg("--plugin-cache")
        .arg(cache)
        .output()
        .expect("wyvern runs")
}

fn text(out: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// The routes' plugins, built from plugins/ once per run.
fn plugins_built() {
    for p in ["pid3-normalise", "code-map", "drop-zsegments", "redact"] {
        crate::plugins::built_plugin(p);
    }
}

#[test]
fn every_shipped_route_and_the_quickstart_pass_their_tests() {
    plugins_built();
    let cache = tempfile::tempdir().unwrap();
    for dir in ["routes", "examples/quickstart"] {
        let out = wyvern_test(&repo().join(dir), cache.path());
        let said = text(&out);
        assert!(out.status.success(), "{dir}:\n{said}");
        assert!(said.contains(" passed, 0 failed"), "{said}");
        assert!(!said.contains("FAIL"), "{said}");
    }
    // Every route file in routes/ has a test file beside it.
    for entry in std::fs::read_dir(repo().join("routes")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.ends_with(".test.yaml") && name != "wyvern.yaml" {
            let test = path.with_extension("test.yaml");
            assert!(test.is_file(), "{name} has no {}", test.display());
        }
    }
}

/// A copy of routes/ beside copies of mappings/ and a link to the built plugins, as the
/// routes' relative paths expect, for a test to break.
fn routes_copy() -> tempfile::TempDir {
    let dir = tempfile::tempdir().expect("a temporary folder");
    for sub in ["routes", "routes/tests", "mappings"] {
        std::fs::create_dir_all(dir.path().join(sub)).expect("a folder");
        for entry in std::fs::read_dir(repo().join(sub)).expect("the repository's folder") {
            let p = entry.expect("an entry").path();
            if p.is_file() {
                std::fs::copy(
                    &p,
                    dir.path().join(sub).join(p.file_name().expect("a name")),
                )
                .expect("a copy");
            }
        }
    }
    std::fs::create_dir_all(dir.path().join("plugins")).expect("a folder");
    std::os::unix::fs::symlink(repo().join("plugins/dist"), dir.path().join("plugins/dist"))
        .expect("a link");
    dir
}

fn edit(file: &Path, from: &str, to: &str) {
    let text = std::fs::read_to_string(file).expect("the file reads");
    assert!(text.contains(from), "{} lacks {from:?}", file.display());
    std::fs::write(file, text.replacen(from, to, 1)).expect("the file writes");
}

#[test]
fn a_route_broken_on_purpose_fails_with_a_diff_naming_the_case_and_the_field() {
    plugins_built();
    let cache = tempfile::tempdir().unwrap();
    let copy = routes_copy();
    let routes = copy.path().join("routes");
    let unbroken = wyvern_test(&routes, cache.path());
    assert!(unbroken.status.success(), "{}", text(&unbroken));

    // A filter value: admissions (A01) no longer pass the ADT route's filter.
    edit(
        &routes.join("acute-adt.yaml"),
        "in: [A01, A02,",
        "in: [A02,",
    );
    // A code table of the FHIR mapping: administrative sex U mapped to "other".
    let sex = copy.path().join("mappings/v2-0001-administrative-sex.yaml");
    edit(&sex, "U: unknown", "U: other");
    // (and what maps back to unknown, which the table must keep consistent)
    edit(&sex, "unknown: U }", "unknown: N }");
    let out = wyvern_test(&routes, cache.path());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    // The filter: the admission case fails, saying where the message went instead.
    assert!(
        said.contains("FAIL  an admission reaches both records and the events exchange"),
        "{said}"
    );
    assert!(
        said.contains(
            "delivered to [], expected [chie, dcr, events] (filtered out by step 1 of route acute-adt)"
        ),
        "{said}"
    );
    // The mapping: the FHIR case names the element and both values.
    assert!(
        said.contains("FAIL  an admission becomes a transaction Bundle"),
        "{said}"
    );
    assert!(
        said.contains("entry[0].resource.gender: expected \"unknown\", received \"other\""),
        "{said}"
    );
    assert!(said.contains("16 passed, 2 failed"), "{said}");

    // --update rewrites only bodies that differ: the admission sent nothing, so its expected
    // body is kept (an empty file would make the next --update accept anything).
    let expected = routes.join("tests/acute-a01.expected.hl7");
    let before = std::fs::read_to_string(&expected).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .arg("test")
        .arg(&routes)
        .args(["--update", "--plugin-cache"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert_eq!(std::fs::read_to_string(&expected).unwrap(), before);
    // A --case that names no case runs nothing, and says so (not a silent pass).
    let none = Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .arg("test")
        .arg(&routes)
        .args(["--case", "no such case", "--plugin-cache"])
        .arg(cache.path())
        .output()
        .unwrap();
    assert_eq!(none.status.code(), Some(2), "{}", text(&none));

    // The filter mended; a field map (the code-map plugin's `maps`) writes the ward's site to
    // PV1-3.5, and a plugin's config (pid3-normalise) no longer knows the PAS's NHSNBR marker.
    edit(
        &routes.join("acute-adt.yaml"),
        "in: [A02,",
        "in: [A01, A02,",
    );
    edit(
        &routes.join("acute-adt.yaml"),
        "to: PV1-3.4, table: ward-to-ods",
        "to: PV1-3.5, table: ward-to-ods",
    );
    edit(
        &routes.join("acute-adt.yaml"),
        "nhs_markers: [NHS, NH, NHSNBR]",
        "nhs_markers: [NHS, NH]",
    );
    let out = wyvern_test(&routes.join("acute-adt.test.yaml"), cache.path());
    let said = text(&out);
    assert_eq!(out.status.code(), Some(1), "{said}");
    for line in [
        // The checks on single fields, by destination.
        "chie: PV1-3.4: expected \"RXX01\", got nothing",
        "chie: PID-3[1].1: expected \"9990000018\", got \"K0000001\"",
        // The expected body, segment by segment and field by field.
        "chie: the body differs (- expected, + received)",
        "PV1-3: expected \"W12^BAY2^BED1^RXX01\", received \"W12^BAY2^BED1^^RXX01\"",
        "PID-3: expected",
        "4 passed, 1 failed",
    ] {
        assert!(said.contains(line), "{line:?} not in:\n{said}");
    }
}
