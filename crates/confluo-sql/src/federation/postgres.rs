//! PostgreSQL as a federated source: the pushed-down query runs inside `COPY (...) TO STDOUT
//! (FORMAT binary)` and is decoded by the same decoder the snapshot uses, each output column
//! cast on the server to the type DataFusion planned for it.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::error::Result;
use datafusion::physical_plan::PhysicalExpr;
use datafusion::physical_plan::SendableRecordBatchStream;
use datafusion::physical_plan::stream::RecordBatchReceiverStreamBuilder;
use datafusion::sql::unparser::dialect::{Dialect, PostgreSqlDialect};
use datafusion_federation::sql::SQLExecutor;

use confluo_connectors::postgres::PostgresConfig;
use confluo_connectors::postgres::copy::{CopyDecoder, copy_out};
use confluo_connectors::postgres::discover::{TableFilter, discover};
use confluo_connectors::postgres::types::{ColumnMapping, PgType, Wire, quote_ident};

use super::{Listing, RemoteSource, conform, external};

/// Reads one PostgreSQL database.
pub struct PostgresSource {
    cfg: PostgresConfig,
}

impl PostgresSource {
    /// A source over `cfg` (its `database` is the one mirrored).
    pub fn new(cfg: PostgresConfig) -> Self {
        PostgresSource { cfg }
    }
}

/// The server-side type and wire form that decode into `arrow`; `None` for types read as
/// text and cast by Arrow afterwards.
fn read_as(arrow: &DataType) -> Option<(String, ColumnMapping)> {
    let m = |cast: &str, arrow: DataType, wire: Wire| {
        Some((
            cast.to_string(),
            ColumnMapping {
                arrow,
                wire,
                cast: None,
            },
        ))
    };
    match arrow {
        DataType::Boolean => m("bool", DataType::Boolean, Wire::Bool),
        DataType::Int16 => m("int2", DataType::Int16, Wire::Int2),
        DataType::Int32 => m("int4", DataType::Int32, Wire::Int4),
        DataType::Int64 => m("int8", DataType::Int64, Wire::Int8),
        DataType::Float32 => m("float4", DataType::Float32, Wire::Float4),
        DataType::Float64 => m("float8", DataType::Float64, Wire::Float8),
        DataType::Decimal128(p, s) if *s >= 0 => m(
            &format!("numeric({p},{s})"),
            DataType::Decimal128(*p, *s),
            Wire::Numeric {
                precision: *p,
                scale: *s,
            },
        ),
        DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View => {
            m("text", DataType::Utf8, Wire::Text)
        }
        DataType::Binary | DataType::LargeBinary | DataType::BinaryView => {
            m("bytea", DataType::Binary, Wire::Bytea)
        }
        DataType::Date32 => m("date", DataType::Date32, Wire::Date),
        DataType::Timestamp(_, None) => m(
            "timestamp",
            DataType::Timestamp(TimeUnit::Microsecond, None),
            Wire::Timestamp,
        ),
        DataType::Timestamp(_, Some(_)) => m(
            "timestamptz",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Wire::Timestamptz,
        ),
        DataType::List(f) | DataType::LargeList(f) => {
            let (cast, inner) = read_as(f.data_type())?;
            let field = Arc::new(Field::new("item", inner.arrow, true));
            m(
                &format!("{cast}[]"),
                DataType::List(field),
                Wire::Array(Box::new(inner.wire)),
            )
        }
        _ => None,
    }
}

#[async_trait]
impl RemoteSource for PostgresSource {
    fn connection(&self) -> &str {
        &self.cfg.name
    }

    async fn list(&self) -> Result<Listing> {
        let mut conn = self.cfg.connect().await.map_err(external)?;
        let tables = discover(&mut conn, &self.cfg, &TableFilter::all())
            .await
            .map_err(external)?;
        Ok(super::listing(
            tables.into_iter().map(|t| (t.id.schema, t.id.name)),
        ))
    }

