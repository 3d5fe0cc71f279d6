//! SHOW, DESCRIBE and VACUUM.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanArray, Int64Array, RecordBatch, StringArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::ObjectName;

use super::like;
use crate::error::{Result, SqlError};
use crate::parser::{DescribeKind, Show};
use crate::session::{SqlOutput, SqlSession, ident_parts, location_of};
use confluo_lakehouse::delta::{self, type_name};
use confluo_lakehouse::{LakehouseError, TableVersion};

pub(super) fn strings(name: &str, values: Vec<Option<String>>) -> (Field, ArrayRef) {
    (
        Field::new(name, DataType::Utf8, true),
        Arc::new(StringArray::from(values)),
    )
}

fn batch(cols: Vec<(Field, ArrayRef)>) -> Result<(Arc<Schema>, RecordBatch)> {
    let (fields, arrays): (Vec<Field>, Vec<ArrayRef>) = cols.into_iter().unzip();
    let schema = Arc::new(Schema::new(fields));
    Ok((schema.clone(), RecordBatch::try_new(schema, arrays)?))
}

pub(super) fn out(s: &SqlSession, cols: Vec<(Field, ArrayRef)>) -> Result<SqlOutput> {
    let (schema, b) = batch(cols)?;
    s.rows(schema, vec![b])
}

fn ms_time(name: &str, values: Vec<i64>) -> (Field, ArrayRef) {
    (
        Field::new(
            name,
            DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            true,
        ),
        Arc::new(TimestampMillisecondArray::from(values).with_timezone("UTC")),
    )
}

pub(super) async fn show(s: &SqlSession, what: Show, pattern: Option<String>) -> Result<SqlOutput> {
    let ms = s.lakehouse().metastore();
    let keep = |n: &str| pattern.as_deref().is_none_or(|p| like(p, n));
    match what {
        Show::Connections | Show::Views(_) => Err(SqlError::plan(
            "SHOW CONNECTIONS and SHOW VIEWS are answered by the federation statements",
            None,
        )),
        Show::Catalogs => {
            let cats: Vec<_> = ms
                .list_catalogs()
                .await?
                .into_iter()
                .filter(|c| keep(&c.name))
                .collect();
            out(
                s,
                vec![
                    strings(
                        "catalog",
                        cats.iter().map(|c| Some(c.name.clone())).collect(),
                    ),
                    strings("owner", cats.iter().map(|c| c.owner.clone()).collect()),
                    strings("comment", cats.iter().map(|c| c.comment.clone()).collect()),
                ],
            )
        }
        Show::Schemas(catalog) => {
            let c = match &catalog {
                Some(n) => ident_parts(n)?.join("."),
                None => s.current().0,
            };
            if ms.get_catalog(&c).await?.is_none() {
                s.lakehouse().require_schema(&c, "default").await?;
            }
            let schemas: Vec<_> = ms
                .list_schemas(Some(&c))
                .await?
                .into_iter()
                .filter(|x| keep(&x.name))
                .collect();
            out(
                s,
                vec![
                    strings(
                        "catalog",
                        schemas.iter().map(|x| Some(x.catalog.clone())).collect(),
                    ),
                    strings(
                        "schema",
                        schemas.iter().map(|x| Some(x.name.clone())).collect(),
                    ),
                    strings("owner", schemas.iter().map(|x| x.owner.clone()).collect()),
                    strings(
                        "comment",
                        schemas.iter().map(|x| x.comment.clone()).collect(),
                    ),
                ],
            )
        }
        Show::Tables(schema) => {
            let (c, sc) = match &schema {
                None => s.current(),
                Some(n) => {
                    let parts = ident_parts(n)?;
                    match parts.as_slice() {
                        [sc] => (s.current().0, sc.clone()),
                        [c, sc] => (c.clone(), sc.clone()),
                        _ => {
                            return Err(SqlError::plan(
                                format!("`{n}` is not a schema name"),
                                location_of(n),
                            ));
                        }
                    }
                }
            };
            s.lakehouse().require_schema(&c, &sc).await?;
            let tables: Vec<_> = ms
                .list_tables(Some(&c), Some(&sc))
                .await?
                .into_iter()
                .filter(|t| keep(t.name.table.as_str()))
                .collect();
            out(
                s,
                vec![
                    strings(
                        "catalog",
                        tables
                            .iter()
                            .map(|t| Some(t.name.catalog.as_str().to_string()))
                            .collect(),
                    ),
                    strings(
                        "schema",
                        tables
                            .iter()
                            .map(|t| Some(t.name.schema.as_str().to_string()))
                            .collect(),
                    ),
                    strings(
                        "table",
                        tables
                            .iter()
                            .map(|t| Some(t.name.table.as_str().to_string()))
                            .collect(),
                    ),
                    strings("owner", tables.iter().map(|t| t.owner.clone()).collect()),
                    strings(
                        "comment",
                        tables.iter().map(|t| t.comment.clone()).collect(),
                    ),
                ],
            )
        }
        Show::TblProperties(name) => {
            let t = s.table_name(&name)?;
            let info = s.lakehouse().table(&t).await?;
            let table = s
                .lakehouse()
                .open_delta(&info, TableVersion::Latest)
                .await?;
            let mut props = info.properties.clone();
            if let Ok(snap) = table.snapshot() {
                for (k, v) in snap.metadata().configuration() {
                    props.insert(k.clone(), v.clone());
                }
            }
            let props: Vec<_> = props.into_iter().filter(|(k, _)| keep(k)).collect();
            out(
                s,
                vec![
                    strings("key", props.iter().map(|(k, _)| Some(k.clone())).collect()),
                    strings(
                        "value",
                        props.iter().map(|(_, v)| Some(v.clone())).collect(),
                    ),
                ],
            )
        }
        Show::CreateTable(name) => super::show_create::show_create(s, name).await,
        Show::Columns(name) => {
            let t = s.table_name(&name)?;
            let info = s.lakehouse().table(&t).await?;
            let table = s
                .lakehouse()
                .open_delta(&info, TableVersion::Latest)
                .await?;
            let schema = delta::table_schema(&table)?;
            out(
                s,
                vec![strings(
                    "col_name",
                    schema
                        .fields()
                        .iter()
                        .filter(|f| keep(f.name()))
                        .map(|f| Some(f.name().clone()))
                        .collect(),
                )],
            )
        }
    }
}

