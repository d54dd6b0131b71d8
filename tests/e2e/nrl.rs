//! The `nrl` destination against a stand-in for the NRL producer API (`tests/nrl/stand-in.mjs`,
//! Node, not Wyvern's code) that enforces the API's headers, its signed-JWT token rules, each
//! organisation's grant and supersede's rules: a pointer created for a patient, kept (not
//! duplicated) by later messages and by a retry whose answer was lost, replaced when what it
//! says changes, deleted when the patient dies.

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{
    EngineProcess, Wire, free_addr, http_get, http_raw, metric, start_listening, wait_listening,
    wait_until,
};

const API: &str = "/record-locator/producer/FHIR/R4";
const N1: &str = "9990000018";
const N2: &str = "9990000026";
const PROBE_TOKEN: &str = "probe-token";

/// The stand-in; killed when dropped.
struct Nrl {
    child: Child,
    addr: SocketAddr,
}

impl Nrl {
    fn start() -> Nrl {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests");
        let addr = free_addr();
        let mut cmd = Command::new("node");
        cmd.arg(root.join("nrl/stand-in.mjs"))
            .arg(addr.port().to_string())
            .arg(root.join("fixtures/oauth2/client.pub.pem"))
            .args([
                "nrl-api-key",
                "k1",
                r#"{"XCH01":["887181000000106"]}"#,
                PROBE_TOKEN,
            ]);
        let child = start_listening(cmd, "the NRL stand-in");
        Nrl { child, addr }
    }

    /// Every pointer it holds.
    fn pointers(&self) -> Vec<Value> {
        let (_, body) = http_get(self.addr, "/_pointers");
        serde_json::from_str(&body).expect("pointers")
    }

    fn of(&self, nhs: &str) -> Vec<Value> {
        self.pointers()
            .into_iter()
            .filter(|p| p["subject"]["identifier"]["value"] == nhs)
            .collect()
    }
}

impl Drop for Nrl {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn route(listen: SocketAddr, nrl: &Nrl, ods: &str, record_url: &str) -> String {
    let key = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures/oauth2/client.key")
        .canonicalize()
        .expect("key");
    format!(
        "version: 1\nroute: adt-nrl\nsource:\n  mllp: {{ listen: \"{listen}\" }}\n\
         destinations:\n  - name: nrl\n    nrl:\n      api:\n        base: \"http://{a}{API}\"\n        auth:\n          oauth2: {{ token_url: \"http://{a}/oauth2/token\", client_id: nrl-api-key, key: \"file:{key}\", kid: k1 }}\n      ods: {ods}\n      record_url: \"{record_url}\"\n\
         order_by: patient\nretry: {{ backoff: 100ms..1s }}\n",
        a = nrl.addr,
        key = key.display()
    )
}

/// An engine feeding the stand-in as organisation `ods`, ready; where it listens, and it.
fn engine(nrl: &Nrl, ods: &str, record_url: &str) -> (SocketAddr, EngineProcess) {
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&route(listen, nrl, ods, record_url));
    wait_listening(listen, Duration::from_secs(20));
    (listen, e)
}

/// An ADT^A08 for `nhs`; `pid_tail` continues PID after PID-5.
fn adt(control_id: &str, nhs: &str, pid_tail: &str) -> Vec<u8> {
    format!(
        "MSH|^~\\&|PAS|RX1|WYVERN|NRL|20261204120000||ADT^A08|{control_id}|P|2.4\r\
         EVN|A08|20261204120000\r\
         PID|1||{nhs}^^^NHS^NH||TESTPATIENT^ALEX{pid_tail}\r"
    )
    .into_bytes()
}

fn send(listen: SocketAddr, msg: &[u8]) {
    let ack = Wire::connect(listen).exchange(msg);
    assert!(ack.contains("MSA|AA"), "{ack}");
}

