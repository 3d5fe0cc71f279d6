//! CREATE TABLE [AS SELECT] and INSERT: rows from a query into a Delta table.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::dataframe::DataFrame;
use datafusion::logical_expr::{Expr, cast, lit};
use datafusion::scalar::ScalarValue;
use datafusion::sql::sqlparser::ast::{
    ColumnDef, ColumnOption, Ident, ObjectName, Query, Statement,
};
use deltalake::DeltaTable;
use deltalake::kernel::Add;
use futures::StreamExt;

use crate::error::{Result, SqlError};
use crate::parser::CreateTable;
use crate::session::{SqlOutput, SqlSession, location_of, normalize};
use confluo_connectors::files::schema_ddl::parse_type;
use confluo_lakehouse::delta::{self, CommitRequest, WriteMode, delta_compatible_schema};
use confluo_lakehouse::write::TableWriter;
use confluo_lakehouse::{LakehouseError, NewTable, TableVersion};

fn query_statement(q: Box<Query>) -> Statement {
    Statement::Query(q)
}

/// Runs a frame and writes its rows as new data files of `table`, one writer per
/// partition of the plan. Returns the files and the row count.
pub async fn write_frame(
    table: &DeltaTable,
    df: DataFrame,
    schema: SchemaRef,
) -> Result<(Vec<Add>, u64)> {
    let streams = df.execute_stream_partitioned().await?;
    let mut tasks = tokio::task::JoinSet::new();
    for mut stream in streams {
        let mut writer = TableWriter::new(table, schema.clone())?;
        tasks.spawn(async move {
            while let Some(batch) = stream.next().await {
                writer.write(&batch?).await?;
            }
            let rows = writer.rows();
            Ok::<_, SqlError>((writer.finish().await?, rows))
        });
    }
    let mut adds = Vec::new();
    let mut rows = 0;
    let mut first_err = None;
    while let Some(r) = tasks.join_next().await {
        match r {
            Ok(Ok((a, n))) => {
                adds.extend(a);
                rows += n;
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(SqlError::plan(format!("writer task failed: {e}"), None));
            }
        }
    }
    match first_err {
        Some(e) => Err(e),
        None => Ok((adds, rows)),
    }
}

/// Selects `df`'s columns as `target`'s: by name when `by_name`, else by position; each
/// cast to the target type. Target columns the frame lacks are null.
pub fn project_to_schema(
    df: DataFrame,
    target: &Schema,
    columns: &[String],
    by_name: bool,
) -> Result<DataFrame> {
    let source: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    let qualified: Vec<Expr> = df
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let mut exprs = Vec::with_capacity(target.fields().len());
    let pick = |i: usize| qualified[i].clone();
    let null_of =
        |dt: &DataType| -> Result<Expr> { Ok(cast(lit(ScalarValue::try_from(dt)?), dt.clone())) };
    if by_name || !columns.is_empty() {
        let mapping: Vec<(usize, String)> = if by_name {
            source
                .iter()
                .enumerate()
                .map(|(i, n)| (i, n.clone()))
                .collect()
        } else {
            if columns.len() != source.len() {
                return Err(SqlError::plan(
                    format!(
                        "INSERT names {} columns but the query produces {}",
                        columns.len(),
                        source.len()
                    ),
                    None,
                ));
            }
            columns.iter().cloned().enumerate().collect()
        };
        for (_, name) in &mapping {
            if !target
                .fields()
                .iter()
                .any(|f| f.name().eq_ignore_ascii_case(name))
            {
                let names: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
                return Err(SqlError::plan(
                    format!(
                        "column `{name}` is not in the table{}",
                        confluo_core::suggest::hint(&confluo_core::suggest::nearest(name, names))
                    ),
                    None,
                ));
            }
        }
        for f in target.fields() {
            match mapping
                .iter()
                .find(|(_, n)| n.eq_ignore_ascii_case(f.name()))
            {
                Some((i, _)) => exprs.push(cast(pick(*i), f.data_type().clone()).alias(f.name())),
                None => exprs.push(null_of(f.data_type())?.alias(f.name())),
            }
        }
    } else {
        if source.len() != target.fields().len() {
            let names: Vec<&str> = target.fields().iter().map(|f| f.name().as_str()).collect();
            return Err(SqlError::plan(
                format!(
                    "the table has {} columns ({}) but the query produces {}\n  hint: name the columns, INSERT INTO t (a, b) ..., or match by name with INSERT INTO t BY NAME ...",
                    target.fields().len(),
                    names.join(", "),
                    source.len()
                ),
                None,
            ));
        }
        for (i, f) in target.fields().iter().enumerate() {
            exprs.push(cast(pick(i), f.data_type().clone()).alias(f.name()));
        }
    }
    Ok(df.select(exprs)?)
}

