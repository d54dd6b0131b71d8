//! `/metrics` read by the Prometheus project's own Python parser (`prometheus_client`, which
//! scripts/test-all installs): every family once, with its declared type.

use std::time::Duration;

use crate::harness::{EngineProcess, Wire, adt, http_get, wait_until};

/// Issue 11 item 11: with two destinations the samples of `wyvern_outbox_depth` and
/// `wyvern_outbox_oldest_age_seconds` were interleaved, which the text format does not allow
/// (a parser sees each family several times, the later ones untyped).
#[test]
fn metrics_with_two_destinations_parse_as_one_family_each() {
    let e = EngineProcess::start_route(
        "",
        "destinations:\n  - name: a\n    file: { dir: \"{dir}/a\" }\n  - name: b\n    file: { dir: \"{dir}/b\" }\n",
    );
    let mut w = Wire::connect(e.addr);
    assert!(w.exchange(&adt("M1", 1)).contains("MSA|AA|M1"));
    let mut text = String::new();
    wait_until(Duration::from_secs(10), || {
        text = http_get(e.http, "/metrics").1;
        text.contains("wyvern_outbox_depth{")
    });
    let script = r#"
import sys
from collections import Counter
from prometheus_client.parser import text_string_to_metric_families
fams = list(text_string_to_metric_families(sys.stdin.read()))
names = Counter(f.name for f in fams)
bad = [n for n, c in names.items() if c > 1] + [f.name for f in fams if f.type == "unknown"]
print("families:", len(fams))
if bad:
    print("split or untyped families:", sorted(set(bad)))
    sys.exit(1)
"#;
    let mut child = std::process::Command::new("python3")
        .args(["-c", script])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("python3");
    use std::io::Write as _;
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(text.as_bytes())
        .expect("write");
    let out = child.wait_with_output().expect("python3");
    assert!(
        out.status.success(),
        "{}{}\n/metrics:\n{text}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
