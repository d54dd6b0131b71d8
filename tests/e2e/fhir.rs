//! FHIR REST delivery against the stand-in FHIR server (`wyvern dev fhir-server`): the server
//! down for 30 s and then up, and a server that refuses the content.

use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{
    EngineProcess, Wire, adt, frame, http_get, http_post, metric, normalise_ack, wait_listening,
    wait_until,
};

pub(crate) struct StandIn(Child);

impl Drop for StandIn {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub(crate) fn stand_in(addr: SocketAddr) -> StandIn {
    stand_in_with(addr, &[])
}

pub(crate) fn stand_in_with(addr: SocketAddr, extra: &[&str]) -> StandIn {
    let child = Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args([
            "--log",
            "warn",
            "dev",
            "fhir-server",
            "--listen",
            &addr.to_string(),
        ])
        .args(extra)
        .stderr(Stdio::null())
        .spawn()
        .expect("start the FHIR stand-in");
    wait_listening(addr, Duration::from_secs(10));
    StandIn(child)
}

fn stored(addr: SocketAddr) -> u64 {
    let (_, body) = http_get(addr, "/_stats");
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["stored"].as_u64())
        .unwrap_or(0)
}

pub(crate) fn free() -> SocketAddr {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
}

fn send(e: &EngineProcess, n: usize) {
    let mut w = Wire::connect(e.addr);
    for i in 0..n {
        w.write(&frame(&adt(&format!("F{i:05}"), i as u64)));
        assert!(normalise_ack(&w.read_frame()).contains("MSA|AA|"));
    }
}

#[test]
fn the_fhir_server_down_for_30_s_then_up_gets_everything() {
    let fhir = free();
    let rest = format!(
        "destinations:\n  - name: chie\n    fhir: {{ base: \"http://{fhir}/fhir\", timeout: 5s }}\norder_by: patient\nretry: {{ backoff: 200ms..2s }}\n"
    );
    let e = EngineProcess::start_route("", &rest);
    let total = 300;
    send(&e, total);
    // The record is down: every message is ACKed and waits, retried with backoff.
    std::thread::sleep(Duration::from_secs(30));
    let rss_mib = e.rss_kib() / 1024;
    let (_, metrics) = http_get(e.http, "/metrics");
    assert!(
        metrics.contains(&format!(
            "wyvern_outbox_depth{{route=\"e2e\",destination=\"chie\"}} {total}"
        )),
        "{metrics}"
    );
    let _up = stand_in(fhir);
    wait_until(Duration::from_secs(30), || stored(fhir) >= total as u64);
    let got = stored(fhir);
    println!(
        "fhir test: {total} ACKed while the stand-in was down for 30 s (engine RSS {rss_mib} MiB); stored after it came up: {got}; lost = {}",
        total as u64 - got.min(total as u64)
    );
    assert_eq!(got, total as u64);
    assert!(rss_mib < 200, "RSS {rss_mib} MiB");
}

