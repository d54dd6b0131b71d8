//! How a FHIR destination proves who it is: a fixed bearer token, or OAuth2 client
//! credentials with a signed JWT (RFC 7523 `private_key_jwt`, RS512) — the pattern NHS APIs
//! use for application-restricted access. The access token is cached until shortly before it
//! expires and forgotten when the FHIR server answers 401.
//!
//! The JWT is three base64url parts signed with ring (already in the tree for TLS) rather than
//! a JWT crate: the one claim set and one algorithm needed are a few lines, and a JWT crate
//! would bring a second RSA implementation.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::rand::{SecureRandom, SystemRandom};
use ring::signature::{RSA_PKCS1_SHA512, RsaKeyPair};
use rustls_pki_types::PrivatePkcs8KeyDer;
use rustls_pki_types::pem::PemObject;

/// OAuth2 client credentials with a signed JWT, secrets already resolved.
#[derive(Clone)]
pub struct OAuth2Spec {
    pub token_url: String,
    pub client_id: String,
    /// PKCS#8 PEM of the RSA private key.
    pub key_pem: String,
    pub kid: Option<String>,
    pub scope: Option<String>,
}

impl std::fmt::Debug for OAuth2Spec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OAuth2Spec")
            .field("token_url", &self.token_url)
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

/// How requests are authorised.
#[derive(Debug, Clone)]
pub enum FhirAuthSpec {
    None,
    Bearer(String),
    OAuth2(OAuth2Spec),
}

/// Signs client assertions and keeps the current access token.
pub(crate) struct TokenSource {
    spec: OAuth2Spec,
    key: RsaKeyPair,
    rng: SystemRandom,
    /// Held across a token request, so parallel deliveries that find no token wait for one
    /// request instead of each making their own.
    cached: tokio::sync::Mutex<Option<(String, Instant)>>,
}

impl std::fmt::Debug for TokenSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenSource")
            .field("spec", &self.spec)
            .finish_non_exhaustive()
    }
}

/// An assertion lives five minutes, the most NHS token endpoints accept.
const ASSERTION_LIFETIME: u64 = 300;
/// A token is renewed this long before the server said it expires.
const RENEW_EARLY: Duration = Duration::from_secs(30);

#[derive(serde::Deserialize)]
struct TokenResponse {
    access_token: String,
    /// Seconds; some servers send it as a string.
    #[serde(default)]
    expires_in: Option<serde_json::Value>,
}

impl TokenSource {
    /// Parses the key now, so a bad key stops the engine at start, not at the first message.
    pub(crate) fn new(spec: OAuth2Spec) -> Result<TokenSource, String> {
        let der = PrivatePkcs8KeyDer::from_pem_slice(spec.key_pem.as_bytes()).map_err(|e| {
            format!("the OAuth2 key is not a PKCS#8 PEM private key (BEGIN PRIVATE KEY): {e}")
        })?;
        let key = RsaKeyPair::from_pkcs8(der.secret_pkcs8_der()).map_err(|e| {
            format!("the OAuth2 key is not a usable RSA key (2048 bits or more): {e}")
        })?;
        Ok(TokenSource {
            spec,
            key,
            rng: SystemRandom::new(),
            cached: tokio::sync::Mutex::new(None),
        })
    }

