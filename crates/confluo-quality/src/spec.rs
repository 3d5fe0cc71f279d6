//! Monitors as checked: every check's kind with what it needs, its thresholds read, its
//! name unique. Errors name the monitor and the check (`monitors.gold.orders.checks[2]`).

use std::time::Duration;

use confluo_core::quality::{AlertConfig, CheckConfig, MonitorConfig};

use crate::error::{QualityError, Result};
use crate::sql::{ident, literal};
use crate::threshold::{Condition, Unit};

/// What a check measures.
#[derive(Debug, Clone, PartialEq)]
pub enum Kind {
    /// Rows (of the slice, after `where`).
    RowCount,
    /// Seconds since the newest value of `column`, or since the table's last commit.
    Freshness {
        /// The timestamp column, if any.
        column: Option<String>,
    },
    /// Rows with `column` null.
    Null {
        /// The column.
        column: String,
    },
    /// Rows beyond the first of each combination of `columns`.
    Duplicate {
        /// The columns.
        columns: Vec<String>,
    },
    /// Rows whose non-null `column` fails `valid` or `pattern`.
    Invalid {
        /// The column.
        column: String,
        /// The SQL condition for a valid row.
        valid: Option<String>,
        /// The regular expression a valid value matches.
        pattern: Option<String>,
    },
    /// Rows whose non-null `column` is not among `values` (SQL literals).
    AcceptedValues {
        /// The column.
        column: String,
        /// The allowed values, as SQL literals.
        values: Vec<String>,
    },
    /// Rows whose non-null `column` has no match in `table`.`to`.
    References {
        /// The column.
        column: String,
        /// The referenced table.
        table: String,
        /// Its column.
        to: String,
    },
    /// Rows not meeting `condition`.
    Sql {
        /// The SQL condition.
        condition: String,
    },
    /// A query's single number.
    Metric {
        /// The query.
        query: String,
    },
    /// A query whose rows are the failures.
    FailingRows {
        /// The query.
        query: String,
    },
    /// A lakehouse query's number minus a source system's.
    Compare {
        /// The lakehouse query.
        query: String,
        /// The connection of the source.
        connection: String,
        /// The query run there.
        source_query: String,
    },
    /// Columns added, removed or retyped since the version the last run checked.
    SchemaDrift,
    /// A column's distribution against a baseline version: the population stability
    /// index (PSI) over the baseline's deciles (or its common values).
    Drift {
        /// The column.
        column: String,
        /// The version compared with.
        baseline: Baseline,
    },
    /// Schema rules, from the Delta log: violations.
    Schema {
        /// Columns that must exist.
        required: Vec<String>,
        /// Types that must hold.
        types: Vec<(String, String)>,
        /// No columns beyond those named.
        no_other_columns: bool,
    },
}

/// The version a drift check compares with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Baseline {
    /// The one the monitor's last run checked.
    Previous,
    /// A fixed version.
    Version(i64),
}

/// Whether a check's value is a count of rows or a percent of the rows checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Measure {
    /// The value as measured (rows, seconds, a metric, violations).
    Count,
    /// Bad rows per hundred rows checked.
    Percent,
}

/// One checked check.
#[derive(Debug, Clone, PartialEq)]
pub struct Check {
    /// Unique within its monitor.
    pub name: String,
    /// The kind as written (`null_percent`).
    pub label: String,
    /// What it measures.
    pub kind: Kind,
    /// Count or percent.
    pub measure: Measure,
    /// The quality dimension.
    pub dimension: String,
    /// Only rows meeting this condition are checked.
    pub filter: Option<String>,
    /// Evaluated per group of these columns.
    pub group_by: Vec<String>,
    /// When it warns.
    pub warn: Option<Condition>,
    /// When it fails.
    pub fail: Option<Condition>,
}

