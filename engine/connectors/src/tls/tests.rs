use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wyvern_testpki::{Ca, Issued, Leaf};

use super::*;

const T: Duration = Duration::from_secs(5);

fn server(dir: &Path, ca: &Ca, client_ca: Option<&Path>) -> std::sync::Arc<ServerTls> {
    let Issued { cert, key } = ca.issue(dir, "server", &Leaf::server("localhost"));
    ServerTls::load(
        "test listener",
        ServerTlsSettings {
            cert,
            key,
            client_ca: client_ca.map(Path::to_path_buf),
        },
    )
    .expect("server TLS")
}

fn client(ca: &Path, identity: Option<Issued>) -> std::sync::Arc<ClientTls> {
    ClientTls::load(
        "test client",
        ClientTlsSettings {
            ca: Some(ca.to_path_buf()),
            cert: identity.as_ref().map(|i| i.cert.clone()),
            key: identity.map(|i| i.key),
            server_name: None,
        },
    )
    .expect("client TLS")
}

/// Connects client to server over an in-memory pipe; both results, and the byte echoed back
/// when both handshakes succeeded.
async fn exchange(
    server: &ServerTls,
    client: &ClientTls,
) -> (Result<Option<PeerCertificate>, String>, Result<u8, String>) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let s = async {
        let mut h = server.accept(a, T).await?;
        let mut byte = [0u8];
        h.stream
            .read_exact(&mut byte)
            .await
            .map_err(|e| describe_io(&e))?;
        h.stream
            .write_all(&byte)
            .await
            .map_err(|e| describe_io(&e))?;
        h.stream.flush().await.map_err(|e| describe_io(&e))?;
        Ok(h.peer)
    };
    let c = async {
        let mut s = client
            .connect(b, "localhost:2575")
            .await
            .map_err(|e| describe_io(&e))?;
        s.write_all(&[42]).await.map_err(|e| describe_io(&e))?;
        s.flush().await.map_err(|e| describe_io(&e))?;
        let mut byte = [0u8];
        s.read_exact(&mut byte).await.map_err(|e| describe_io(&e))?;
        Ok(byte[0])
    };
    tokio::join!(s, c)
}

#[tokio::test]
async fn a_client_trusting_the_ca_talks_and_mtls_names_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_pem = ca.write(dir.path(), "ca");
    let srv = server(dir.path(), &ca, Some(&ca_pem));
    let mut leaf = Leaf::client("pas.rx1.example");
    leaf.names.push("rx1-pas.example".into());
    let id = ca.issue(dir.path(), "client", &leaf);
    let (s, c) = exchange(&srv, &client(&ca_pem, Some(id))).await;
    assert_eq!(c, Ok(42));
    let peer = s.unwrap().expect("a verified client certificate");
    assert!(peer.is_named("pas.rx1.example"));
    assert!(peer.is_named("RX1-PAS.example"));
    assert!(!peer.is_named("pas.rx2.example"));
    assert_eq!(peer.label(), "pas.rx1.example");
}

#[tokio::test]
async fn a_client_certificate_from_another_ca_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_pem = ca.write(dir.path(), "ca");
    let srv = server(dir.path(), &ca, Some(&ca_pem));
    let other = Ca::new("Someone else's CA");
    let id = other.issue(dir.path(), "intruder", &Leaf::client("intruder.example"));
    let (s, _) = exchange(&srv, &client(&ca_pem, Some(id))).await;
    let e = s.unwrap_err();
    assert!(e.contains("not signed by a CA this side trusts"), "{e}");
    // No certificate at all.
    let (s, _) = exchange(&srv, &client(&ca_pem, None)).await;
    let e = s.unwrap_err();
    assert!(e.contains("requires one"), "{e}");
}

