//! FHIR → HL7v2 (`Mapper::to_hl7v2`) on any bytes: a message or a MapError, never a panic; a
//! message always parses as HL7v2 and says ADT or ORU in MSH-9 (values are escaped, so nothing
//! a FHIR string holds can add a segment or a field).
#![no_main]

use std::sync::OnceLock;

use libfuzzer_sys::fuzz_target;
use wyvern_fhir::Mapper;

fuzz_target!(|data: &[u8]| {
    static MAPPER: OnceLock<Mapper> = OnceLock::new();
    let mapper = MAPPER.get_or_init(|| Mapper::with_defaults().expect("built-in mappings"));
    if let Ok(back) = mapper.to_hl7v2(data, "20261201120000", "FUZZ") {
        let msg = wyvern_hl7::Message::parse(back.message.as_bytes())
            .expect("the way back wrote a message that does not parse");
        let kind = msg.message_type();
        assert!(matches!(&*kind.code, "ADT" | "ORU"), "{}", kind.code);
        // Every segment is one the way back writes: escaping kept values inside their fields.
        for seg in msg.segments() {
            assert!(
                matches!(seg.id_bytes(), b"MSH" | b"EVN" | b"PID" | b"PV1" | b"OBR" | b"OBX"),
                "an unexpected segment: {:?}",
                String::from_utf8_lossy(seg.id_bytes())
            );
        }
    }
});
