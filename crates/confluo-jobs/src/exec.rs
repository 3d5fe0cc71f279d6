//! One attempt of a task: a child process of the `confluo` binary (or `sh -c`), in its own
//! process group so a timeout or a cancel stops everything it started.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;
use tokio::sync::watch;

use crate::spec::TaskKind;

/// The variable that tells a task's `confluo` process which principal it runs as.
pub const RUN_AS_ENV: &str = "CONFLUO_RUN_AS";

/// How long a stopped task may take to exit after SIGTERM before it is killed.
const STOP_GRACE: Duration = Duration::from_secs(5);

/// How much of an attempt's output is kept (its end).
const LOG_LIMIT: usize = 1 << 20;

/// Where tasks run: the `confluo` binary and the project.
#[derive(Debug, Clone)]
pub struct Launcher {
    /// The `confluo` binary.
    pub confluo: PathBuf,
    /// The project folder.
    pub project: PathBuf,
    /// The service principal tasks run as (a job's `run_as`): passed to each task's process
    /// as `CONFLUO_RUN_AS` (its SQL sessions' principal) and `CONFLUO_USER` (the owner of
    /// what it creates).
    pub run_as: Option<String>,
}

/// How an attempt ended.
#[derive(Debug, Clone, Default)]
pub(crate) struct Attempt {
    /// The process's exit code (None when it was stopped).
    pub exit_code: Option<i64>,
    /// Its output, stdout then stderr.
    pub log: String,
    /// Values for downstream tasks (a SQL task's first row).
    pub values: Option<serde_json::Value>,
    /// Every row of a SQL task's result (a `for_each`'s inputs).
    pub rows: Option<Vec<serde_json::Value>>,
    /// A condition's outcome.
    pub outcome: Option<bool>,
    /// Why it failed, when it did.
    pub error: Option<String>,
    /// It ran past its timeout.
    pub timed_out: bool,
    /// It was cancelled.
    pub cancelled: bool,
}

impl Launcher {
    /// The command for a task whose text is rendered already, and what to feed its stdin.
    fn command(&self, kind: &TaskKind) -> std::io::Result<(Command, Option<String>)> {
        let confluo = |args: &[&str]| {
            let mut c = Command::new(&self.confluo);
            c.arg("--project").arg(&self.project).args(args);
            c
        };
        let (mut command, input) = self.command_only(kind, &confluo)?;
        if let Some(name) = &self.run_as {
            command.env(RUN_AS_ENV, name).env("CONFLUO_USER", name);
        }
        Ok((command, input))
    }

    fn command_only(
        &self,
        kind: &TaskKind,
        confluo: &dyn Fn(&[&str]) -> Command,
    ) -> std::io::Result<(Command, Option<String>)> {
        Ok(match kind {
            TaskKind::Sql(sql) => (
                confluo(&["query", "-", "--format", "json"]),
                Some(sql.clone()),
            ),
            TaskKind::SqlFile(file) => {
                let text = std::fs::read_to_string(self.project.join(file)).map_err(|e| {
                    std::io::Error::other(format!("cannot read the task's SQL file {file}: {e}"))
                })?;
                (confluo(&["query", "-", "--format", "json"]), Some(text))
            }
            TaskKind::Condition(cond) => (
                confluo(&["query", "-", "--format", "json"]),
                Some(format!(
                    "SELECT CASE WHEN ({cond}) THEN 'true' ELSE 'false' END AS outcome"
                )),
            ),
            TaskKind::Shell(script) => {
                let mut c = Command::new("sh");
                c.arg("-c").arg(script);
                (c, None)
            }
            TaskKind::Pipeline {
                name,
                full_refresh,
                refresh,
                full_refresh_selection,
            } => {
                let mut c = confluo(&["run", "--pipeline", name]);
                if *full_refresh {
                    c.arg("--full-refresh");
                }
                if !refresh.is_empty() {
                    c.arg("--refresh").arg(refresh.join(","));
                }
                if !full_refresh_selection.is_empty() {
                    c.arg("--full-refresh-selection")
                        .arg(full_refresh_selection.join(","));
                }
                (c, None)
            }
            TaskKind::Sync(entry) => (confluo(&["sync", entry]), None),
            TaskKind::Ingest(i) => {
                let mut c = confluo(&["ingest", &i.path, "--into", &i.into]);
                if let Some(f) = &i.format {
                    c.arg("--format").arg(f);
                }
                (c, None)
            }
            TaskKind::RunJob(job) => (confluo(&["jobs", "run", job]), None),
            TaskKind::Monitor(tables) => {
                let mut c = confluo(&["monitor", "run"]);
                c.args(tables);
                (c, None)
            }
            TaskKind::ForEach { .. } => {
                return Err(std::io::Error::other(
                    "a for_each task runs its inner task, not a process",
                ));
            }
        })
    }