#[test]
fn content_the_server_refuses_is_dead_lettered_with_its_reason() {
    let fhir = free();
    let _server = stand_in(fhir);
    assert_eq!(http_post(fhir, "/_control", r#"{"mode":"refuse"}"#).0, 200);
    std::thread::sleep(Duration::from_millis(200));
    let rest =
        format!("destinations:\n  - name: dcr\n    fhir: {{ base: \"http://{fhir}/fhir\" }}\n");
    let e = EngineProcess::start_route("", &rest);
    send(&e, 3);
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut listed = String::new();
    while Instant::now() < deadline {
        let out = Command::new(env!("CARGO_BIN_EXE_wyvern"))
            .args(["--log", "warn", "dlq", "list", "--config"])
            .arg(e.dir.path())
            .output()
            .expect("dlq");
        listed = String::from_utf8_lossy(&out.stdout).into_owned();
        if listed.lines().count() >= 4 {
            break;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    assert_eq!(listed.lines().count(), 4, "{listed}");
    assert!(
        listed.contains("HTTP 422") && listed.contains("told to refuse"),
        "{listed}"
    );
    assert_eq!(stored(fhir), 0);
}

/// The synthetic test certificates and keys in tests/fixtures (see its README).
pub(crate) fn fixture(path: &str) -> String {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../tests/fixtures")
        .join(path)
        .canonicalize()
        .expect("fixture")
        .display()
        .to_string()
}

/// The stand-in over HTTPS (the fixture certificate) with OAuth2 on; `extra` adds options.
pub(crate) fn tls_oauth_stand_in(addr: SocketAddr, extra: &[&str]) -> StandIn {
    let (cert, key, public) = (
        fixture("tls/server.pem"),
        fixture("tls/server.key"),
        fixture("oauth2/client.pub.pem"),
    );
    let mut args = vec![
        "--tls-cert",
        &cert,
        "--tls-key",
        &key,
        "--oauth2-public-key",
        &public,
    ];
    args.extend_from_slice(extra);
    stand_in_with(addr, &args)
}

#[test]
fn https_with_oauth2_signed_jwt_client_credentials() {
    let fhir = free();
    let _server = tls_oauth_stand_in(fhir, &["--oauth2-client-id", "wyvern-test-client"]);
    let rest = format!(
        "destinations:\n  - name: chie\n    fhir:\n      base: \"https://localhost:{port}/fhir\"\n      tls: {{ ca: \"{ca}\" }}\n      auth:\n        oauth2:\n          token_url: \"https://localhost:{port}/oauth2/token\"\n          client_id: wyvern-test-client\n          key: \"file:{key}\"\n          kid: test-1\n\
         retry: {{ backoff: 100ms..1s }}\n",
        port = fhir.port(),
        ca = fixture("tls/ca.pem"),
        key = fixture("oauth2/client.key"),
    );
    let e = EngineProcess::start_route("", &rest);
    send(&e, 20);
    let delivered =
        "wyvern_deliveries_total{route=\"e2e\",destination=\"chie\",outcome=\"delivered\"}";
    wait_until(Duration::from_secs(20), || metric(&e, delivered) >= 20);
    assert_eq!(metric(&e, delivered), 20, "{}", e.log());
}

#[test]
fn an_untrusted_certificate_or_a_wrong_key_is_retried_not_delivered() {
    let fhir = free();
    let _server = tls_oauth_stand_in(fhir, &[]);
    // No tls.ca: the stand-in's certificate is not trusted. A second destination trusts it
    // but signs with the TLS key instead of the registered OAuth2 key.
    let rest = format!(
        "destinations:\n  - name: untrusted\n    fhir: {{ base: \"https://localhost:{port}/fhir\" }}\n\
         \x20 - name: wrongkey\n    fhir:\n      base: \"https://localhost:{port}/fhir\"\n      tls: {{ ca: \"{ca}\" }}\n      auth:\n        oauth2: {{ token_url: \"https://localhost:{port}/oauth2/token\", client_id: c, key: \"file:{key}\" }}\n\
         retry: {{ backoff: 100ms..1s }}\n",
        port = fhir.port(),
        ca = fixture("tls/ca.pem"),
        key = fixture("tls/server.key"),
    );
    let e = EngineProcess::start_route("", &rest);
    send(&e, 2);
    let retried = |d: &str| {
        format!("wyvern_deliveries_total{{route=\"e2e\",destination=\"{d}\",outcome=\"retried\"}}")
    };
    wait_until(Duration::from_secs(20), || {
        metric(&e, &retried("untrusted")) > 0 && metric(&e, &retried("wrongkey")) > 0
    });
    let log = e.log();
    assert!(metric(&e, &retried("untrusted")) > 0, "{log}");
    assert!(metric(&e, &retried("wrongkey")) > 0, "{log}");
    assert!(log.contains("certificate"), "the log says why: {log}");
    assert!(
        log.contains("signature does not verify"),
        "the log says why: {log}"
    );
}

/// What the stand-in holds of one resource type.
fn held(addr: SocketAddr, kind: &str) -> Vec<serde_json::Value> {
    let (_, body) = http_get(addr, &format!("/fhir/{kind}"));
    serde_json::from_str::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v["entry"].as_array().cloned())
        .unwrap_or_default()
        .into_iter()
        .map(|e| e["resource"].clone())
        .collect()
}

#[test]
fn adt_over_mllp_is_mapped_to_uk_core_and_a_resend_updates_instead_of_duplicating() {
    let fhir = free();
    let _chie = stand_in(fhir);
    let e = EngineProcess::start_route(
        "",
        &format!(
            "steps:\n  - map: hl7v2-to-fhir\ndestinations:\n  - name: chie\n    fhir: {{ base: \"http://{fhir}/fhir\" }}\n"
        ),
    );
    let mut w = Wire::connect(e.addr);
    let admit = wyvern_hl7::synthetic::adt_a01("M1", 7);
    w.write(&frame(admit.as_bytes()));
    let ack = normalise_ack(&w.read_frame());
    assert!(ack.contains("MSA|CA|M1"), "{ack}"); // MSH-15 AL: enhanced mode
    wait_until(Duration::from_secs(20), || {
        !held(fhir, "Encounter").is_empty()
    });
    let patients = held(fhir, "Patient");
    assert_eq!(patients.len(), 1, "{patients:?}");
    let nhs = wyvern_hl7::synthetic::nhs_number(7);
    assert!(
        patients[0]["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["system"] == "https://fhir.nhs.uk/Id/nhs-number"
                && i["value"] == nhs.as_str()),
        "{patients:?}"
    );
    assert_eq!(
        patients[0]["meta"]["profile"][0],
        "https://fhir.hl7.org.uk/StructureDefinition/UKCore-Patient"
    );
    let encounters = held(fhir, "Encounter");
    assert_eq!(encounters[0]["status"], "in-progress");
    // The same admission sent again (a new control id, as a sender's resend would be): upserts,
    // so the record still holds one Patient and one Encounter.
    let again = admit.replace("|M1|", "|M2|");
    w.write(&frame(again.as_bytes()));
    assert!(normalise_ack(&w.read_frame()).contains("MSA|CA|M2"));
    wait_until(Duration::from_secs(20), || {
        let (_, body) = http_get(fhir, "/_stats");
        serde_json::from_str::<serde_json::Value>(&body)
            .is_ok_and(|v| v["requests"].as_u64() >= Some(2))
    });
    std::thread::sleep(Duration::from_millis(300));
    assert_eq!(held(fhir, "Patient").len(), 1);
    assert_eq!(held(fhir, "Encounter").len(), 1);
    // A message the mapping cannot read is refused with the reason, and nothing is sent.
    let no_id = "MSH|^~\\&|PAS|RXX|WYV|CHIE|20260101||ADT^A01|M3|P|2.4\rPID|1||||NOBODY^KNOWN\r";
    w.write(&frame(no_id.as_bytes()));
    let ack = normalise_ack(&w.read_frame());
    assert!(
        ack.contains("MSA|AR|M3") && ack.contains("PID-3 has no identifier"),
        "{ack}"
    );
}