    /// A signed client assertion valid from `now` (seconds since the epoch).
    pub(crate) fn assertion(&self, now: u64) -> Result<String, String> {
        let mut jti = [0u8; 16];
        self.rng
            .fill(&mut jti)
            .map_err(|_| "no randomness for the JWT id".to_string())?;
        let mut header = serde_json::json!({ "alg": "RS512", "typ": "JWT" });
        if let Some(kid) = &self.spec.kid {
            header["kid"] = kid.as_str().into();
        }
        let claims = serde_json::json!({
            "iss": self.spec.client_id,
            "sub": self.spec.client_id,
            "aud": self.spec.token_url,
            "jti": jti.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "iat": now,
            "exp": now + ASSERTION_LIFETIME,
        });
        let signing_input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA512,
                &self.rng,
                signing_input.as_bytes(),
                &mut sig,
            )
            .map_err(|_| "cannot sign the JWT".to_string())?;
        Ok(format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig)))
    }

    /// The current access token, fetching a new one when there is none or it is about to
    /// expire. Errors say what the token endpoint answered.
    pub(crate) async fn token(&self, http: &reqwest::Client) -> Result<String, String> {
        let mut cached = self.cached.lock().await;
        if let Some((token, until)) = cached.as_ref()
            && Instant::now() < *until
        {
            return Ok(token.clone());
        }
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        let assertion = self.assertion(now)?;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            (
                "client_assertion_type",
                "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            ),
            ("client_assertion", assertion.as_str()),
        ];
        if let Some(scope) = &self.spec.scope {
            form.push(("scope", scope));
        }
        let url = &self.spec.token_url;
        let resp = http
            .post(url)
            .form(&form)
            .send()
            .await
            .map_err(|e| format!("token request to {url}: {e}"))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if !status.is_success() {
            let body: String = body.chars().take(300).collect();
            return Err(format!(
                "token endpoint {url} answered HTTP {status}: {body} (check client_id, kid and key)"
            ));
        }
        let t: TokenResponse = serde_json::from_str(&body)
            .map_err(|e| format!("token endpoint {url} sent no access_token: {e}"))?;
        let lifetime = t
            .expires_in
            .and_then(|v| v.as_u64().or_else(|| v.as_str()?.parse().ok()))
            .unwrap_or(300);
        let until = Instant::now() + Duration::from_secs(lifetime).saturating_sub(RENEW_EARLY);
        *cached = Some((t.access_token.clone(), until));
        Ok(t.access_token)
    }

    /// Drops the cached token (the server refused it).
    pub(crate) async fn forget(&self) {
        *self.cached.lock().await = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn source() -> TokenSource {
        TokenSource::new(OAuth2Spec {
            token_url: "https://auth.example.invalid/oauth2/token".into(),
            client_id: "client-1".into(),
            key_pem: include_str!("../../../../tests/fixtures/oauth2/client.key").into(),
            kid: Some("k1".into()),
            scope: None,
        })
        .expect("the fixture key")
    }

    fn part(jwt: &str, n: usize) -> serde_json::Value {
        let p = jwt.split('.').nth(n).unwrap();
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(p).unwrap()).unwrap()
    }

    #[test]
    fn the_assertion_carries_the_nhs_claims() {
        let jwt = source().assertion(1_800_000_000).unwrap();
        assert_eq!(jwt.split('.').count(), 3);
        let header = part(&jwt, 0);
        assert_eq!(header["alg"], "RS512");
        assert_eq!(header["kid"], "k1");
        let claims = part(&jwt, 1);
        assert_eq!(claims["iss"], "client-1");
        assert_eq!(claims["sub"], "client-1");
        assert_eq!(claims["aud"], "https://auth.example.invalid/oauth2/token");
        assert_eq!(claims["exp"], 1_800_000_300u64);
        assert_eq!(claims["jti"].as_str().unwrap().len(), 32);
        let sig = URL_SAFE_NO_PAD
            .decode(jwt.split('.').nth(2).unwrap())
            .unwrap();
        assert_eq!(sig.len(), 256, "RSA-2048 signature");
        let again = source().assertion(1_800_000_000).unwrap();
        assert_ne!(
            part(&again, 1)["jti"],
            claims["jti"],
            "a fresh jti each time"
        );
    }

    #[test]
    fn a_key_that_is_not_pkcs8_rsa_is_refused_at_start() {
        let e = TokenSource::new(OAuth2Spec {
            token_url: String::new(),
            client_id: String::new(),
            key_pem: "not a key".into(),
            kid: None,
            scope: None,
        })
        .unwrap_err();
        assert!(e.contains("PKCS#8"), "{e}");
    }
}
