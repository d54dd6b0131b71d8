//! The HL7v2 → FHIR mapping on any bytes: a Bundle or a MapError, never a panic; a Bundle is
//! always valid JSON (it is written as text, so this is checked, not assumed).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wyvern_fhir::Mapper;

fuzz_target!(|data: &[u8]| {
    static MAPPER: OnceLock<Mapper> = OnceLock::new();
    let mapper = MAPPER.get_or_init(|| Mapper::with_defaults().expect("built-in mappings"));
    if let Ok(mapped) = mapper.map(data) {
        let bundle: serde_json::Value =
            serde_json::from_str(&mapped.json).expect("the mapper wrote invalid JSON");
        assert_eq!(bundle["resourceType"], "Bundle");
    }
});
