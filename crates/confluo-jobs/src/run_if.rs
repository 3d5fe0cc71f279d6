//! Whether a task runs, given how its dependencies ended: its `run_if` rule, and the
//! outcome a condition task gave.

use std::collections::HashMap;

use confluo_core::jobs::{Dependency, RunIf};

use crate::spec::Task;

/// How a task's dependencies ended decides whether it runs.
pub(crate) fn decide(
    task: &Task,
    ended: &HashMap<String, (String, Option<bool>)>,
) -> Option<(&'static str, String)> {
    let mut states = Vec::new();
    for d in &task.depends_on {
        let (state, outcome) = &ended[d.task()];
        if let Dependency::Outcome {
            task: up,
            outcome: want,
        } = d
            && state == "succeeded"
            && *outcome != Some(*want)
        {
            return Some(("excluded", format!("`{up}` was not {want}")));
        }
        states.push(state.as_str());
    }
    if states.is_empty() {
        return None;
    }
    let failed = |s: &&str| matches!(*s, "failed" | "timed_out");
    let ok = match task.run_if {
        RunIf::AllSuccess => states.iter().all(|s| *s == "succeeded"),
        RunIf::AtLeastOneSuccess => states.contains(&"succeeded"),
        RunIf::NoneFailed => !states.iter().any(failed),
        RunIf::AllDone => true,
        RunIf::AtLeastOneFailed => states.iter().any(failed),
        RunIf::AllFailed => states.iter().all(failed),
    };
    if ok {
        return None;
    }
    // Below a branch a condition left out, a task is left out too.
    if task.run_if == RunIf::AllSuccess
        && states.contains(&"excluded")
        && !states.iter().any(failed)
    {
        return Some(("excluded", "an upstream task was excluded".into()));
    }
    let rule = serde_json::to_value(task.run_if)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default();
    let ups: Vec<String> = task
        .depends_on
        .iter()
        .map(|d| format!("{} {}", d.task(), ended[d.task()].0))
        .collect();
    Some((
        "skipped",
        format!("run_if {rule} does not hold ({})", ups.join(", ")),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::TaskKind;
    use std::time::Duration;

    fn task(run_if: RunIf, deps: &[&str]) -> Task {
        Task {
            key: "t".into(),
            kind: TaskKind::Shell("true".into()),
            depends_on: deps
                .iter()
                .map(|d| Dependency::Task(d.to_string()))
                .collect(),
            run_if,
            retries: 0,
            backoff: Duration::from_secs(1),
            timeout: None,
            retry_on_timeout: false,
        }
    }

    #[test]
    fn run_if_rules() {
        let ended: HashMap<String, (String, Option<bool>)> = [
            ("ok".to_string(), ("succeeded".to_string(), None)),
            ("bad".to_string(), ("failed".to_string(), None)),
            ("off".to_string(), ("excluded".to_string(), None)),
        ]
        .into_iter()
        .collect();
        let runs = |r: RunIf, deps: &[&str]| decide(&task(r, deps), &ended).map(|(s, _)| s);
        assert_eq!(runs(RunIf::AllSuccess, &["ok"]), None);
        assert_eq!(runs(RunIf::AllSuccess, &["ok", "bad"]), Some("skipped"));
        assert_eq!(runs(RunIf::AllSuccess, &["ok", "off"]), Some("excluded"));
        assert_eq!(runs(RunIf::AtLeastOneSuccess, &["ok", "bad"]), None);
        assert_eq!(runs(RunIf::NoneFailed, &["ok", "off"]), None);
        assert_eq!(runs(RunIf::NoneFailed, &["bad"]), Some("skipped"));
        assert_eq!(runs(RunIf::AllDone, &["bad", "off"]), None);
        assert_eq!(runs(RunIf::AtLeastOneFailed, &["ok"]), Some("skipped"));
        assert_eq!(runs(RunIf::AtLeastOneFailed, &["ok", "bad"]), None);
        assert_eq!(runs(RunIf::AllFailed, &["bad"]), None);
        assert_eq!(runs(RunIf::AllFailed, &["ok", "bad"]), Some("skipped"));
        let mut cond = task(RunIf::AllSuccess, &[]);
        cond.depends_on = vec![Dependency::Outcome {
            task: "c".into(),
            outcome: true,
        }];
        let mut e = ended.clone();
        e.insert("c".into(), ("succeeded".into(), Some(false)));
        assert_eq!(decide(&cond, &e).map(|(s, _)| s), Some("excluded"));
        e.insert("c".into(), ("succeeded".into(), Some(true)));
        assert_eq!(decide(&cond, &e), None);
    }
}