impl Check {
    /// A SQL condition over the row alias `t` that is true for a bad row, for checks that
    /// judge rows one at a time (their failing rows are kept). `None` for checks of the
    /// whole table, and for duplicates and references, which need other rows.
    pub fn bad_row(&self) -> Option<String> {
        match &self.kind {
            Kind::Null { column } => Some(format!("t.{} IS NULL", ident(column))),
            Kind::Invalid {
                column,
                valid,
                pattern,
            } => {
                let c = format!("t.{}", ident(column));
                let ok = match (valid, pattern) {
                    (Some(v), _) => format!("coalesce(({v}), false)"),
                    (None, Some(p)) => {
                        format!(
                            "coalesce(regexp_like(CAST({c} AS VARCHAR), {}), false)",
                            literal(p)
                        )
                    }
                    (None, None) => "true".into(),
                };
                Some(format!("{c} IS NOT NULL AND NOT {ok}"))
            }
            Kind::AcceptedValues { column, values } => Some(format!(
                "t.{c} IS NOT NULL AND t.{c} NOT IN ({})",
                values.join(", "),
                c = ident(column)
            )),
            Kind::Sql { condition } => Some(format!("NOT coalesce(({condition}), false)")),
            _ => None,
        }
    }

    /// Whether its failing rows can be kept (rows are judged, not the table).
    pub fn keeps_rows(&self) -> bool {
        self.bad_row().is_some()
            || matches!(
                self.kind,
                Kind::Duplicate { .. } | Kind::References { .. } | Kind::FailingRows { .. }
            )
    }

    /// The unit its thresholds are read in.
    pub fn unit(&self) -> Unit {
        match self.kind {
            Kind::Freshness { .. } => Unit::Seconds,
            _ => Unit::Number,
        }
    }

    /// The columns of the monitored table it names (checked against the table at run time).
    pub fn columns(&self) -> Vec<&str> {
        let mut out: Vec<&str> = self.group_by.iter().map(String::as_str).collect();
        match &self.kind {
            Kind::Freshness { column: Some(c) }
            | Kind::Null { column: c }
            | Kind::Invalid { column: c, .. }
            | Kind::AcceptedValues { column: c, .. }
            | Kind::References { column: c, .. }
            | Kind::Drift { column: c, .. } => out.push(c),
            Kind::Duplicate { columns } => out.extend(columns.iter().map(String::as_str)),
            _ => {}
        }
        out
    }
}

/// Where an alert goes.
#[derive(Debug, Clone, PartialEq)]
pub enum Destination {
    /// A JSON POST, signed when `secret` is given.
    Webhook {
        /// The URL.
        url: String,
        /// The signing key (`${env:NAME}`).
        secret: Option<String>,
    },
    /// A Slack-compatible incoming webhook.
    Slack(String),
    /// E-mail through the project's SMTP server.
    Email(Vec<String>),
}

/// One alert route.
#[derive(Debug, Clone, PartialEq)]
pub struct Alert {
    /// Where.
    pub to: Destination,
    /// Whether warnings alert too (else only failures and errors).
    pub on_warn: bool,
}

/// One checked monitor.
#[derive(Debug, Clone, PartialEq)]
pub struct Monitor {
    /// The table as written in `monitors:`.
    pub table: String,
    /// Its key columns.
    pub key: Vec<String>,
    /// The checks.
    pub checks: Vec<Check>,
    /// Whether each run profiles the table.
    pub profile: bool,
    /// How long failing rows are kept (`None`: not kept).
    pub failures_retention: Option<Duration>,
    /// The alert routes.
    pub alerts: Vec<Alert>,
    /// Repeat an open alert after this long.
    pub snooze: Option<Duration>,
    /// Metrics judged against their own history.
    pub anomalies: Vec<crate::anomalies::Anomaly>,
}

/// The default: failing rows are kept a month.
const DEFAULT_RETENTION: Duration = Duration::from_secs(30 * 24 * 3600);

fn duration(at: &str, what: &str, text: &str) -> Result<Duration> {
    humantime::parse_duration(text.trim()).map_err(|e| {
        QualityError::Config(format!(
            "{at}: `{what}: {text}` is not a duration (e.g. 12h, 30d): {e}"
        ))
    })
}