pub(super) async fn describe(
    s: &SqlSession,
    name: ObjectName,
    kind: DescribeKind,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let t = s.table_name(&name)?;
    let info = match lh.table(&t).await {
        Ok(info) => info,
        Err(e) => {
            // Not a Delta table: a view or a foreign table describes its columns too.
            if matches!(kind, DescribeKind::Columns | DescribeKind::Extended)
                && let Some(described) = describe_other(s, &t, &kind).await?
            {
                return Ok(described);
            }
            return Err(SqlError::plan(e.to_string(), location_of(&name)));
        }
    };
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    let snap = table.snapshot().map_err(LakehouseError::delta(&t))?;
    match kind {
        DescribeKind::Columns | DescribeKind::Extended => {
            let schema = delta::table_schema(&table)?;
            let partitions = snap.metadata().partition_columns().to_vec();
            let mut rows = ColumnRows::of(&schema);
            let mut extra = |k: &str, v: String| rows.extra(k, v);
            if !partitions.is_empty() {
                extra("# Partitioning", String::new());
                for p in &partitions {
                    extra(p, "partition column".into());
                }
            }
            if kind == DescribeKind::Extended {
                extra("# Detailed Table Information", String::new());
                extra("Name", t.to_string());
                extra(
                    "Type",
                    if info.managed {
                        "MANAGED".into()
                    } else {
                        "EXTERNAL".into()
                    },
                );
                extra("Location", info.location.clone());
                extra("Provider", info.format.clone());
                extra("Owner", info.owner.clone().unwrap_or_default());
                extra("Comment", info.comment.clone().unwrap_or_default());
                extra("Version", snap.version().to_string());
                extra(
                    "Created",
                    chrono::DateTime::from_timestamp_millis(info.created_at)
                        .map(|d| d.to_rfc3339())
                        .unwrap_or_default(),
                );
                extra(
                    "Properties",
                    serde_json::to_string(&info.properties).unwrap_or_default(),
                );
            }
            rows.output(s)
        }
        DescribeKind::History(limit) => {
            let h = delta::history(&table, limit).await?;
            out(
                s,
                vec![
                    (
                        Field::new("version", DataType::Int64, false),
                        Arc::new(Int64Array::from(
                            h.iter().map(|e| e.version).collect::<Vec<_>>(),
                        )),
                    ),
                    ms_time(
                        "timestamp",
                        h.iter()
                            .map(|e| e.timestamp.map(|t| t.timestamp_millis()).unwrap_or(0))
                            .collect(),
                    ),
                    strings(
                        "operation",
                        h.iter().map(|e| Some(e.operation.clone())).collect(),
                    ),
                    strings(
                        "operation_parameters",
                        h.iter().map(|e| Some(e.parameters.to_string())).collect(),
                    ),
                    strings(
                        "operation_metrics",
                        h.iter().map(|e| Some(e.metrics.to_string())).collect(),
                    ),
                    strings("engine_info", h.iter().map(|e| e.engine.clone()).collect()),
                ],
            )
        }
        DescribeKind::Detail => {
            let files = snap.log_data().num_files() as i64;
            let size: i64 = snap.log_data().iter().map(|f| f.size()).sum();
            let protocol = snap.protocol();
            out(
                s,
                vec![
                    strings("format", vec![Some(info.format.clone())]),
                    strings("id", vec![Some(info.id.clone())]),
                    strings("name", vec![Some(t.to_string())]),
                    strings("description", vec![info.comment.clone()]),
                    strings("location", vec![Some(info.location.clone())]),
                    ms_time("created_at", vec![info.created_at]),
                    ms_time("last_modified", vec![info.updated_at]),
                    strings(
                        "partition_columns",
                        vec![Some(snap.metadata().partition_columns().join(", "))],
                    ),
                    (
                        Field::new("num_files", DataType::Int64, false),
                        Arc::new(Int64Array::from(vec![files])),
                    ),
                    (
                        Field::new("size_in_bytes", DataType::Int64, false),
                        Arc::new(Int64Array::from(vec![size])),
                    ),
                    (
                        Field::new("version", DataType::Int64, false),
                        Arc::new(Int64Array::from(vec![snap.version() as i64])),
                    ),
                    strings(
                        "properties",
                        vec![Some(
                            serde_json::to_string(&info.properties).unwrap_or_default(),
                        )],
                    ),
                    (
                        Field::new("min_reader_version", DataType::Int64, false),
                        Arc::new(Int64Array::from(vec![protocol.min_reader_version() as i64])),
                    ),
                    (
                        Field::new("min_writer_version", DataType::Int64, false),
                        Arc::new(Int64Array::from(vec![protocol.min_writer_version() as i64])),
                    ),
                ],
            )
        }
    }
}

