//! JSON Schemas of the config file kinds, generated from the same structs that parse them, so an
//! editor (VS Code's YAML extension, IntelliJ) can complete keys and flag mistakes as people
//! type. `wyvern schema route|engine|code-table` prints them; `schema/` in the repository holds copies,
//! kept equal to these by a test. Validation stays the authority: the schema cannot express
//! "exactly one kind per step" or whether a path parses.

use crate::{CodeTableFile, EngineFile, RouteFile};

/// The schema of a route file.
pub fn route_schema() -> serde_json::Value {
    with_id(
        schemars::schema_for!(RouteFile).to_value(),
        "route.schema.json",
        "A Wyvern route: a source, steps and destinations",
    )
}

/// The schema of a route test (`NAME.test.yaml`).
pub fn route_test_schema() -> serde_json::Value {
    with_id(
        schemars::schema_for!(crate::RouteTestFile).to_value(),
        "route-test.schema.json",
        "Wyvern route tests: messages in, and what the route must make of them",
    )
}

/// The schema of `wyvern.yaml`.
pub fn engine_schema() -> serde_json::Value {
    with_id(
        schemars::schema_for!(EngineFile).to_value(),
        "engine.schema.json",
        "Wyvern engine settings (wyvern.yaml)",
    )
}

/// The schema of `bridge.yaml`.
pub fn bridge_schema() -> serde_json::Value {
    with_id(
        schemars::schema_for!(crate::BridgeFile).to_value(),
        "bridge.schema.json",
        "The Wyvern bridge (bridge.yaml): a federated FHIR read across member records",
    )
}

/// The schema of a code table (`mappings/*.yaml`).
pub fn code_table_schema() -> serde_json::Value {
    with_id(
        schemars::schema_for!(CodeTableFile).to_value(),
        "code-table.schema.json",
        "A Wyvern code table: local code → mapped code, with provenance",
    )
}

fn with_id(mut v: serde_json::Value, file: &str, title: &str) -> serde_json::Value {
    if let Some(o) = v.as_object_mut() {
        o.insert(
            "$id".into(),
            format!("https://wyvern.invalid/schema/{file}").into(),
        );
        o.insert("title".into(), title.into());
    }
    sorted(v)
}

/// Keys in sorted order at every level. serde_json keeps insertion order when any crate in
/// the build turns on its `preserve_order` (fhirbolt does), and sorts them otherwise: sorting
/// here makes the schema the same text in every build.
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(o) => {
            let mut entries: Vec<(String, serde_json::Value)> = o.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(a) => {
            serde_json::Value::Array(a.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_schema_names_every_source_and_is_closed() {
        let text = route_schema().to_string();
        for kind in [
            "mllp",
            "directory",
            "amqp",
            "split",
            "order_by",
            "on_permanent",
        ] {
            assert!(text.contains(&format!("\"{kind}\"")), "{kind} missing");
        }
        assert!(text.contains("\"additionalProperties\":false"));
    }
}