impl Monitor {
    /// Checks the monitor of `table`.
    pub fn check(table: &str, config: &MonitorConfig, root: &std::path::Path) -> Result<Monitor> {
        let at = format!("monitors.{table}");
        let mut checks: Vec<Check> = Vec::new();
        for (i, c) in config.checks.iter().enumerate() {
            let check = check_one(&format!("{at}.checks[{i}]"), c, root)?;
            if let Some(other) = checks.iter().find(|o| o.name == check.name) {
                return Err(QualityError::Config(format!(
                    "{at}.checks[{i}]: another check is named `{}` ({}); give each a distinct `name:`",
                    check.name, other.label
                )));
            }
            checks.push(check);
        }
        let mut anomalies: Vec<crate::anomalies::Anomaly> = Vec::new();
        for (i, a) in config.anomalies.iter().enumerate() {
            let a = crate::anomalies::Anomaly::check(&format!("{at}.anomalies[{i}]"), a)?;
            if checks.iter().any(|c| c.name == a.name) || anomalies.iter().any(|o| o.name == a.name)
            {
                return Err(QualityError::Config(format!(
                    "{at}.anomalies[{i}]: another check is named `{}`; give each a distinct `name:`",
                    a.name
                )));
            }
            anomalies.push(a);
        }
        if checks.is_empty() && anomalies.is_empty() && !config.profile {
            return Err(QualityError::Config(format!(
                "{at}: no `checks:`, no `anomalies:` and no `profile: true`: the monitor would do nothing"
            )));
        }
        let failures_retention = match config.failures_retention.as_deref().map(str::trim) {
            None => Some(DEFAULT_RETENTION),
            Some("0") => None,
            Some(t) => Some(duration(&at, "failures_retention", t)?).filter(|d| !d.is_zero()),
        };
        let snooze = config
            .snooze
            .as_deref()
            .map(|s| duration(&at, "snooze", s))
            .transpose()?;
        let alerts = config
            .alerts
            .iter()
            .enumerate()
            .map(|(i, a)| alert(&format!("{at}.alerts[{i}]"), a))
            .collect::<Result<Vec<_>>>()?;
        Ok(Monitor {
            table: table.to_string(),
            key: config.key.clone(),
            checks,
            profile: config.profile,
            failures_retention,
            alerts,
            snooze,
            anomalies,
        })
    }
}

fn alert(at: &str, a: &AlertConfig) -> Result<Alert> {
    let err = |m: String| QualityError::Config(format!("{at}: {m}"));
    let on_warn = match a.on.as_deref() {
        None | Some("fail") => false,
        Some("warn") => true,
        Some(other) => return Err(err(format!("`on: {other}`: write `warn` or `fail`"))),
    };
    let url_ok = |u: &str| u.starts_with("http://") || u.starts_with("https://");
    let mut to = Vec::new();
    if let Some(u) = &a.webhook {
        if !url_ok(u) {
            return Err(err(format!(
                "webhook `{u}` is not an http:// or https:// URL"
            )));
        }
        to.push(Destination::Webhook {
            url: u.clone(),
            secret: a.secret.clone(),
        });
    } else if a.secret.is_some() {
        return Err(err(
            "`secret` signs webhooks; this alert has no `webhook`".into()
        ));
    }
    if let Some(u) = &a.slack {
        if !url_ok(u) {
            return Err(err(format!(
                "slack `{u}` is not an http:// or https:// URL"
            )));
        }
        to.push(Destination::Slack(u.clone()));
    }
    if !a.email.is_empty() {
        for address in &a.email {
            if !confluo_jobs::notify::is_email_address(address) {
                return Err(err(format!("`{address}` is not an e-mail address")));
            }
        }
        to.push(Destination::Email(a.email.clone()));
    }
    match to.len() {
        1 => Ok(Alert {
            to: to.pop().expect("one"),
            on_warn,
        }),
        0 => Err(err("give one of `webhook`, `slack` or `email`".into())),
        _ => Err(err(
            "give one of `webhook`, `slack` or `email` per alert (list several alerts)".into(),
        )),
    }
}