    async fn table_schema(&self, schema: &str, table: &str) -> Result<Option<SchemaRef>> {
        let mut conn = self.cfg.connect().await.map_err(external)?;
        let pattern = format!("{schema}.{table}");
        let filter = TableFilter::new(&self.cfg.name, &[pattern]).map_err(external)?;
        let found = discover(&mut conn, &self.cfg, &filter)
            .await
            .map_err(external)?;
        let Some(t) = found
            .into_iter()
            .find(|t| t.id.schema == schema && t.id.name == table)
        else {
            return Ok(None);
        };
        // The snapshot's mapping (which refuses unmapped types, naming the column), except
        // for an unconstrained `numeric`, planned as DECIMAL(38,18) so sums and averages
        // plan; a value that does not fit fails on the server, loudly.
        let fields: Vec<Field> = t
            .mappings(&self.cfg)
            .map_err(external)?
            .into_iter()
            .zip(&t.columns)
            .map(|((name, m), c)| {
                let free_numeric = m.arrow == DataType::Utf8
                    && matches!(&c.resolved, PgType::Scalar { name, .. } if name == "numeric");
                let ty = if free_numeric {
                    DataType::Decimal128(38, 18)
                } else {
                    m.arrow
                };
                Field::new(name, ty, true)
            })
            .collect();
        Ok(Some(Arc::new(Schema::new(fields))))
    }
}

#[async_trait]
impl SQLExecutor for PostgresSource {
    fn name(&self) -> &str {
        "postgresql"
    }

    fn compute_context(&self) -> Option<String> {
        Some(format!(
            "{}/{}/{}",
            self.cfg.addr(),
            self.cfg.database,
            self.cfg.user
        ))
    }

    fn dialect(&self) -> Arc<dyn Dialect> {
        Arc::new(PostgreSqlDialect {})
    }

    fn execute(
        &self,
        query: &str,
        schema: SchemaRef,
        _filters: &[Arc<dyn PhysicalExpr>],
    ) -> Result<SendableRecordBatchStream> {
        // Each output column is aliased by position and cast to what DataFusion expects, so
        // the binary stream decodes without asking the server for the result's types.
        let mut select = Vec::with_capacity(schema.fields().len());
        let mut aliases = Vec::with_capacity(schema.fields().len());
        let mut wire_fields = Vec::with_capacity(schema.fields().len());
        let mut mappings = Vec::with_capacity(schema.fields().len());
        for (i, f) in schema.fields().iter().enumerate() {
            let alias = format!("c{i}");
            let (cast, mapping) =
                read_as(f.data_type()).unwrap_or_else(|| ("text".into(), ColumnMapping::as_text()));
            select.push(format!("{}::{cast}", quote_ident(&alias)));
            aliases.push(quote_ident(&alias));
            wire_fields.push(Field::new(f.name(), mapping.arrow.clone(), true));
            mappings.push(mapping);
        }
        let statement = format!(
            "COPY (SELECT {} FROM ({query}) AS q ({})) TO STDOUT (FORMAT binary)",
            select.join(", "),
            aliases.join(", ")
        );
        let wire_schema: SchemaRef = Arc::new(Schema::new(wire_fields));
        let cfg = self.cfg.clone();
        let mut builder = RecordBatchReceiverStreamBuilder::new(schema.clone(), 2);
        let tx = builder.tx();
        builder.spawn(async move {
            let mut conn = cfg.connect().await.map_err(external)?;
            let decoder = CopyDecoder::new(&cfg.name, "(federated query)", wire_schema, &mappings);
            let name = cfg.name.clone();
            copy_out(&mut conn, &statement, decoder, &tx, |b| {
                conform(b, &schema, &name)
            })
            .await
            .map_err(external)?;
            Ok(())
        });
        Ok(builder.build())
    }

    async fn table_names(&self) -> Result<Vec<String>> {
        super::qualified_names(self).await
    }

    async fn get_table_schema(&self, table_name: &str) -> Result<SchemaRef> {
        super::schema_by_name(self, table_name, "public", '"').await
    }
}
