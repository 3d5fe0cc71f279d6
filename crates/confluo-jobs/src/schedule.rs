//! Cron schedules: which ticks are due, given where the schedule stands and the time.
//!
//! Pure functions of a cursor (the last tick handled) and a clock reading, so the same
//! rules apply after a restart, a pause or an edit, and tests can run a week of ticks in
//! milliseconds.

use std::str::FromStr;
use std::time::Duration;

use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use confluo_core::jobs::{MissedPolicy, ScheduleConfig};
use croner::Cron;

use crate::error::{JobError, Result};

/// A tick this recent is on time: a scheduler that polls finds it late by its poll
/// interval, not missed.
pub const ON_TIME: Duration = Duration::from_secs(60);
/// The most ticks looked at in one pass (a schedule every second, down for a day, does not
/// list 86,400 of them: with `all`, only the latest `max_catch_up` run anyway).
const MAX_TICKS: usize = 100_000;
/// `max_catch_up` when not given.
pub const DEFAULT_CATCH_UP: u32 = 10;

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    cron: Cron,
    tz: Tz,
    missed: MissedPolicy,
    cap: usize,
    /// The expression as written.
    pub text: String,
}

impl Schedule {
    /// Checks a job's schedule: the expression and the time zone.
    pub fn parse(job: &str, cfg: &ScheduleConfig) -> Result<Schedule> {
        let invalid = |message: String| JobError::Invalid {
            job: job.into(),
            message,
        };
        let cron = Cron::from_str(&cfg.cron).map_err(|e| {
            invalid(format!(
                "schedule: `{}` is not a cron expression ({e}); write 5 fields (minute hour day month weekday), 6 with seconds first, or @hourly, @daily, ...",
                cfg.cron
            ))
        })?;
        let tz = match &cfg.timezone {
            None => Tz::UTC,
            Some(name) => Tz::from_str(name).map_err(|_| {
                invalid(format!(
                    "schedule: `{name}` is not a time zone; write an IANA name such as Europe/Paris or UTC"
                ))
            })?,
        };
        Ok(Schedule {
            cron,
            tz,
            missed: cfg.missed,
            cap: cfg.max_catch_up.unwrap_or(DEFAULT_CATCH_UP).max(1) as usize,
            text: cfg.cron.clone(),
        })
    }

    /// The first tick after `t`.
    pub fn next(&self, t: DateTime<Utc>) -> Option<DateTime<Utc>> {
        self.cron
            .find_next_occurrence(&t.with_timezone(&self.tz), false)
            .ok()
            .map(|n| n.with_timezone(&Utc))
    }

    /// Ticks in `(after, until]`, oldest first (at most [`MAX_TICKS`], the latest ones).
    pub fn ticks(&self, after: DateTime<Utc>, until: DateTime<Utc>) -> Vec<DateTime<Utc>> {
        let mut out = std::collections::VecDeque::new();
        let mut t = after;
        while let Some(n) = self.next(t) {
            if n > until {
                break;
            }
            if out.len() == MAX_TICKS {
                out.pop_front();
            }
            out.push_back(n);
            t = n;
        }
        out.into()
    }

    /// The ticks to run now, and where the schedule then stands: every tick after `cursor`
    /// up to `now` is handled (run or passed over by the missed-tick policy), so none is
    /// ever looked at twice.
    pub fn due(
        &self,
        cursor: DateTime<Utc>,
        now: DateTime<Utc>,
    ) -> (Vec<DateTime<Utc>>, DateTime<Utc>) {
        let ticks = self.ticks(cursor, now);
        let Some(&last) = ticks.last() else {
            return (vec![], cursor);
        };
        let on_time = |t: &DateTime<Utc>| (now - *t).to_std().unwrap_or_default() <= ON_TIME;
        let run = match self.missed {
            MissedPolicy::All => ticks[ticks.len().saturating_sub(self.cap)..].to_vec(),
            MissedPolicy::Last => vec![last],
            MissedPolicy::None => ticks.iter().copied().filter(on_time).collect(),
        };
        (run, last)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schedule(cron: &str, tz: Option<&str>, missed: MissedPolicy) -> Schedule {
        Schedule::parse(
            "j",
            &ScheduleConfig {
                cron: cron.into(),
                timezone: tz.map(str::to_string),
                missed,
                max_catch_up: Some(3),
            },
        )
        .unwrap()
    }

    fn at(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn a_week_of_hourly_ticks_fires_each_once_through_polls_and_outages() {
        let s = schedule("0 * * * *", None, MissedPolicy::All);
        let start = at("2026-03-02T00:00:30Z");
        let mut cursor = start;
        let mut fired = Vec::new();
        // Poll every 7 minutes for a week; the scheduler is down for 2 h 10 min once a day.
        let mut now = start;
        while now < start + chrono::Duration::days(7) {
            now += chrono::Duration::minutes(7);
            let minute_of_day = (now - start).num_minutes() % (24 * 60);
            if (600..730).contains(&minute_of_day) {
                continue;
            }
            let (run, next) = s.due(cursor, now);
            fired.extend(run);
            cursor = next;
        }
        // Every hour fired, once: the outages' ticks are caught up (at most 3 at a time).
        let hours = s.ticks(start, cursor);
        assert_eq!(fired, hours);
        assert!(fired.len() >= 24 * 7 - 1, "{}", fired.len());
        let mut dedup = fired.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), fired.len());
    }

    #[test]
    fn missed_ticks_follow_the_policy() {
        let cursor = at("2026-03-02T00:00:00Z");
        let now = at("2026-03-02T05:30:00Z");
        let all = schedule("0 * * * *", None, MissedPolicy::All).due(cursor, now);
        assert_eq!(all.0.len(), 3, "capped to the latest 3");
        assert_eq!(all.0[2], at("2026-03-02T05:00:00Z"));
        assert_eq!(all.1, at("2026-03-02T05:00:00Z"));
        let last = schedule("0 * * * *", None, MissedPolicy::Last).due(cursor, now);
        assert_eq!(last.0, vec![at("2026-03-02T05:00:00Z")]);
        let none = schedule("0 * * * *", None, MissedPolicy::None).due(cursor, now);
        assert!(none.0.is_empty());
        assert_eq!(none.1, at("2026-03-02T05:00:00Z"));
        // On time is not missed.
        let soon = at("2026-03-02T05:00:20Z");
        let none = schedule("0 * * * *", None, MissedPolicy::None)
            .due(none.1 - chrono::Duration::hours(1), soon);
        assert_eq!(none.0, vec![at("2026-03-02T05:00:00Z")]);
    }

    #[test]
    fn time_zones_and_bad_expressions() {
        // 06:00 in Paris is 05:00 UTC in winter and 04:00 UTC in summer.
        let s = schedule("0 6 * * *", Some("Europe/Paris"), MissedPolicy::All);
        assert_eq!(
            s.next(at("2026-01-10T12:00:00Z")),
            Some(at("2026-01-11T05:00:00Z"))
        );
        assert_eq!(
            s.next(at("2026-07-10T12:00:00Z")),
            Some(at("2026-07-11T04:00:00Z"))
        );
        let bad = |cron: &str, tz: Option<&str>| {
            Schedule::parse(
                "j",
                &ScheduleConfig {
                    cron: cron.into(),
                    timezone: tz.map(str::to_string),
                    missed: MissedPolicy::Last,
                    max_catch_up: None,
                },
            )
            .unwrap_err()
            .to_string()
        };
        assert!(bad("61 * * * *", None).contains("not a cron expression"));
        assert!(bad("0 * * * *", Some("Mars/Olympus")).contains("not a time zone"));
    }
}