/// The keys each kind takes, beside the common ones.
fn allowed(kind: &str) -> &'static [&'static str] {
    match kind {
        "row_count" => &[],
        "freshness" => &["column"],
        "null_count" | "null_percent" => &["column"],
        "duplicate_count" | "duplicate_percent" => &["column", "columns"],
        "invalid_count" | "invalid_percent" => &["column", "valid", "pattern"],
        "accepted_values" => &["column", "values"],
        "references" => &["column", "table", "to"],
        "sql" => &["condition"],
        "metric" => &["query"],
        "compare" => &["query", "source"],
        "failing_rows" => &["query", "file"],
        "schema" => &["required", "types", "no_other_columns"],
        "schema_drift" => &[],
        "drift" => &["column", "baseline"],
        _ => &[],
    }
}

const KINDS: &[&str] = &[
    "row_count",
    "freshness",
    "null_count",
    "null_percent",
    "duplicate_count",
    "duplicate_percent",
    "invalid_count",
    "invalid_percent",
    "accepted_values",
    "references",
    "sql",
    "metric",
    "compare",
    "failing_rows",
    "schema",
    "schema_drift",
    "drift",
];

fn given(c: &CheckConfig) -> Vec<&'static str> {
    let mut out = Vec::new();
    if c.column.is_some() {
        out.push("column");
    }
    if !c.columns.is_empty() {
        out.push("columns");
    }
    if c.valid.is_some() {
        out.push("valid");
    }
    if c.pattern.is_some() {
        out.push("pattern");
    }
    if !c.values.is_empty() {
        out.push("values");
    }
    if c.table.is_some() {
        out.push("table");
    }
    if c.to.is_some() {
        out.push("to");
    }
    if c.condition.is_some() {
        out.push("condition");
    }
    if c.query.is_some() {
        out.push("query");
    }
    if c.source.is_some() {
        out.push("source");
    }
    if c.file.is_some() {
        out.push("file");
    }
    if !c.required.is_empty() {
        out.push("required");
    }
    if !c.types.is_empty() {
        out.push("types");
    }
    if c.no_other_columns {
        out.push("no_other_columns");
    }
    if c.baseline.is_some() {
        out.push("baseline");
    }
    out
}

fn yaml_literal(v: &serde_yaml_ng::Value) -> std::result::Result<String, String> {
    use serde_yaml_ng::Value;
    match v {
        Value::String(s) => Ok(literal(s)),
        Value::Number(n) => Ok(n.to_string()),
        Value::Bool(b) => Ok(b.to_string()),
        other => Err(format!(
            "`{}` is not a plain value (text, number or boolean)",
            serde_yaml_ng::to_string(other).unwrap_or_default().trim()
        )),
    }
}

