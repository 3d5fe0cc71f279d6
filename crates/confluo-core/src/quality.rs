//! Data quality monitors in `confluo.yaml` (`monitors:`): the checks that watch a table
//! over time, what to keep of failing rows, and where alerts go.
//!
//! Only the shape lives here (unknown keys are errors with their line and column); what
//! each check kind needs, and the thresholds' grammar, are checked by `confluo-quality`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The monitor of one table (`monitors: {gold.orders: {...}}`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MonitorConfig {
    /// The columns that identify a row (kept with failing rows and named in alerts).
    #[serde(default)]
    pub key: Vec<String>,
    /// The checks.
    #[serde(default)]
    pub checks: Vec<CheckConfig>,
    /// Profile every column at each run (counts, nulls, distinct, min/max/mean/stddev,
    /// quantiles, lengths, top values), stored in `system.quality.metrics`.
    #[serde(default)]
    pub profile: bool,
    /// How long failing rows are kept in `<table>_failures` (default `30d`; `0` keeps
    /// none, only the counts).
    #[serde(default)]
    pub failures_retention: Option<String>,
    /// Where alerts go.
    #[serde(default)]
    pub alerts: Vec<AlertConfig>,
    /// While a check keeps failing, repeat its alert after this long (`12h`); by default
    /// an alert is sent once per change of status.
    #[serde(default)]
    pub snooze: Option<String>,
    /// Metrics watched for values out of line with their own history.
    #[serde(default)]
    pub anomalies: Vec<AnomalyConfig>,
}

/// An anomaly monitor: one metric of the table judged against its history.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AnomalyConfig {
    /// `volume` (rows per commit, from the Delta log), `freshness` (the gap since the last
    /// commit, against the usual gaps), `row_count`, `null_percent`, `distinct_count` or
    /// `mean` (of `column`, recorded at each run); on a pipeline's event log table,
    /// `update_duration`, `update_rows` or `expectation_failure_rate` (per update).
    pub metric: String,
    /// The column, for column metrics.
    #[serde(default)]
    pub column: Option<String>,
    /// A name for results and alerts (default `anomaly(<metric>)`).
    #[serde(default)]
    pub name: Option<String>,
    /// `auto` (the default: detected), `none`, `hour_of_day` or `day_of_week`.
    #[serde(default)]
    pub seasonality: Option<String>,
    /// How many robust standard deviations from the expected value alert (default 4;
    /// lower is more sensitive).
    #[serde(default)]
    pub sensitivity: Option<f64>,
    /// Values of history needed before anything is judged (default 10).
    #[serde(default)]
    pub min_history: Option<usize>,
    /// The smallest change that may alert: a number, or a duration for `freshness`.
    #[serde(default)]
    pub min_change: Option<Threshold>,
    /// `both` (default; `up` for freshness), `up` or `down`.
    #[serde(default)]
    pub direction: Option<String>,
    /// `fail` (default) or `warn`: the status an anomaly gives.
    #[serde(default)]
    pub level: Option<String>,
}

