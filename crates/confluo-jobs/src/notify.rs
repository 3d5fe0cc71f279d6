//! Notifications of runs: a webhook gets the run as JSON, signed with HMAC-SHA256 when the
//! job gives a secret; e-mail goes through the project's SMTP server. The delivery halves
//! ([`post_json`], [`send_mail`]) are public: quality monitors' alerts go out through them.
//!
//! A notification that cannot be delivered never changes how the run ends: it is retried a
//! few times, then reported as a run event (and printed by `confluo jobs run` and
//! `confluo serve`).

use std::time::Duration;

use confluo_core::jobs::{NotificationConfig, NotifyOn, SmtpConfig, SmtpSecurity};
use hmac::{Hmac, Mac};
use serde::Serialize;
use sha2::Sha256;

use crate::engine::TaskOutcome;
use crate::spec::Job;

/// Attempts per webhook delivery.
const WEBHOOK_TRIES: u32 = 3;
/// Time allowed for one delivery.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// Checks a job's notifications: each goes somewhere, on some moment, with what it needs.
pub(crate) fn check(job: &Job) -> std::result::Result<(), String> {
    for (i, n) in job.notifications.iter().enumerate() {
        let at = format!("notifications[{i}]");
        if n.webhook.is_none() && n.email.is_empty() {
            return Err(format!("{at}: give a `webhook` URL or `email` addresses"));
        }
        if n.on.is_empty() {
            return Err(format!(
                "{at}: `on` is empty; list moments: start, success, failure, duration"
            ));
        }
        if n.secret.is_some() && n.webhook.is_none() {
            return Err(format!("{at}: `secret` signs webhooks; this one has none"));
        }
        if let Some(url) = &n.webhook
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!(
                "{at}: webhook `{url}` is not an http:// or https:// URL"
            ));
        }
        for address in &n.email {
            if !is_email_address(address) {
                return Err(format!("{at}: `{address}` is not an e-mail address"));
            }
        }
        if n.on.contains(&NotifyOn::Duration) && job.duration_warning.is_none() {
            return Err(format!(
                "{at}: `duration` needs the job's `duration_warning:` (e.g. 30m)"
            ));
        }
    }
    Ok(())
}

/// What a notification says about a run.
#[derive(Debug, Clone, Serialize)]
pub struct RunNotice {
    /// `run.started`, `run.succeeded`, `run.failed`, `run.timed_out`, `run.cancelled`,
    /// `run.duration_warning`.
    pub event: String,
    /// The job.
    pub job: String,
    /// The run.
    pub run_id: String,
    /// Its state when sent.
    pub state: String,
    /// Why it ended so.
    pub message: Option<String>,
    /// What started it.
    pub trigger: String,
    /// The moment it stands for (RFC 3339).
    pub logical_time: String,
    /// Time since it started.
    pub duration_ms: u64,
    /// The tasks that ended so far.
    pub tasks: Vec<TaskOutcome>,
}

/// Sends notifications; holds the project's SMTP server.
#[derive(Debug, Clone, Default)]
pub struct Notifier {
    smtp: Option<SmtpConfig>,
}

/// One delivery's outcome: where to, and the error if it failed.
pub type Delivery = (String, std::result::Result<(), String>);

impl Notifier {
    /// A notifier sending e-mail through `smtp` (when given).
    pub fn new(smtp: Option<SmtpConfig>) -> Notifier {
        Notifier { smtp }
    }

    /// Sends `notice` to every notification of `job` that listens for `moment`.
    pub async fn send(&self, job: &Job, moment: NotifyOn, notice: &RunNotice) -> Vec<Delivery> {
        let mut out = Vec::new();
        for n in job.notifications.iter().filter(|n| n.on.contains(&moment)) {
            if let Some(url) = &n.webhook {
                out.push((url.clone(), webhook(n, url, notice).await));
            }
            if !n.email.is_empty() {
                out.push((n.email.join(", "), self.email(&n.email, notice).await));
            }
        }
        out
    }

    async fn email(&self, to: &[String], notice: &RunNotice) -> std::result::Result<(), String> {
        let Some(smtp) = &self.smtp else {
            return Err("e-mail needs an `smtp:` server in confluo.yaml".into());
        };
        send_run_mail(smtp, to, notice).await
    }
}

