//! Two bodies told apart so a person sees what changed: HL7v2 segment by segment (the
//! segments both sides share matched up first, then a changed segment named field by field,
//! `PV1-3.4: "RX1" → "RHM"`), FHIR JSON by element path (`entry[1].resource.status`). A route
//! test's failed body check and shadow replay's changed message both print this. It reads
//! whatever a stored message holds, so it is bounded: a limit of lines, and linear work once
//! two messages are too long to match up in full.

use std::collections::{HashMap, VecDeque};

use serde_json::Value;

/// Lines told for one body; the rest are left out.
pub const MAX_LINES: usize = 60;

/// Segment pairs compared in full before falling back to comparing by position (the matching
/// is quadratic; a real message has tens of segments).
const MAX_CELLS: usize = 250_000;
/// Differences listed for one JSON body.
const MAX_JSON: usize = 30;

/// What the two sides of a diff are called.
#[derive(Debug, Clone, Copy)]
pub struct Sides {
    pub was: &'static str,
    pub now: &'static str,
    /// A line only the first side has.
    pub missing: &'static str,
    /// A line only the second side has.
    pub extra: &'static str,
}

/// A route test: what the test expects against what the route sent.
pub const TEST: Sides = Sides {
    was: "expected",
    now: "received",
    missing: "missing",
    extra: "not expected",
};

/// Shadow replay: what the live route sent against what the candidate would.
pub const SHADOW: Sides = Sides {
    was: "live",
    now: "candidate",
    missing: "live only",
    extra: "candidate only",
};

/// The messages of an expected body: a blank line between two; line ends normalised.
pub fn messages(text: &str) -> Vec<String> {
    let text = text.replace("\r\n", "\n").replace('\r', "\n");
    let mut out = Vec::new();
    let mut current = String::new();
    for line in text.lines() {
        if line.trim().is_empty() {
            if !current.trim().is_empty() {
                out.push(std::mem::take(&mut current));
            }
            continue;
        }
        current.push_str(line);
        current.push('\n');
    }
    if !current.trim().is_empty() {
        out.push(current);
    }
    out
}