pub(super) async fn vacuum(
    s: &SqlSession,
    name: ObjectName,
    retain_hours: Option<f64>,
    dry_run: bool,
) -> Result<SqlOutput> {
    let lh = s.lakehouse();
    let t = s.table_name(&name)?;
    let info = lh.table(&t).await?;
    let table = lh.open_delta(&info, TableVersion::Latest).await?;
    let report = delta::vacuum(table, retain_hours.map(|h| h.ceil() as u64), dry_run).await?;
    let label = if dry_run { "would delete" } else { "deleted" };
    out(
        s,
        vec![
            strings(
                "path",
                report.files.iter().map(|f| Some(f.clone())).collect(),
            ),
            strings(
                "action",
                report
                    .files
                    .iter()
                    .map(|_| Some(label.to_string()))
                    .collect(),
            ),
        ],
    )
}

/// `DESCRIBE` of a view or a foreign table: the columns DataFusion plans with, and with
/// `EXTENDED` what it is (the view's query, the foreign catalog's connection). `None` when
/// `t` is neither.
async fn describe_other(
    s: &SqlSession,
    t: &confluo_core::TableName,
    kind: &DescribeKind,
) -> Result<Option<SqlOutput>> {
    let ms = s.lakehouse().metastore();
    let view = ms.get_view(t).await?;
    let foreign = match &view {
        Some(_) => None,
        None => ms.get_foreign_catalog(t.catalog.as_str()).await?,
    };
    if view.is_none() && foreign.is_none() {
        return Ok(None);
    }
    let reference = datafusion::common::TableReference::full(
        t.catalog.as_str(),
        t.schema.as_str(),
        t.table.as_str(),
    );
    let provider = s
        .context()
        .table_provider(reference)
        .await
        .map_err(|e| s.explain_error(e))?;
    let mut rows = ColumnRows::of(&provider.schema());
    if *kind == DescribeKind::Extended {
        let mut extra = |k: &str, v: String| rows.extra(k, v);
        extra("# Detailed Table Information", String::new());
        extra("Name", t.to_string());
        match (&view, &foreign) {
            (Some(v), _) => {
                extra("Type", "VIEW".into());
                extra("View Text", v.sql.clone());
                extra("Owner", v.owner.clone().unwrap_or_default());
                extra("Comment", v.comment.clone().unwrap_or_default());
            }
            (None, Some(f)) => {
                extra("Type", "FOREIGN".into());
                extra("Connection", f.connection.clone());
                extra("Owner", f.owner.clone().unwrap_or_default());
            }
            _ => {}
        }
    }
    Ok(Some(rows.output(s)?))
}

/// The rows of `DESCRIBE`: one per column, then `extra` key/value rows.
struct ColumnRows {
    names: Vec<Option<String>>,
    types: Vec<Option<String>>,
    nullable: Vec<Option<bool>>,
    comments: Vec<Option<String>>,
}

impl ColumnRows {
    fn of(schema: &Schema) -> Self {
        let fields = schema.fields();
        ColumnRows {
            names: fields.iter().map(|f| Some(f.name().clone())).collect(),
            types: fields
                .iter()
                .map(|f| Some(type_name(f.data_type()).to_lowercase()))
                .collect(),
            nullable: fields.iter().map(|f| Some(f.is_nullable())).collect(),
            comments: fields
                .iter()
                .map(|f| {
                    f.metadata()
                        .get("comment")
                        .cloned()
                        .filter(|c| !c.is_empty())
                })
                .collect(),
        }
    }

    fn extra(&mut self, key: &str, value: String) {
        self.names.push(Some(key.to_string()));
        self.types.push(Some(value));
        self.nullable.push(None);
        self.comments.push(None);
    }

    fn output(self, s: &SqlSession) -> Result<SqlOutput> {
        out(
            s,
            vec![
                strings("col_name", self.names),
                strings("data_type", self.types),
                (
                    Field::new("nullable", DataType::Boolean, true),
                    Arc::new(BooleanArray::from(self.nullable)),
                ),
                strings("comment", self.comments),
            ],
        )
    }
}
