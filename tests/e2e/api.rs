//! The operator API (`/api/v1` on the engine's http listener): tokens made with `wyvern api
//! token create`, each role's calls, 401 without a token and 403 for a role that does not
//! allow the call, and every read of a body or change audited before it happens.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use serde_json::Value;

use crate::harness::{EngineProcess, Wire, adt, wait_until, wyvern_on_store};

/// One HTTP/1.1 call: status, the response head, and the body.
pub(crate) fn call(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String, String) {
    let mut s = TcpStream::connect(addr).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10))).ok();
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let body = body.unwrap_or("");
    let req = format!(
        "{method} {path} HTTP/1.1\r\nHost: test\r\n{auth}Content-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).expect("write");
    let mut raw = Vec::new();
    let _ = s.read_to_end(&mut raw);
    let text = String::from_utf8_lossy(&raw).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let code = head
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    (code, head.to_string(), body.to_string())
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("not JSON ({e}): {body}"))
}

/// `wyvern api token create` on the engine's store: the secret it prints.
pub fn token(e: &EngineProcess, name: &str, role: &str) -> String {
    let out = wyvern_on_store(
        &["api", "token", "create", "--name", name, "--role", role],
        &e.store_dir(),
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

#[test]
fn each_role_gets_its_calls_and_every_read_and_change_is_audited() {
    // A destination that is never there: after one attempt, a dead letter.
    let mut e = EngineProcess::start_route(
        "",
        "destinations:\n  - name: gone\n    mllp: { connect: \"127.0.0.1:1\", ack_timeout: 1s }\nretry: { backoff: 10ms..20ms, max_attempts: 1 }\n",
    );
    let mut w = Wire::connect(e.addr);
    assert!(w.exchange(&adt("API1", 1)).contains("MSA|AA|API1"));
    assert!(w.exchange(&adt("API2", 2)).contains("MSA|AA|API2"));
    let (viewer, operator, admin) = (
        token(&e, "vera", "viewer"),
        token(&e, "otto", "operator"),
        token(&e, "ada", "admin"),
    );
    assert!(viewer.starts_with("wyv_") && viewer != operator);
    let api = e.http;

    // No token, an unknown one: 401, saying why, with a challenge.
    let (code, head, body) = call(api, "GET", "/api/v1/routes", None, None);
    assert_eq!(code, 401, "{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("www-authenticate: bearer"),
        "{head}"
    );
    assert!(
        json(&body)["reason"]
            .as_str()
            .unwrap_or("")
            .contains("needs a token")
    );
    let (code, _, _) = call(api, "GET", "/api/v1/routes", Some("wyv_made_up"), None);
    assert_eq!(code, 401);
    // Health and readiness need none.
    assert_eq!(call(api, "GET", "/health", None, None).0, 200);

    // Viewer: routes, search, metadata; not bodies, not changes, not tokens.
    let (code, _, body) = call(api, "GET", "/api/v1/routes", Some(&viewer), None);
    assert_eq!(code, 200, "{body}");
    let routes = json(&body);
    assert_eq!(routes["routes"][0]["name"], "e2e");
    assert_eq!(routes["routes"][0]["source"]["kind"], "mllp");
    let (code, _, body) = call(
        api,
        "GET",
        "/api/v1/messages?control_id=API1",
        Some(&viewer),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let found = json(&body);
    let id = found["messages"][0]["id"]
        .as_str()
        .expect("an id")
        .to_string();
    let nhs = found["messages"][0]["nhs_number"]
        .as_str()
        .expect("an NHS number")
        .to_string();
    let (code, _, body) = call(
        api,
        "GET",
        &format!("/api/v1/messages/{id}"),
        Some(&viewer),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(json(&body)["deliveries"][0]["destination"], "gone");
    let (code, _, body) = call(
        api,
        "GET",
        &format!("/api/v1/messages/{id}/body"),
        Some(&viewer),
        None,
    );
    assert_eq!(code, 403, "{body}");
    assert!(
        json(&body)["reason"]
            .as_str()
            .unwrap_or("")
            .contains("needs the operator role")
    );
    assert_eq!(
        call(api, "GET", "/api/v1/tokens", Some(&viewer), None).0,
        403
    );
    assert_eq!(
        call(
            api,
            "GET",
            "/api/v1/messages?colour=red",
            Some(&viewer),
            None
        )
        .0,
        400
    );

    // Operator: the body, and dead letters retried, purged, replayed.
    let (code, _, body) = call(
        api,
        "GET",
        &format!("/api/v1/messages/{id}/body"),
        Some(&operator),
        None,
    );
    assert_eq!(code, 200, "{body}");
    let shown = json(&body);
    assert!(shown["body"].as_str().unwrap_or("").contains("PID|1||"));
    assert!(shown["ack"].as_str().unwrap_or("").contains("MSA|AA|API1"));
    let mut dead = Value::Null;
    wait_until(Duration::from_secs(10), || {
        let (_, _, b) = call(api, "GET", "/api/v1/dead-letters", Some(&viewer), None);
        dead = json(&b);
        dead["dead_letters"]
            .as_array()
            .is_some_and(|d| d.len() == 2)
    });
    let letters = dead["dead_letters"].as_array().expect("dead letters");
    assert_eq!(letters.len(), 2, "{dead}");
    let seq = letters[0]["seq"].as_i64().expect("seq");
    assert_eq!(
        call(
            api,
            "POST",
            &format!("/api/v1/dead-letters/{seq}/retry"),
            Some(&viewer),
            None
        )
        .0,
        403
    );
    let (code, _, body) = call(
        api,
        "POST",
        &format!("/api/v1/dead-letters/{seq}/retry"),
        Some(&operator),
        None,
    );
    assert_eq!(
        (code, json(&body)["changed"].as_i64()),
        (200, Some(1)),
        "{body}"
    );
    let other = letters[1]["seq"].as_i64().expect("seq");
    let (code, _, body) = call(
        api,
        "POST",
        &format!("/api/v1/dead-letters/{other}/purge"),
        Some(&operator),
        None,
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        call(
            api,
            "POST",
            "/api/v1/dead-letters/999999/purge",
            Some(&operator),
            None
        )
        .0,
        404
    );
    let (code, _, body) = call(
        api,
        "POST",
        "/api/v1/replay",
        Some(&operator),
        Some(r#"{"route": "e2e", "since_ms": 0}"#),
    );
    assert_eq!(code, 200, "{body}");
    assert_eq!(
        call(
            api,
            "POST",
            "/api/v1/replay",
            Some(&operator),
            Some(r#"{"route": "nope", "since_ms": 0}"#)
        )
        .0,
        404
    );

    // Admin: tokens made, used, revoked.
    assert_eq!(
        call(
            api,
            "POST",
            "/api/v1/tokens",
            Some(&operator),
            Some(r#"{"name": "x", "role": "viewer"}"#)
        )
        .0,
        403
    );
    let (code, _, body) = call(
        api,
        "POST",
        "/api/v1/tokens",
        Some(&admin),
        Some(r#"{"name": "monitoring", "role": "viewer"}"#),
    );
    assert_eq!(code, 201, "{body}");
    let made = json(&body)["token"].as_str().expect("a secret").to_string();
    assert_eq!(call(api, "GET", "/api/v1/routes", Some(&made), None).0, 200);
    assert_eq!(
        call(
            api,
            "POST",
            "/api/v1/tokens",
            Some(&admin),
            Some(r#"{"name": "monitoring", "role": "viewer"}"#)
        )
        .0,
        409
    );
    assert_eq!(
        call(
            api,
            "DELETE",
            "/api/v1/tokens/monitoring",
            Some(&admin),
            None
        )
        .0,
        200
    );
    assert_eq!(call(api, "GET", "/api/v1/routes", Some(&made), None).0, 401);

    // The audit log: the body read names the patient and the token; refusals and changes are
    // there; the chain verifies.
    assert!(e.terminate().success());
    let out = wyvern_on_store(&["audit", "export"], &e.store_dir());
    let events: Vec<Value> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(json)
        .collect();
    let read = events
        .iter()
        .find(|ev| ev["outcomeDesc"] == "view")
        .expect("the body read is audited");
    assert_eq!(read["agent"][0]["who"]["display"], "token:otto");
    assert!(read.to_string().contains(&nhs), "names the patient: {read}");
    for action in ["search", "retry", "purge", "replay", "token", "denied"] {
        assert!(
            events.iter().any(|ev| ev["outcomeDesc"] == action),
            "{action} is audited"
        );
    }
    let out = wyvern_on_store(&["audit", "verify"], &e.store_dir());
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// schemathesis (from PyPI; `scripts/test-all` installs it in target/schemathesis) generates
/// requests from the served OpenAPI document — valid and invalid, one call and sequences —
/// with an admin token, and checks every answer: no 5xx, every status, header, content type
/// and body as documented, and invalid input refused. (Not "every schema-valid request
/// succeeds": a replay whose since is after its until is schema-valid and a 400.)
#[test]
fn schemathesis_finds_no_server_error_and_no_undocumented_response() {
    let st = std::env::var("WYVERN_SCHEMATHESIS").unwrap_or_else(|_| {
        concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../target/schemathesis/bin/st"
        )
        .to_string()
    });
    assert!(
        std::path::Path::new(&st).exists(),
        "schemathesis is not at {st}: scripts/test-all installs it (or set WYVERN_SCHEMATHESIS)"
    );
    let e = EngineProcess::start_route(
        "",
        "destinations:\n  - name: gone\n    mllp: { connect: \"127.0.0.1:1\", ack_timeout: 1s }\nretry: { backoff: 10ms..20ms, max_attempts: 1 }\n",
    );
    let mut w = Wire::connect(e.addr);
    for i in 0..3 {
        assert!(w.exchange(&adt(&format!("ST{i}"), i)).contains("MSA|AA"));
    }
    let admin = token(&e, "schemathesis-admin", "admin");
    let schema = e.dir.path().join("openapi.json");
    let (code, _, body) = call(e.http, "GET", "/api/v1/openapi.json", Some(&admin), None);
    assert_eq!(code, 200);
    std::fs::write(&schema, body).expect("write the served document");
    let out = std::process::Command::new(&st)
        .arg("run")
        .arg(&schema)
        .args(["--url", &format!("http://{}", e.http)])
        .args(["-H", &format!("Authorization: Bearer {admin}")])
        .args([
            "--checks",
            "not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance,negative_data_rejection,missing_required_header,unsupported_method",
            "--max-examples",
            "50",
            "--seed",
            "1",
        ])
        .env("NO_COLOR", "1")
        // Its cache (.schemathesis/) goes beside the engine's config, not into the source tree.
        .current_dir(e.dir.path())
        .output()
        .expect("run schemathesis");
    let report = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "schemathesis found problems:\n{report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(report.contains("passed"), "{report}");
    assert!(
        e.log().contains("HTTP ready"),
        "the engine served the whole run"
    );
}

/// `wyvern inbox|dlq|replay --remote URL --token-file F`: the local commands through the API.
#[test]
fn the_cli_reads_and_acts_on_a_remote_engine_through_the_api() {
    let mut e = EngineProcess::start_route(
        "",
        "destinations:\n  - name: gone\n    mllp: { connect: \"127.0.0.1:1\", ack_timeout: 1s }\nretry: { backoff: 10ms..20ms, max_attempts: 1 }\n",
    );
    let mut w = Wire::connect(e.addr);
    assert!(w.exchange(&adt("REM1", 7)).contains("MSA|AA|REM1"));
    let files = tempfile::tempdir().expect("dir");
    let write = |name: &str, secret: String| {
        let p = files.path().join(name);
        std::fs::write(&p, secret).expect("token file");
        p
    };
    let operator = write("op", token(&e, "remote-op", "operator"));
    let viewer = write("view", token(&e, "remote-view", "viewer"));
    let url = format!("http://{}", e.http);
    let cli = |args: &[&str], token: &std::path::Path| {
        std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
            .args(["--log", "warn"])
            .args(args)
            .args(["--remote", &url, "--token-file"])
            .arg(token)
            .output()
            .expect("run wyvern")
    };
    let out = cli(&["inbox", "list"], &viewer);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("REM1"));
    let out = cli(&["inbox", "show", "1"], &viewer);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("needs the operator role"),
        "the engine's reason reaches the user: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["inbox", "show", "1"], &operator);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let shown = String::from_utf8_lossy(&out.stdout);
    assert!(
        shown.contains("PID|1||") && shown.contains("MSA|AA|REM1"),
        "{shown}"
    );
    let mut listed = String::new();
    wait_until(Duration::from_secs(10), || {
        listed = String::from_utf8_lossy(&cli(&["dlq", "list"], &viewer).stdout).into_owned();
        listed.contains("gone")
    });
    let seq = listed
        .split_whitespace()
        .next()
        .expect("a dead letter")
        .to_string();
    let out = cli(&["dlq", "retry", &seq], &operator);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = cli(&["replay", "--route", "e2e", "--since", "1h"], &operator);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(e.terminate().success());
    let out = wyvern_on_store(&["audit", "export"], &e.store_dir());
    let audit = String::from_utf8_lossy(&out.stdout);
    assert!(
        audit.contains("token:remote-op") && audit.contains("\"view\""),
        "{audit}"
    );
}

/// `POST /api/v1/routes/{name}/stop|start|pause|resume`: a stopped intake answers AE and
/// stores nothing (the sender keeps the message); paused delivery holds messages in the
/// outbox until resumed; both audited, both visible in /routes and /metrics.
#[test]
fn an_operator_stops_and_pauses_a_route_and_nothing_is_lost() {
    let mut e = EngineProcess::start_route(
        "",
        "destinations:\n  - name: archive\n    file: { dir: \"{dir}/out\" }\n",
    );
    let operator = token(&e, "otto", "operator");
    let api = e.http;
    let switch = |action: &str| {
        let (code, _, body) = call(
            api,
            "POST",
            &format!("/api/v1/routes/e2e/{action}"),
            Some(&operator),
            None,
        );
        assert_eq!(code, 200, "{body}");
        json(&body)["state"].as_str().unwrap_or("").to_string()
    };
    let mut w = Wire::connect(e.addr);
    assert_eq!(switch("stop"), "stopped");
    let ack = w.exchange(&adt("STOP1", 1));
    assert!(
        ack.contains("MSA|AE|STOP1") && ack.contains("stopped by an operator"),
        "{ack}"
    );
    assert_eq!(switch("start"), "running");
    assert!(
        w.exchange(&adt("STOP1", 1)).contains("MSA|AA|STOP1"),
        "the resend is taken"
    );

    let out = e.dir.path().join("out");
    let files = || std::fs::read_dir(&out).map_or(0, |d| d.count());
    wait_until(Duration::from_secs(10), || files() == 1);
    assert_eq!(files(), 1);
    assert_eq!(switch("pause"), "paused");
    assert!(w.exchange(&adt("PAUSE1", 2)).contains("MSA|AA|PAUSE1"));
    let (_, _, metrics) = call(api, "GET", "/metrics", None, None);
    assert!(metrics.contains("wyvern_route_delivery_paused{route=\"e2e\"} 1"));
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(files(), 1, "nothing is delivered while paused");
    let (_, _, body) = call(api, "GET", "/api/v1/routes", Some(&operator), None);
    assert_eq!(json(&body)["routes"][0]["destinations"][0]["pending"], 1);
    assert_eq!(switch("resume"), "running");
    wait_until(Duration::from_secs(10), || files() == 2);
    assert_eq!(files(), 2, "delivered once resumed");
    assert_eq!(
        call(
            api,
            "POST",
            "/api/v1/routes/e2e/explode",
            Some(&operator),
            None
        )
        .0,
        404
    );

    assert!(e.terminate().success());
    let out = wyvern_on_store(&["audit", "export"], &e.store_dir());
    let audit = String::from_utf8_lossy(&out.stdout);
    for what in [
        "route e2e: stop",
        "route e2e: start",
        "route e2e: pause",
        "route e2e: resume",
        "started: wyvern",
        "stopped",
    ] {
        assert!(audit.contains(what), "{what} is audited: {audit}");
    }
}
