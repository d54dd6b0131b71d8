//! Path queries: the first line is a path (as a route author writes it), the rest a message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wyvern_hl7::{Message, Path};

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == b'\n').unwrap_or(data.len());
    let Ok(path_text) = std::str::from_utf8(&data[..split]) else { return };
    let Ok(path) = path_text.parse::<Path>() else { return };
    // A parsed path prints back to something that parses to the same path.
    let again: Path = path.to_string().parse().expect("Display round-trips");
    assert_eq!(again, path);
    let rest = data.get(split + 1..).unwrap_or_default();
    if let Ok(msg) = Message::parse(rest) {
        for v in msg.query(&path).take(1000) {
            let _ = v.as_str();
        }
        let _ = msg.get(path_text);
    }
});
