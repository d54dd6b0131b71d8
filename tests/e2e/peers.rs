//! Who may send: `allow_from` on the MLLP and FHIR listeners. A connection from an address
//! outside the list is closed before anything is read — no ACK, nothing stored — and counted in
//! `wyvern_connections_refused_total`; senders inside it are served as before.

use std::io::Read as _;
use std::time::Duration;

use crate::harness::{
    EngineProcess, Wire, adt, frame, free_addr, http_get, normalise_ack, wait_listening,
};

/// A blocking connection to `to` from the loopback alias `ip` (127.0.0.0/8 is all loopback).
fn connect_from(ip: &str, to: std::net::SocketAddr) -> std::net::TcpStream {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let stream = rt.block_on(async {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket
            .bind(format!("{ip}:0").parse().expect("addr"))
            .expect("bind a loopback alias");
        socket.connect(to).await.expect("connect")
    });
    let std = stream.into_std().expect("std socket");
    std.set_nonblocking(false).expect("blocking");
    std
}

/// True when the engine closes the connection (end of stream or reset) within 5 s.
fn closed_by_engine(s: &mut std::net::TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    let mut buf = [0u8; 64];
    match s.read(&mut buf) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => e.kind() == std::io::ErrorKind::ConnectionReset,
    }
}

fn refused_not_allowed(e: &EngineProcess, route: &str) -> u64 {
    refused(e, route, "not_allowed")
}

/// `wyvern_connections_refused_total` of `route` for `reason`.
pub fn refused(e: &EngineProcess, route: &str, reason: &str) -> u64 {
    let (_, body) = http_get(e.http, "/metrics");
    let key = format!("wyvern_connections_refused_total{{route=\"{route}\",reason=\"{reason}\"}} ");
    body.lines()
        .find_map(|l| l.strip_prefix(&key))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {key} in /metrics"))
}

#[test]
fn an_mllp_sender_outside_allow_from_is_refused_and_nothing_it_sent_is_stored() {
    let mut e = EngineProcess::start("    allow_from: [127.0.0.1/32]\n");
    let mut outsider = connect_from("127.0.0.2", e.addr);
    let _ = std::io::Write::write_all(&mut outsider, &frame(&adt("OUTSIDE1", 1)));
    assert!(
        closed_by_engine(&mut outsider),
        "no ACK, the connection closed"
    );

    let mut w = Wire::from_stream(connect_from("127.0.0.1", e.addr));
    w.write(&frame(&adt("INSIDE1", 2)));
    let ack = w.read_frame_within(Duration::from_secs(5)).expect("an ACK");
    assert!(normalise_ack(&ack).contains("MSA|AA|INSIDE1"));

    let reader = e.store_with(1);
    let ids = reader
        .control_ids(wyvern_store::InboxStatus::Accepted)
        .expect("ids");
    assert_eq!(ids, ["INSIDE1"]);
    assert_eq!(refused_not_allowed(&e, "e2e"), 1);
    assert!(
        e.log().contains("connection refused") && e.log().contains("127.0.0.2"),
        "the refusal is logged with the peer"
    );
    // And audited (tallied a minute at a time; the stop writes what is pending).
    assert!(e.terminate().success());
    let out = crate::harness::wyvern_on_store(&["audit", "export"], &e.store_dir());
    let events = String::from_utf8_lossy(&out.stdout);
    let refused: Vec<serde_json::Value> = events
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .filter(|v: &serde_json::Value| v["outcomeDesc"] == "refused")
        .collect();
    assert_eq!(refused.len(), 1, "{events}");
    assert_eq!(refused[0]["agent"][0]["network"]["address"], "127.0.0.2");
    assert!(
        refused[0]["entity"][0]["description"]
            .as_str()
            .is_some_and(|d| d.starts_with("1 connection(s) to route e2e refused")),
        "{events}"
    );
}

#[test]
fn a_fhir_client_outside_allow_from_is_refused() {
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir: {{ listen: \"{listen}\", allow_from: [127.0.0.1] }}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n"
    ));
    wait_listening(listen, Duration::from_secs(20));
    let mut outsider = connect_from("127.0.0.2", listen);
    let _ = std::io::Write::write_all(
        &mut outsider,
        b"GET /fhir/metadata HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert!(closed_by_engine(&mut outsider), "closed without an answer");
    let (status, _) = http_get(listen, "/fhir/metadata");
    assert_ne!(status, 0, "a client inside allow_from is answered");
    assert_eq!(refused_not_allowed(&e, "fhir-in"), 1);
}

/// `senders` binds a network to the facility (MSH-4.1) it sends as: from that network, a
/// message naming another facility is rejected (AR, kept as rejected) — or, with
/// `sender_mismatch: flag`, accepted with the reason kept and counted.
#[test]
fn a_sender_bound_to_a_facility_cannot_send_as_another() {
    let as_facility = |id: &str, facility: &str| {
        String::from_utf8(adt(id, 3))
            .expect("text")
            .replacen("|PAS|RX1|", &format!("|PAS|{facility}|"), 1)
            .into_bytes()
    };
    let e = EngineProcess::start("    senders:\n      - { from: 127.0.0.2, facility: RX1 }\n");
    let mut bound = Wire::from_stream(connect_from("127.0.0.2", e.addr));
    bound.write(&frame(&as_facility("OWN1", "RX1")));
    assert!(normalise_ack(&bound.read_frame()).contains("MSA|AA|OWN1"));
    bound.write(&frame(&as_facility("SPOOF1", "RX9")));
    let ack = normalise_ack(&bound.read_frame());
    assert!(ack.contains("MSA|AR|SPOOF1"), "{ack}");
    assert!(
        ack.contains("is not the sending facility this connection is bound to"),
        "{ack}"
    );
    // Another network has no binding.
    let mut other = Wire::from_stream(connect_from("127.0.0.1", e.addr));
    other.write(&frame(&as_facility("ELSE1", "RX9")));
    assert!(normalise_ack(&other.read_frame()).contains("MSA|AA|ELSE1"));
    let reader = e.store_with(3);
    assert_eq!(
        reader
            .control_ids(wyvern_store::InboxStatus::Rejected)
            .expect("ids"),
        ["SPOOF1"],
        "the spoofed message is kept, as rejected"
    );
    let (_, metrics) = http_get(e.http, "/metrics");
    assert!(
        metrics.contains("wyvern_sender_mismatch_total{route=\"e2e\"} 1"),
        "{metrics}"
    );

    let e = EngineProcess::start(
        "    senders:\n      - { from: 127.0.0.2, facility: RX1 }\n    sender_mismatch: flag\n",
    );
    let mut bound = Wire::from_stream(connect_from("127.0.0.2", e.addr));
    bound.write(&frame(&as_facility("FLAG1", "RX9")));
    assert!(normalise_ack(&bound.read_frame()).contains("MSA|AA|FLAG1"));
    let row = e
        .store_with(1)
        .list(&wyvern_store::InboxQuery {
            control_id: Some("FLAG1".into()),
            limit: 1,
            ..Default::default()
        })
        .expect("list")
        .remove(0);
    assert!(
        row.error
            .as_deref()
            .is_some_and(|e| e.contains("is not the sending facility")),
        "{row:?}"
    );
}
