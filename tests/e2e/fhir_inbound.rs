//! FHIR REST inbound (`source: { fhir: … }`) against the real binary: JSON and XML accepted,
//! answered only after the commit and delivered (XML as JSON); malformed JSON, unknown
//! elements, the wrong resourceType, XXE, deep nesting and a 100 MB body all get a 4xx with an
//! OperationOutcome, and none of them is stored as accepted.

use std::net::SocketAddr;
use std::time::Duration;

use crate::harness::{EngineProcess, free_addr, http_get, http_raw, wait_listening, wait_until};

/// One request: (status, body). `declared` overrides Content-Length (to claim a huge body).
fn request(
    addr: SocketAddr,
    method: &str,
    path: &str,
    content_type: &str,
    body: &[u8],
    declared: Option<usize>,
) -> (u16, String) {
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        declared.unwrap_or(body.len())
    )
    .into_bytes();
    req.extend_from_slice(body);
    http_raw(addr, &req)
}

fn outcome(body: &str) -> serde_json::Value {
    // Chunked or not, the JSON is the part between the first '{' and the last '}'.
    let (a, b) = (
        body.find('{').unwrap_or(0),
        body.rfind('}').map_or(0, |i| i + 1),
    );
    serde_json::from_str(&body[a..b])
        .unwrap_or_else(|e| panic!("not an OperationOutcome ({e}): {body}"))
}

fn accepted(e: &EngineProcess) -> u64 {
    let (_, m) = http_get(e.http, "/metrics");
    m.lines()
        .find(|l| l.starts_with("wyvern_messages_total{route=\"fhir-in\",outcome=\"accepted\"}"))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

const PATIENT: &str = r#"{"resourceType":"Patient","id":"p1","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}],"name":[{"family":"TESTPATIENT","given":["ALEX"]}],"gender":"female","birthDate":"1980-01-02"}"#;

#[test]
fn fhir_json_and_xml_are_accepted_and_bad_input_gets_an_operation_outcome() {
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\", max_body: 1MiB }}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\norder_by: patient\n"
    ));
    wait_listening(listen, Duration::from_secs(20));

    let (code, body) = request(
        listen,
        "GET",
        "/fhir/metadata",
        "application/fhir+json",
        b"",
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(outcome(&body)["resourceType"], "CapabilityStatement");

    // Accepted: JSON resource, XML resource (PUT), a transaction Bundle.
    let (code, body) = request(
        listen,
        "POST",
        "/fhir/Patient",
        "application/fhir+json",
        PATIENT.as_bytes(),
        None,
    );
    assert_eq!(code, 201, "{body}");
    let xml = r#"<Patient xmlns="http://hl7.org/fhir"><id value="p2"/><name><family value="XMLPATIENT"/></name><gender value="male"/></Patient>"#;
    let (code, body) = request(
        listen,
        "PUT",
        "/fhir/Patient/p2",
        "application/fhir+xml",
        xml.as_bytes(),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let bundle = format!(
        r#"{{"resourceType":"Bundle","type":"transaction","entry":[{{"resource":{PATIENT},"request":{{"method":"PUT","url":"Patient/p1"}}}}]}}"#
    );
    let (code, body) = request(
        listen,
        "POST",
        "/fhir",
        "application/fhir+json; charset=utf-8",
        bundle.as_bytes(),
        None,
    );
    assert_eq!(code, 200, "{body}");

    // Refused, each with an OperationOutcome that says why (and where, when it can).
    let deep = "[".repeat(200) + &"]".repeat(200);
    let deep = format!(r#"{{"resourceType":"Patient","extension":{deep}}}"#);
    let xxe = r#"<?xml version="1.0"?><!DOCTYPE p [<!ENTITY x SYSTEM "file:///etc/passwd">]><Patient xmlns="http://hl7.org/fhir"><id value="&x;"/></Patient>"#;
    let laughs = r#"<?xml version="1.0"?><!DOCTYPE l [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]><Patient xmlns="http://hl7.org/fhir"><id value="&b;"/></Patient>"#;
    let unknown = r#"{"resourceType":"Patient","name":[{"family":"X","nickname":"Y"}]}"#;
    // (method, path, Content-Type, body, declared length, expected status, what the outcome says)
    type Case = (
        &'static str,
        &'static str,
        &'static str,
        Vec<u8>,
        Option<usize>,
        u16,
        &'static str,
    );
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            b"{\"resourceType\": \"Patient\", ".to_vec(),
            None,
            400,
            "not JSON",
        ),
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            unknown.as_bytes().to_vec(),
            None,
            400,
            "Patient.name[0].nickname",
        ),
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            br#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#.to_vec(),
            None,
            400,
            "the URL says Patient",
        ),
        (
            "POST",
            "/fhir",
            "application/fhir+json",
            br#"{"resourceType":"Bundle","type":"collection"}"#.to_vec(),
            None,
            400,
            "transaction or batch",
        ),
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+xml",
            xxe.as_bytes().to_vec(),
            None,
            400,
            "DTD",
        ),
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+xml",
            laughs.as_bytes().to_vec(),
            None,
            400,
            "DTD",
        ),
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            deep.into_bytes(),
            None,
            400,
            "nested",
        ),
        (
            "POST",
            "/fhir/Patient",
            "application/fhir+json",
            PATIENT.as_bytes().to_vec(),
            Some(100 << 20),
            413,
            "at most",
        ),
        (
            "POST",
            "/fhir/Patient",
            "text/plain",
            PATIENT.as_bytes().to_vec(),
            None,
            415,
            "Content-Type",
        ),
        (
            "PUT",
            "/fhir/Patient/other",
            "application/fhir+json",
            PATIENT.as_bytes().to_vec(),
            None,
            400,
            "not the URL's",
        ),
    ];
    for (method, path, ct, body, declared, want, says) in cases {
        let (code, text) = request(listen, method, path, ct, &body, declared);
        assert_eq!(code, want, "{method} {path} ({ct}): {text}");
        let oo = outcome(&text);
        assert_eq!(oo["resourceType"], "OperationOutcome", "{text}");
        assert!(
            oo.to_string().contains(says),
            "{method} {path}: expected {says:?} in {oo}"
        );
    }

    // Three accepted and delivered (the XML one as JSON); nothing refused was stored as accepted.
    let out = e.dir.path().join("out");
    let files = || -> Vec<String> {
        std::fs::read_dir(&out)
            .map(|d| {
                d.filter_map(Result::ok)
                    .filter_map(|f| std::fs::read_to_string(f.path()).ok())
                    .collect()
            })
            .unwrap_or_default()
    };
    wait_until(Duration::from_secs(20), || files().len() >= 3);
    std::thread::sleep(Duration::from_millis(300));
    let delivered = files();
    assert_eq!(delivered.len(), 3, "{delivered:?}");
    assert!(
        delivered.iter().any(|d| d.contains("\"XMLPATIENT\"")),
        "XML delivered as JSON: {delivered:?}"
    );
    assert_eq!(accepted(&e), 3);
}

