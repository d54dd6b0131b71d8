//! The NHS number rules of the mapping, as a table: a number becomes
//! `https://fhir.nhs.uk/Id/nhs-number` only when it is ten digits with a valid modulus-11
//! check digit; anything else is kept as a local identifier and warned about.

use wyvern_fhir::Mapper;

const NHS: &str = "https://fhir.nhs.uk/Id/nhs-number";

/// (PID-3 value, expected: an NHS number identifier?, what the warning must say)
const CASES: &[(&str, bool, &str)] = &[
    ("9990000018", true, ""),
    ("9990000026", true, ""),
    ("999 000 0034", true, ""), // printed form: spaces ignored
    ("9990000017", false, "modulus 11 gives 8"),
    ("9990000140", false, "would be 10"),
    ("999000001", false, "has 9"),
    ("99900000181", false, "has 11"),
    ("999000001X", false, "not a valid NHS number"),
];

#[test]
fn nhs_numbers_are_national_only_when_valid() {
    let mapper = Mapper::with_defaults().unwrap();
    for (number, valid, warning) in CASES {
        let msg = format!(
            "MSH|^~\\&|PAS|RXX|WYV|CHIE|20260101||ADT^A28|C1|P|2.4\rPID|1||{number}^^^NHS^NH~RXX1^^^RXX^MR||TEST^ALEX\r"
        );
        let mapped = mapper.map(msg.as_bytes()).unwrap();
        let bundle = mapped.value();
        let patient = &bundle["entry"][0]["resource"];
        let ids = patient["identifier"].as_array().unwrap();
        let national = ids.iter().find(|i| i["system"] == NHS);
        assert_eq!(national.is_some(), *valid, "{number}: {ids:?}");
        if *valid {
            assert_eq!(national.unwrap()["value"].as_str().unwrap().len(), 10);
            assert!(
                mapped.warnings.is_empty(),
                "{number}: {:?}",
                mapped.warnings
            );
        } else {
            assert!(
                ids.iter().any(|i| i["value"] == *number),
                "{number} kept as local: {ids:?}"
            );
            assert!(
                mapped.warnings.iter().any(|w| w.contains(warning)),
                "{number}: {:?}",
                mapped.warnings
            );
        }
    }
}

#[test]
fn a_replay_maps_to_the_same_ids_and_requests() {
    let mapper = Mapper::with_defaults().unwrap();
    let adt = wyvern_hl7::synthetic::adt_a01("C1", 7);
    let a = mapper.map(adt.as_bytes()).unwrap().json;
    let b = mapper.map(adt.as_bytes()).unwrap().json;
    assert_eq!(a, b);
    let v: serde_json::Value = serde_json::from_str(&a).unwrap();
    for e in v["entry"].as_array().unwrap() {
        assert_eq!(e["request"]["method"], "PUT", "upserts only: {e}");
    }
}

#[test]
fn no_input_panics_the_mapper() {
    let mapper = Mapper::with_defaults().unwrap();
    let base = wyvern_hl7::synthetic::adt_a01("C1", 7);
    // Every prefix of a real message, and some garbage: errors are fine, panics are not.
    for cut in 0..base.len() {
        let _ = mapper.map(&base.as_bytes()[..cut]);
    }
    for junk in [
        &b""[..],
        b"MSH",
        b"MSH|",
        b"MSH|^~\\&|||||||ORU^R01\rOBR|1\rOBX|1|SN|x||^^^",
        b"\xff\xfe",
    ] {
        let _ = mapper.map(junk);
    }
}