/// One check: `check:` names the kind, the other keys are what that kind needs.
///
/// Kinds: `row_count`, `freshness`, `null_percent`, `duplicate_percent`, `invalid_percent`,
/// `accepted_values`, `references`, `sql` (rows must satisfy a condition), `metric` (a
/// query's single number), `failing_rows` (a query or SQL file whose rows are the failures,
/// as dbt's singular tests), `compare` (a lakehouse number against a source system's),
/// `schema`, `schema_drift` (columns added, removed or retyped
/// since the last run), `drift` (a column's distribution against a baseline version: PSI).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CheckConfig {
    /// The kind.
    pub check: String,
    /// A name for results and alerts (default: the kind and its column).
    #[serde(default)]
    pub name: Option<String>,
    /// The quality dimension it measures (default by kind): `validity`, `completeness`,
    /// `consistency`, `uniqueness`, `freshness`, `volume`, `schema`.
    #[serde(default)]
    pub dimension: Option<String>,
    /// The column it is about.
    #[serde(default)]
    pub column: Option<String>,
    /// The columns it is about (`duplicate_percent` over a combination).
    #[serde(default)]
    pub columns: Vec<String>,
    /// `invalid_percent`: a SQL condition a valid value meets.
    #[serde(default)]
    pub valid: Option<String>,
    /// `invalid_percent`: a regular expression a valid value matches.
    #[serde(default)]
    pub pattern: Option<String>,
    /// `accepted_values`: the values allowed.
    #[serde(default)]
    pub values: Vec<serde_yaml_ng::Value>,
    /// `references`: the table the column's values must exist in.
    #[serde(default)]
    pub table: Option<String>,
    /// `references`: the column of `table` (default: the same name).
    #[serde(default)]
    pub to: Option<String>,
    /// `sql`: a condition every row must meet.
    #[serde(default)]
    pub condition: Option<String>,
    /// `metric`, `compare`: a query returning one number (may read other tables).
    #[serde(default)]
    pub query: Option<String>,
    /// `failing_rows`: a SQL file (relative to the project) holding the query, instead of
    /// `query`.
    #[serde(default)]
    pub file: Option<String>,
    /// `compare`: the same number from a source system; the check measures the lakehouse's
    /// value minus the source's.
    #[serde(default)]
    pub source: Option<CompareSource>,
    /// Only rows meeting this SQL condition are checked.
    #[serde(default, rename = "where")]
    pub filter: Option<String>,
    /// Evaluate per group (one result per slice), e.g. `[region]`.
    #[serde(default)]
    pub group_by: Vec<String>,
    /// `schema`: columns that must exist.
    #[serde(default)]
    pub required: Vec<String>,
    /// `schema`: column types that must hold (`id: bigint`).
    #[serde(default)]
    pub types: BTreeMap<String, String>,
    /// `schema`: fail on columns not named in `required` or `types`.
    #[serde(default)]
    pub no_other_columns: bool,
    /// `drift`: the version to compare with: `previous` (the one the last run checked; the
    /// default) or a version number.
    #[serde(default)]
    pub baseline: Option<serde_yaml_ng::Value>,
    /// When the measured value warns (`"> 1"`, `"< 1000"`, `"between 1 and 5"`, `"> 2h"`).
    #[serde(default)]
    pub warn: Option<Threshold>,
    /// When it fails; checks that count bad rows fail on `"> 0"` unless told otherwise.
    #[serde(default)]
    pub fail: Option<Threshold>,
}

/// `source:` of a `compare` check: a query run on one of the project's connections.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct CompareSource {
    /// A connection of `connections:` (PostgreSQL, MySQL or MariaDB).
    pub connection: String,
    /// A query in the source's own SQL returning one number.
    pub query: String,
}

/// A threshold as written: a condition (`"> 5"`, `"between 1 and 9"`) or a bare number
/// (meaning `> n`).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(untagged)]
pub enum Threshold {
    /// A bare number: above it is bad.
    Number(f64),
    /// A condition under which the check warns or fails.
    Text(String),
}

/// Where a monitor's alerts go: one of `webhook`, `slack` or `email`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields)]
pub struct AlertConfig {
    /// An HTTP(S) URL that gets each alert as JSON in a POST.
    #[serde(default)]
    pub webhook: Option<String>,
    /// With `webhook`: a key (`${env:NAME}`) to sign each body with HMAC-SHA256.
    #[serde(default)]
    pub secret: Option<String>,
    /// A Slack-compatible incoming-webhook URL (`{"text": ...}` bodies).
    #[serde(default)]
    pub slack: Option<String>,
    /// E-mail addresses, sent through the project's `smtp:` server.
    #[serde(default)]
    pub email: Vec<String>,
    /// The lowest status that alerts: `warn` or `fail` (the default).
    #[serde(default)]
    pub on: Option<String>,
}
