//! Personal access tokens of principals, as stored: a public id and a digest of the secret
//! (`confluo-govern` makes and checks them; this module never sees a secret).

use sqlx::Row;

use super::{Metastore, now_ms};
use crate::error::Result;

/// One token, without its secret.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct AccessToken {
    /// The public part every token of this id starts with.
    pub token_id: String,
    /// Whose it is.
    pub principal: String,
    /// What it is for, in the owner's words.
    pub comment: Option<String>,
    /// SHA-256 of the secret part (hex).
    #[serde(skip)]
    pub secret_sha256: String,
    /// When it was made (ms since the epoch).
    pub created_ms: i64,
    /// When it stops working (`None`: never).
    pub expires_ms: Option<i64>,
    /// Last request that used it.
    pub last_used_ms: Option<i64>,
    /// When it was revoked.
    pub revoked_ms: Option<i64>,
}

macro_rules! token_columns {
    () => {
        "token_id, principal, comment, secret_sha256, created_ms, expires_ms, last_used_ms, revoked_ms"
    };
}

impl Metastore {
    /// Saves a new token.
    pub async fn put_token(&self, t: &AccessToken) -> Result<()> {
        sqlx::query(concat!(
            "INSERT INTO access_tokens (",
            token_columns!(),
            ") VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        ))
        .bind(&t.token_id)
        .bind(&t.principal)
        .bind(&t.comment)
        .bind(&t.secret_sha256)
        .bind(if t.created_ms == 0 {
            now_ms()
        } else {
            t.created_ms
        })
        .bind(t.expires_ms)
        .bind(t.last_used_ms)
        .bind(t.revoked_ms)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot save the token"))?;
        Ok(())
    }

    /// One token by id.
    pub async fn get_token(&self, token_id: &str) -> Result<Option<AccessToken>> {
        let row = sqlx::query(concat!(
            "SELECT ",
            token_columns!(),
            " FROM access_tokens WHERE token_id = $1"
        ))
        .bind(token_id)
        .fetch_optional(&self.pool)
        .await
        .map_err(Self::err("cannot read the tokens"))?;
        Ok(row.as_ref().map(token))
    }

    /// The tokens of one principal (everyone's when `None`), newest first.
    pub async fn list_tokens(&self, principal: Option<&str>) -> Result<Vec<AccessToken>> {
        let rows = match principal {
            Some(p) => {
                sqlx::query(concat!(
                    "SELECT ",
                    token_columns!(),
                    " FROM access_tokens WHERE principal = $1 ORDER BY created_ms DESC"
                ))
                .bind(p)
                .fetch_all(&self.pool)
                .await
            }
            None => {
                sqlx::query(concat!(
                    "SELECT ",
                    token_columns!(),
                    " FROM access_tokens ORDER BY created_ms DESC"
                ))
                .fetch_all(&self.pool)
                .await
            }
        }
        .map_err(Self::err("cannot read the tokens"))?;
        Ok(rows.iter().map(token).collect())
    }

    /// Revokes a token; false when there is no such live token.
    pub async fn revoke_token(&self, token_id: &str) -> Result<bool> {
        let n = sqlx::query(
            "UPDATE access_tokens SET revoked_ms = $1 WHERE token_id = $2 AND revoked_ms IS NULL",
        )
        .bind(now_ms())
        .bind(token_id)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot revoke the token"))?
        .rows_affected();
        Ok(n > 0)
    }

    /// Notes that a token was just used (at most once a minute per token, so a busy client
    /// does not write a row per request).
    pub async fn touch_token(&self, token_id: &str) -> Result<()> {
        let now = now_ms();
        sqlx::query(
            "UPDATE access_tokens SET last_used_ms = $1
             WHERE token_id = $2 AND (last_used_ms IS NULL OR last_used_ms < $3)",
        )
        .bind(now)
        .bind(token_id)
        .bind(now - 60_000)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the token's use"))?;
        Ok(())
    }

    /// Forgets every token of a principal (when it is removed).
    pub async fn remove_tokens_of(&self, principal: &str) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM access_tokens WHERE principal = $1")
                .bind(principal)
                .execute(&self.pool)
                .await
                .map_err(Self::err("cannot remove the tokens"))?
                .rows_affected(),
        )
    }
}

fn token(r: &sqlx::any::AnyRow) -> AccessToken {
    AccessToken {
        token_id: r.get(0),
        principal: r.get(1),
        comment: r.get(2),
        secret_sha256: r.get(3),
        created_ms: r.get(4),
        expires_ms: r.get(5),
        last_used_ms: r.get(6),
        revoked_ms: r.get(7),
    }
}
