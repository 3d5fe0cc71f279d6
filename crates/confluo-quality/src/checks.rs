//! Evaluating a monitor's checks against one version of its table.
//!
//! Checks that judge rows one at a time, and the row counts, share one scan per
//! (`where`, `group_by`) pair: each is one `sum(CASE WHEN bad THEN 1 ELSE 0 END)` beside
//! the others. Duplicates, references and metric queries need their own queries. A check
//! that cannot be evaluated (a missing column, bad SQL) ends as `error` with the reason;
//! the others still run.

use std::collections::BTreeMap;

use arrow::array::{Array, AsArray, RecordBatch};
use arrow::datatypes::{DataType, Float64Type, Schema};
use serde::Serialize;

use confluo_core::TableName;
use confluo_sql::SqlSession;

use crate::spec::{Check, Kind, Measure};
use crate::sql::{ident, table as table_sql};
use crate::threshold::Condition;

/// The project's connections, by name (`compare` checks read sources through them).
pub type Connections = std::collections::BTreeMap<String, confluo_core::project::ConnectionConfig>;

/// How a check ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Hash)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// Within its thresholds.
    Pass,
    /// Its `warn` condition held.
    Warn,
    /// Its `fail` condition held.
    Fail,
    /// It could not be evaluated.
    Error,
}

impl Status {
    /// `pass`, `warn`, `fail` or `error`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Status::Pass => "pass",
            Status::Warn => "warn",
            Status::Fail => "fail",
            Status::Error => "error",
        }
    }

    /// Reads a stored status.
    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "pass" => Status::Pass,
            "warn" => Status::Warn,
            "fail" => Status::Fail,
            "error" => Status::Error,
            _ => return None,
        })
    }
}

/// One check's outcome on one slice.
#[derive(Debug, Clone, Serialize)]
pub struct CheckResult {
    /// The check's name.
    pub check: String,
    /// Its kind.
    pub kind: String,
    /// Its quality dimension.
    pub dimension: String,
    /// `region=EU` for a group; empty for the whole table.
    pub slice: String,
    /// How it ended.
    pub status: Status,
    /// The measured value (a percent, a count, seconds, a metric).
    pub value: Option<f64>,
    /// Rows found bad (row checks).
    pub bad_rows: Option<i64>,
    /// Rows checked.
    pub checked_rows: Option<i64>,
    /// The warn condition.
    pub warn: Option<String>,
    /// The fail condition.
    pub fail: Option<String>,
    /// What was found, in a sentence.
    pub message: String,
}

/// The table a monitor is evaluated against.
#[derive(Debug, Clone)]
pub struct Target {
    /// Its resolved name.
    pub name: TableName,
    /// The version evaluated.
    pub version: i64,
    /// Its schema at that version.
    pub schema: std::sync::Arc<Schema>,
    /// When that version was committed (ms since the epoch).
    pub committed_ms: Option<i64>,
    /// The moment the run measures ages from (ms).
    pub now_ms: i64,
    /// The version the monitor's last run checked, if any.
    pub previous_version: Option<i64>,
}

impl Target {
    /// `catalog.schema.table VERSION AS OF n AS t`.
    pub fn from_clause(&self) -> String {
        format!(
            "{} VERSION AS OF {} AS t",
            table_sql(&self.name),
            self.version
        )
    }
}

fn judge(check: &Check, value: f64) -> Status {
    if check.fail.is_some_and(|c| c.holds(value)) {
        Status::Fail
    } else if check.warn.is_some_and(|c| c.holds(value)) {
        Status::Warn
    } else {
        Status::Pass
    }
}

fn show_value(check: &Check, v: f64) -> String {
    match (&check.kind, check.measure) {
        (Kind::Freshness { .. }, _) => {
            humantime::format_duration(std::time::Duration::from_secs(v.max(0.0) as u64))
                .to_string()
        }
        (_, Measure::Percent) => format!("{v:.2}%"),
        _ if v.fract() == 0.0 => format!("{}", v as i64),
        _ => format!("{v}"),
    }
}

fn result(check: &Check, slice: String) -> CheckResult {
    CheckResult {
        check: check.name.clone(),
        kind: check.label.clone(),
        dimension: check.dimension.clone(),
        slice,
        status: Status::Error,
        value: None,
        bad_rows: None,
        checked_rows: None,
        warn: check.warn.as_ref().map(Condition::to_string),
        fail: check.fail.as_ref().map(Condition::to_string),
        message: String::new(),
    }
}

