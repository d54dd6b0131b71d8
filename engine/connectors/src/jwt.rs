//! Verifying a JSON Web Token (RFC 7519) that a caller presents as an OAuth2 bearer token:
//! the signature (RS256, RS512 or ES256, with ring) against a configured public key or JWKS
//! file, then expiry, not-before, issuer, audience and scopes. Hand-written on purpose: one
//! header, three algorithms and a handful of claims are a page, where a JWT crate would bring a
//! second RSA implementation. Every refusal says which check failed, never the token.

use std::path::Path;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use rustls_pki_types::SubjectPublicKeyInfoDer;
use rustls_pki_types::pem::PemObject;
use serde_json::{Map, Value};
use x509_parser::prelude::FromDer;
use x509_parser::public_key::PublicKey;
use x509_parser::x509::SubjectPublicKeyInfo;

/// Why a token was not accepted. [`JwtError::is_forbidden`] tells 403 (valid, not allowed)
/// from 401 (not a valid token).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum JwtError {
    #[error("the bearer token is not a JWT: {0}")]
    Malformed(String),
    #[error("the token's algorithm {0:?} is not accepted (RS256, RS512 or ES256)")]
    Algorithm(String),
    #[error("no configured key matches the token (kid {0:?})")]
    UnknownKey(String),
    #[error("the token's signature does not verify")]
    BadSignature,
    #[error("the token expired {0} s ago")]
    Expired(u64),
    #[error("the token has no exp claim")]
    NoExpiry,
    #[error("the token is not valid for another {0} s (nbf)")]
    NotYetValid(u64),
    #[error("the token's issuer {found:?} is not {expected:?}")]
    Issuer { expected: String, found: String },
    #[error("the token's audience does not include {0:?}")]
    Audience(String),
    #[error("the token lacks the scope {0:?}")]
    MissingScope(String),
    #[error("the token has no {0:?} claim naming the calling organisation")]
    NoOrganisation(String),
}

impl JwtError {
    /// A valid token that does not grant what is asked (403); anything else is 401.
    pub fn is_forbidden(&self) -> bool {
        matches!(
            self,
            JwtError::MissingScope(_) | JwtError::NoOrganisation(_)
        )
    }
}

/// Why a key file could not be used.
#[derive(Debug, thiserror::Error)]
pub enum KeysError {
    #[error("cannot read the keys file {}: {source}", path.display())]
    Read {
        path: std::path::PathBuf,
        source: std::io::Error,
    },
    #[error("the keys file {} is not a JWKS or a PEM public key: {detail}", path.display())]
    Invalid {
        path: std::path::PathBuf,
        #[source]
        detail: KeyProblem,
    },
}

