//! Delivery to a FHIR server that is not Wyvern's code: Medplum's FHIR router (npm
//! `@medplum/fhir-router`, in memory) behind `tests/medplum/server.mjs`. scripts/test-all
//! installs it (`npm ci` in tests/medplum).

use std::net::SocketAddr;
use std::process::{Child, Command};
use std::time::Duration;

use crate::harness::{
    EngineProcess, free_addr, http_raw, start_listening, wait_listening, wait_until,
};

/// A running Medplum server; killed when dropped.
pub(crate) struct Medplum {
    child: Child,
    pub(crate) addr: SocketAddr,
}

impl Medplum {
    pub(crate) fn start() -> Medplum {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/medplum");
        assert!(
            dir.join("node_modules/@medplum/fhir-router").exists(),
            "Medplum is not installed: scripts/test-all installs it (or run `npm ci` in tests/medplum)"
        );
        let addr = free_addr();
        let mut cmd = Command::new("node");
        cmd.args(["--experimental-websocket", "server.mjs"])
            .arg(addr.port().to_string())
            .current_dir(&dir);
        let child = start_listening(cmd, "Medplum");
        Medplum { child, addr }
    }

    pub(crate) fn request(&self, method: &str, path: &str, body: &str) -> (u16, String) {
        let req = format!(
            "{method} /fhir{path} HTTP/1.1\r\nHost: medplum\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        http_raw(self.addr, req.as_bytes())
    }
}

impl Drop for Medplum {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// An engine whose FHIR source delivers to `medplum`; and where its source listens.
fn engine_in_front_of(medplum: &Medplum) -> (EngineProcess, SocketAddr) {
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\" }}\n\
         destinations:\n  - name: record\n    fhir: {{ base: \"http://{}/fhir\" }}\n\
         order_by: patient\nretry: {{ backoff: 100ms..1s }}\n",
        medplum.addr
    ));
    wait_listening(listen, Duration::from_secs(20));
    (e, listen)
}

fn put(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let req = format!(
        "PUT {path} HTTP/1.1\r\nHost: test\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    http_raw(addr, req.as_bytes())
}

fn patient(id: &str, family: &str) -> String {
    format!(
        r#"{{"resourceType":"Patient","id":"{id}","identifier":[{{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}}],"name":[{{"family":"{family}","given":["ALEX"]}}]}}"#
    )
}

fn dead_letters(e: &EngineProcess) -> Vec<wyvern_store::OutboxItem> {
    wyvern_store::Outbox::open(&e.store_dir())
        .and_then(|o| o.dead_letters(None, None, 10))
        .unwrap_or_default()
}

/// Issue 11: `PUT /fhir/Patient/X` was forwarded as `POST /Patient`; Medplum created X the first
/// time and refused the second ("Assigned ID is already in use"), so the update was
/// dead-lettered and the record kept the old name. Now an update stays an update.
#[test]
fn a_fhir_update_reaches_a_real_fhir_server_as_an_update() {
    let medplum = Medplum::start();
    let (e, listen) = engine_in_front_of(&medplum);
    for family in ["FIRSTNAME", "SECONDNAME"] {
        let (code, body) = put(listen, "/fhir/Patient/wyv-1", &patient("wyv-1", family));
        assert_eq!(code, 200, "{body}");
    }
    let mut last = String::new();
    wait_until(Duration::from_secs(20), || {
        last = medplum.request("GET", "/Patient/wyv-1", "").1;
        last.contains("SECONDNAME")
    });
    assert!(
        last.contains("SECONDNAME"),
        "Medplum holds the update: {last}\ndead letters: {:?}\nlog:\n{}",
        dead_letters(&e),
        e.log()
    );
    assert!(dead_letters(&e).is_empty(), "{:?}", dead_letters(&e));
}

/// Issue 11: a batch answered 200 counted as delivered even when its entries failed. Now each
/// entry of a batch-response is read, and a refused one dead-letters the batch with its reason.
#[test]
fn a_batch_whose_entry_the_server_refuses_is_dead_lettered_with_the_entry() {
    let medplum = Medplum::start();
    let (e, listen) = engine_in_front_of(&medplum);
    // Entry 1 updates Patient/b-2 with a body whose id is another: the server refuses it.
    let batch = format!(
        r#"{{"resourceType":"Bundle","type":"batch","entry":[{{"resource":{},"request":{{"method":"PUT","url":"Patient/b-1"}}}},{{"resource":{},"request":{{"method":"PUT","url":"Patient/b-2"}}}}]}}"#,
        patient("b-1", "GOOD"),
        patient("other", "BAD")
    );
    let req = format!(
        "POST /fhir HTTP/1.1\r\nHost: test\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{batch}",
        batch.len()
    );
    let (code, body) = http_raw(listen, req.as_bytes());
    assert_eq!(code, 200, "{body}");
    let mut dead = Vec::new();
    wait_until(Duration::from_secs(20), || {
        dead = dead_letters(&e);
        !dead.is_empty()
    });
    let why = dead
        .first()
        .and_then(|d| d.last_error.clone())
        .unwrap_or_default();
    assert!(
        why.contains("batch entry 1"),
        "dead-lettered with the failing entry: {why:?}\nlog:\n{}",
        e.log()
    );
}