pub(crate) fn errored(check: &Check, message: String) -> CheckResult {
    CheckResult {
        message,
        ..result(check, String::new())
    }
}

/// A result from a measured value.
pub(crate) fn measured(
    check: &Check,
    slice: String,
    value: f64,
    bad: Option<i64>,
    rows: Option<i64>,
) -> CheckResult {
    let status = judge(check, value);
    let shown = show_value(check, value);
    let message = match (bad, rows) {
        (Some(b), Some(r)) => format!("{b} of {r} rows bad ({shown})"),
        _ => shown,
    };
    CheckResult {
        status,
        value: Some(value),
        bad_rows: bad,
        checked_rows: rows,
        message,
        ..result(check, slice)
    }
}

/// A row check's value: a count or a percent of the rows checked.
fn row_value(check: &Check, bad: i64, rows: i64) -> f64 {
    match check.measure {
        Measure::Count => bad as f64,
        Measure::Percent if rows == 0 => 0.0,
        Measure::Percent => bad as f64 * 100.0 / rows as f64,
    }
}

/// The first near column names to `name`, for messages.
fn missing_column(schema: &Schema, name: &str) -> String {
    let names: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let near = confluo_core::suggest::nearest(name, names.iter().copied());
    format!(
        "column `{name}` does not exist{}",
        match near.first() {
            Some(n) => format!(" (did you mean `{n}`?)"),
            None => format!("; the columns are {}", names.join(", ")),
        }
    )
}

/// Evaluates `checks` against `target`.
pub async fn evaluate(
    session: &SqlSession,
    target: &Target,
    checks: &[Check],
    connections: &Connections,
) -> Vec<CheckResult> {
    let mut out: Vec<(usize, Vec<CheckResult>)> = Vec::new();
    // Checks sharing a scan: (where, group_by) → indexes.
    let mut scans: BTreeMap<(Option<String>, Vec<String>), Vec<usize>> = BTreeMap::new();
    for (i, check) in checks.iter().enumerate() {
        if let Some(missing) = check
            .columns()
            .into_iter()
            .find(|c| target.schema.field_with_name(c).is_err())
        {
            out.push((
                i,
                vec![errored(check, missing_column(&target.schema, missing))],
            ));
            continue;
        }
        match &check.kind {
            Kind::RowCount
            | Kind::Null { .. }
            | Kind::Invalid { .. }
            | Kind::AcceptedValues { .. }
            | Kind::Sql { .. }
            | Kind::Freshness { column: Some(_) } => scans
                .entry((check.filter.clone(), check.group_by.clone()))
                .or_default()
                .push(i),
            Kind::Freshness { column: None } => out.push((i, vec![log_freshness(check, target)])),
            Kind::Schema { .. } => out.push((i, vec![schema_check(check, &target.schema)])),
            Kind::SchemaDrift => out.push((
                i,
                vec![crate::drift::schema_drift(session, target, check).await],
            )),
            Kind::Drift { column, baseline } => out.push((
                i,
                vec![
                    crate::drift::distribution_drift(session, target, check, column, *baseline)
                        .await,
                ],
            )),
            Kind::Metric { query } => out.push((i, vec![metric(session, check, query).await])),
            Kind::FailingRows { query } => {
                let counted = format!("SELECT count(*) FROM ({query}) q");
                out.push((
                    i,
                    vec![match lakehouse_number(session, &counted).await {
                        Ok(n) => measured(check, String::new(), n, Some(n as i64), None),
                        Err(e) => errored(check, e),
                    }],
                ))
            }
            Kind::Compare {
                query,
                connection,
                source_query,
            } => out.push((
                i,
                vec![
                    crate::compare::compare(
                        session,
                        check,
                        query,
                        connection,
                        connections.get(connection),
                        source_query,
                    )
                    .await,
                ],
            )),
            Kind::Duplicate { columns } => {
                out.push((i, duplicates(session, target, check, columns).await))
            }
            Kind::References { column, table, to } => out.push((
                i,
                references(session, target, check, column, table, to).await,
            )),
        }
    }
    for ((filter, group_by), members) in scans {
        match scan(
            session,
            target,
            checks,
            &members,
            filter.as_deref(),
            &group_by,
        )
        .await
        {
            Ok(results) => out.extend(results),
            // One bad condition should not hide the others' results: run each alone, so
            // the error lands on the check that caused it.
            Err(_) if members.len() > 1 => {
                for &m in &members {
                    let r = scan(session, target, checks, &[m], filter.as_deref(), &group_by)
                        .await
                        .unwrap_or_else(|e| vec![(m, vec![errored(&checks[m], e)])]);
                    out.extend(r);
                }
            }
            Err(e) => out.push((members[0], vec![errored(&checks[members[0]], e)])),
        }
    }
    out.sort_by_key(|(i, _)| *i);
    out.into_iter().flat_map(|(_, r)| r).collect()
}

