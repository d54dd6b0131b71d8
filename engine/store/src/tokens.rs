//! The operator API's bearer tokens: a name, a role, and the SHA-256 of the secret — never the
//! secret itself, which is shown once when the token is made. Looking a token up hashes what
//! the caller sent and finds the row by that hash, so the secret is never compared byte by
//! byte and never stored.

use std::path::Path;
use std::time::Duration;

use rusqlite::{Connection, OpenFlags, OptionalExtension, params};
use sha2::{Digest, Sha256};

use crate::StoreError;

/// What a token may do; each role includes the ones before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum TokenRole {
    /// Routes, counters, message metadata; no message bodies.
    Viewer,
    /// And bodies, retry, replay, purge.
    Operator,
    /// And tokens.
    Admin,
}

impl TokenRole {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenRole::Viewer => "viewer",
            TokenRole::Operator => "operator",
            TokenRole::Admin => "admin",
        }
    }

    pub fn parse(s: &str) -> Option<TokenRole> {
        match s {
            "viewer" => Some(TokenRole::Viewer),
            "operator" => Some(TokenRole::Operator),
            "admin" => Some(TokenRole::Admin),
            _ => None,
        }
    }
}

/// A token as listed (its secret is not kept).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenInfo {
    pub name: String,
    pub role: TokenRole,
    pub created_ms: i64,
}

/// The token table.
#[derive(Debug)]
pub struct Tokens {
    conn: Connection,
}

/// What is kept of a token's secret: its SHA-256 (the same in every store).
pub fn token_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

impl Tokens {
    pub fn open(dir: &Path) -> Result<Tokens, StoreError> {
        let conn = crate::schema::connect(dir, OpenFlags::default(), Duration::from_secs(10))?;
        // Brings an older store up to the token table.
        crate::schema::prepare_writer(&conn)?;
        conn.execute_batch("PRAGMA synchronous = FULL;")
            .map_err(StoreError::Write)?;
        Ok(Tokens { conn })
    }

    /// Adds a token named `name` whose secret is `secret`; `false` if the name is taken.
    pub fn add(
        &self,
        name: &str,
        role: TokenRole,
        secret: &str,
        now_ms: i64,
    ) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute(
                "INSERT OR IGNORE INTO api_tokens (name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4)",
                params![name, role.as_str(), token_hash(secret), now_ms],
            )
            .map_err(StoreError::Write)?;
        Ok(n == 1)
    }

    /// The token whose secret this is.
    pub fn find(&self, secret: &str) -> Result<Option<TokenInfo>, StoreError> {
        self.conn
            .query_row(
                "SELECT name, role, created_at FROM api_tokens WHERE hash = ?1",
                params![token_hash(secret)],
                |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?)),
            )
            .optional()
            .map_err(StoreError::Query)
            .map(|row| {
                row.and_then(|(name, role, created_ms)| {
                    Some(TokenInfo {
                        name,
                        role: TokenRole::parse(&role)?,
                        created_ms,
                    })
                })
            })
    }

    pub fn list(&self) -> Result<Vec<TokenInfo>, StoreError> {
        let mut stmt = self
            .conn
            .prepare("SELECT name, role, created_at FROM api_tokens ORDER BY name")
            .map_err(StoreError::Query)?;
        let rows = stmt
            .query_map([], |r| {
                Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?, r.get(2)?))
            })
            .map_err(StoreError::Query)?;
        let mut out = Vec::new();
        for row in rows {
            let (name, role, created_ms) = row.map_err(StoreError::Query)?;
            if let Some(role) = TokenRole::parse(&role) {
                out.push(TokenInfo {
                    name,
                    role,
                    created_ms,
                });
            }
        }
        Ok(out)
    }

    /// Removes the token `name`; `false` if there was none.
    pub fn revoke(&self, name: &str) -> Result<bool, StoreError> {
        let n = self
            .conn
            .execute("DELETE FROM api_tokens WHERE name = ?1", params![name])
            .map_err(StoreError::Write)?;
        Ok(n == 1)
    }
}

/// Where the operator API's tokens live: the store folder's ([`EmbeddedTokens`]), or the
/// cluster's on the shared store (`wyvern-store-pg`), so one token works on every node.
pub trait TokenStore: Send + Sync + std::fmt::Debug {
    /// Adds a token; `false` if the name is taken.
    fn add(
        &self,
        name: String,
        role: TokenRole,
        secret: String,
        now_ms: i64,
    ) -> crate::StoreFuture<'_, bool>;
    /// The token whose secret this is.
    fn find(&self, secret: String) -> crate::StoreFuture<'_, Option<TokenInfo>>;
    /// Every token, by name.
    fn list(&self) -> crate::StoreFuture<'_, Vec<TokenInfo>>;
    /// Removes a token; `false` if there was none.
    fn revoke(&self, name: String) -> crate::StoreFuture<'_, bool>;
}

/// The tokens in the embedded store's folder; each call opens its own connection on the
/// blocking pool.
#[derive(Debug, Clone)]
pub struct EmbeddedTokens {
    pub dir: std::path::PathBuf,
}

impl EmbeddedTokens {
    fn run<T: Send + 'static>(
        &self,
        f: impl FnOnce(Tokens) -> Result<T, StoreError> + Send + 'static,
    ) -> crate::StoreFuture<'_, T> {
        let dir = self.dir.clone();
        crate::shared::blocking(move || f(Tokens::open(&dir)?))
    }
}

impl TokenStore for EmbeddedTokens {
    fn add(
        &self,
        name: String,
        role: TokenRole,
        secret: String,
        now_ms: i64,
    ) -> crate::StoreFuture<'_, bool> {
        self.run(move |t| t.add(&name, role, &secret, now_ms))
    }

    fn find(&self, secret: String) -> crate::StoreFuture<'_, Option<TokenInfo>> {
        self.run(move |t| t.find(&secret))
    }

    fn list(&self) -> crate::StoreFuture<'_, Vec<TokenInfo>> {
        self.run(|t| t.list())
    }

    fn revoke(&self, name: String) -> crate::StoreFuture<'_, bool> {
        self.run(move |t| t.revoke(&name))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_is_found_by_its_secret_and_never_stored() {
        let dir = tempfile::tempdir().unwrap();
        drop(crate::Store::open(crate::StoreOptions::new(dir.path())).unwrap());
        let t = Tokens::open(dir.path()).unwrap();
        assert!(
            t.add("alice", TokenRole::Operator, "wyv_secret1", 1)
                .unwrap()
        );
        assert!(
            !t.add("alice", TokenRole::Admin, "wyv_other", 2).unwrap(),
            "names are unique"
        );
        let found = t.find("wyv_secret1").unwrap().unwrap();
        assert_eq!(
            (found.name.as_str(), found.role),
            ("alice", TokenRole::Operator)
        );
        assert!(t.find("wyv_secret2").unwrap().is_none());
        let db = std::fs::read(dir.path().join(crate::DB_FILE)).unwrap_or_default();
        let wal =
            std::fs::read(dir.path().join(format!("{}-wal", crate::DB_FILE))).unwrap_or_default();
        for bytes in [db, wal] {
            assert!(
                !bytes.windows(11).any(|w| w == b"wyv_secret1"),
                "the secret is not on disk"
            );
        }
        assert_eq!(t.list().unwrap().len(), 1);
        assert!(t.revoke("alice").unwrap());
        assert!(t.find("wyv_secret1").unwrap().is_none());
        assert!(TokenRole::Viewer < TokenRole::Operator && TokenRole::Operator < TokenRole::Admin);
    }
}
