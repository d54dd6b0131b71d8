//! What of a message the mapping does not use: each field whose value, blanked, leaves the
//! Bundle the same (and each segment none of whose fields matter). Found by mapping the
//! message again without each field, so it says exactly what this mapping reads of this
//! message, whatever the code path; `wyvern map` prints it so a team sees what a feed sends
//! that the shared record will not get. A few hundred mappings of tens of µs: milliseconds.

use wyvern_hl7::{Message, Path};

use crate::Mapper;

/// The most fields tried; past it, the rest is not examined (a message of thousands of OBX).
const MAX_FIELDS: usize = 2_000;

/// Paths of the unused fields (`PID-12`, `OBX[2]-9`) and segments (`ZPV`, as `ZPV[1]`), in
/// message order; `None` when the message does not map at all.
pub fn unused(mapper: &Mapper, raw: &[u8]) -> Option<Vec<String>> {
    let baseline = mapper.map(raw).ok()?.json;
    let msg = Message::parse(raw).ok()?;
    let mut out = Vec::new();
    let mut tried = 0;
    let mut seen: Vec<(Vec<u8>, usize)> = Vec::new();
    for seg in msg.segments() {
        let id = seg.id_bytes().to_vec();
        let occurrence = match seen.iter_mut().find(|(s, _)| *s == id) {
            Some((_, n)) => {
                *n += 1;
                *n
            }
            None => {
                seen.push((id.clone(), 1));
                1
            }
        };
        let name = String::from_utf8_lossy(&id).into_owned();
        // MSH-1 and MSH-2 are the delimiters; MSH-9 says what the message is.
        let first = if name == "MSH" { 3 } else { 1 };
        let mut used_here = false;
        let mut unused_here = Vec::new();
        for n in first..seg.field_count().max(first) + 1 {
            if seg.field(n).is_none_or(|v| v.is_empty()) {
                continue;
            }
            tried += 1;
            if tried > MAX_FIELDS {
                return Some(out);
            }
            let path = if occurrence == 1 {
                format!("{name}-{n}")
            } else {
                format!("{name}[{occurrence}]-{n}")
            };
            let Ok(p) = path.parse::<Path>() else {
                continue;
            };
            let Ok(blanked) = wyvern_hl7::edit::set(raw, &p, "") else {
                continue;
            };
            let same = mapper.map(&blanked).is_ok_and(|m| m.json == baseline);
            if same {
                unused_here.push(path);
            } else {
                used_here = true;
            }
        }
        if !used_here && !unused_here.is_empty() && name != "MSH" {
            out.push(if occurrence == 1 {
                format!("{name} (the whole segment)")
            } else {
                format!("{name}[{occurrence}] (the whole segment)")
            });
        } else {
            out.extend(unused_here);
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_field_the_mapping_ignores_and_a_z_segment_are_named() {
        let mapper = Mapper::with_defaults().unwrap();
        let raw = b"MSH|^~\\&|PAS|RXX|WYVERN|CHIE|20261125090000||ADT^A31^ADT_A05|C1|P|2.4\rPID|1||9990000018^^^NHS^NH||TESTPATIENT^ALEX||19800102|M||||||||||ACC99\rZPV|1|LOCAL\r";
        let u = unused(&mapper, raw).unwrap();
        assert!(u.contains(&"PID-18".to_string()), "{u:?}");
        assert!(u.contains(&"ZPV (the whole segment)".to_string()), "{u:?}");
        assert!(
            !u.iter().any(|p| p.starts_with("PID-3") || p == "PID-5"),
            "{u:?}"
        );
    }
}