fn check_one(at: &str, c: &CheckConfig, root: &std::path::Path) -> Result<Check> {
    let kind_name = c.check.trim();
    let err = |m: String| QualityError::Config(format!("{at} ({kind_name}): {m}"));
    if !KINDS.contains(&kind_name) {
        let near = confluo_core::suggest::nearest(kind_name, KINDS.iter().copied());
        return Err(QualityError::Config(format!(
            "{at}: unknown check `{kind_name}`{}; the kinds are {}",
            near.first()
                .map(|n| format!(" (did you mean `{n}`?)"))
                .unwrap_or_default(),
            KINDS.join(", ")
        )));
    }
    let ok = allowed(kind_name);
    if let Some(extra) = given(c).into_iter().find(|k| !ok.contains(k)) {
        return Err(err(format!(
            "`{extra}` does not apply to this kind{}",
            if ok.is_empty() {
                String::new()
            } else {
                format!(" (it takes {})", ok.join(", "))
            }
        )));
    }
    let column = || {
        c.column
            .clone()
            .filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err("needs `column`".into()))
    };
    let kind = match kind_name {
        "row_count" => Kind::RowCount,
        "freshness" => Kind::Freshness {
            column: c.column.clone(),
        },
        "null_count" | "null_percent" => Kind::Null { column: column()? },
        "duplicate_count" | "duplicate_percent" => {
            let mut columns = c.columns.clone();
            if let Some(col) = &c.column {
                columns.insert(0, col.clone());
            }
            if columns.is_empty() {
                return Err(err("needs `column` or `columns`".into()));
            }
            Kind::Duplicate { columns }
        }
        "invalid_count" | "invalid_percent" => {
            if c.valid.is_some() == c.pattern.is_some() {
                return Err(err(
                    "needs one of `valid` (a SQL condition) or `pattern` (a regular expression)"
                        .into(),
                ));
            }
            Kind::Invalid {
                column: column()?,
                valid: c.valid.clone(),
                pattern: c.pattern.clone(),
            }
        }
        "accepted_values" => {
            if c.values.is_empty() {
                return Err(err("needs `values`".into()));
            }
            Kind::AcceptedValues {
                column: column()?,
                values: c
                    .values
                    .iter()
                    .map(yaml_literal)
                    .collect::<std::result::Result<_, _>>()
                    .map_err(err)?,
            }
        }
        "references" => {
            let column = column()?;
            Kind::References {
                table: c.table.clone().ok_or_else(|| {
                    err("needs `table` (the table the values must exist in)".into())
                })?,
                to: c.to.clone().unwrap_or_else(|| column.clone()),
                column,
            }
        }
        "sql" => Kind::Sql {
            condition: c
                .condition
                .clone()
                .ok_or_else(|| err("needs `condition` (what every row must meet)".into()))?,
        },
        "metric" => Kind::Metric {
            query: c
                .query
                .clone()
                .ok_or_else(|| err("needs `query` (a query returning one number)".into()))?,
        },
        "failing_rows" => Kind::FailingRows {
            query: match (&c.query, &c.file) {
                (Some(q), None) => q.clone(),
                (None, Some(f)) => {
                    let path = root.join(f);
                    let text = std::fs::read_to_string(&path)
                        .map_err(|e| err(format!("cannot read {}: {e}", path.display())))?;
                    text.trim().trim_end_matches(';').trim().to_string()
                }
                _ => {
                    return Err(err(
                        "needs `query` or `file` (a query whose rows are the failures), one of them".into(),
                    ));
                }
            },
        },
        "compare" => {
            let source = c.source.as_ref().ok_or_else(|| {
                err(
                    "needs `source: {connection: NAME, query: ...}` (the number to agree with)"
                        .into(),
                )
            })?;
            Kind::Compare {
                query: c.query.clone().ok_or_else(|| {
                    err(
                        "needs `query` (the lakehouse's number, to compare with the source's)"
                            .into(),
                    )
                })?,
                connection: source.connection.clone(),
                source_query: source.query.clone(),
            }
        }
        "schema_drift" => Kind::SchemaDrift,
        "drift" => Kind::Drift {
            column: column()?,
            baseline: match &c.baseline {
                None => Baseline::Previous,
                Some(serde_yaml_ng::Value::String(s)) if s == "previous" => Baseline::Previous,
                Some(serde_yaml_ng::Value::Number(n)) if n.as_i64().is_some_and(|v| v >= 0) => {
                    Baseline::Version(n.as_i64().expect("checked"))
                }
                Some(_) => {
                    return Err(err(
                        "`baseline`: write `previous` or a table version number".into(),
                    ));
                }
            },
        },
        "schema" => {
            if c.required.is_empty() && c.types.is_empty() {
                return Err(err("needs `required` columns or `types`".into()));
            }
            Kind::Schema {
                required: c.required.clone(),
                types: c.types.clone().into_iter().collect(),
                no_other_columns: c.no_other_columns,
            }
        }
        _ => unreachable!("kinds are listed above"),
    };
    let measure = if kind_name.ends_with("_percent") {
        Measure::Percent
    } else {
        Measure::Count
    };
    let probe = Check {
        name: String::new(),
        label: kind_name.to_string(),
        kind: kind.clone(),
        measure,
        dimension: String::new(),
        filter: None,
        group_by: vec![],
        warn: None,
        fail: None,
    };
    let unit = probe.unit();
    let read = |t: &Option<confluo_core::quality::Threshold>, which: &str| {
        t.as_ref()
            .map(|t| Condition::parse(t, unit).map_err(|e| err(format!("`{which}`: {e}"))))
            .transpose()
    };
    let mut warn = read(&c.warn, "warn")?;
    let mut fail = read(&c.fail, "fail")?;
    if warn.is_none() && fail.is_none() {
        fail = match &kind {
            Kind::RowCount => Some(Condition::Eq(0.0)),
            // A new column is news, not necessarily breakage: it warns.
            Kind::SchemaDrift => None,
            Kind::Drift { .. } => Some(Condition::Gt(0.25)),
            Kind::Compare { .. } => Some(Condition::Ne(0.0)),
            Kind::FailingRows { .. } => Some(Condition::Gt(0.0)),
            Kind::Freshness { .. } | Kind::Metric { .. } => {
                return Err(err(
                    "needs `warn` or `fail` (e.g. `fail: \"> 2h\"`, `fail: \"!= 0\"`)".into(),
                ));
            }
            _ => Some(Condition::Gt(0.0)),
        };
    }
    if warn.is_none() && c.fail.is_none() {
        warn = match &kind {
            Kind::SchemaDrift => Some(Condition::Gt(0.0)),
            Kind::Drift { .. } => Some(Condition::Gt(0.1)),
            _ => None,
        };
    }
    if matches!(
        kind,
        Kind::Metric { .. }
            | Kind::Compare { .. }
            | Kind::FailingRows { .. }
            | Kind::Schema { .. }
            | Kind::SchemaDrift
            | Kind::Drift { .. }
    ) && !c.group_by.is_empty()
    {
        return Err(err("`group_by` does not apply to this kind".into()));
    }
    if matches!(kind, Kind::Freshness { column: None }) && !c.group_by.is_empty() {
        return Err(err(
            "`group_by` needs `column` (a timestamp column to measure each group's freshness by)"
                .into(),
        ));
    }
    if matches!(kind, Kind::Schema { .. } | Kind::SchemaDrift) && c.filter.is_some() {
        return Err(err("`where` does not apply to this kind".into()));
    }
    let dimension = c.dimension.clone().unwrap_or_else(|| {
        match &kind {
            Kind::RowCount => "volume",
            Kind::Freshness { .. } => "freshness",
            Kind::Null { .. } => "completeness",
            Kind::Duplicate { .. } => "uniqueness",
            Kind::Invalid { .. }
            | Kind::AcceptedValues { .. }
            | Kind::Sql { .. }
            | Kind::FailingRows { .. } => "validity",
            Kind::References { .. } | Kind::Metric { .. } | Kind::Compare { .. } => "consistency",
            Kind::Schema { .. } | Kind::SchemaDrift => "schema",
            Kind::Drift { .. } => "consistency",
        }
        .to_string()
    });
    const DIMENSIONS: &[&str] = &[
        "validity",
        "accuracy",
        "completeness",
        "consistency",
        "uniqueness",
        "freshness",
        "volume",
        "schema",
    ];
    if !DIMENSIONS.contains(&dimension.as_str()) {
        return Err(err(format!(
            "`dimension: {dimension}`: write one of {}",
            DIMENSIONS.join(", ")
        )));
    }
    let name = match &c.name {
        Some(n) if !n.trim().is_empty() => n.trim().to_string(),
        _ => match &kind {
            Kind::Null { column }
            | Kind::Invalid { column, .. }
            | Kind::AcceptedValues { column, .. }
            | Kind::References { column, .. }
            | Kind::Drift { column, .. } => format!("{kind_name}({column})"),
            Kind::Freshness { column: Some(col) } => format!("{kind_name}({col})"),
            Kind::Duplicate { columns } => format!("{kind_name}({})", columns.join(", ")),
            Kind::Sql { .. }
            | Kind::Metric { .. }
            | Kind::Compare { .. }
            | Kind::FailingRows { .. } => {
                return Err(err(
                    "needs a `name:` (it appears in results and alerts)".into()
                ));
            }
            _ => kind_name.to_string(),
        },
    };
    Ok(Check {
        name,
        dimension,
        filter: c.filter.clone(),
        group_by: c.group_by.clone(),
        warn,
        fail,
        ..probe
    })
}

