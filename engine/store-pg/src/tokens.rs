//! The operator API's tokens on the shared store ([`TokenStore`]): made once, accepted by every
//! node. Only the SHA-256 of a secret is kept (`wyvern_store::token_hash`).

use wyvern_store::{StoreFuture, TokenInfo, TokenRole, TokenStore, token_hash};

use crate::Session;

/// One connection, made on first use and again after it breaks.
#[derive(Debug)]
pub struct PgTokens {
    session: Session,
}

impl PgTokens {
    pub fn new(url: impl Into<String>) -> PgTokens {
        PgTokens {
            session: Session::new(url),
        }
    }
}

fn info(r: &tokio_postgres::Row) -> Option<TokenInfo> {
    Some(TokenInfo {
        name: r.get(0),
        role: TokenRole::parse(r.get(1))?,
        created_ms: r.get(2),
    })
}

impl TokenStore for PgTokens {
    fn add(
        &self,
        name: String,
        role: TokenRole,
        secret: String,
        now_ms: i64,
    ) -> StoreFuture<'_, bool> {
        Box::pin(self.session.run(async move |c| {
            let n = c
                .execute(
                    "INSERT INTO api_tokens (name, role, hash, created_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT DO NOTHING",
                    &[&name, &role.as_str(), &token_hash(&secret), &now_ms],
                )
                .await?;
            Ok(n == 1)
        }))
    }

    fn find(&self, secret: String) -> StoreFuture<'_, Option<TokenInfo>> {
        Box::pin(self.session.run(async move |c| {
            let row = c
                .query_opt(
                    "SELECT name, role, created_at FROM api_tokens WHERE hash = $1",
                    &[&token_hash(&secret)],
                )
                .await?;
            Ok(row.as_ref().and_then(info))
        }))
    }

    fn list(&self) -> StoreFuture<'_, Vec<TokenInfo>> {
        Box::pin(self.session.run(async move |c| {
            let rows = c
                .query(
                    "SELECT name, role, created_at FROM api_tokens ORDER BY name",
                    &[],
                )
                .await?;
            Ok(rows.iter().filter_map(info).collect())
        }))
    }

    fn revoke(&self, name: String) -> StoreFuture<'_, bool> {
        Box::pin(self.session.run(async move |c| {
            let n = c
                .execute("DELETE FROM api_tokens WHERE name = $1", &[&name])
                .await?;
            Ok(n == 1)
        }))
    }
}