fn declared_schema(ct: &CreateTable) -> Result<Schema> {
    declared_columns(&ct.columns)
}

/// The schema declared columns define: each column's type, `NOT NULL` (a non-nullable
/// field) and `COMMENT` (the field's `comment` metadata, which `DESCRIBE` shows). Shared by
/// `CREATE TABLE` and the datasets of pipelines.
pub fn declared_columns(columns: &[ColumnDef]) -> Result<Schema> {
    let mut fields = Vec::with_capacity(columns.len());
    for c in columns {
        let text = c.data_type.to_string();
        let dt = parse_type(&text).map_err(|e| {
            SqlError::plan(
                format!("column `{}`: {e}", c.name.value),
                Some(c.name.span.start),
            )
        })?;
        let not_null = c
            .options
            .iter()
            .any(|o| matches!(o.option, ColumnOption::NotNull));
        let mut field = Field::new(normalize(&c.name), dt, !not_null);
        if let Some(comment) = c.options.iter().find_map(|o| match &o.option {
            ColumnOption::Comment(s) => Some(s.clone()),
            _ => None,
        }) {
            field = field.with_metadata([("comment".to_string(), comment)].into());
        }
        fields.push(field);
    }
    Ok(Schema::new(fields))
}

pub(super) async fn create_table(s: &SqlSession, ct: CreateTable) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let name = s.table_name(&ct.name)?;
    if let Some(using) = &ct.using
        && !using.eq_ignore_ascii_case("delta")
    {
        return Err(SqlError::plan(
            format!("USING {using}: Confluo stores tables as Delta (USING DELTA)"),
            location_of(&ct.name),
        ));
    }
    let exists = lh.metastore().get_table(&name).await?;
    if exists.is_some() && ct.if_not_exists {
        return Ok(SqlOutput::Message(format!("table {name} already exists")));
    }
    if exists.is_some() && !ct.or_replace {
        return Err(SqlError::plan(
            format!(
                "table {name} already exists\n  hint: use CREATE OR REPLACE TABLE, CREATE TABLE IF NOT EXISTS, or INSERT INTO"
            ),
            location_of(&ct.name),
        ));
    }
    let declared = declared_schema(&ct)?;
    let frame = match ct.query.clone() {
        Some(q) => {
            let df = s.plan_statement(query_statement(q)).await?;
            Some(if declared.fields().is_empty() {
                df
            } else {
                project_to_schema(df, &declared, &[], false)?
            })
        }
        None => None,
    };
    let schema: Schema = match &frame {
        Some(df) if declared.fields().is_empty() => {
            let arrow: Schema = df.schema().as_arrow().clone();
            Schema::new(
                arrow
                    .fields()
                    .iter()
                    .map(|f| Field::new(f.name(), f.data_type().clone(), true))
                    .collect::<Vec<_>>(),
            )
        }
        _ => declared,
    };
    if schema.fields().is_empty() && ct.location.is_none() {
        return Err(SqlError::plan(
            format!("CREATE TABLE {name} needs columns or AS SELECT"),
            location_of(&ct.name),
        ));
    }
    let schema = delta_compatible_schema(&schema);
    let keyed = ct
        .partition_by
        .iter()
        .map(|p| (p, "partition"))
        .chain(ct.cluster_by.iter().map(|c| (c, "clustering")));
    for (p, what) in keyed {
        if schema.field_with_name(&normalize(p)).is_err() {
            return Err(SqlError::plan(
                format!("{what} column `{}` is not a column of {name}", p.value),
                Some(p.span.start),
            ));
        }
    }
    let mut properties: BTreeMap<String, String> = ct.properties.iter().cloned().collect();
    if !ct.cluster_by.is_empty() {
        // Clustering happens when the table is optimized (OPTIMIZE reads this property).
        let cols: Vec<String> = ct.cluster_by.iter().map(normalize).collect();
        properties.insert(super::optimize::CLUSTERING_COLUMNS.into(), cols.join(","));
    }

    if let Some(info) = exists {
        // CREATE OR REPLACE over an existing table: one commit replaces schema and rows,
        // and time travel to the old versions still works.
        let table = lh.open_delta(&info, TableVersion::Latest).await?;
        let (adds, rows) = match frame {
            Some(df) => write_frame(&table, df, schema.clone()).await?,
            None => (vec![], 0),
        };
        delta::commit(
            &table,
            CommitRequest {
                adds,
                mode: WriteMode::Overwrite,
                new_schema: Some(schema.clone()),
                ..Default::default()
            },
        )
        .await?;
        if let Some(c) = &ct.comment {
            lh.metastore().set_table_comment(&name, Some(c)).await?;
        }
        if !properties.is_empty() {
            lh.set_properties(&name, &properties, &[]).await?;
        }
        return Ok(SqlOutput::Message(format!(
            "replaced table {name} ({rows} rows)"
        )));
    }

    let (info, table) = lh
        .create_table(NewTable {
            name: name.clone(),
            schema: schema.as_ref().clone(),
            partition_by: ct.partition_by.iter().map(normalize).collect(),
            comment: ct.comment.clone(),
            properties,
            location: ct.location.clone(),
        })
        .await
        .map_err(|e| match e {
            LakehouseError::NotFound { .. } | LakehouseError::AlreadyExists { .. } => {
                SqlError::plan(e.to_string(), location_of(&ct.name))
            }
            other => other.into(),
        })?;
    let Some(df) = frame else {
        let how = if info.managed {
            "created table"
        } else {
            "registered external table"
        };
        return Ok(SqlOutput::Message(format!("{how} {name}")));
    };
    let written = async {
        let (adds, rows) = write_frame(&table, df, schema.clone()).await?;
        delta::commit(
            &table,
            CommitRequest {
                adds,
                ..Default::default()
            },
        )
        .await?;
        Ok::<_, SqlError>(rows)
    }
    .await;
    match written {
        Ok(rows) => Ok(SqlOutput::Message(format!(
            "created table {name} ({rows} rows)"
        ))),
        Err(e) => {
            // Leave nothing half-made behind.
            let _ = lh.drop_table(&name, true).await;
            Err(e)
        }
    }
}

