//! The stand-in's OAuth2 token endpoint, as NHS APIs run it: client credentials with a JWT
//! client assertion signed RS512 by a key whose public half the server holds. It checks the
//! assertion the way a real one does (signature, iss = sub = client id, aud, exp at most five
//! minutes ahead) and hands out short-lived bearer tokens the FHIR endpoints then require.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{RSA_PKCS1_2048_8192_SHA512, UnparsedPublicKey};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde_json::Value;

#[derive(Debug)]
pub struct OAuthServer {
    /// PKCS#1 RSAPublicKey DER, as ring wants it.
    public_key: Vec<u8>,
    client_id: Option<String>,
    lifetime: Duration,
    tokens: HashMap<String, Instant>,
    pub issued: u64,
}

impl OAuthServer {
    /// From a `BEGIN PUBLIC KEY` PEM (what `openssl pkey -pubout` writes).
    pub fn new(
        public_pem: &[u8],
        client_id: Option<String>,
        lifetime: Duration,
    ) -> Result<OAuthServer, String> {
        let spki = SubjectPublicKeyInfoDer::from_pem_slice(public_pem)
            .map_err(|e| format!("not a PUBLIC KEY PEM: {e}"))?;
        let public_key = rsa_key_of(spki.as_ref()).ok_or("not an RSA public key")?;
        Ok(OAuthServer {
            public_key,
            client_id,
            lifetime,
            tokens: HashMap::new(),
            issued: 0,
        })
    }

    /// Checks a token request's form; returns the token response JSON or why not.
    pub fn grant(&mut self, form: &HashMap<String, String>) -> Result<Value, String> {
        let field = |k: &str| form.get(k).map(String::as_str).unwrap_or("");
        if field("grant_type") != "client_credentials" {
            return Err("grant_type must be client_credentials".into());
        }
        if field("client_assertion_type")
            != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        {
            return Err("client_assertion_type must be the jwt-bearer URN".into());
        }
        let claims = self.verify(field("client_assertion"))?;
        let text = |k: &str| claims.get(k).and_then(Value::as_str).unwrap_or("");
        if text("iss").is_empty() || text("iss") != text("sub") {
            return Err("iss and sub must both be the client id".into());
        }
        if let Some(id) = &self.client_id
            && text("iss") != id
        {
            return Err(format!("unknown client id {:?}", text("iss")));
        }
        if !text("aud").ends_with("/oauth2/token") {
            return Err("aud must be the token endpoint's URL".into());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let exp = claims.get("exp").and_then(Value::as_u64).unwrap_or(0);
        if exp <= now || exp > now + 300 + 5 {
            return Err("exp must be in the future and at most 5 minutes ahead".into());
        }
        if text("jti").is_empty() {
            return Err("jti is missing".into());
        }
        let token = format!("{:032x}", rand_u128());
        self.tokens
            .insert(token.clone(), Instant::now() + self.lifetime);
        self.issued += 1;
        Ok(serde_json::json!({
            "access_token": token,
            "expires_in": self.lifetime.as_secs().to_string(),
            "token_type": "Bearer",
        }))
    }

    /// The claims of a correctly signed RS512 JWT.
    fn verify(&self, jwt: &str) -> Result<Value, String> {
        let mut parts = jwt.split('.');
        let (Some(h), Some(c), Some(s), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err("client_assertion is not a JWT (three dot-separated parts)".into());
        };
        let decode = |p: &str| {
            URL_SAFE_NO_PAD
                .decode(p)
                .map_err(|_| "bad base64url".to_string())
        };
        let header: Value = serde_json::from_slice(&decode(h)?).map_err(|e| e.to_string())?;
        if header.get("alg").and_then(Value::as_str) != Some("RS512") {
            return Err("alg must be RS512".into());
        }
        let sig = decode(s)?;
        UnparsedPublicKey::new(&RSA_PKCS1_2048_8192_SHA512, &self.public_key)
            .verify(format!("{h}.{c}").as_bytes(), &sig)
            .map_err(|_| "the JWT signature does not verify with the registered key".to_string())?;
        serde_json::from_slice(&decode(c)?).map_err(|e| e.to_string())
    }

    /// Whether an `Authorization` header carries a live token.
    pub fn allows(&self, authorization: Option<&str>) -> bool {
        authorization
            .and_then(|a| a.strip_prefix("Bearer "))
            .and_then(|t| self.tokens.get(t))
            .is_some_and(|until| Instant::now() < *until)
    }
}

fn rand_u128() -> u128 {
    let mut b = [0u8; 16];
    let _ = ring::rand::SecureRandom::fill(&ring::rand::SystemRandom::new(), &mut b);
    u128::from_le_bytes(b)
}

/// The RSAPublicKey inside an RSA SubjectPublicKeyInfo: SEQUENCE { AlgorithmIdentifier,
/// BIT STRING { 0 unused bits, RSAPublicKey } }.
fn rsa_key_of(spki: &[u8]) -> Option<Vec<u8>> {
    let (tag, body, _) = der(spki)?;
    if tag != 0x30 {
        return None;
    }
    let (alg_tag, alg, rest) = der(body)?;
    // rsaEncryption: 1.2.840.113549.1.1.1
    let rsa_oid = [
        0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01,
    ];
    if alg_tag != 0x30 || !alg.starts_with(&rsa_oid) {
        return None;
    }
    let (bits_tag, bits, _) = der(rest)?;
    (bits_tag == 0x03 && bits.first() == Some(&0)).then(|| bits[1..].to_vec())
}

/// One DER element: (tag, contents, what follows).
fn der(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let tag = *b.first()?;
    let first = *b.get(1)?;
    let (len, head) = if first < 0x80 {
        (usize::from(first), 2)
    } else {
        let n = usize::from(first & 0x7f);
        let bytes = b.get(2..2 + n)?;
        (
            bytes.iter().fold(0usize, |a, &x| (a << 8) | usize::from(x)),
            2 + n,
        )
    };
    let body = b.get(head..head + len)?;
    Some((tag, body, &b[head + len..]))
}
