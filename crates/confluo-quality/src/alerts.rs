//! Alerts: one per change of a check's status, not one per run. While a check keeps
//! failing, nothing more is sent until the monitor's `snooze` passes; when it passes
//! again, a `resolved` alert closes what was opened.

use std::time::Duration;

use serde::Serialize;

use confluo_core::jobs::SmtpConfig;
use confluo_lakehouse::metastore::CheckState;

use crate::checks::{CheckResult, Status};
use crate::spec::{Alert, Destination};

/// Why an alert goes out.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Transition {
    /// A passing check now warns, fails or errs.
    Opened,
    /// An open alert's status changed (warn → fail, fail → warn).
    Changed,
    /// Still failing after the snooze period.
    Reminder,
    /// Passing again.
    Resolved,
}

/// The alert decision for one check: what to send, and what to remember as announced.
#[derive(Debug, Clone, PartialEq)]
pub struct Decision {
    /// What to send, if anything.
    pub transition: Option<Transition>,
    /// The status the open alert announces after this (`None`: no alert open).
    pub notified_status: Option<String>,
    /// When that was announced.
    pub notified_ms: Option<i64>,
}

/// Decides whether a check whose status is now `status` alerts, given what its alerts last
/// announced (`prev`).
pub fn decide(
    prev: Option<&CheckState>,
    status: Status,
    now_ms: i64,
    snooze: Option<Duration>,
) -> Decision {
    let announced = prev.and_then(|p| p.notified_status.clone());
    let announced_at = prev.and_then(|p| p.notified_ms);
    let keep = Decision {
        transition: None,
        notified_status: announced.clone(),
        notified_ms: announced_at,
    };
    let open = |t| Decision {
        transition: Some(t),
        notified_status: Some(status.as_str().to_string()),
        notified_ms: Some(now_ms),
    };
    match (status, announced.as_deref()) {
        (Status::Pass, None) => keep,
        (Status::Pass, Some(_)) => Decision {
            transition: Some(Transition::Resolved),
            notified_status: None,
            notified_ms: Some(now_ms),
        },
        (_, None) => open(Transition::Opened),
        (s, Some(a)) if a != s.as_str() => open(Transition::Changed),
        _ => match (snooze, announced_at) {
            (Some(z), Some(at)) if now_ms - at >= z.as_millis() as i64 => {
                open(Transition::Reminder)
            }
            _ => keep,
        },
    }
}

/// What an alert says (the JSON body of webhooks).
#[derive(Debug, Clone, Serialize)]
pub struct Notice {
    /// `quality.alert` or `quality.resolved`.
    pub event: String,
    /// Why it goes out.
    pub transition: Transition,
    /// The monitored table.
    pub table: String,
    /// Its version checked.
    pub table_version: i64,
    /// The check.
    pub check: String,
    /// Its kind.
    pub kind: String,
    /// Its dimension.
    pub dimension: String,
    /// The slice (`region=EU`), empty for the whole table.
    pub slice: String,
    /// Its status now.
    pub status: Status,
    /// What the previous alert announced.
    pub previous_status: Option<String>,
    /// The measured value.
    pub value: Option<f64>,
    /// The warn condition.
    pub warn_if: Option<String>,
    /// The fail condition.
    pub fail_if: Option<String>,
    /// What was found.
    pub message: String,
    /// Rows found bad.
    pub bad_rows: Option<i64>,
    /// Where the failing rows are kept, when they are.
    pub failures_table: Option<String>,
    /// The monitor run.
    pub run_id: String,
    /// When (RFC 3339).
    pub checked_at: String,
}

impl Notice {
    /// Builds the notice of `result`.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        table: &str,
        version: i64,
        result: &CheckResult,
        transition: Transition,
        previous: Option<String>,
        failures_table: Option<String>,
        run_id: &str,
        now_ms: i64,
    ) -> Notice {
        Notice {
            event: if transition == Transition::Resolved {
                "quality.resolved"
            } else {
                "quality.alert"
            }
            .into(),
            transition,
            table: table.to_string(),
            table_version: version,
            check: result.check.clone(),
            kind: result.kind.clone(),
            dimension: result.dimension.clone(),
            slice: result.slice.clone(),
            status: result.status,
            previous_status: previous,
            value: result.value,
            warn_if: result.warn.clone(),
            fail_if: result.fail.clone(),
            message: result.message.clone(),
            bad_rows: result.bad_rows,
            failures_table,
            run_id: run_id.to_string(),
            checked_at: chrono::DateTime::from_timestamp_millis(now_ms)
                .map(|t| t.to_rfc3339())
                .unwrap_or_default(),
        }
    }

    /// One line: `gold.orders null_percent(email) [region=EU]: fail — 6.20% (fail if > 5)`.
    pub fn headline(&self) -> String {
        let what = match self.transition {
            Transition::Resolved => "resolved".to_string(),
            Transition::Reminder => format!("still {}", self.status.as_str()),
            _ => self.status.as_str().to_string(),
        };
        let slice = if self.slice.is_empty() {
            String::new()
        } else {
            format!(" [{}]", self.slice)
        };
        let limit = match (&self.fail_if, &self.warn_if, self.status) {
            (_, Some(w), Status::Warn) => format!(" (warn if {w})"),
            (Some(f), _, _) => format!(" (fail if {f})"),
            _ => String::new(),
        };
        format!(
            "{} {}{slice}: {what} — {}{limit}",
            self.table, self.check, self.message
        )
    }

    fn text(&self) -> String {
        let mut t = format!(
            "{}\n\nTable: {} (version {})\nCheck: {} ({}, {})\n",
            self.headline(),
            self.table,
            self.table_version,
            self.check,
            self.kind,
            self.dimension
        );
        if let Some(f) = &self.failures_table {
            t.push_str(&format!(
                "Failing rows: SELECT * FROM {f} WHERE _run_id = '{}' AND _check = '{}'\n",
                self.run_id, self.check
            ));
        }
        t.push_str(&format!(
            "Run: {} at {}\n\nSee all checks with: confluo monitor status\n",
            self.run_id, self.checked_at
        ));
        t
    }
}

