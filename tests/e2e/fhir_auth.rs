//! OAuth2 bearer tokens on FHIR inbound (`auth: { jwt: … }`): a request without a token, with an
//! expired one, one signed by another key or one lacking a scope gets 401/403 with an
//! OperationOutcome and `WWW-Authenticate`, and nothing of it is stored; a good token's
//! organisation (its ODS code) is kept with the message.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use serde_json::{Value, json};

use crate::harness::{EngineProcess, free_addr, http_raw, wait_listening};
use crate::peers::refused;

const PATIENT: &str = r#"{"resourceType":"Patient","identifier":[{"system":"https://fhir.nhs.uk/Id/nhs-number","value":"9990000018"}]}"#;
const AUDIENCE: &str = "https://wyvern.example/fhir";

/// An issuer's signing key, with its JWKS.
pub(crate) struct Issuer {
    key: EcdsaKeyPair,
    pub(crate) jwks: String,
}

impl Issuer {
    pub(crate) fn new(kid: &str) -> Issuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
            .expect("test setup");
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .expect("test setup");
        let p = key.public_key().as_ref();
        let jwks = json!({"keys": [{"kty": "EC", "crv": "P-256", "kid": kid,
            "x": URL_SAFE_NO_PAD.encode(&p[1..33]), "y": URL_SAFE_NO_PAD.encode(&p[33..])}]});
        Issuer {
            key,
            jwks: jwks.to_string(),
        }
    }

    pub(crate) fn token(&self, kid: &str, claims: &Value) -> String {
        let b64 = |v: &Value| URL_SAFE_NO_PAD.encode(v.to_string());
        let input = format!(
            "{}.{}",
            b64(&json!({"alg": "ES256", "kid": kid})),
            b64(claims)
        );
        let sig = self
            .key
            .sign(&SystemRandom::new(), input.as_bytes())
            .expect("test setup");
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }
}

fn claims(ods: &str, scope: &str, exp_in: i64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("test setup")
        .as_secs() as i64;
    json!({"iss": "https://auth.example", "sub": "social-care-platform", "aud": AUDIENCE,
           "exp": now + exp_in, "scope": scope, "ods": ods})
}

/// POST a Patient with `token` (if any): status, headers and body as one text.
fn post(addr: std::net::SocketAddr, token: Option<&str>) -> (u16, String) {
    let auth = token.map_or(String::new(), |t| format!("Authorization: Bearer {t}\r\n"));
    let req = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: test\r\nContent-Type: application/fhir+json\r\n{auth}Content-Length: {}\r\nConnection: close\r\n\r\n{PATIENT}",
        PATIENT.len()
    );
    http_raw(addr, req.as_bytes())
}

#[test]
fn fhir_inbound_takes_only_good_bearer_tokens_and_keeps_the_callers_organisation() {
    let issuer = Issuer::new("k1");
    let keys = tempfile::tempdir().expect("dir");
    let jwks = keys.path().join("jwks.json");
    std::fs::write(&jwks, &issuer.jwks).expect("jwks");
    let listen = free_addr();
    let e = EngineProcess::start_with_route_file(&format!(
        "version: 1\nroute: fhir-in\nsource:\n  fhir:\n    listen: \"{listen}\"\n    auth:\n      jwt:\n        keys: {}\n        issuer: https://auth.example\n        audience: {AUDIENCE}\n        scopes: [system/Patient.write]\n\
         destinations:\n  - name: archive\n    file: {{ dir: \"{{dir}}/out\" }}\n",
        jwks.display()
    ));
    wait_listening(listen, Duration::from_secs(20));

    let (code, body) = post(listen, None);
    assert_eq!(code, 401, "{body}");
    assert!(body.contains("OperationOutcome") && body.contains("requires an OAuth2 bearer token"));
    let (code, body) = post(
        listen,
        Some(&issuer.token("k1", &claims("X26", "system/Patient.write", -120))),
    );
    assert_eq!(code, 401);
    assert!(body.contains("expired"), "{body}");
    let stranger = Issuer::new("k1");
    let (code, body) = post(
        listen,
        Some(&stranger.token("k1", &claims("X26", "system/Patient.write", 300))),
    );
    assert_eq!(code, 401);
    assert!(body.contains("signature does not verify"), "{body}");
    let (code, body) = post(
        listen,
        Some(&issuer.token("k1", &claims("X26", "system/Observation.read", 300))),
    );
    assert_eq!(code, 403);
    assert!(body.contains("lacks the scope"), "{body}");

    let (code, body) = post(
        listen,
        Some(&issuer.token("k1", &claims("X26", "system/Patient.write", 300))),
    );
    assert_eq!(code, 201, "{body}");
    let reader = e.store_with(1);
    let rows = reader
        .list(&wyvern_store::InboxQuery::default())
        .expect("list");
    assert_eq!(rows.len(), 1, "nothing refused was stored");
    assert_eq!(rows[0].sending_facility.as_deref(), Some("X26"));
    assert_eq!(
        rows[0].sending_application.as_deref(),
        Some("social-care-platform")
    );
    assert_eq!(refused(&e, "fhir-in", "token"), 4);

    // The issuer rotates its key: the new JWKS is read on SIGHUP, no restart.
    let rotated = Issuer::new("k2");
    std::fs::write(&jwks, &rotated.jwks).expect("jwks");
    let ok = std::process::Command::new("kill")
        .args(["-HUP", &e.pid().to_string()])
        .status()
        .expect("kill -HUP");
    assert!(ok.success());
    crate::harness::wait_until(Duration::from_secs(10), || e.log().contains("reloaded=1"));
    let (code, body) = post(
        listen,
        Some(&rotated.token("k2", &claims("X26", "system/Patient.write", 300))),
    );
    assert_eq!(code, 201, "a token signed with the new key: {body}");
    let (code, _) = post(
        listen,
        Some(&issuer.token("k1", &claims("X26", "system/Patient.write", 300))),
    );
    assert_eq!(code, 401, "the old key is gone");
}
