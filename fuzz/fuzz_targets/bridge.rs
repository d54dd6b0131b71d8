#![no_main]
//! The bridge's parsers on any bytes: a caller's search (the first byte picks the type, the
//! rest is the query string, read as the endpoint reads it) and a member's answer, merged with
//! a second member's copy of it, and `$everything`'s id and parameters and its Bundle made of
//! searchsets. Nothing may panic; what comes out is a searchset whose
//! matches are all of the type asked for.

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use wyvern_federation::{Answer, Origin, SearchType, combine, federate, parse, parse_everything};

const CHIE: Origin<'static> = Origin { member: "chie", ods: "XCH01", base: "http://chie/fhir" };
const DCR: Origin<'static> = Origin { member: "dcr", ods: "XDC01", base: "http://dcr/fhir" };

fuzz_target!(|data: &[u8]| {
    let Some((&pick, rest)) = data.split_first() else { return };
    let ty = SearchType::ALL[usize::from(pick) % SearchType::ALL.len()];
    let text = String::from_utf8_lossy(rest);
    let pairs: Vec<(String, String)> = text
        .split('&')
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k.to_string(), v.to_string()),
            None => (p.to_string(), String::new()),
        })
        .collect();
    let _ = parse(ty.as_str(), &pairs);
    let _ = parse(&text, &[]);
    let _ = parse_everything(&text, &pairs);
    if let Ok(v) = serde_json::from_slice::<Value>(rest) {
        let entries = match v.get("entry").and_then(Value::as_array) {
            Some(e) => e.clone(),
            None => vec![v],
        };
        let answer = Answer::Entries { entries, withheld: 0, more: pick % 2 == 0 };
        let bundle = federate(ty, &[(CHIE, answer.clone()), (DCR, answer)]);
        assert_eq!(bundle["type"], "searchset");
        for e in bundle["entry"].as_array().into_iter().flatten() {
            if e["search"]["mode"] == "match" {
                assert_eq!(e["resource"]["resourceType"], ty.as_str());
            }
        }
        serde_json::to_vec(&bundle).expect("a Bundle serialises");
        let whole = combine(vec![bundle.clone(), bundle]);
        assert_eq!(whole["type"], "searchset");
    }
});