fn where_clause(filter: Option<&str>) -> String {
    filter.map(|f| format!(" WHERE ({f})")).unwrap_or_default()
}

fn group_select(group_by: &[String]) -> (String, String) {
    if group_by.is_empty() {
        return (String::new(), String::new());
    }
    let select: Vec<String> = group_by
        .iter()
        .enumerate()
        .map(|(i, g)| format!("CAST(t.{} AS VARCHAR) AS __g{i}, ", ident(g)))
        .collect();
    let group: Vec<String> = group_by.iter().map(|g| format!("t.{}", ident(g))).collect();
    (select.concat(), format!(" GROUP BY {}", group.join(", ")))
}

/// The slice names of a grouped result's rows.
fn slices(batch: &RecordBatch, group_by: &[String]) -> Result<Vec<String>, String> {
    let mut out = vec![Vec::new(); batch.num_rows()];
    for (i, g) in group_by.iter().enumerate() {
        let col = batch
            .column_by_name(&format!("__g{i}"))
            .ok_or("a group column is missing")?;
        let col = arrow::compute::cast(col, &DataType::Utf8).map_err(|e| e.to_string())?;
        let col = col.as_string::<i32>();
        for (r, parts) in out.iter_mut().enumerate() {
            let v = if col.is_null(r) { "NULL" } else { col.value(r) };
            parts.push(format!("{g}={v}"));
        }
    }
    Ok(out.into_iter().map(|p| p.join(", ")).collect())
}

pub(crate) fn floats(batch: &RecordBatch, name: &str) -> Result<Vec<Option<f64>>, String> {
    let col = batch
        .column_by_name(name)
        .ok_or_else(|| format!("column {name} is missing from the result"))?;
    let col = arrow::compute::cast(col, &DataType::Float64).map_err(|e| e.to_string())?;
    let col = col.as_primitive::<Float64Type>();
    Ok((0..col.len())
        .map(|i| (!col.is_null(i)).then(|| col.value(i)))
        .collect())
}

pub(crate) async fn query(session: &SqlSession, sql: &str) -> Result<Vec<RecordBatch>, String> {
    session.query(sql).await.map_err(|e| e.to_string())
}

async fn scan(
    session: &SqlSession,
    target: &Target,
    checks: &[Check],
    members: &[usize],
    filter: Option<&str>,
    group_by: &[String],
) -> Result<Vec<(usize, Vec<CheckResult>)>, String> {
    let (gsel, gby) = group_select(group_by);
    let mut items = String::new();
    for &m in members {
        let check = &checks[m];
        let expr = match &check.kind {
            Kind::RowCount => continue,
            Kind::Freshness { column: Some(c) } => {
                format!("date_part('epoch', CAST(max(t.{}) AS TIMESTAMP))", ident(c))
            }
            _ => format!(
                "sum(CASE WHEN {} THEN 1 ELSE 0 END)",
                check
                    .bad_row()
                    .expect("row checks have a bad-row condition")
            ),
        };
        items.push_str(&format!(", {expr} AS __c{m}"));
    }
    let sql = format!(
        "SELECT {gsel}count(*) AS __n{items} FROM {}{}{gby}",
        target.from_clause(),
        where_clause(filter)
    );
    let batches = query(session, &sql).await?;
    let mut out: BTreeMap<usize, Vec<CheckResult>> = BTreeMap::new();
    for batch in &batches {
        let names = slices(batch, group_by)?;
        let rows = floats(batch, "__n")?;
        for &m in members {
            let check = &checks[m];
            let values = match check.kind {
                Kind::RowCount => rows.clone(),
                _ => floats(batch, &format!("__c{m}"))?,
            };
            for (r, slice) in names.iter().enumerate() {
                let n = rows[r].unwrap_or(0.0) as i64;
                let res = match &check.kind {
                    Kind::RowCount => measured(check, slice.clone(), n as f64, None, None),
                    Kind::Freshness { .. } => match values[r] {
                        Some(epoch) => {
                            let age = (target.now_ms as f64 / 1000.0 - epoch).max(0.0);
                            measured(check, slice.clone(), age, None, None)
                        }
                        None => CheckResult {
                            message: "no values to measure freshness from (no rows, or all null)"
                                .into(),
                            status: Status::Fail,
                            ..result(check, slice.clone())
                        },
                    },
                    _ => {
                        let bad = values[r].unwrap_or(0.0) as i64;
                        measured(
                            check,
                            slice.clone(),
                            row_value(check, bad, n),
                            Some(bad),
                            Some(n),
                        )
                    }
                };
                out.entry(m).or_default().push(res);
            }
        }
    }
    // An empty table (or a filter matching nothing) still gets a result per check.
    for &m in members {
        out.entry(m).or_insert_with(|| {
            let check = &checks[m];
            vec![match check.kind {
                Kind::RowCount => measured(check, String::new(), 0.0, None, None),
                _ => measured(check, String::new(), 0.0, Some(0), Some(0)),
            }]
        });
    }
    Ok(out.into_iter().collect())
}

