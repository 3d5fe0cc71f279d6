//! What the tasks of a run may refer to, and their texts with every `{{...}}` replaced.

use std::collections::{BTreeMap, HashMap};

use crate::spec::TaskKind;
use crate::template::{self, Ref};

/// What the tasks of a run may refer to.
#[derive(Debug, Clone)]
pub(super) struct Scope {
    pub(super) job: String,
    pub(super) run_id: String,
    pub(super) start_time: String,
    pub(super) logical_time: String,
    pub(super) parameters: BTreeMap<String, String>,
    pub(super) trigger: BTreeMap<String, String>,
    pub(super) values: HashMap<String, serde_json::Value>,
    /// A `for_each` iteration's input.
    pub(super) input: Option<String>,
}

impl Scope {
    fn value(&self, r: &Ref) -> std::result::Result<String, String> {
        match r {
            Ref::Parameter(p) => self
                .parameters
                .get(p)
                .cloned()
                .ok_or_else(|| format!("no parameter `{p}`")),
            // A key this run's trigger did not pass (a manual run of a file-arrival job) is
            // empty, as in Lakeflow Jobs.
            Ref::Trigger(k) => Ok(self.trigger.get(k).cloned().unwrap_or_default()),
            Ref::Input => self
                .input
                .clone()
                .ok_or_else(|| "{{input}} is set only inside a for_each task".to_string()),
            Ref::Run(w) => Ok(match w.as_str() {
                "run_id" => self.run_id.clone(),
                "start_time" => self.start_time.clone(),
                "logical_time" => self.logical_time.clone(),
                _ => self.job.clone(),
            }),
            Ref::TaskValue(k, v) => {
                let row = self.values.get(k).and_then(|r| r.as_object());
                match row.and_then(|r| r.get(v)) {
                    Some(serde_json::Value::String(s)) => Ok(s.clone()),
                    Some(serde_json::Value::Null) => Ok(String::new()),
                    Some(other) => Ok(other.to_string()),
                    None => Err(format!(
                        "task `{k}` gave no value `{v}` ({})",
                        match row {
                            Some(r) if !r.is_empty() => format!(
                                "its values: {}",
                                r.keys().cloned().collect::<Vec<_>>().join(", ")
                            ),
                            _ => "it gave no values: only a SQL task's first row does".into(),
                        }
                    )),
                }
            }
        }
    }

    /// `text` with every `{{...}}` replaced.
    pub(super) fn render_text(&self, text: &str) -> std::result::Result<String, String> {
        template::render(text, &|x| self.value(x))
    }

    /// The task with every `{{...}}` of its texts replaced.
    pub(super) fn render(&self, kind: &TaskKind) -> std::result::Result<TaskKind, String> {
        let r = |t: &str| template::render(t, &|x| self.value(x));
        Ok(match kind {
            TaskKind::Sql(s) => TaskKind::Sql(r(s)?),
            TaskKind::SqlFile(s) => TaskKind::SqlFile(r(s)?),
            TaskKind::Shell(s) => TaskKind::Shell(r(s)?),
            TaskKind::Condition(s) => TaskKind::Condition(r(s)?),
            TaskKind::Sync(s) => TaskKind::Sync(r(s)?),
            TaskKind::RunJob(s) => TaskKind::RunJob(r(s)?),
            TaskKind::Monitor(tables) => {
                TaskKind::Monitor(tables.iter().map(|t| r(t)).collect::<Result<_, _>>()?)
            }
            // Its inner task is rendered per iteration, with its input.
            TaskKind::ForEach { .. } => kind.clone(),
            TaskKind::Pipeline {
                name,
                full_refresh,
                refresh,
                full_refresh_selection,
            } => TaskKind::Pipeline {
                name: r(name)?,
                full_refresh: *full_refresh,
                refresh: refresh.clone(),
                full_refresh_selection: full_refresh_selection.clone(),
            },
            TaskKind::Ingest(i) => TaskKind::Ingest(confluo_core::jobs::IngestTask {
                path: r(&i.path)?,
                into: r(&i.into)?,
                format: i.format.clone(),
            }),
        })
    }
}
