//! Personal access tokens: the bearer secrets of the HTTP API. A token reads
//! `cfp_<id>_<secret>`: the id finds its row, the secret is checked against the SHA-256
//! digest kept there (the secret is 32 random bytes, so a fast digest cannot be guessed
//! back, and every request can afford the check). Tokens expire and can be revoked.

use std::time::Duration;

use base64::Engine;

use confluo_lakehouse::metastore::{AccessToken, Metastore};

use crate::error::{GovernError, Result};
use crate::identity::random;

/// What every token starts with, so a leaked one is recognisable (secret scanners).
pub const TOKEN_PREFIX: &str = "cfp_";

/// Tokens of a project's principals.
#[derive(Debug, Clone)]
pub struct Tokens {
    metastore: Metastore,
}

/// Why a bearer token was not accepted (said to the client: it names no other principal).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenRefusal {
    /// Not a Confluo token, or no token with that id, or the secret does not match.
    Invalid,
    /// Past its expiry (when, as RFC 3339).
    Expired(String),
    /// Revoked by its owner or an admin.
    Revoked,
}

impl std::fmt::Display for TokenRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            TokenRefusal::Invalid => write!(f, "the access token is not valid"),
            TokenRefusal::Expired(at) => {
                write!(
                    f,
                    "the access token expired at {at}: make a new one with `confluo users token create`"
                )
            }
            TokenRefusal::Revoked => write!(f, "the access token was revoked"),
        }
    }
}

impl Tokens {
    /// Tokens kept in `metastore`.
    pub fn new(metastore: Metastore) -> Self {
        Tokens { metastore }
    }

    /// Makes a token for `principal`, valid for `lifetime` (`None`: until revoked).
    /// Returns the stored row and the token itself, which is shown once and never kept.
    pub async fn create(
        &self,
        principal: &str,
        comment: Option<&str>,
        lifetime: Option<Duration>,
    ) -> Result<(AccessToken, String)> {
        if self.metastore.get_principal(principal).await?.is_none() {
            return Err(GovernError::NotFound(principal.to_string()));
        }
        let id: String = random::<6>()?.iter().map(|b| format!("{b:02x}")).collect();
        let secret = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(random::<32>()?);
        let now = chrono::Utc::now().timestamp_millis();
        let row = AccessToken {
            token_id: id.clone(),
            principal: principal.to_string(),
            comment: comment.map(str::to_string),
            secret_sha256: digest(&secret),
            created_ms: now,
            expires_ms: lifetime.map(|d| now + d.as_millis() as i64),
            last_used_ms: None,
            revoked_ms: None,
        };
        self.metastore.put_token(&row).await?;
        Ok((row, format!("{TOKEN_PREFIX}{id}_{secret}")))
    }

    /// Whose token this is, or why it is refused.
    pub async fn verify(&self, token: &str) -> Result<std::result::Result<String, TokenRefusal>> {
        let Some((id, secret)) = token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
        else {
            return Ok(Err(TokenRefusal::Invalid));
        };
        let Some(row) = self.metastore.get_token(id).await? else {
            return Ok(Err(TokenRefusal::Invalid));
        };
        if row.secret_sha256 != digest(secret) {
            return Ok(Err(TokenRefusal::Invalid));
        }
        if row.revoked_ms.is_some() {
            return Ok(Err(TokenRefusal::Revoked));
        }
        let now = chrono::Utc::now().timestamp_millis();
        if let Some(exp) = row.expires_ms
            && exp <= now
        {
            let at = chrono::DateTime::from_timestamp_millis(exp)
                .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true))
                .unwrap_or_default();
            return Ok(Err(TokenRefusal::Expired(at)));
        }
        // A principal removed after its token was made no longer logs in.
        if self
            .metastore
            .get_principal(&row.principal)
            .await?
            .is_none()
        {
            return Ok(Err(TokenRefusal::Invalid));
        }
        // The row says when it was last noted: a busy client writes nothing per request.
        if row.last_used_ms.is_none_or(|t| t < now - 60_000) {
            self.metastore.touch_token(id).await?;
        }
        Ok(Ok(row.principal))
    }

    /// The tokens of a principal (everyone's when `None`).
    pub async fn list(&self, principal: Option<&str>) -> Result<Vec<AccessToken>> {
        Ok(self.metastore.list_tokens(principal).await?)
    }

    /// Revokes a token by id (or by the whole token).
    pub async fn revoke(&self, id_or_token: &str) -> Result<()> {
        let id = id_or_token
            .strip_prefix(TOKEN_PREFIX)
            .and_then(|rest| rest.split_once('_'))
            .map(|(id, _)| id)
            .unwrap_or(id_or_token);
        if self.metastore.revoke_token(id).await? {
            Ok(())
        } else {
            Err(GovernError::Invalid(format!(
                "no live token with id `{id}` (see `confluo users token list`)"
            )))
        }
    }
}

fn digest(secret: &str) -> String {
    ring::digest::digest(&ring::digest::SHA256, secret.as_bytes())
        .as_ref()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn metastore(dir: &std::path::Path) -> Metastore {
        let url = format!("sqlite://{}?mode=rwc", dir.join("m.db").display());
        Metastore::connect(&url).await.unwrap()
    }

    #[tokio::test]
    async fn tokens_verify_expire_and_revoke() {
        let dir = tempfile::tempdir().unwrap();
        let m = metastore(dir.path()).await;
        let id = crate::Identity::new(m.clone());
        id.add("alice", crate::PrincipalKind::User, "a-long-password", &[])
            .await
            .unwrap();
        let tokens = Tokens::new(m);
        let (row, token) = tokens.create("alice", Some("ci"), None).await.unwrap();
        assert!(token.starts_with("cfp_"));
        assert_eq!(tokens.verify(&token).await.unwrap(), Ok("alice".into()));
        // A wrong secret with a right id, a foreign token, garbage: all the same refusal.
        let forged = format!("cfp_{}_{}", row.token_id, "x".repeat(43));
        assert_eq!(
            tokens.verify(&forged).await.unwrap(),
            Err(TokenRefusal::Invalid)
        );
        assert_eq!(
            tokens.verify("ghp_abc").await.unwrap(),
            Err(TokenRefusal::Invalid)
        );
        let (_, short) = tokens
            .create("alice", None, Some(Duration::from_millis(1)))
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(5)).await;
        let refused = tokens.verify(&short).await.unwrap().unwrap_err();
        assert!(refused.to_string().contains("expired at"), "{refused}");
        tokens.revoke(&row.token_id).await.unwrap();
        assert_eq!(
            tokens.verify(&token).await.unwrap(),
            Err(TokenRefusal::Revoked)
        );
        assert!(tokens.revoke(&row.token_id).await.is_err());
        assert_eq!(tokens.list(Some("alice")).await.unwrap().len(), 2);
        // Removing the user removes its tokens.
        crate::Identity::new(tokens.metastore.clone())
            .remove("alice")
            .await
            .unwrap();
        assert!(tokens.list(Some("alice")).await.unwrap().is_empty());
    }
}