/// The segments of an HL7v2 text, whatever its line ends, blank ones dropped.
pub fn segments(text: &str) -> Vec<String> {
    text.split(['\r', '\n'])
        .map(|s| s.trim_end().to_string())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The lines telling how `got` differs from `want`; none when they are the same.
/// Whether `got` is exactly the body `want` writes: JSON equal as JSON (numbers as values:
/// `1.50` is `1.5`), HL7v2 segment for segment with CR segment ends (`want` is text a person
/// wrote, with any line ends; `got`'s bytes must be UTF-8, end each segment with CR, and hold
/// no LF).
pub fn same(want: &str, got: &[u8]) -> bool {
    if let (Ok(w), Ok(g)) = (
        serde_json::from_str::<Value>(want),
        serde_json::from_slice::<Value>(got),
    ) {
        return w == g;
    }
    let Ok(got) = std::str::from_utf8(got) else {
        return false;
    };
    let want = want.replace("\r\n", "\n").replace('\r', "\n");
    let mut w: Vec<&str> = want.split('\n').collect();
    while w.last().is_some_and(|l| l.is_empty()) {
        w.pop();
    }
    let mut g: Vec<&str> = got.split('\r').collect();
    if g.last().is_some_and(|l| l.is_empty()) {
        g.pop();
    }
    w == g
}

/// The line for two bodies that differ where their text does not.
pub fn unseen(sides: Sides) -> String {
    format!(
        "  the bytes differ where the text does not: segment ends (CR, not LF), spaces at a line's end, or bytes that are not UTF-8 ({} and {})",
        sides.was, sides.now
    )
}

pub fn body(want: &str, got: &[u8], sides: Sides) -> Vec<String> {
    let got_text = String::from_utf8_lossy(got);
    match (
        serde_json::from_str::<Value>(want),
        serde_json::from_slice::<Value>(got),
    ) {
        (Ok(w), Ok(g)) => {
            let mut out = Vec::new();
            json("", &w, &g, sides, &mut out);
            out
        }
        (Ok(_), Err(_)) => vec![format!("  {} is JSON, {} is not", sides.was, sides.now)],
        _ => hl7(&segments(want), &segments(&got_text), sides),
    }
}

/// Segment by segment: a longest common subsequence pairs equal segments; between two pairs,
/// removed and added segments with the same id are shown as one changed segment.
fn hl7(want: &[String], got: &[String], sides: Sides) -> Vec<String> {
    if want == got {
        return Vec::new();
    }
    let pairs = if want.len() * got.len() <= MAX_CELLS {
        common(want, got)
    } else {
        (0..want.len().min(got.len()))
            .filter(|&i| want[i] == got[i])
            .map(|i| (i, i))
            .collect()
    };
    // MSH-2's first character separates components (`^` almost always).
    let component = want
        .first()
        .filter(|m| m.starts_with("MSH"))
        .and_then(|m| m.chars().nth(4))
        .unwrap_or('^');
    let mut out = Vec::new();
    let (mut i, mut j) = (0, 0);
    for (pi, pj) in pairs.into_iter().chain([(want.len(), got.len())]) {
        if out.len() >= MAX_LINES {
            break;
        }
        hunk(&want[i..pi], &got[j..pj], component, sides, &mut out);
        (i, j) = (pi + 1, pj + 1);
    }
    out.truncate(MAX_LINES);
    out
}

/// Index pairs of a longest common subsequence of equal segments.
fn common(a: &[String], b: &[String]) -> Vec<(usize, usize)> {
    let (n, m) = (a.len(), b.len());
    let mut len = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            len[at(i, j)] = if a[i] == b[j] {
                len[at(i + 1, j + 1)] + 1
            } else {
                len[at(i + 1, j)].max(len[at(i, j + 1)])
            };
        }
    }
    let (mut i, mut j, mut out) = (0, 0, Vec::new());
    while i < n && j < m {
        if a[i] == b[j] {
            out.push((i, j));
            (i, j) = (i + 1, j + 1);
        } else if len[at(i + 1, j)] >= len[at(i, j + 1)] {
            i += 1;
        } else {
            j += 1;
        }
    }
    out
}

fn id(seg: &str) -> &str {
    seg.get(..3).unwrap_or(seg)
}

/// Removed segments (`want`) and added ones (`got`) between two that match: each removed
/// segment paired with the next added one of the same id (found through an index, so a long
/// hunk stays linear), until the line budget is spent.
fn hunk(want: &[String], got: &[String], component: char, sides: Sides, out: &mut Vec<String>) {
    let mut by_id: HashMap<&str, VecDeque<usize>> = HashMap::new();
    for (k, g) in got.iter().enumerate() {
        by_id.entry(id(g)).or_default().push_back(k);
    }
    let mut used = vec![false; got.len()];
    for w in want {
        if out.len() >= MAX_LINES {
            return;
        }
        match by_id.get_mut(id(w)).and_then(VecDeque::pop_front) {
            Some(k) => {
                used[k] = true;
                out.extend(fields(w, &got[k], component, sides));
                out.push(format!("  - {w}"));
                out.push(format!("  + {}", got[k]));
            }
            None => out.push(format!("  - {w}    ({})", sides.missing)),
        }
    }
    for (k, g) in got.iter().enumerate() {
        if out.len() >= MAX_LINES {
            return;
        }
        if !used[k] {
            out.push(format!("  + {g}    ({})", sides.extra));
        }
    }
}

