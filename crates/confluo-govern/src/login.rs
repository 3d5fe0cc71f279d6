//! Judging logins: failures are counted per name and client address in the audit trail
//! itself (so every worker sharing the metastore, and a restarted one, sees them), and a
//! name that failed too often from one address is refused for a while.

use std::time::Duration;

use confluo_lakehouse::metastore::{AuthEvent, Metastore};

use crate::error::Result;

/// The outcome of a login attempt, as audited.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginOutcome {
    /// Logged in.
    Success,
    /// Wrong name or password, or an unknown token.
    Failure,
    /// Refused before the password was looked at (rate limit, TLS required).
    Refused,
}

impl LoginOutcome {
    /// The audited spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            LoginOutcome::Success => "success",
            LoginOutcome::Failure => "failure",
            LoginOutcome::Refused => "refused",
        }
    }
}

/// Rate limit and audit of logins.
#[derive(Debug, Clone)]
pub struct LoginGuard {
    metastore: Metastore,
    /// Failures allowed within `window` before the name is refused from that address.
    pub max_failures: usize,
    /// How far back failures count.
    pub window: Duration,
}

impl LoginGuard {
    /// 5 failures within 5 minutes.
    pub fn new(metastore: Metastore) -> Self {
        LoginGuard {
            metastore,
            max_failures: 5,
            window: Duration::from_secs(300),
        }
    }

    /// `Err(why)` when `principal` failed too often from `client` lately.
    pub async fn admit(&self, principal: &str, client: &str) -> Result<Result<(), String>> {
        let now = chrono::Utc::now().timestamp_millis();
        let since = now - self.window.as_millis() as i64;
        let failures: Vec<i64> = self
            .metastore
            .auth_events(Some(principal), since)
            .await?
            .into_iter()
            .filter(|e| e.client == client && e.outcome == "failure")
            .map(|e| e.at_ms)
            .collect();
        if failures.len() < self.max_failures {
            return Ok(Ok(()));
        }
        // Admitted again when enough of them age out of the window.
        let oldest_counted = failures[self.max_failures - 1];
        let wait_ms = (oldest_counted + self.window.as_millis() as i64 - now).max(1000);
        Ok(Err(format!(
            "too many failed logins for `{principal}` from {client}: try again in {}",
            humanize(Duration::from_millis(wait_ms as u64))
        )))
    }

    /// Appends an attempt to the audit trail.
    pub async fn record(
        &self,
        principal: &str,
        client: &str,
        endpoint: &str,
        outcome: LoginOutcome,
        message: Option<&str>,
    ) -> Result<()> {
        self.metastore
            .record_auth_event(&AuthEvent {
                at_ms: chrono::Utc::now().timestamp_millis(),
                principal: principal.to_string(),
                client: client.to_string(),
                endpoint: endpoint.to_string(),
                outcome: outcome.as_str().to_string(),
                message: message.map(str::to_string),
            })
            .await?;
        Ok(())
    }
}

fn humanize(d: Duration) -> String {
    let s = d.as_secs().max(1);
    if s >= 60 {
        format!("{}m {}s", s / 60, s % 60)
    } else {
        format!("{s}s")
    }
}