fn log_freshness(check: &Check, target: &Target) -> CheckResult {
    match target.committed_ms {
        Some(ms) => {
            let age = ((target.now_ms - ms) as f64 / 1000.0).max(0.0);
            let mut r = measured(check, String::new(), age, None, None);
            r.message = format!("last commit (version {}) {} ago", target.version, r.message);
            r
        }
        None => errored(
            check,
            format!(
                "the commit time of version {} is not in the Delta log",
                target.version
            ),
        ),
    }
}

fn schema_check(check: &Check, schema: &Schema) -> CheckResult {
    let Kind::Schema {
        required,
        types,
        no_other_columns,
    } = &check.kind
    else {
        unreachable!("schema checks only")
    };
    let mut problems = Vec::new();
    for r in required {
        if schema.field_with_name(r).is_err() {
            problems.push(format!("required column `{r}` is missing"));
        }
    }
    for (col, wanted) in types {
        let want = match confluo_connectors::files::schema_ddl::parse_type(wanted) {
            Ok(t) => confluo_connectors::arrow_types::type_name(&t),
            Err(e) => return errored(check, format!("type `{wanted}` of `{col}`: {e}")),
        };
        match schema.field_with_name(col) {
            Err(_) => problems.push(format!("column `{col}` is missing (expected {want})")),
            Ok(f) => {
                let have = confluo_connectors::arrow_types::type_name(f.data_type());
                if have != want {
                    problems.push(format!("column `{col}` is {have}, expected {want}"));
                }
            }
        }
    }
    if *no_other_columns {
        for f in schema.fields() {
            let n = f.name();
            if !required.contains(n) && !types.iter().any(|(c, _)| c == n) {
                problems.push(format!("unexpected column `{n}`"));
            }
        }
    }
    let mut r = measured(check, String::new(), problems.len() as f64, None, None);
    r.message = if problems.is_empty() {
        "schema as expected".into()
    } else {
        problems.join("; ")
    };
    r
}

/// The first column of a query's first row, as a number: `None` when the query returns no
/// rows or NULL.
pub(crate) async fn lakehouse_value(
    session: &SqlSession,
    sql: &str,
) -> Result<Option<f64>, String> {
    let batches = query(session, sql).await?;
    let Some(batch) = batches.iter().find(|b| b.num_rows() > 0) else {
        return Ok(None);
    };
    let name = batch.schema().field(0).name().clone();
    Ok(floats(batch, &name)
        .map_err(|e| format!("the query's first column is not a number: {e}"))?
        .first()
        .copied()
        .flatten())
}

/// The first column of a query's first row, as a number; no rows or NULL is an error.
pub(crate) async fn lakehouse_number(session: &SqlSession, sql: &str) -> Result<f64, String> {
    lakehouse_value(session, sql)
        .await?
        .ok_or_else(|| "the query returned no rows, or NULL".to_string())
}

async fn metric(session: &SqlSession, check: &Check, sql: &str) -> CheckResult {
    match lakehouse_number(session, sql).await {
        Ok(x) => measured(check, String::new(), x, None, None),
        Err(e) => errored(check, e),
    }
}