/// The fields (down to the component) where two segments with the same id differ, named as
/// HL7 paths. MSH-1 is the field separator itself, so MSH's fields are counted one on.
fn fields(want: &str, got: &str, component: char, sides: Sides) -> Vec<String> {
    let sep = want.as_bytes().get(3).copied().unwrap_or(b'|') as char;
    let w: Vec<&str> = want.split(sep).collect();
    let g: Vec<&str> = got.split(sep).collect();
    let seg = id(want);
    let shift = usize::from(seg == "MSH");
    let mut out = Vec::new();
    for n in 1..w.len().max(g.len()) {
        let (a, b) = (
            w.get(n).copied().unwrap_or(""),
            g.get(n).copied().unwrap_or(""),
        );
        if a == b {
            continue;
        }
        let field = n + shift;
        let ac: Vec<&str> = a.split(component).collect();
        let bc: Vec<&str> = b.split(component).collect();
        let changed: Vec<usize> = (0..ac.len().max(bc.len()))
            .filter(|&c| ac.get(c) != bc.get(c))
            .collect();
        let (path, a, b) = match changed.as_slice() {
            [c] if ac.len() > 1 || bc.len() > 1 => (
                format!("{seg}-{field}.{}", c + 1),
                ac.get(*c).copied().unwrap_or(""),
                bc.get(*c).copied().unwrap_or(""),
            ),
            _ => (format!("{seg}-{field}"), a, b),
        };
        out.push(format!(
            "  {path}: {} {a:?}, {} {b:?}",
            sides.was, sides.now
        ));
    }
    out
}

/// Where two JSON values differ, by path.
fn json(path: &str, want: &Value, got: &Value, sides: Sides, out: &mut Vec<String>) {
    if out.len() >= MAX_JSON || want == got {
        return;
    }
    let here = |p: &str| {
        if p.is_empty() {
            "(the body)".to_string()
        } else {
            p.to_string()
        }
    };
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let p = if path.is_empty() {
                    k.clone()
                } else {
                    format!("{path}.{k}")
                };
                match g.get(k) {
                    Some(gv) => json(&p, wv, gv, sides, out),
                    None => out.push(format!(
                        "  {p}: {} ({} {})",
                        sides.missing,
                        sides.was,
                        compact(wv)
                    )),
                }
            }
            for (k, gv) in g {
                if !w.contains_key(k) && out.len() < MAX_JSON {
                    let p = if path.is_empty() {
                        k.clone()
                    } else {
                        format!("{path}.{k}")
                    };
                    out.push(format!("  {p}: {} ({})", sides.extra, compact(gv)));
                }
            }
        }
        (Value::Array(w), Value::Array(g)) => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                json(&format!("{path}[{i}]"), wv, gv, sides, out);
            }
            if w.len() != g.len() {
                out.push(format!(
                    "  {}: {} {} item(s), {} {}",
                    here(path),
                    sides.was,
                    w.len(),
                    sides.now,
                    g.len()
                ));
            }
        }
        _ => out.push(format!(
            "  {}: {} {}, {} {}",
            here(path),
            sides.was,
            compact(want),
            sides.now,
            compact(got)
        )),
    }
}

