//! TLS and mTLS on the MLLP listener and destination and on FHIR inbound, with certificates
//! made for each test (wyvern-testpki): delivery both ways, untrusted, missing and expired
//! certificates refused on each side, plaintext and TLS 1.1 refused on a TLS port without
//! harm to anyone else, a reload on SIGHUP that keeps open connections, and client
//! certificates naming who may connect and as which facility.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use wyvern_connectors::mllp::MllpClient;
use wyvern_connectors::tls::{ClientTls, ClientTlsSettings};
use wyvern_testpki::{Ca, Issued, Leaf};

use crate::harness::{EngineProcess, Wire, adt, frame, normalise_ack, wait_until};
use crate::peers::refused;

/// A CA, the engine's server certificate (localhost, 127.0.0.1), and a client certificate for
/// the trust's PAS (`pas.rx1.example`), in a folder of their own.
struct Pki {
    dir: tempfile::TempDir,
    ca: Ca,
    ca_pem: PathBuf,
    server: Issued,
    pas: Issued,
}

impl Pki {
    fn new() -> Pki {
        let dir = tempfile::tempdir().expect("temp dir");
        let ca = Ca::new("Wyvern Test CA (synthetic)");
        let ca_pem = ca.write(dir.path(), "ca");
        let server = ca.issue(dir.path(), "server", &Leaf::server("localhost"));
        let pas = ca.issue(dir.path(), "pas", &Leaf::client("pas.rx1.example"));
        Pki {
            dir,
            ca,
            ca_pem,
            server,
            pas,
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// `tls:` for an MLLP listener (under `mllp:`), requiring client certificates from the
    /// CA; `extra` goes inside `tls:` (indented six spaces).
    fn listener(&self, extra: &str) -> String {
        format!(
            "    tls:\n      cert: {}\n      key: {}\n      client_ca: {}\n{extra}",
            self.server.cert.display(),
            self.server.key.display(),
            self.ca_pem.display()
        )
    }

    fn client(&self, identity: Option<&Issued>) -> Arc<ClientTls> {
        client(&self.ca_pem, identity, None)
    }
}

fn client(ca: &Path, identity: Option<&Issued>, server_name: Option<&str>) -> Arc<ClientTls> {
    ClientTls::load(
        "test",
        ClientTlsSettings {
            ca: Some(ca.to_path_buf()),
            cert: identity.map(|i| i.cert.clone()),
            key: identity.map(|i| i.key.clone()),
            server_name: server_name.map(str::to_string),
        },
    )
    .expect("client TLS")
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// One message over a new TLS connection: the normalised ACK, or why there was none.
fn send_tls(addr: std::net::SocketAddr, tls: &ClientTls, payload: &[u8]) -> Result<String, String> {
    runtime().block_on(async {
        let mut c = MllpClient::connect_with(&addr.to_string(), 1 << 20, Some(tls))
            .await
            .map_err(|e| e.to_string())?;
        let ack = tokio::time::timeout(Duration::from_secs(10), c.send(payload))
            .await
            .map_err(|_| "no ACK within 10 s".to_string())?
            .map_err(|e| e.to_string())?;
        Ok(normalise_ack(&ack))
    })
}

/// An ADT from facility `facility` (MSH-4).
fn adt_from(facility: &str, control_id: &str, n: u64) -> Vec<u8> {
    String::from_utf8(adt(control_id, n))
        .expect("text")
        .replacen("|PAS|RX1|", &format!("|PAS|{facility}|"), 1)
        .into_bytes()
}

#[test]
fn mllp_over_tls_both_ways_with_client_certificates() {
    let pki = Pki::new();
    let engine_id = pki
        .ca
        .issue(pki.path(), "wyvern-client", &Leaf::client("wyvern.example"));
    // The next hop: a second engine whose listener requires our client certificate.
    let next = EngineProcess::start(&pki.listener(""));
    let first = EngineProcess::start_route(
        &pki.listener(""),
        &format!(
            "destinations:\n  - name: onward\n    mllp:\n      connect: {}\n      tls:\n        ca: {}\n        cert: {}\n        key: {}\n",
            next.addr,
            pki.ca_pem.display(),
            engine_id.cert.display(),
            engine_id.key.display()
        ),
    );
    let tls = pki.client(Some(&pki.pas));
    for i in 1..=3 {
        let ack = send_tls(first.addr, &tls, &adt(&format!("TLS{i}"), i)).expect("an ACK");
        assert!(ack.contains(&format!("MSA|AA|TLS{i}")), "{ack}");
    }
    let reader = next.store_with(3);
    let mut ids = reader
        .control_ids(wyvern_store::InboxStatus::Accepted)
        .expect("ids");
    ids.sort();
    assert_eq!(ids, ["TLS1", "TLS2", "TLS3"], "delivered over MLLP TLS");
    assert!(first.log().contains("MLLP listener ready") && first.log().contains("TLS"));
}

#[test]
fn an_untrusted_or_missing_client_certificate_is_refused_and_nothing_is_stored() {
    let pki = Pki::new();
    let mut e = EngineProcess::start(&pki.listener(""));
    let other = Ca::new("Someone else's CA");
    let intruder = other.issue(pki.path(), "intruder", &Leaf::client("pas.rx1.example"));
    let untrusted = send_tls(e.addr, &pki.client(Some(&intruder)), &adt("BAD1", 1));
    assert!(untrusted.is_err(), "{untrusted:?}");
    let anonymous = send_tls(e.addr, &pki.client(None), &adt("BAD2", 2));
    assert!(anonymous.is_err(), "{anonymous:?}");
    let ack = send_tls(e.addr, &pki.client(Some(&pki.pas)), &adt("GOOD1", 3)).expect("ACK");
    assert!(ack.contains("MSA|AA|GOOD1"), "{ack}");

    let ids = e
        .store_with(1)
        .control_ids(wyvern_store::InboxStatus::Accepted)
        .expect("ids");
    assert_eq!(ids, ["GOOD1"]);
    assert_eq!(refused(&e, "e2e", "tls_handshake"), 2);
    let log = e.log();
    assert!(
        log.contains("not signed by a CA this side trusts"),
        "the log says why: {log}"
    );
    assert!(log.contains("requires one"), "{log}");
    // Refusals are audited, by address and reason.
    assert!(e.terminate().success());
    let out = crate::harness::wyvern_on_store(&["audit", "export"], &e.store_dir());
    let events = String::from_utf8_lossy(&out.stdout);
    assert!(
        events.contains("the TLS handshake failed"),
        "audited: {events}"
    );
}

/// A server that is not ours presenting an expired certificate, built with rustls directly
/// (our own listener refuses to load one). Counts completed handshakes.
fn expired_server(pki: &Pki) -> (std::net::SocketAddr, Arc<std::sync::atomic::AtomicUsize>) {
    use rustls_pki_types::pem::PemObject;
    let old = pki
        .ca
        .issue(pki.path(), "old", &Leaf::server("localhost").expired());
    let certs: Vec<rustls_pki_types::CertificateDer<'static>> =
        rustls_pki_types::CertificateDer::pem_file_iter(&old.cert)
            .expect("pem")
            .collect::<Result<_, _>>()
            .expect("certs");
    let key = rustls_pki_types::PrivateKeyDer::from_pem_file(&old.key).expect("key");
    wyvern_connectors::tls::install_provider();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("config");
    let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let done = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let count = done.clone();
    std::thread::spawn(move || {
        runtime().block_on(async move {
            listener.set_nonblocking(true).expect("nonblocking");
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            while let Ok((tcp, _)) = listener.accept().await {
                if acceptor.accept(tcp).await.is_ok() {
                    count.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                }
            }
        });
    });
    (addr, done)
}

#[test]
fn the_destination_refuses_a_server_whose_certificate_expired() {
    let pki = Pki::new();
    let (server, handshakes) = expired_server(&pki);
    let e = EngineProcess::start_route(
        "",
        &format!(
            "destinations:\n  - name: onward\n    mllp:\n      connect: {server}\n      tls: {{ ca: {} }}\nretry: {{ backoff: 100ms..200ms }}\n",
            pki.ca_pem.display()
        ),
    );
    let mut w = Wire::connect(e.addr);
    assert!(w.exchange(&adt("EXP1", 1)).contains("MSA|AA|EXP1"));
    wait_until(Duration::from_secs(10), || e.log().contains("has expired"));
    let log = e.log();
    assert!(
        log.contains("the peer's certificate was refused: it has expired"),
        "the delivery failure says why: {log}"
    );
    assert_eq!(
        handshakes.load(std::sync::atomic::Ordering::Relaxed),
        0,
        "no handshake completed"
    );
}

/// Runs `/usr/bin/python3 -c SCRIPT ARGS…` and returns its stdout.
fn python(script: &str, args: &[&str]) -> String {
    let out = std::process::Command::new("/usr/bin/python3")
        .arg("-c")
        .arg(script)
        .args(args)
        .output()
        .expect("python3");
    String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr)
}

/// A Python (OpenSSL) client limited to one TLS version: `CONNECTED <version> <ack>` or
/// `REFUSED <error>`.
const PY_CLIENT: &str = r#"
import socket, ssl, sys
host, port, version, ca, cert, key = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
ctx.load_verify_locations(ca)
ctx.load_cert_chain(cert, key)
v = getattr(ssl.TLSVersion, version)
ctx.minimum_version = v
ctx.maximum_version = v
ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
try:
    s = ctx.wrap_socket(socket.create_connection((host, port), timeout=10), server_hostname="localhost")
    s.sendall(b"\x0bMSH|^~\\&|PAS|RX1|WYVERN|CHIE|20261125143000||ADT^A01^ADT_A01|PY1|P|2.4\rPID|1||9990000018^^^NHS^NH\r\x1c\r")
    ack = b""
    while not ack.endswith(b"\x1c\r"):
        chunk = s.recv(4096)
        if not chunk:
            break
        ack += chunk
    print("CONNECTED", s.version(), ack.decode(errors="replace").replace("\r", "\n"))
except (ssl.SSLError, OSError) as e:
    print("REFUSED", e)
"#;

#[test]
fn plaintext_and_tls_1_1_are_refused_on_a_tls_port_and_the_listener_goes_on() {
    let pki = Pki::new();
    let e = EngineProcess::start(&pki.listener(""));
    // Plaintext MLLP to the TLS port: closed, no ACK.
    let mut plain = Wire::connect(e.addr);
    plain.write(&frame(&adt("PLAIN1", 1)));
    assert_eq!(plain.read_frame_within(Duration::from_secs(5)), None);

    let (host, port) = ("127.0.0.1", e.addr.port().to_string());
    let files = [
        pki.ca_pem.to_str().expect("utf-8"),
        pki.pas.cert.to_str().expect("utf-8"),
        pki.pas.key.to_str().expect("utf-8"),
    ];
    let run = |version: &str| {
        let mut args = vec![host, port.as_str(), version];
        args.extend(files);
        python(PY_CLIENT, &args)
    };
    let old = run("TLSv1_1");
    assert!(old.starts_with("REFUSED"), "TLS 1.1 is refused: {old}");
    let v12 = run("TLSv1_2");
    assert!(
        v12.starts_with("CONNECTED TLSv1.2") && v12.contains("MSA|AA|PY1"),
        "TLS 1.2 is served: {v12}"
    );
    let v13 = send_tls(e.addr, &pki.client(Some(&pki.pas)), &adt("AFTER1", 2)).expect("ACK");
    assert!(v13.contains("MSA|AA|AFTER1"), "{v13}");
    assert_eq!(refused(&e, "e2e", "tls_handshake"), 2);
    let log = e.log();
    assert!(
        log.contains("TLS handshake failed") && log.contains("TLS 1.2 or 1.3"),
        "the log says why: {log}"
    );
}

#[test]
fn a_certificate_reload_is_picked_up_and_open_connections_carry_on() {
    let pki = Pki::new();
    let e = EngineProcess::start(&pki.listener(""));
    let tls = pki.client(Some(&pki.pas));
    let rt = runtime();
    let mut open = rt
        .block_on(MllpClient::connect_with(
            &e.addr.to_string(),
            1 << 20,
            Some(&tls),
        ))
        .expect("connect");
    let ack = rt.block_on(open.send(&adt("OPEN1", 1))).expect("ACK");
    assert!(normalise_ack(&ack).contains("MSA|AA|OPEN1"));

    // A new certificate, for a new name, in the same files; then SIGHUP.
    let next = Leaf {
        names: vec!["mllp-next.example".into()],
        ..Leaf::server("mllp-next.example")
    };
    pki.ca.issue(pki.path(), "server", &next);
    let hup = |log_line: &str, count: usize| {
        let pid = e.pid();
        let ok = std::process::Command::new("kill")
            .args(["-HUP", &pid.to_string()])
            .status()
            .expect("kill -HUP");
        assert!(ok.success());
        wait_until(Duration::from_secs(10), || {
            e.log().matches(log_line).count() >= count
        });
    };
    hup("SIGHUP: TLS certificates and keys read again", 1);
    assert!(e.log().contains("reloaded=1 failed=0"), "{}", e.log());

    let ack = rt
        .block_on(open.send(&adt("OPEN2", 2)))
        .expect("the open connection carries on");
    assert!(normalise_ack(&ack).contains("MSA|AA|OPEN2"));
    let renamed = client(&pki.ca_pem, Some(&pki.pas), Some("mllp-next.example"));
    let ack = send_tls(e.addr, &renamed, &adt("NEW1", 3)).expect("the new certificate");
    assert!(ack.contains("MSA|AA|NEW1"), "{ack}");
    let stale = send_tls(e.addr, &tls, &adt("OLD1", 4)).unwrap_err();
    assert!(stale.contains("not issued for the name"), "{stale}");

    // A broken key: the reload fails, says so, and the last good certificate stays.
    std::fs::write(&pki.server.key, "not a key").expect("write");
    hup("reload failed; the previous keys stay in use", 1);
    let ack = send_tls(e.addr, &renamed, &adt("NEW2", 5)).expect("still served");
    assert!(ack.contains("MSA|AA|NEW2"), "{ack}");
}

#[test]
fn client_certificates_name_who_may_connect_and_as_which_facility() {
    let pki = Pki::new();
    let e = EngineProcess::start(&format!(
        "{}    senders:\n      - {{ certificate: pas.rx1.example, facility: RX1 }}\n",
        pki.listener("      allow_subjects: [pas.rx1.example, ris.rx2.example]\n")
    ));
    let pas = pki.client(Some(&pki.pas));
    let ack = send_tls(e.addr, &pas, &adt_from("RX1", "OWN1", 1)).expect("ACK");
    assert!(ack.contains("MSA|AA|OWN1"), "{ack}");
    let ack = send_tls(e.addr, &pas, &adt_from("RX2", "SPOOF1", 2)).expect("ACK");
    assert!(
        ack.contains("MSA|AR|SPOOF1") && ack.contains("not the sending facility"),
        "a certificate bound to RX1 cannot send as RX2: {ack}"
    );
    let stranger = pki
        .ca
        .issue(pki.path(), "stranger", &Leaf::client("stranger.example"));
    let refused_ack = send_tls(e.addr, &pki.client(Some(&stranger)), &adt("STR1", 3));
    assert!(refused_ack.is_err(), "{refused_ack:?}");
    assert_eq!(refused(&e, "e2e", "subject_not_allowed"), 1);
    assert!(
        e.log().contains("stranger.example"),
        "the refusal names the certificate"
    );
}

#[test]
fn fhir_inbound_over_https_with_client_certificates() {
    let pki = Pki::new();
    let listen = crate::harness::free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir:\n    listen: \"{listen}\"\n    tls:\n      cert: {}\n      key: {}\n      client_ca: {}\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n",
        pki.server.cert.display(),
        pki.server.key.display(),
        pki.ca_pem.display()
    ));
    crate::harness::wait_listening(listen, Duration::from_secs(20));
    let patient = r#"{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}]}"#;
    let curl = |with_cert: bool| {
        let mut c = std::process::Command::new("curl");
        c.args([
            "-s",
            "-o",
            "/dev/null",
            "-w",
            "%{http_code}",
            "--max-time",
            "10",
        ])
        .arg("--cacert")
        .arg(&pki.ca_pem);
        if with_cert {
            c.arg("--cert")
                .arg(&pki.pas.cert)
                .arg("--key")
                .arg(&pki.pas.key);
        }
        c.args(["-H", "Content-Type: application/fhir+json", "-d", patient])
            .arg(format!("https://127.0.0.1:{}/fhir/Patient", listen.port()));
        let out = c.output().expect("curl");
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    assert_eq!(curl(true), "201", "with a client certificate");
    assert_ne!(curl(false), "201", "without one");
    assert_eq!(refused(&e, "fhir-in", "tls_handshake"), 1);
    // Plain HTTP to the HTTPS port gets nothing.
    let (code, _) = crate::harness::http_get(listen, "/fhir/metadata");
    assert_eq!(code, 0);
}

#[test]
fn validate_names_a_missing_or_expired_certificate_and_warns_before_one_expires() {
    let pki = Pki::new();
    let old = pki
        .ca
        .issue(pki.path(), "old", &Leaf::server("localhost").expired());
    let soon = pki.ca.issue(
        pki.path(),
        "soon",
        &Leaf {
            // Valid from an hour ago, so this ends 10½ days from now: "10 day(s)" however
            // long the run takes (it ended exactly 10 days from now, and a validate that ran
            // in a later second than the issue read 9).
            lifetime: Duration::from_secs(10 * 86_400 + 3600 + 12 * 3600),
            ..Leaf::server("localhost")
        },
    );
    let config = tempfile::tempdir().expect("dir");
    let route = |name: &str, port: u16, cert: &Path, key: &Path| {
        std::fs::write(
            config.path().join(format!("{name}.yaml")),
            format!(
                "version: 1\nroute: {name}\nsource:\n  mllp:\n    listen: 127.0.0.1:{port}\n    tls:\n      cert: {}\n      key: {}\n",
                cert.display(),
                key.display()
            ),
        )
        .expect("write");
    };
    route("soon", 40001, &soon.cert, &soon.key);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["validate", "--config"])
        .arg(config.path())
        .output()
        .expect("validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert!(
        err.contains("soon.yaml:7:13: warning: the certificate")
            && err.contains("expires in 10 day(s)"),
        "{err}"
    );
    route("old", 40002, &old.cert, &old.key);
    route("gone", 40003, &pki.path().join("missing.pem"), &old.key);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_wyvern"))
        .args(["validate", "--config"])
        .arg(config.path())
        .output()
        .expect("validate");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("old.yaml:7:13: error: the certificate") && err.contains("expired on"),
        "{err}"
    );
    assert!(
        err.contains("gone.yaml:7:13: error: cannot read the certificate"),
        "{err}"
    );
}