    /// Runs one attempt, stopping it at `timeout` or when `cancel` turns true; `started`
    /// hears the process group it runs as (`pgid:start-time`) once it started.
    pub(crate) async fn run(
        &self,
        kind: &TaskKind,
        timeout: Option<Duration>,
        mut cancel: watch::Receiver<bool>,
        started: Option<tokio::sync::oneshot::Sender<String>>,
    ) -> Attempt {
        let (mut cmd, input) = match self.command(kind) {
            Ok(c) => c,
            Err(e) => {
                return Attempt {
                    error: Some(e.to_string()),
                    ..Attempt::default()
                };
            }
        };
        cmd.current_dir(&self.project)
            .stdin(if input.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                return Attempt {
                    error: Some(e.to_string()),
                    ..Attempt::default()
                };
            }
        };
        let group = child.id();
        if let (Some(tx), Some(pid)) = (started, group)
            && let Some(start) = start_time(pid)
        {
            let _ = tx.send(format!("{pid}:{start}"));
        }
        if let (Some(text), Some(mut stdin)) = (input, child.stdin.take()) {
            tokio::spawn(async move {
                let _ = stdin.write_all(text.as_bytes()).await;
            });
        }
        let mut out = child.stdout.take().expect("piped stdout");
        let mut err = child.stderr.take().expect("piped stderr");
        let read = async {
            let (mut o, mut e) = (Vec::new(), Vec::new());
            let _ = tokio::join!(out.read_to_end(&mut o), err.read_to_end(&mut e));
            let status = child.wait().await;
            (o, e, status)
        };
        let limit = async {
            match timeout {
                Some(t) => tokio::time::sleep(t).await,
                None => std::future::pending().await,
            }
        };
        let cancelled = async {
            while !*cancel.borrow() {
                if cancel.changed().await.is_err() {
                    std::future::pending::<()>().await;
                }
            }
        };
        let (o, e, status, timed_out, was_cancelled) = tokio::select! {
            (o, e, status) = read => (o, e, status.ok(), false, false),
            _ = limit => (vec![], vec![], None, true, false),
            _ = cancelled => (vec![], vec![], None, false, true),
        };
        if (timed_out || was_cancelled)
            && let Some(pid) = group
        {
            // The whole group (`sh -c` leaves its children otherwise): SIGTERM first, so a
            // `confluo` task stops cleanly (a pipeline update, a nested job run stopping its
            // own tasks), then SIGKILL for whatever is left after the grace period.
            // SAFETY: kill(2) with a negative pid signals a process group; no memory is
            // touched.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGTERM);
            }
            let _ = tokio::time::timeout(STOP_GRACE, child.wait()).await;
            // SAFETY: as above.
            unsafe {
                libc::kill(-(pid as i32), libc::SIGKILL);
            }
        }
        let mut log = String::from_utf8_lossy(&o).into_owned();
        log.push_str(&String::from_utf8_lossy(&e));
        if log.len() > LOG_LIMIT {
            let cut = log.len() - LOG_LIMIT;
            let at = (cut..log.len())
                .find(|i| log.is_char_boundary(*i))
                .unwrap_or(cut);
            log = format!("[... {at} bytes cut]\n{}", &log[at..]);
        }
        let exit_code = status.and_then(|s| s.code()).map(i64::from);
        let mut a = Attempt {
            exit_code,
            log,
            timed_out,
            cancelled: was_cancelled,
            ..Attempt::default()
        };
        if timed_out {
            a.error = Some(format!(
                "timed out after {}",
                humantime::format_duration(timeout.unwrap_or_default())
            ));
            return a;
        }
        if was_cancelled {
            a.error = Some("cancelled".into());
            return a;
        }
        if exit_code != Some(0) {
            // Confluo's own errors start with their message; a script's last words are
            // usually its reason.
            let stderr = String::from_utf8_lossy(&e);
            let last = stderr
                .lines()
                .find(|l| l.starts_with("error:"))
                .or_else(|| stderr.lines().rev().find(|l| !l.trim().is_empty()))
                .map(|l| l.trim().to_string());
            a.error = Some(match (exit_code, last) {
                (Some(c), Some(l)) => format!("exit code {c}: {l}"),
                (Some(c), None) => format!("exit code {c}"),
                (None, _) => "stopped by a signal".into(),
            });
            return a;
        }
        if matches!(
            kind,
            TaskKind::Sql(_) | TaskKind::SqlFile(_) | TaskKind::Condition(_)
        ) {
            // The JSON of the last statement's rows: its first row is the task's values.
            let rows = serde_json::from_slice::<serde_json::Value>(&o)
                .ok()
                .and_then(|v| v.as_array().cloned());
            let first = rows.as_ref().and_then(|r| r.first().cloned());
            a.rows = rows;
            if let TaskKind::Condition(_) = kind {
                a.outcome = first
                    .as_ref()
                    .and_then(|r| r.get("outcome"))
                    .and_then(|v| v.as_str())
                    .map(|s| s == "true");
                if a.outcome.is_none() {
                    a.error = Some("the condition gave no outcome".into());
                }
            }
            a.values = first;
        }
        a
    }
}

/// When process `pid` started (clock ticks since boot, from `/proc/PID/stat`): with the pid,
/// it names a process for good, where a pid alone may be reused.
pub(crate) fn start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; the fields after its `)` are plain.
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(19)?.parse().ok()
}

/// Stops process group `process` (`pgid:start-time`, as [`Launcher::run`] reports it) if
/// its leader is still the process that started then; true when it signalled it.
pub(crate) fn kill_group(process: &str) -> bool {
    let Some((pid, start)) = process.split_once(':') else {
        return false;
    };
    let (Ok(pid), Ok(start)) = (pid.parse::<u32>(), start.parse::<u64>()) else {
        return false;
    };
    if pid <= 1 || start_time(pid) != Some(start) {
        return false;
    }
    // SAFETY: kill(2) with a negative pid signals a process group; no memory is touched.
    unsafe { libc::kill(-(pid as i32), libc::SIGKILL) == 0 }
}