/// What is wrong with the contents of a keys file (a JWKS or a PEM public key).
#[derive(Debug, thiserror::Error)]
pub enum KeyProblem {
    #[error("no PUBLIC KEY block: {0}")]
    NoPublicKeyBlock(#[source] rustls_pki_types::pem::Error),
    #[error("the PUBLIC KEY block does not hold a key: {0}")]
    NotAKey(String),
    #[error("only RSA and P-256 keys are accepted")]
    Unsupported,
    #[error("not JSON: {0}")]
    NotJson(#[source] serde_json::Error),
    #[error("no \"keys\" array")]
    NoKeysArray,
    #[error("a key has no valid {0:?}")]
    BadField(&'static str),
    #[error("no RSA or P-256 key in it")]
    NoUsableKey,
}

#[derive(Debug, Clone)]
enum Key {
    /// Modulus and exponent, big-endian without leading zeros.
    Rsa { n: Vec<u8>, e: Vec<u8> },
    /// An uncompressed P-256 point.
    P256(Vec<u8>),
}

/// The keys tokens may be signed with, each with its `kid` when a JWKS gave one.
#[derive(Debug, Clone)]
pub struct JwtKeys {
    keys: Vec<(Option<String>, Key)>,
}

impl JwtKeys {
    /// A JWKS (`{"keys": [...]}`, RSA and P-256 keys) or a `BEGIN PUBLIC KEY` PEM.
    pub fn load(path: &Path) -> Result<JwtKeys, KeysError> {
        let bytes = std::fs::read(path).map_err(|source| KeysError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let parsed = if bytes.trim_ascii_start().starts_with(b"{") {
            Self::from_jwks(&bytes)
        } else {
            Self::from_pem(&bytes)
        };
        parsed.map_err(|detail| KeysError::Invalid {
            path: path.to_path_buf(),
            detail,
        })
    }

    pub fn from_pem(pem: &[u8]) -> Result<JwtKeys, KeyProblem> {
        let spki =
            SubjectPublicKeyInfoDer::from_pem_slice(pem).map_err(KeyProblem::NoPublicKeyBlock)?;
        let not_a_key = |e: &dyn std::fmt::Display| KeyProblem::NotAKey(e.to_string());
        let (_, info) = SubjectPublicKeyInfo::from_der(spki.as_ref()).map_err(|e| not_a_key(&e))?;
        let key = match info.parsed().map_err(|e| not_a_key(&e))? {
            PublicKey::RSA(rsa) => Key::Rsa {
                n: unpadded(rsa.modulus),
                e: unpadded(rsa.exponent),
            },
            PublicKey::EC(point) => Key::P256(point.data().to_vec()),
            _ => return Err(KeyProblem::Unsupported),
        };
        Ok(JwtKeys {
            keys: vec![(None, key)],
        })
    }

    pub fn from_jwks(json: &[u8]) -> Result<JwtKeys, KeyProblem> {
        let v: Value = serde_json::from_slice(json).map_err(KeyProblem::NotJson)?;
        let list = v
            .get("keys")
            .and_then(Value::as_array)
            .ok_or(KeyProblem::NoKeysArray)?;
        let b64 = |k: &Value, f: &'static str| {
            k.get(f)
                .and_then(Value::as_str)
                .and_then(|s| URL_SAFE_NO_PAD.decode(s).ok())
                .ok_or(KeyProblem::BadField(f))
        };
        let mut keys = Vec::new();
        for k in list {
            let kid = k.get("kid").and_then(Value::as_str).map(str::to_string);
            let key = match (k.get("kty").and_then(Value::as_str), k.get("crv")) {
                (Some("RSA"), _) => Key::Rsa {
                    n: unpadded(&b64(k, "n")?),
                    e: unpadded(&b64(k, "e")?),
                },
                (Some("EC"), Some(c)) if c == "P-256" => {
                    let mut point = vec![4u8];
                    point.extend(b64(k, "x")?);
                    point.extend(b64(k, "y")?);
                    Key::P256(point)
                }
                // Other kinds (encryption keys, other curves) are skipped, as JWKS users do.
                _ => continue,
            };
            keys.push((kid, key));
        }
        if keys.is_empty() {
            return Err(KeyProblem::NoUsableKey);
        }
        Ok(JwtKeys { keys })
    }
}

fn unpadded(b: &[u8]) -> Vec<u8> {
    let first = b.iter().position(|&x| x != 0).unwrap_or(b.len());
    b[first..].to_vec()
}

/// Keys read from a file and read again on SIGHUP (with the TLS material:
/// [`crate::tls::reloader`]), so an issuer's key rotation needs no restart.
pub type KeysFile = crate::tls::Reloadable<JwtKeys>;

/// Reads the keys file now (an error names it) and holds it for reloads.
pub fn load_keys_file(
    owner: impl Into<String>,
    path: &Path,
) -> Result<std::sync::Arc<KeysFile>, KeysError> {
    let first = JwtKeys::load(path)?;
    let path = path.to_path_buf();
    Ok(crate::tls::Reloadable::new(owner, first, move || {
        JwtKeys::load(&path).map_err(|e| e.to_string())
    }))
}

/// What a token must say.
#[derive(Debug, Clone, Default)]
pub struct Expect {
    pub issuer: Option<String>,
    pub audience: String,
    /// Every one must be in the token's `scope` (space-separated) or `scp` (array).
    pub scopes: Vec<String>,
    /// The claim naming the calling organisation (e.g. its ODS code); required when set.
    pub organisation_claim: Option<String>,
    /// Clock skew allowed on exp and nbf, in seconds.
    pub leeway: u64,
}

/// A token that passed: who called, for whom.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    /// `client_id`, else `sub`.
    pub client: Option<String>,
    pub organisation: Option<String>,
    /// Why the caller asks (`reason_for_request`, the GP Connect claim: `directcare`, …).
    pub purpose: Option<String>,
}

/// Verifies `token` at `now` (seconds since 1970).
pub fn verify(token: &str, keys: &JwtKeys, expect: &Expect, now: u64) -> Result<Caller, JwtError> {
    check_claims(&signed_claims(token, keys)?, expect, now)
}

/// The claims of a token whose signature verifies with one of `keys` (nothing else checked:
/// for callers with claim rules of their own, such as a token endpoint's client assertion).
pub fn signed_claims(token: &str, keys: &JwtKeys) -> Result<Map<String, Value>, JwtError> {
    let mut parts = token.split('.');
    let (Some(h), Some(c), Some(s), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(JwtError::Malformed("not three dot-separated parts".into()));
    };
    let decode = |p: &str, what: &str| {
        URL_SAFE_NO_PAD
            .decode(p)
            .map_err(|_| JwtError::Malformed(format!("the {what} is not base64url")))
    };
    let json = |b: Vec<u8>, what: &str| {
        serde_json::from_slice::<Map<String, Value>>(&b)
            .map_err(|_| JwtError::Malformed(format!("the {what} is not a JSON object")))
    };
    let header = json(decode(h, "header")?, "header")?;
    let sig = decode(s, "signature")?;
    let alg = header.get("alg").and_then(Value::as_str).unwrap_or("");
    let kid = header.get("kid").and_then(Value::as_str);
    let signed = &token.as_bytes()[..h.len() + 1 + c.len()];
    let candidates = keys
        .keys
        .iter()
        .filter(|(k, _)| kid.is_none() || k.is_none() || k.as_deref() == kid);
    let (mut any, mut good) = (false, false);
    for (_, key) in candidates {
        let verified = match (alg, key) {
            ("RS256", Key::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA256, signed, &sig)
                .is_ok(),
            ("RS512", Key::Rsa { n, e }) => RsaPublicKeyComponents { n, e }
                .verify(&signature::RSA_PKCS1_2048_8192_SHA512, signed, &sig)
                .is_ok(),
            ("ES256", Key::P256(point)) => {
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(signed, &sig)
                    .is_ok()
            }
            ("RS256" | "RS512" | "ES256", _) => continue,
            _ => return Err(JwtError::Algorithm(alg.to_string())),
        };
        any = true;
        if verified {
            good = true;
            break;
        }
    }
    if !any {
        return Err(JwtError::UnknownKey(kid.unwrap_or("").to_string()));
    }
    if !good {
        return Err(JwtError::BadSignature);
    }
    json(decode(c, "payload")?, "payload")
}

fn check_claims(
    claims: &Map<String, Value>,
    expect: &Expect,
    now: u64,
) -> Result<Caller, JwtError> {
    let text = |k: &str| claims.get(k).and_then(Value::as_str);
    let number = |k: &str| claims.get(k).and_then(Value::as_u64);
    let exp = number("exp").ok_or(JwtError::NoExpiry)?;
    if exp.saturating_add(expect.leeway) <= now {
        return Err(JwtError::Expired(now - exp));
    }
    if let Some(nbf) = number("nbf")
        && nbf > now.saturating_add(expect.leeway)
    {
        return Err(JwtError::NotYetValid(nbf - now));
    }
    if let Some(issuer) = &expect.issuer
        && text("iss") != Some(issuer)
    {
        return Err(JwtError::Issuer {
            expected: issuer.clone(),
            found: text("iss").unwrap_or("").to_string(),
        });
    }
    let audience_ok = match claims.get("aud") {
        Some(Value::String(a)) => *a == expect.audience,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(&expect.audience)),
        _ => false,
    };
    if !audience_ok {
        return Err(JwtError::Audience(expect.audience.clone()));
    }
    let granted: Vec<&str> = match (claims.get("scope"), claims.get("scp")) {
        (Some(Value::String(s)), _) => s.split_whitespace().collect(),
        (_, Some(Value::Array(list))) => list.iter().filter_map(Value::as_str).collect(),
        _ => Vec::new(),
    };
    if let Some(missing) = expect
        .scopes
        .iter()
        .find(|s| !granted.contains(&s.as_str()))
    {
        return Err(JwtError::MissingScope(missing.clone()));
    }
    let organisation = match &expect.organisation_claim {
        None => None,
        Some(claim) => Some(
            text(claim)
                .filter(|o| !o.trim().is_empty())
                .ok_or_else(|| JwtError::NoOrganisation(claim.clone()))?
                .to_string(),
        ),
    };
    Ok(Caller {
        client: text("client_id").or(text("sub")).map(str::to_string),
        organisation,
        purpose: text("reason_for_request").map(str::to_string),
    })
}

#[cfg(test)]
mod tests;
