//! The inbound FHIR parsers on any bytes: JSON and XML (strict, depth- and DTD-guarded) must
//! return a resource or an error, never panic; what parses must write back out and parse again.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wyvern_fhir::model;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(r) = model::from_json(text) {
        let xml = model::to_xml(&r).expect("a parsed resource writes as XML");
        let _ = model::from_xml(&xml);
    }
    if let Ok(r) = model::from_xml(text) {
        let json = model::to_json(&r).expect("a parsed resource writes as JSON");
        let _ = model::from_json(&json);
    }
});
