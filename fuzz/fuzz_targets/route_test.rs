//! Route test files (`NAME.test.yaml`) as a person writes them, against a fixed config: any
//! bytes are validated without a panic, and a FHIR element path from the first line is
//! parsed and looked up in a Bundle.
#![no_main]

use std::path::Path;
use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wyvern_config::{Config, ElementPath, SourceFile};

fn config() -> &'static Config {
    static CONFIG: OnceLock<Config> = OnceLock::new();
    CONFIG.get_or_init(|| {
        let route = SourceFile {
            path: "cfg/adt.yaml".into(),
            text: "version: 1\nroute: adt\nsource: { mllp: { listen: 127.0.0.1:2575 } }\n\
                   steps:\n  - filter: { message_type: ADT }\n\
                   destinations:\n  - { name: chie, file: { dir: out } }\n"
                .into(),
        };
        wyvern_config::validate(Path::new("cfg"), &[route]).expect("the fixed config is valid")
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    let src = SourceFile {
        path: "cfg/adt.test.yaml".into(),
        text: text.to_string(),
    };
    let _ = wyvern_config::validate_route_tests(&src, config());
    let first = text.lines().next().unwrap_or_default();
    if let Ok(path) = ElementPath::parse(first) {
        let bundle = serde_json::json!({"resourceType": "Bundle", "entry": [
            {"resource": {"resourceType": "Patient", "name": [{"family": "X", "given": ["A", "B"]}]}}
        ]});
        let _ = path.select(&bundle);
    }
});