async fn duplicates(
    session: &SqlSession,
    target: &Target,
    check: &Check,
    columns: &[String],
) -> Vec<CheckResult> {
    let (gsel, _) = group_select(&check.group_by);
    let inner_cols: Vec<String> = check
        .group_by
        .iter()
        .chain(columns)
        .map(|c| format!("t.{}", ident(c)))
        .collect();
    let outer_groups: Vec<String> = (0..check.group_by.len())
        .map(|i| format!("__g{i}"))
        .collect();
    let sql = format!(
        "SELECT {sel}sum(__k) AS __n, sum(CASE WHEN __k > 1 THEN __k - 1 ELSE 0 END) AS __bad FROM \
         (SELECT {gsel}count(*) AS __k FROM {from}{filter} GROUP BY {inner}) d{group}",
        sel = outer_groups
            .iter()
            .map(|g| format!("{g}, "))
            .collect::<String>(),
        from = target.from_clause(),
        filter = where_clause(check.filter.as_deref()),
        inner = inner_cols.join(", "),
        group = if outer_groups.is_empty() {
            String::new()
        } else {
            format!(" GROUP BY {}", outer_groups.join(", "))
        },
    );
    counted(session, check, &sql).await
}

/// Runs a query returning `__n` (rows) and `__bad` per slice.
async fn counted(session: &SqlSession, check: &Check, sql: &str) -> Vec<CheckResult> {
    let batches = match query(session, sql).await {
        Ok(b) => b,
        Err(e) => return vec![errored(check, e)],
    };
    let mut out = Vec::new();
    for batch in &batches {
        let parsed = (|| {
            Ok::<_, String>((
                slices(batch, &check.group_by)?,
                floats(batch, "__n")?,
                floats(batch, "__bad")?,
            ))
        })();
        let (names, rows, bad) = match parsed {
            Ok(p) => p,
            Err(e) => return vec![errored(check, e)],
        };
        for (r, slice) in names.into_iter().enumerate() {
            let n = rows[r].unwrap_or(0.0) as i64;
            let b = bad[r].unwrap_or(0.0) as i64;
            out.push(measured(
                check,
                slice,
                row_value(check, b, n),
                Some(b),
                Some(n),
            ));
        }
    }
    if out.is_empty() {
        out.push(measured(check, String::new(), 0.0, Some(0), Some(0)));
    }
    out
}

/// The lookup a reference check joins against: the distinct values of `table`.`to`.
pub(crate) fn reference_join(other: &str, column: &str, to: &str) -> String {
    format!(
        "LEFT JOIN (SELECT DISTINCT {to} AS __ref FROM {other}) r ON t.{col} = r.__ref",
        to = ident(to),
        col = ident(column)
    )
}

/// The condition of a row with no match in the referenced table.
pub(crate) fn reference_bad(column: &str) -> String {
    format!("r.__ref IS NULL AND t.{} IS NOT NULL", ident(column))
}

async fn references(
    session: &SqlSession,
    target: &Target,
    check: &Check,
    column: &str,
    table: &str,
    to: &str,
) -> Vec<CheckResult> {
    let other = match resolve_table(session, table).await {
        Ok(o) => o,
        Err(e) => return vec![errored(check, format!("references `{table}`: {e}"))],
    };
    let (gsel, gby) = group_select(&check.group_by);
    let sql = format!(
        "SELECT {gsel}count(*) AS __n, sum(CASE WHEN {bad} THEN 1 ELSE 0 END) AS __bad FROM {from} {join}{filter}{gby}",
        bad = reference_bad(column),
        from = target.from_clause(),
        join = reference_join(&other, column, to),
        filter = where_clause(check.filter.as_deref()),
    );
    counted(session, check, &sql).await
}

/// A user's table name, resolved and checked, as quoted SQL.
pub(crate) async fn resolve_table(session: &SqlSession, text: &str) -> Result<String, String> {
    let lh = session.lakehouse();
    let name = lh.resolve(text).map_err(|e| e.to_string())?;
    lh.table(&name).await.map_err(|e| e.to_string())?;
    Ok(table_sql(&name))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec::Monitor;
    use arrow::datatypes::Field;

    #[test]
    fn schema_checks_list_every_problem() {
        let m = Monitor::check(
            "t",
            &serde_yaml_ng::from_str(
                "checks: [{check: schema, required: [id, email], types: {id: bigint, amount: 'decimal(10,2)'}, no_other_columns: true}]",
            )
            .unwrap(),
            std::path::Path::new("."),
        )
        .unwrap();
        let schema = Schema::new(vec![
            Field::new("id", DataType::Int32, false),
            Field::new("amount", DataType::Decimal128(10, 2), true),
            Field::new("extra", DataType::Utf8, true),
        ]);
        let r = schema_check(&m.checks[0], &schema);
        assert_eq!(r.status, Status::Fail);
        assert_eq!(r.value, Some(3.0));
        assert_eq!(
            r.message,
            "required column `email` is missing; column `id` is INT, expected BIGINT; unexpected column `extra`"
        );
    }
}