#[test]
fn pointers_are_created_kept_replaced_and_deleted_and_a_lost_answer_makes_no_duplicate() {
    let nrl = Nrl::start();
    let (listen, mut e) = engine(&nrl, "XCH01", "https://chie.example/record");

    // Created, once.
    send(listen, &adt("N1", N1, ""));
    wait_until(Duration::from_secs(20), || nrl.of(N1).len() == 1);
    let first = nrl.of(N1);
    assert_eq!(first.len(), 1, "{}", e.log());
    let id = first[0]["id"].as_str().expect("id").to_string();
    assert!(id.starts_with("XCH01-"), "{id}");
    assert_eq!(
        first[0]["content"][0]["attachment"]["url"],
        "https://chie.example/record"
    );

    // A later message for the same patient keeps it.
    send(listen, &adt("N2", N1, ""));
    let delivered =
        "wyvern_deliveries_total{route=\"adt-nrl\",destination=\"nrl\",outcome=\"delivered\"}";
    wait_until(Duration::from_secs(20), || metric(&e, delivered) == 2);
    let kept = nrl.of(N1);
    assert_eq!(
        (kept.len(), kept[0]["id"].as_str()),
        (1, Some(id.as_str())),
        "{}",
        e.log()
    );

    // A create whose answer is lost (stored, then 503): the retry finds it, no second one.
    let (code, _) = http_raw(
        nrl.addr,
        b"POST /_control HTTP/1.1\r\nHost: n\r\nContent-Length: 25\r\nConnection: close\r\n\r\n{\"lose_next_create\":true}",
    );
    assert_eq!(code, 200);
    send(listen, &adt("N3", N2, ""));
    let retried =
        "wyvern_deliveries_total{route=\"adt-nrl\",destination=\"nrl\",outcome=\"retried\"}";
    wait_until(Duration::from_secs(20), || metric(&e, delivered) == 3);
    assert_eq!(
        (metric(&e, delivered), metric(&e, retried)),
        (3, 1),
        "{}",
        e.log()
    );
    assert_eq!(nrl.of(N2).len(), 1, "{}", e.log());

    // What the pointer says changes (the record moved): replaced, the old one gone.
    e.terminate();
    std::fs::write(
        e.config_dir().join("e2e.yaml"),
        route(listen, &nrl, "XCH01", "https://chie.example/v2"),
    )
    .expect("rewrite the route");
    e.restart();
    wait_listening(listen, Duration::from_secs(20));
    send(listen, &adt("N4", N1, ""));
    wait_until(Duration::from_secs(20), || {
        nrl.of(N1)
            .first()
            .is_some_and(|p| p["content"][0]["attachment"]["url"] == "https://chie.example/v2")
    });
    let replaced = nrl.of(N1);
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert_ne!(replaced[0]["id"].as_str(), Some(id.as_str()));

    // The patient died (PID-30 Y): no pointer.
    send(listen, &adt("N5", N1, &format!("{}Y", "|".repeat(30 - 5))));
    wait_until(Duration::from_secs(20), || nrl.of(N1).is_empty());
    assert!(nrl.of(N1).is_empty(), "{}", e.log());
    assert_eq!(nrl.of(N2).len(), 1, "another patient's pointer stays");
}

/// The stand-in holds the producer API's rules: without X-Request-ID or the ODS header a
/// request is refused 400, an organisation without a grant 403, a bad token 401. An engine
/// configured with an ungranted ODS code retries (it is configuration, not the message's
/// fault) and says why.
#[test]
fn the_apis_rules_are_enforced_and_an_ungranted_organisation_is_retried_with_its_reason() {
    let nrl = Nrl::start();
    let probe = |headers: &str| {
        let req = format!(
            "GET {API}/DocumentReference?subject:identifier=https://fhir.nhs.uk/Id/nhs-number|{N1} HTTP/1.1\r\nHost: n\r\n{headers}Connection: close\r\n\r\n"
        );
        http_raw(nrl.addr, req.as_bytes())
    };
    let auth = format!("Authorization: Bearer {PROBE_TOKEN}\r\n");
    let (code, body) = probe(&format!("{auth}NHSD-End-User-Organisation-ODS: XCH01\r\n"));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("MISSING_OR_INVALID_HEADER"), "{body}");
    let (code, body) = probe(&format!(
        "{auth}X-Request-ID: 4b2a6c1e-0000-4000-8000-000000000001\r\n"
    ));
    assert_eq!(code, 400, "{body}");
    assert!(body.contains("PRECONDITION_FAILED"), "{body}");
    let (code, body) = probe(&format!(
        "{auth}X-Request-ID: 4b2a6c1e-0000-4000-8000-000000000001\r\nNHSD-End-User-Organisation-ODS: XDC01\r\n"
    ));
    assert_eq!(code, 403, "{body}");
    let (code, _) = probe(
        "Authorization: Bearer forged\r\nX-Request-ID: x\r\nNHSD-End-User-Organisation-ODS: XCH01\r\n",
    );
    assert_eq!(code, 401);

    let (listen, e) = engine(&nrl, "XDC01", "https://dcr.example/record");
    send(listen, &adt("U1", N1, ""));
    wait_until(Duration::from_secs(20), || {
        e.log().contains("ACCESS_DENIED")
    });
    let log = e.log();
    assert!(
        log.contains("ACCESS_DENIED") && log.contains("are the destination's auth and ods right?"),
        "{log}"
    );
    assert!(nrl.pointers().is_empty());
}
