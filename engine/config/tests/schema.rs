//! The JSON Schemas in `schema/` are the ones the code generates, and every route and engine
//! file in the repository passes them (so an editor using them never flags a valid file).

use std::path::{Path, PathBuf};

fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

#[test]
fn checked_in_schemas_match_the_code() {
    for (file, schema) in [
        ("route.schema.json", wyvern_config::route_schema()),
        ("engine.schema.json", wyvern_config::engine_schema()),
        ("bridge.schema.json", wyvern_config::bridge_schema()),
        ("code-table.schema.json", wyvern_config::code_table_schema()),
        ("route-test.schema.json", wyvern_config::route_test_schema()),
    ] {
        let path = repo().join("schema").join(file);
        let expected = serde_json::to_string_pretty(&schema).unwrap() + "\n";
        if std::env::var_os("UPDATE_GOLDEN").is_some() {
            std::fs::write(&path, &expected).unwrap();
        }
        let found = std::fs::read_to_string(&path).unwrap_or_default();
        assert!(
            found == expected,
            "{} is stale: run `wyvern schema > schema/{file}` or UPDATE_GOLDEN=1 cargo test -p wyvern-config",
            path.display()
        );
    }
}

#[test]
fn every_config_in_the_repository_passes_the_schemas() {
    let route = jsonschema::validator_for(&wyvern_config::route_schema()).unwrap();
    let engine = jsonschema::validator_for(&wyvern_config::engine_schema()).unwrap();
    let bridge = jsonschema::validator_for(&wyvern_config::bridge_schema()).unwrap();
    let route_test = jsonschema::validator_for(&wyvern_config::route_test_schema()).unwrap();
    let mut checked = 0;
    let mut tests_checked = 0;
    for dir in ["routes", "examples/quickstart", "examples/bridge"] {
        for entry in std::fs::read_dir(repo().join(dir)).unwrap() {
            let path = entry.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            if !name.ends_with(".yaml") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            let v = if name.ends_with(".test.yaml") {
                tests_checked += 1;
                &route_test
            } else if name == wyvern_config::ENGINE_FILE {
                &engine
            } else if name == wyvern_config::BRIDGE_FILE {
                &bridge
            } else {
                &route
            };
            let errors: Vec<String> = v.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
            checked += 1;
        }
    }
    assert!(checked >= 5, "only {checked} files checked");
    assert!(
        tests_checked >= 7,
        "only {tests_checked} route test files checked"
    );
    let table = jsonschema::validator_for(&wyvern_config::code_table_schema()).unwrap();
    for entry in std::fs::read_dir(repo().join("mappings")).unwrap() {
        let path = entry.unwrap().path();
        let name = path.to_string_lossy().into_owned();
        if name.ends_with(".yaml") && !name.ends_with(".map.yaml") {
            let text = std::fs::read_to_string(&path).unwrap();
            let value: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
            let errors: Vec<String> = table.iter_errors(&value).map(|e| e.to_string()).collect();
            assert!(errors.is_empty(), "{}: {errors:?}", path.display());
        }
    }
}