/// Sends `notice` to each route that listens for its status; returns (where, outcome).
pub async fn deliver(
    alerts: &[Alert],
    notice: &Notice,
    announced_warn_only: bool,
    smtp: Option<&SmtpConfig>,
) -> Vec<(String, Result<(), String>)> {
    let mut out = Vec::new();
    for a in alerts {
        // A route that ignores warnings hears neither of them nor of their resolution.
        let warn_level = match notice.transition {
            Transition::Resolved => announced_warn_only,
            _ => notice.status == Status::Warn,
        };
        if warn_level && !a.on_warn {
            continue;
        }
        match &a.to {
            Destination::Webhook { url, secret } => {
                let r = match serde_json::to_vec(notice) {
                    Ok(body) => {
                        confluo_jobs::notify::post_json(
                            url,
                            secret.as_deref(),
                            &notice.event,
                            &body,
                        )
                        .await
                    }
                    Err(e) => Err(e.to_string()),
                };
                out.push((url.clone(), r));
            }
            Destination::Slack(url) => {
                let icon = match (notice.transition, notice.status) {
                    (Transition::Resolved, _) => ":white_check_mark:",
                    (_, Status::Warn) => ":warning:",
                    _ => ":red_circle:",
                };
                let body = serde_json::json!({"text": format!("{icon} {}", notice.headline())});
                let r = confluo_jobs::notify::post_json(
                    url,
                    None,
                    &notice.event,
                    body.to_string().as_bytes(),
                )
                .await;
                out.push((url.clone(), r));
            }
            Destination::Email(to) => {
                let r = match smtp {
                    Some(s) => {
                        confluo_jobs::notify::send_mail(
                            s,
                            to,
                            &format!("[confluo] {}", notice.headline()),
                            notice.text(),
                        )
                        .await
                    }
                    None => Err("e-mail needs an `smtp:` server in confluo.yaml".into()),
                };
                out.push((to.join(", "), r));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn state(notified: Option<&str>, at: Option<i64>) -> CheckState {
        CheckState {
            monitor: "m".into(),
            check: "c".into(),
            slice: String::new(),
            status: notified.unwrap_or("pass").into(),
            since_ms: 0,
            checked_ms: 0,
            run_id: "r".into(),
            table_version: None,
            value: None,
            message: None,
            notified_status: notified.map(str::to_string),
            notified_ms: at,
        }
    }

    #[test]
    fn alerts_once_per_change_with_snooze_and_resolution() {
        let hour = Some(Duration::from_secs(3600));
        // First failure opens an alert.
        let d = decide(None, Status::Fail, 1000, hour);
        assert_eq!(d.transition, Some(Transition::Opened));
        // Still failing: nothing until the snooze passes, then a reminder.
        let s = state(Some("fail"), Some(1000));
        assert_eq!(decide(Some(&s), Status::Fail, 2000, hour).transition, None);
        assert_eq!(
            decide(Some(&s), Status::Fail, 1000 + 3_600_000, hour).transition,
            Some(Transition::Reminder)
        );
        assert_eq!(
            decide(Some(&s), Status::Fail, 1000 + 3_600_000, None).transition,
            None
        );
        // Fail → warn is a change; passing resolves and closes it.
        assert_eq!(
            decide(Some(&s), Status::Warn, 3000, hour).transition,
            Some(Transition::Changed)
        );
        let d = decide(Some(&s), Status::Pass, 4000, hour);
        assert_eq!(d.transition, Some(Transition::Resolved));
        assert_eq!(d.notified_status, None);
        // Passing with nothing open says nothing.
        assert_eq!(
            decide(Some(&state(None, None)), Status::Pass, 5000, hour).transition,
            None
        );
    }
}