/// The HMAC-SHA256 signature of `timestamp.body` under `secret`, as `sha256=<hex>`: the
/// receiver recomputes it from the `X-Confluo-Timestamp` header and the raw body, and can
/// refuse old timestamps to stop replays.
pub fn signature(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    let digest = mac.finalize().into_bytes();
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

async fn webhook(
    n: &NotificationConfig,
    url: &str,
    notice: &RunNotice,
) -> std::result::Result<(), String> {
    let body = serde_json::to_vec(notice).map_err(|e| e.to_string())?;
    post_json(url, n.secret.as_deref(), &notice.event, &body).await
}

/// Posts a JSON `body` to `url`, retried a few times on network errors and server errors.
/// With `secret` (`${env:NAME}` expanded here), the body is signed: `X-Confluo-Signature`
/// holds [`signature`] of the `X-Confluo-Timestamp` header and the body. `event` goes in
/// `X-Confluo-Event`, so receivers can route without parsing.
pub async fn post_json(
    url: &str,
    secret: Option<&str>,
    event: &str,
    body: &[u8],
) -> std::result::Result<(), String> {
    let secret = match secret {
        Some(s) => {
            Some(confluo_core::project::expand_env(s).map_err(|e| format!("webhook secret: {e}"))?)
        }
        None => None,
    };
    let client = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .build()
        .map_err(|e| e.to_string())?;
    let mut last = String::new();
    for attempt in 1..=WEBHOOK_TRIES {
        let ts = chrono::Utc::now().timestamp();
        let mut req = client
            .post(url)
            .header("content-type", "application/json")
            .header("user-agent", concat!("confluo/", env!("CARGO_PKG_VERSION")))
            .header("x-confluo-event", event)
            .header("x-confluo-timestamp", ts.to_string())
            .body(body.to_vec());
        if let Some(s) = &secret {
            req = req.header("x-confluo-signature", signature(s.as_bytes(), ts, body));
        }
        match req.send().await {
            Ok(r) if r.status().is_success() => return Ok(()),
            // The receiver refused it for good (bad URL, bad signature): retrying will not help.
            Ok(r) if r.status().is_client_error() && r.status().as_u16() != 429 => {
                return Err(format!("{url} answered {}", r.status()));
            }
            Ok(r) => last = format!("{url} answered {}", r.status()),
            Err(e) => last = format!("cannot reach {url}: {e}"),
        }
        if attempt < WEBHOOK_TRIES {
            tokio::time::sleep(Duration::from_millis(500 << attempt)).await;
        }
    }
    Err(format!("{last} (after {WEBHOOK_TRIES} tries)"))
}

/// Whether `address` is an e-mail address the SMTP client accepts.
pub fn is_email_address(address: &str) -> bool {
    address.parse::<lettre::Address>().is_ok()
}

fn mail_text(notice: &RunNotice) -> String {
    let mut text = format!(
        "Job {} — run {} {}\n\nTrigger: {}\nLogical time: {}\nDuration: {:.1}s\n",
        notice.job,
        notice.run_id,
        notice.state.replace('_', " "),
        notice.trigger,
        notice.logical_time,
        notice.duration_ms as f64 / 1000.0
    );
    if let Some(m) = &notice.message {
        text.push_str(&format!("Why: {m}\n"));
    }
    if !notice.tasks.is_empty() {
        text.push_str("\nTasks:\n");
        for t in &notice.tasks {
            text.push_str(&format!(
                "  {:<24} {:<10} attempts {}{}\n",
                t.task,
                t.state,
                t.attempts,
                t.message
                    .as_deref()
                    .map(|m| format!("  {m}"))
                    .unwrap_or_default()
            ));
        }
    }
    text.push_str(&format!(
        "\nSee it with: confluo jobs show {}\n",
        &notice.run_id[..notice.run_id.len().min(12)]
    ));
    text
}

async fn send_run_mail(
    smtp: &SmtpConfig,
    to: &[String],
    notice: &RunNotice,
) -> std::result::Result<(), String> {
    let subject = format!(
        "[confluo] {}: run {} {}",
        notice.job,
        &notice.run_id[..notice.run_id.len().min(12)],
        notice.state.replace('_', " ")
    );
    send_mail(smtp, to, &subject, mail_text(notice)).await
}

/// Sends a plain-text e-mail to `to` through the project's SMTP server.
pub async fn send_mail(
    smtp: &SmtpConfig,
    to: &[String],
    subject: &str,
    text: String,
) -> std::result::Result<(), String> {
    use lettre::transport::smtp::authentication::Credentials;
    use lettre::{AsyncSmtpTransport, AsyncTransport, Message, Tokio1Executor};

    let from = smtp
        .from
        .parse()
        .map_err(|e| format!("smtp: `from` {}: {e}", smtp.from))?;
    let mut message = Message::builder().from(from).subject(subject);
    for address in to {
        message = message.to(address
            .parse()
            .map_err(|e| format!("`{address}` is not an e-mail address: {e}"))?);
    }
    let message = message
        .body(text)
        .map_err(|e| format!("cannot build the e-mail: {e}"))?;
    let builder = match smtp.security {
        SmtpSecurity::Starttls => AsyncSmtpTransport::<Tokio1Executor>::starttls_relay(&smtp.host)
            .map_err(|e| format!("smtp {}: {e}", smtp.host))?
            .port(smtp.port.unwrap_or(587)),
        SmtpSecurity::Tls => AsyncSmtpTransport::<Tokio1Executor>::relay(&smtp.host)
            .map_err(|e| format!("smtp {}: {e}", smtp.host))?
            .port(smtp.port.unwrap_or(465)),
        SmtpSecurity::None => AsyncSmtpTransport::<Tokio1Executor>::builder_dangerous(&smtp.host)
            .port(smtp.port.unwrap_or(25)),
    };
    let builder = match (&smtp.username, &smtp.password) {
        (Some(user), password) => {
            let password = match password {
                Some(p) => confluo_core::project::expand_env(p)
                    .map_err(|e| format!("smtp password: {e}"))?,
                None => String::new(),
            };
            builder.credentials(Credentials::new(user.clone(), password))
        }
        _ => builder,
    };
    let mailer = builder.timeout(Some(DELIVERY_TIMEOUT)).build();
    mailer.send(message).await.map(|_| ()).map_err(|e| {
        format!(
            "cannot send e-mail through {}:{}: {e}",
            smtp.host,
            smtp.port
                .map_or_else(|| "default port".into(), |p| p.to_string())
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures_cover_the_timestamp_and_the_body() {
        let a = signature(b"k", 1, b"{}");
        assert!(a.starts_with("sha256=") && a.len() == 7 + 64, "{a}");
        assert_ne!(a, signature(b"k", 2, b"{}"));
        assert_ne!(a, signature(b"k", 1, b"{ }"));
        assert_ne!(a, signature(b"j", 1, b"{}"));
        // RFC 4231 test case 2 shape: HMAC-SHA256("Jefe", "what do ya want for nothing?")
        let mut mac = Hmac::<Sha256>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        let hex: String = mac
            .finalize()
            .into_bytes()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        assert_eq!(
            hex,
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
