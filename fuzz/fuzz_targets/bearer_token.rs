//! A bearer token as a caller sends it (any bytes after `Bearer `), verified against an RSA and
//! a P-256 key. Invariants: it never panics, and without a valid signature nothing verifies.
#![no_main]

use libfuzzer_sys::fuzz_target;
use wyvern_connectors::jwt::{Expect, JwtKeys, verify};

const RSA_PUB: &[u8] = include_bytes!("../../tests/fixtures/oauth2/client.pub.pem");
const JWKS: &str = r#"{"keys": [{"kty": "EC", "crv": "P-256", "kid": "k1",
  "x": "f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU", "y": "x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"},
  {"kty": "RSA", "kid": "r1", "n": "AQAB", "e": "AQAB"}]}"#;

fuzz_target!(|data: &[u8]| {
    let token = String::from_utf8_lossy(data);
    let expect = Expect {
        issuer: Some("https://auth.example".into()),
        audience: "https://wyvern.example/fhir".into(),
        scopes: vec!["system/Patient.write".into()],
        organisation_claim: Some("ods".into()),
        leeway: 60,
    };
    for keys in [
        JwtKeys::from_pem(RSA_PUB).expect("the fixture key"),
        JwtKeys::from_jwks(JWKS.as_bytes()).expect("the JWKS"),
    ] {
        assert!(verify(&token, &keys, &expect, 1_800_000_000).is_err());
    }
});