/// Issue 11: a 760 KB FHIR XML Patient with 20,000 nested extensions overflowed a worker's stack
/// and aborted the process, MLLP feeds and all. Now it is a 400 with an OperationOutcome and the
/// engine goes on serving the route's MLLP neighbour.
#[test]
fn deeply_nested_xml_is_refused_and_the_engine_keeps_serving() {
    let listen = free_addr();
    let mllp = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\" }}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\norder_by: patient\n"
    ));
    std::fs::write(
        e.dir.path().join("mllp.yaml"),
        format!(
            "version: 1\nroute: pas\nsource:\n  mllp: {{ listen: \"{mllp}\" }}\n\
             destinations:\n  - name: archive\n    file: {{ dir: \"{}/out2\" }}\n",
            e.dir.path().display()
        ),
    )
    .expect("second route");
    let mut e = e;
    e.terminate();
    e.restart();
    wait_listening(listen, Duration::from_secs(20));
    wait_listening(mllp, Duration::from_secs(20));
    let deep = format!(
        "<Patient xmlns=\"http://hl7.org/fhir\">{}{}</Patient>",
        "<extension url=\"http://example.org/e\">".repeat(20_000),
        "</extension>".repeat(20_000)
    );
    let (code, body) = request(
        listen,
        "POST",
        "/fhir/Patient",
        "application/fhir+xml",
        deep.as_bytes(),
        None,
    );
    assert_eq!(code, 400, "{body}");
    let o = outcome(&body);
    assert_eq!(o["resourceType"], "OperationOutcome");
    assert!(body.contains("nested"), "{body}");
    let mut w = crate::harness::Wire::connect(mllp);
    assert!(
        w.exchange(&crate::harness::adt("AFTER1", 1))
            .contains("MSA|AA|AFTER1"),
        "the engine still serves MLLP; log:\n{}",
        e.log()
    );
}