#[tokio::test]
async fn a_server_the_client_does_not_trust_or_that_expired_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let other = Ca::new("Other CA");
    let other_pem = other.write(dir.path(), "other");
    let srv = server(dir.path(), &ca, None);
    let (_, c) = exchange(&srv, &client(&other_pem, None)).await;
    assert!(
        c.unwrap_err()
            .contains("not signed by a CA this side trusts")
    );

    // An expired certificate cannot be loaded by our own listener; a foreign server may
    // still present one: build that server with rustls directly.
    let ca_pem = ca.write(dir.path(), "ca");
    let old = ca.issue(dir.path(), "old", &Leaf::server("localhost").expired());
    let e = ServerTls::load(
        "x",
        ServerTlsSettings {
            cert: old.cert.clone(),
            key: old.key.clone(),
            client_ca: None,
        },
    )
    .unwrap_err();
    assert!(matches!(e, TlsError::Expired { .. }), "{e}");
    assert!(e.to_string().contains("expired on"), "{e}");
    let (certs, _) = inspect_pem("certificate", &old.cert).unwrap();
    let key = server::read_key(&old.key).unwrap();
    let config = rustls::ServerConfig::builder()
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .unwrap();
    let (a, b) = tokio::io::duplex(64 * 1024);
    let acceptor = tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config));
    let srv_side = tokio::spawn(async move { acceptor.accept(a).await.map(|_| ()) });
    let c = client(&ca_pem, None).connect(b, "localhost:1").await;
    let e = describe_io(&c.unwrap_err());
    assert!(e.contains("has expired"), "{e}");
    let _ = srv_side.await;
}

#[tokio::test]
async fn a_certificate_for_another_host_is_refused_by_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_pem = ca.write(dir.path(), "ca");
    let srv = server(dir.path(), &ca, None);
    let c = ClientTls::load(
        "c",
        ClientTlsSettings {
            ca: Some(ca_pem),
            server_name: Some("chie-mllp.example".into()),
            ..Default::default()
        },
    )
    .unwrap();
    let (_, r) = exchange(&srv, &c).await;
    let e = r.unwrap_err();
    assert!(e.contains("not issued for the name"), "{e}");
}

#[test]
fn bad_material_is_named() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let a = ca.issue(dir.path(), "a", &Leaf::server("localhost"));
    let b = ca.issue(dir.path(), "b", &Leaf::server("localhost"));
    let load = |cert: &Path, key: &Path| {
        ServerTls::load(
            "x",
            ServerTlsSettings {
                cert: cert.into(),
                key: key.into(),
                client_ca: None,
            },
        )
        .unwrap_err()
        .to_string()
    };
    let missing = dir.path().join("missing.pem");
    assert!(load(&missing, &a.key).contains("cannot read the certificate"));
    assert!(load(&a.key, &a.key).contains("holds no PEM certificate"));
    assert!(load(&a.cert, &a.cert).contains("holds no PEM private key"));
    let e = load(&a.cert, &b.key);
    assert!(e.contains("do not make a TLS identity"), "{e}");
}

#[tokio::test]
async fn a_reload_takes_the_new_certificate_and_a_failed_one_keeps_the_old() {
    let dir = tempfile::tempdir().unwrap();
    let ca = Ca::new("Test CA");
    let ca_pem = ca.write(dir.path(), "ca");
    let srv = server(dir.path(), &ca, None);
    let before = srv.config();
    // A new certificate for the same files.
    ca.issue(dir.path(), "server", &Leaf::server("localhost"));
    srv.reload().unwrap();
    assert!(!std::sync::Arc::ptr_eq(&before, &srv.config()));
    let (_, c) = exchange(&srv, &client(&ca_pem, None)).await;
    assert_eq!(c, Ok(42));
    // A broken file: the reload fails and the listener keeps serving the last good one.
    std::fs::write(dir.path().join("server.key"), "not a key").unwrap();
    let kept = srv.config();
    assert!(srv.reload().is_err());
    assert!(std::sync::Arc::ptr_eq(&kept, &srv.config()));
    let (_, c) = exchange(&srv, &client(&ca_pem, None)).await;
    assert_eq!(c, Ok(42));
}
