//! Users, groups and service principals, and the audit trail of logins: stored here,
//! hashed and judged by `confluo-govern` (this module never sees a password).

use sqlx::Row;

use super::{Metastore, now_ms};
use crate::error::Result;

/// A principal as stored: its secrets are already derived from the password.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Principal {
    /// The login name.
    pub name: String,
    /// `user` or `service_principal`.
    pub kind: String,
    /// argon2id PHC string.
    pub password_hash: Option<String>,
    /// SCRAM-SHA-256 salt (base64).
    pub scram_salt: Option<String>,
    /// SCRAM-SHA-256 iteration count the salted password was derived with.
    pub scram_iterations: Option<i64>,
    /// SCRAM-SHA-256 salted password (base64).
    pub scram_salted_password: Option<String>,
    /// When it was created (ms since the epoch).
    pub created_ms: i64,
    /// Who created it (`None`: the project's owner, through the CLI).
    pub created_by: Option<String>,
    /// The groups it belongs to, sorted.
    pub groups: Vec<String>,
}

/// One login attempt.
#[derive(Debug, Clone, PartialEq)]
pub struct AuthEvent {
    /// When (ms since the epoch).
    pub at_ms: i64,
    /// The name the client gave.
    pub principal: String,
    /// The client's address.
    pub client: String,
    /// `postgres`, `http`, `flight`.
    pub endpoint: String,
    /// `success`, `failure` or `refused` (rate-limited, TLS required, ...).
    pub outcome: String,
    /// Why, for failures.
    pub message: Option<String>,
}

impl Metastore {
    /// Creates a principal, or replaces its secrets and kind when it exists (groups are
    /// kept). Returns whether it was new.
    pub async fn put_principal(&self, p: &Principal) -> Result<bool> {
        let existed = self.get_principal(&p.name).await?.is_some();
        sqlx::query(
            "INSERT INTO principals (name, kind, password_hash, scram_salt, scram_iterations,
               scram_salted_password, created_ms, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
             ON CONFLICT (name) DO UPDATE SET kind = excluded.kind,
               password_hash = excluded.password_hash, scram_salt = excluded.scram_salt,
               scram_iterations = excluded.scram_iterations,
               scram_salted_password = excluded.scram_salted_password",
        )
        .bind(&p.name)
        .bind(&p.kind)
        .bind(&p.password_hash)
        .bind(&p.scram_salt)
        .bind(p.scram_iterations)
        .bind(&p.scram_salted_password)
        .bind(if p.created_ms == 0 {
            now_ms()
        } else {
            p.created_ms
        })
        .bind(&p.created_by)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot save the user"))?;
        for g in &p.groups {
            self.add_to_group(&p.name, g).await?;
        }
        Ok(!existed)
    }

    /// One principal with its groups.
    pub async fn get_principal(&self, name: &str) -> Result<Option<Principal>> {
        let row = sqlx::query(
            "SELECT name, kind, password_hash, scram_salt, scram_iterations,
               scram_salted_password, created_ms, created_by FROM principals WHERE name = $1",
        )
        .bind(name)
        .fetch_optional(&self.pool)
        .await
        .map_err(Self::err("cannot read the users"))?;
        let Some(r) = row else { return Ok(None) };
        let mut p = principal(&r);
        p.groups = self.groups_of(name).await?;
        Ok(Some(p))
    }

    /// Every principal, by name, with its groups.
    pub async fn list_principals(&self) -> Result<Vec<Principal>> {
        let rows = sqlx::query(
            "SELECT name, kind, password_hash, scram_salt, scram_iterations,
               scram_salted_password, created_ms, created_by FROM principals ORDER BY name",
        )
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read the users"))?;
        let mut out = Vec::with_capacity(rows.len());
        for r in &rows {
            let mut p = principal(r);
            p.groups = self.groups_of(&p.name).await?;
            out.push(p);
        }
        Ok(out)
    }

