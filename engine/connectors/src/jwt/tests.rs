use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::SystemRandom;
use ring::signature::{
    ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair, RSA_PKCS1_SHA512, RsaKeyPair,
};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Value, json};

use super::*;

const NOW: u64 = 1_800_000_000;
const RSA_KEY: &[u8] = include_bytes!("../../../../tests/fixtures/oauth2/client.key");
const RSA_PUB: &[u8] = include_bytes!("../../../../tests/fixtures/oauth2/client.pub.pem");

fn b64(v: &Value) -> String {
    URL_SAFE_NO_PAD.encode(serde_json::to_vec(v).unwrap())
}

/// An ES256 key, its JWKS (kid "k1"), and a signer.
fn ec() -> (EcdsaKeyPair, JwtKeys) {
    let rng = SystemRandom::new();
    let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
    let pair =
        EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
    let point = pair.public_key().as_ref();
    let jwks = json!({"keys": [
        {"kty": "RSA", "kid": "other", "n": "AQAB", "e": "AQAB"},
        {"kty": "EC", "crv": "P-256", "kid": "k1", "use": "sig",
         "x": URL_SAFE_NO_PAD.encode(&point[1..33]), "y": URL_SAFE_NO_PAD.encode(&point[33..])},
    ]});
    (
        pair,
        JwtKeys::from_jwks(jwks.to_string().as_bytes()).unwrap(),
    )
}

fn es256(pair: &EcdsaKeyPair, header: Value, claims: Value) -> String {
    let input = format!("{}.{}", b64(&header), b64(&claims));
    let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
}

fn claims() -> Value {
    json!({"iss": "https://auth.example", "sub": "social-care-platform", "aud": ["https://wyvern.example/fhir"],
           "exp": NOW + 300, "nbf": NOW - 10, "scope": "system/Patient.write system/Bundle.write", "ods": "X26"})
}

fn expect() -> Expect {
    Expect {
        issuer: Some("https://auth.example".into()),
        audience: "https://wyvern.example/fhir".into(),
        scopes: vec!["system/Patient.write".into()],
        organisation_claim: Some("ods".into()),
        leeway: 30,
    }
}

#[test]
fn a_good_es256_token_names_the_caller_and_its_organisation() {
    let (pair, keys) = ec();
    let t = es256(&pair, json!({"alg": "ES256", "kid": "k1"}), claims());
    assert_eq!(
        verify(&t, &keys, &expect(), NOW),
        Ok(Caller {
            client: Some("social-care-platform".into()),
            organisation: Some("X26".into()),
            purpose: None,
        })
    );
}

#[test]
fn a_good_rs512_token_verifies_against_a_pem_public_key() {
    let der = PrivatePkcs8KeyDer::from_pem_slice(RSA_KEY).unwrap();
    let pair = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).unwrap();
    let input = format!("{}.{}", b64(&json!({"alg": "RS512"})), b64(&claims()));
    let mut sig = vec![0; pair.public().modulus_len()];
    pair.sign(
        &RSA_PKCS1_SHA512,
        &SystemRandom::new(),
        input.as_bytes(),
        &mut sig,
    )
    .unwrap();
    let t = format!("{input}.{}", URL_SAFE_NO_PAD.encode(&sig));
    let keys = JwtKeys::from_pem(RSA_PUB).unwrap();
    assert!(verify(&t, &keys, &expect(), NOW).is_ok());
    // The same token with one claim changed no longer verifies.
    let mut forged = claims();
    forged["ods"] = json!("RX1");
    let parts: Vec<&str> = t.split('.').collect();
    let t2 = format!("{}.{}.{}", parts[0], b64(&forged), parts[2]);
    assert_eq!(
        verify(&t2, &keys, &expect(), NOW),
        Err(JwtError::BadSignature)
    );
}

#[test]
fn each_failed_check_is_named() {
    let (pair, keys) = ec();
    let sign = |claims: Value| es256(&pair, json!({"alg": "ES256", "kid": "k1"}), claims);
    let with = |k: &str, v: Value| {
        let mut c = claims();
        c[k] = v;
        sign(c)
    };
    let e = |t: &str| verify(t, &keys, &expect(), NOW).unwrap_err();
    assert_eq!(e(&with("exp", json!(NOW - 100))), JwtError::Expired(100));
    assert_eq!(
        e(&with("nbf", json!(NOW + 100))),
        JwtError::NotYetValid(100)
    );
    assert!(matches!(
        e(&with("iss", json!("https://elsewhere"))),
        JwtError::Issuer { .. }
    ));
    assert!(matches!(
        e(&with("aud", json!("https://other/fhir"))),
        JwtError::Audience(_)
    ));
    let scope = e(&with("scope", json!("system/Observation.read")));
    assert_eq!(scope, JwtError::MissingScope("system/Patient.write".into()));
    assert!(scope.is_forbidden());
    let ods = e(&with("ods", json!("")));
    assert_eq!(ods, JwtError::NoOrganisation("ods".into()));
    assert!(ods.is_forbidden());
    let mut no_exp = claims();
    no_exp.as_object_mut().unwrap().remove("exp");
    assert_eq!(e(&sign(no_exp)), JwtError::NoExpiry);
    // Claims at the edges of u64 neither overflow nor pass by wrapping.
    assert!(verify(&with("exp", json!(u64::MAX)), &keys, &expect(), NOW).is_ok());
    assert_eq!(
        e(&with("nbf", json!(u64::MAX))),
        JwtError::NotYetValid(u64::MAX - NOW)
    );
    // Within the leeway, an expired token still passes.
    assert!(verify(&with("exp", json!(NOW - 10)), &keys, &expect(), NOW).is_ok());
    // Header problems.
    let t = sign(claims());
    let body = t.split_once('.').unwrap().1;
    for alg in ["none", "HS256"] {
        let forged = format!("{}.{body}", b64(&json!({"alg": alg})));
        assert_eq!(e(&forged), JwtError::Algorithm(alg.into()), "{alg}");
    }
    let other_kid = format!("{}.{body}", b64(&json!({"alg": "ES256", "kid": "nope"})));
    assert_eq!(e(&other_kid), JwtError::UnknownKey("nope".into()));
    assert!(matches!(e("abc"), JwtError::Malformed(_)));
    assert!(matches!(e("a.b.c"), JwtError::Malformed(_)));
    assert!(!JwtError::BadSignature.is_forbidden());
}

/// Each refusal says what is wrong with the file.
#[test]
fn bad_key_files_are_refused() {
    use crate::jwt::KeyProblem;
    let jwks = |s: &str| JwtKeys::from_jwks(s.as_bytes()).err();
    assert!(matches!(
        jwks(r#"{"keys": []}"#),
        Some(KeyProblem::NoUsableKey)
    ));
    assert!(matches!(jwks("{}"), Some(KeyProblem::NoKeysArray)));
    assert!(matches!(jwks("{"), Some(KeyProblem::NotJson(_))));
    assert!(matches!(
        jwks(r#"{"keys": [{"kty": "RSA", "n": "!", "e": "AQAB"}]}"#),
        Some(KeyProblem::BadField("n"))
    ));
    assert!(matches!(
        JwtKeys::from_pem(b"not pem").err(),
        Some(KeyProblem::NoPublicKeyBlock(_))
    ));
}