/// Issue 11 item 8: the FHIR listener had no connection cap and no timer (axum sets none), so
/// one client could hold connections open for ever. Now each address has a cap, and a
/// connection that sends nothing for `idle_timeout` is closed; other senders are served.
#[test]
fn a_flooding_or_silent_fhir_client_cannot_hold_the_endpoint() {
    use std::io::Read as _;
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\", max_connections_per_peer: 4, idle_timeout: 1s }}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n"
    ));
    wait_listening(listen, Duration::from_secs(20));
    // wait_listening's own probe may still hold a slot for a moment.
    std::thread::sleep(Duration::from_millis(200));
    let held: Vec<std::net::TcpStream> = (0..4)
        .map(|_| std::net::TcpStream::connect(listen).expect("connect"))
        .collect();
    let mut fifth = std::net::TcpStream::connect(listen).expect("connect");
    fifth
        .set_read_timeout(Some(Duration::from_millis(800)))
        .expect("timeout");
    // Closed by the engine: end of stream or a reset, not a read timeout.
    let closed = |s: &mut std::net::TcpStream| {
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => true,
            Ok(_) => false,
            Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
        }
    };
    assert!(closed(&mut fifth), "the fifth from one address is closed");
    // Another address is served meanwhile.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let other = rt
        .block_on(async {
            let s = tokio::net::TcpSocket::new_v4()?;
            s.bind("127.0.0.2:0".parse().expect("addr"))?;
            s.connect(listen).await
        })
        .expect("connect from 127.0.0.2")
        .into_std()
        .expect("std");
    other.set_nonblocking(false).expect("blocking");
    let mut other = other;
    use std::io::Write as _;
    other
        .write_all(b"GET /fhir/metadata HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("write");
    let mut answer = String::new();
    other
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let _ = other.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    // The silent ones are closed after idle_timeout.
    for mut s in held {
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        assert!(closed(&mut s), "a silent connection is closed");
    }
    assert!(
        e.log().contains("max_connections_per_peer reached"),
        "{}",
        e.log()
    );
}

/// `map: fhir-to-hl7v2`: a FHIR source feeding a receiver that takes only HL7v2. A Bundle with
/// a Patient and an Encounter reaches the MLLP destination as ADT^A08 (and the file copy shows
/// its PID and PV1); a body the way back cannot map (no Patient) is refused with 422 and
/// nothing is sent.
#[test]
fn a_fhir_source_with_map_fhir_to_hl7v2_feeds_an_mllp_receiver() {
    let rx = crate::receiver::Receiver::start(Box::new(|_, _| Some("AA")));
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\" }}\n\
         steps:\n  - map: fhir-to-hl7v2\n\
         destinations:\n  - name: v2-only\n    mllp: {{ connect: \"{}\" }}\n\
         \x20 - name: copy\n    file: {{ dir: \"{{dir}}/out\" }}\norder_by: patient\n",
        rx.addr
    ));
    wait_listening(listen, Duration::from_secs(20));
    let bundle = r#"{"resourceType":"Bundle","type":"transaction","entry":[
        {"fullUrl":"urn:uuid:11111111-1111-4111-8111-111111111111","resource":{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}],"name":[{"family":"TESTPATIENT","given":["ALEX"]}],"gender":"female","birthDate":"1980-01-02"},"request":{"method":"PUT","url":"Patient?identifier=https://fhir.nhs.uk/Id/nhs-number|9990000018"}},
        {"fullUrl":"urn:uuid:22222222-2222-4222-8222-222222222222","resource":{"resourceType":"Encounter","status":"in-progress","class":{"system":"http://terminology.hl7.org/CodeSystem/v3-ActCode","code":"IMP"},"identifier":[{"system":"https://example.invalid/visit","value":"V0001"}],"subject":{"reference":"urn:uuid:11111111-1111-4111-8111-111111111111"},"period":{"start":"2026-11-25T08:55:00+00:00"}},"request":{"method":"PUT","url":"Encounter?identifier=https://example.invalid/visit|V0001"}}]}"#;
    let (code, body) = request(
        listen,
        "POST",
        "/fhir",
        "application/fhir+json",
        bundle.as_bytes(),
        None,
    );
    assert!(code == 200 || code == 201, "{code} {body}");
    rx.wait_for(Duration::from_secs(20), |ids| ids.len() == 1);
    let out = e.config_dir().join("out");
    wait_until(Duration::from_secs(20), || {
        std::fs::read_dir(&out).map(|d| d.count()).unwrap_or(0) == 1
    });
    let file = std::fs::read_dir(&out)
        .unwrap()
        .next()
        .unwrap()
        .unwrap()
        .path();
    let sent = std::fs::read_to_string(file).unwrap();
    let msg = wyvern_hl7::Message::parse(sent.as_bytes()).expect("HL7v2 was delivered");
    assert_eq!(msg.get("MSH-9.1").unwrap().as_str(), "ADT");
    assert_eq!(msg.get("MSH-9.2").unwrap().as_str(), "A08");
    assert_eq!(msg.get("PID-3.1").unwrap().as_str(), "9990000018");
    assert_eq!(msg.get("PID-8").unwrap().as_str(), "F");
    assert_eq!(msg.get("PV1-2").unwrap().as_str(), "I");
    assert_eq!(msg.get("PV1-19").unwrap().as_str(), "V0001");

    // No Patient: the way back cannot make a PID, so the body is refused and nothing is sent.
    let obs = r#"{"resourceType":"Observation","status":"final","code":{"text":"x"}}"#;
    let (code, body) = request(
        listen,
        "POST",
        "/fhir/Observation",
        "application/fhir+json",
        obs.as_bytes(),
        None,
    );
    assert_eq!(code, 422, "{body}");
    assert!(
        outcome(&body)["issue"][0]["diagnostics"]
            .as_str()
            .unwrap()
            .contains("no Patient"),
        "{body}"
    );
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(rx.ids().len(), 1);
}