    /// Whether any principal exists (asked at every login: one row, not the whole list).
    pub async fn has_principals(&self) -> Result<bool> {
        let row = sqlx::query("SELECT name FROM principals LIMIT 1")
            .fetch_optional(&self.pool)
            .await
            .map_err(Self::err("cannot read the users"))?;
        Ok(row.is_some())
    }

    /// Removes a principal and its group memberships; false when there was none.
    pub async fn remove_principal(&self, name: &str) -> Result<bool> {
        sqlx::query("DELETE FROM principal_groups WHERE principal = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err("cannot remove the user"))?;
        let n = sqlx::query("DELETE FROM principals WHERE name = $1")
            .bind(name)
            .execute(&self.pool)
            .await
            .map_err(Self::err("cannot remove the user"))?
            .rows_affected();
        Ok(n > 0)
    }

    /// Adds a principal to a group (a group exists while it has members).
    pub async fn add_to_group(&self, principal: &str, group: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO principal_groups (principal, group_name) VALUES ($1, $2)
             ON CONFLICT (principal, group_name) DO NOTHING",
        )
        .bind(principal)
        .bind(group)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot add the user to the group"))?;
        Ok(())
    }

    /// Removes a principal from a group; false when it was not a member.
    pub async fn remove_from_group(&self, principal: &str, group: &str) -> Result<bool> {
        let n =
            sqlx::query("DELETE FROM principal_groups WHERE principal = $1 AND group_name = $2")
                .bind(principal)
                .bind(group)
                .execute(&self.pool)
                .await
                .map_err(Self::err("cannot remove the user from the group"))?
                .rows_affected();
        Ok(n > 0)
    }

    async fn groups_of(&self, principal: &str) -> Result<Vec<String>> {
        let rows = sqlx::query(
            "SELECT group_name FROM principal_groups WHERE principal = $1 ORDER BY group_name",
        )
        .bind(principal)
        .fetch_all(&self.pool)
        .await
        .map_err(Self::err("cannot read the groups"))?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }

    /// Appends a login attempt to the audit trail.
    pub async fn record_auth_event(&self, e: &AuthEvent) -> Result<()> {
        sqlx::query(
            "INSERT INTO auth_events (at_ms, principal, client, endpoint, outcome, message)
             VALUES ($1, $2, $3, $4, $5, $6)",
        )
        .bind(e.at_ms)
        .bind(&e.principal)
        .bind(&e.client)
        .bind(&e.endpoint)
        .bind(&e.outcome)
        .bind(&e.message)
        .execute(&self.pool)
        .await
        .map_err(Self::err("cannot record the login"))?;
        Ok(())
    }

    /// Login attempts since `since_ms`, newest first (all principals when `None`).
    pub async fn auth_events(
        &self,
        principal: Option<&str>,
        since_ms: i64,
    ) -> Result<Vec<AuthEvent>> {
        let rows =
            match principal {
                Some(p) => sqlx::query(
                    "SELECT at_ms, principal, client, endpoint, outcome, message FROM auth_events
                     WHERE principal = $1 AND at_ms >= $2 ORDER BY at_ms DESC",
                )
                .bind(p)
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await,
                None => sqlx::query(
                    "SELECT at_ms, principal, client, endpoint, outcome, message FROM auth_events
                     WHERE at_ms >= $1 ORDER BY at_ms DESC",
                )
                .bind(since_ms)
                .fetch_all(&self.pool)
                .await,
            }
            .map_err(Self::err("cannot read the login audit"))?;
        Ok(rows
            .iter()
            .map(|r| AuthEvent {
                at_ms: r.get(0),
                principal: r.get(1),
                client: r.get(2),
                endpoint: r.get(3),
                outcome: r.get(4),
                message: r.get(5),
            })
            .collect())
    }
}

fn principal(r: &sqlx::any::AnyRow) -> Principal {
    Principal {
        name: r.get(0),
        kind: r.get(1),
        password_hash: r.get(2),
        scram_salt: r.get(3),
        scram_iterations: r.get(4),
        scram_salted_password: r.get(5),
        created_ms: r.get(6),
        created_by: r.get(7),
        groups: vec![],
    }
}