pub(super) async fn insert(
    s: &SqlSession,
    table: ObjectName,
    overwrite: bool,
    columns: Vec<Ident>,
    by_name: bool,
    source: Box<Query>,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let name = s.table_name(&table)?;
    let info = lh
        .table(&name)
        .await
        .map_err(|e| SqlError::plan(e.to_string(), location_of(&table)))?;
    let delta_table = lh.open_delta(&info, TableVersion::Latest).await?;
    let schema = delta::table_schema(&delta_table)?;
    let df = s.plan_statement(query_statement(source)).await?;
    let cols: Vec<String> = columns.iter().map(normalize).collect();
    let df = project_to_schema(df, &schema, &cols, by_name).map_err(|e| match e {
        SqlError::Plan {
            message,
            location: None,
        } => SqlError::Plan {
            message: format!("INSERT INTO {name}: {message}"),
            location: location_of(&table),
        },
        other => other,
    })?;
    let (adds, rows) = write_frame(&delta_table, df, Arc::new(schema.as_ref().clone())).await?;
    let version = delta::commit(
        &delta_table,
        CommitRequest {
            adds,
            mode: if overwrite {
                WriteMode::Overwrite
            } else {
                WriteMode::Append
            },
            ..Default::default()
        },
    )
    .await?;
    lh.metastore().touch_table(&name).await?;
    let verb = if overwrite { "overwrote" } else { "inserted" };
    Ok(SqlOutput::Message(format!(
        "{verb} {rows} rows into {name} (version {version})"
    )))
}
