//! The stand-in's OAuth2 token endpoint, as NHS APIs run it: client credentials with a JWT
//! client assertion signed RS512 by a key whose public half the server holds. It checks the
//! assertion the way a real one does (signature, iss = sub = client id, aud, exp at most five
//! minutes ahead) and hands out short-lived bearer tokens the FHIR endpoints then require.

use std::collections::HashMap;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::Value;

#[derive(Debug)]
pub struct OAuthServer {
    public_key: wyvern_connectors::jwt::JwtKeys,
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
    ) -> Result<OAuthServer, wyvern_connectors::jwt::KeyProblem> {
        let public_key = wyvern_connectors::jwt::JwtKeys::from_pem(public_pem)?;
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
        let header = jwt
            .split('.')
            .next()
            .and_then(|h| URL_SAFE_NO_PAD.decode(h).ok())
            .and_then(|h| serde_json::from_slice::<Value>(&h).ok());
        if header
            .as_ref()
            .and_then(|h| h.get("alg"))
            .and_then(Value::as_str)
            != Some("RS512")
        {
            return Err("alg must be RS512".into());
        }
        wyvern_connectors::jwt::signed_claims(jwt, &self.public_key)
            .map(Value::Object)
            .map_err(|e| format!("client_assertion: {e}"))
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