/// A value in one line, cut short when long.
fn compact(v: &Value) -> String {
    let s = v.to_string();
    if s.len() > 120 {
        let cut = (0..=117)
            .rev()
            .find(|&i| s.is_char_boundary(i))
            .unwrap_or(0);
        format!("{}...", &s[..cut])
    } else {
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_changed_component_is_named_by_its_path() {
        let want = "MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C1|P|2.4\nPID|1||9990000018^^^NHS^NH\nPV1|1|I|W7^^^RX1\n";
        let got = b"MSH|^~\\&|PAS|RX1|||2026||ADT^A01|C1|P|2.4\rPID|1||9990000018^^^NHS^NH\rPV1|1|I|W7^^^RHM\r";
        let d = body(want, got, TEST);
        assert_eq!(
            d[0], "  PV1-3.4: expected \"RX1\", received \"RHM\"",
            "{d:#?}"
        );
        assert_eq!(d.len(), 3);
        assert!(body(want, &want.replace('\n', "\r").into_bytes(), TEST).is_empty());
    }

    #[test]
    fn msh_fields_are_counted_from_the_separator_and_segments_missing_or_extra_are_said() {
        let d = body(
            "MSH|^~\\&|PAS|RX1\nNK1|1|X\nPV1|1\n",
            b"MSH|^~\\&|PAS|RX2\rPV1|1\rZPI|1\r",
            TEST,
        );
        assert!(
            d.contains(&"  MSH-4: expected \"RX1\", received \"RX2\"".to_string()),
            "{d:#?}"
        );
        assert!(
            d.contains(&"  - NK1|1|X    (missing)".to_string()),
            "{d:#?}"
        );
        assert!(
            d.contains(&"  + ZPI|1    (not expected)".to_string()),
            "{d:#?}"
        );
    }

    #[test]
    fn json_differences_are_named_by_element_path() {
        let d = body(
            r#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","gender":"female"}}]}"#,
            br#"{"resourceType":"Bundle","entry":[{"resource":{"resourceType":"Patient","gender":"male","active":true}}]}"#,
            TEST,
        );
        assert_eq!(
            d,
            [
                "  entry[0].resource.gender: expected \"female\", received \"male\"",
                "  entry[0].resource.active: not expected (true)"
            ]
        );
    }

    #[test]
    fn an_expected_body_splits_into_messages_at_blank_lines() {
        assert_eq!(messages("MSH|1\nPID|1\n\n\nMSH|2\r\n").len(), 2);
    }

    /// Whatever a stored message holds (shadow replay reads real traffic): bytes that are not
    /// UTF-8, a multibyte character where a segment id would be, thousands of segments (past
    /// the quadratic matching's budget), an empty side. No panic, and a difference is found.
    #[test]
    fn hostile_bodies_are_told_apart_without_a_panic() {
        let big: String = (0..3000).map(|i| format!("OBX|{i}|ST|X||v{i}\n")).collect();
        let bigger = big.replace("v1500", "w1500");
        let cases: [(&str, &[u8]); 5] = [
            ("MSH|^~\\&|A\nPID|1\n", b"MSH|^~\\&|A\r\xff\xfe\x00PID|1\r"),
            ("\u{e9}\u{e9}\u{e9}|1\n", "\u{e9}\u{e9}X|1\n".as_bytes()),
            ("", b"MSH|^~\\&|A\r"),
            ("MSH|^~\\&|A\r", b""),
            (&big, bigger.as_bytes()),
        ];
        for (want, got) in cases {
            assert!(!body(want, got, SHADOW).is_empty(), "{want:.40?}");
        }
    }

    #[test]
    fn exact_means_cr_segment_ends_and_no_stray_bytes() {
        let want = "MSH|^~\\&|A\nPID|1\n";
        assert!(same(want, b"MSH|^~\\&|A\rPID|1\r"));
        assert!(same(want, b"MSH|^~\\&|A\rPID|1"));
        assert!(!same(want, b"MSH|^~\\&|A\nPID|1\n"), "LF segment ends");
        assert!(!same(want, b"MSH|^~\\&|A\rPID|1 \r"), "a trailing space");
        assert!(!same(want, b"MSH|^~\\&|A\rPID|1\xff\r"), "not UTF-8");
        assert!(same("{\"a\": [1, 2]}\n", br#"{"a":[1,2]}"#));
        // Text alike, bytes not: the diff says so rather than nothing.
        assert!(body(want, b"MSH|^~\\&|A\nPID|1\n", TEST).is_empty());
        assert!(unseen(TEST).contains("segment ends"));
    }

    #[test]
    fn a_long_message_that_differs_everywhere_is_told_within_the_budget() {
        let a: String = (0..100_000).map(|i| format!("OBX|{i}|A\n")).collect();
        let b: String = (0..100_000).map(|i| format!("OBX|{i}|B\r")).collect();
        let d = body(&a, b.as_bytes(), SHADOW);
        assert!(!d.is_empty() && d.len() <= MAX_LINES, "{}", d.len());
    }
}