/// Every monitor of the project, checked; `only` (table names as written, or resolved
/// names) picks some.
pub fn monitors(project: &confluo_core::Project, only: &[String]) -> Result<Vec<Monitor>> {
    let config = &project.config;
    let mut out = Vec::new();
    for wanted in only {
        if !config.monitors.contains_key(wanted) {
            let near =
                confluo_core::suggest::nearest(wanted, config.monitors.keys().map(String::as_str));
            return Err(QualityError::Config(format!(
                "no monitor for `{wanted}` in confluo.yaml{}",
                if near.is_empty() {
                    format!(
                        " (monitored: {})",
                        if config.monitors.is_empty() {
                            "none".to_string()
                        } else {
                            config
                                .monitors
                                .keys()
                                .cloned()
                                .collect::<Vec<_>>()
                                .join(", ")
                        }
                    )
                } else {
                    format!(" (did you mean {}?)", near.join(", "))
                }
            )));
        }
    }
    for (table, m) in &config.monitors {
        if only.is_empty() || only.contains(table) {
            out.push(Monitor::check(table, m, &project.root)?);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn monitor(yaml: &str) -> Result<Monitor> {
        let config: MonitorConfig = serde_yaml_ng::from_str(yaml).unwrap();
        Monitor::check("gold.orders", &config, std::path::Path::new("."))
    }

    #[test]
    fn checks_get_names_defaults_and_bad_row_conditions() {
        let m = monitor(
            r#"
key: [id]
checks:
  - {check: row_count}
  - {check: null_percent, column: email, warn: "> 1", fail: 5}
  - {check: accepted_values, column: status, values: [open, "it's", 3]}
  - {check: duplicate_count, columns: [id]}
  - {check: freshness, fail: "> 2h"}
"#,
        )
        .unwrap();
        let names: Vec<&str> = m.checks.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "row_count",
                "null_percent(email)",
                "accepted_values(status)",
                "duplicate_count(id)",
                "freshness"
            ]
        );
        assert_eq!(m.checks[0].fail, Some(Condition::Eq(0.0)));
        assert_eq!(m.checks[1].fail, Some(Condition::Gt(5.0)));
        assert_eq!(m.checks[1].measure, Measure::Percent);
        assert_eq!(m.checks[3].fail, Some(Condition::Gt(0.0)));
        assert_eq!(m.checks[4].fail, Some(Condition::Gt(7200.0)));
        assert_eq!(
            m.checks[2].bad_row().unwrap(),
            "t.`status` IS NOT NULL AND t.`status` NOT IN ('open', 'it''s', 3)"
        );
        assert_eq!(m.failures_retention, Some(DEFAULT_RETENTION));
    }

    #[test]
    fn mistakes_are_named_with_where_they_are() {
        let e = |y: &str| monitor(y).unwrap_err().to_string();
        assert!(
            e("checks: [{check: null_percnt, column: a}]")
                .contains("monitors.gold.orders.checks[0]: unknown check `null_percnt` (did you mean `null_percent`?)")
        );
        assert!(e("checks: [{check: null_percent}]").contains("needs `column`"));
        assert!(
            e("checks: [{check: row_count, column: a}]")
                .contains("`column` does not apply to this kind")
        );
        assert!(e("checks: [{check: freshness}]").contains("needs `warn` or `fail`"));
        assert!(e("checks: [{check: sql, condition: a > 0}]").contains("needs a `name:`"));
        assert!(
            e("checks: [{check: row_count}, {check: row_count, fail: '< 5'}]")
                .contains("another check is named `row_count`")
        );
        assert!(
            e("checks: [{check: row_count, fail: '> many'}]")
                .contains("`fail`: `many` is not a number")
        );
        assert!(e("checks: []").contains("would do nothing"));
        assert!(
            e("checks: [{check: row_count}]\nalerts: [{webhook: ftp://x}]")
                .contains("alerts[0]: webhook `ftp://x` is not an http")
        );
        assert!(e("checks: [{check: row_count}]\nsnooze: soon").contains("not a duration"));
    }
}
