//! Flight SQL's catalog calls, answered from the metastore: catalogs, schemas, tables (with
//! their Arrow schemas when the client asks), table types, and what the server is.

use std::sync::{Arc, LazyLock};

use arrow_flight::sql::metadata::{SqlInfoData, SqlInfoDataBuilder};
use arrow_flight::sql::{CommandGetCatalogs, CommandGetDbSchemas, CommandGetTables, SqlInfo};
use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use tonic::Status;

use confluo_sql::SqlSession;

use super::super::Shared;
use super::super::auth::User;
use super::super::query::open_session;

/// What `CommandGetSqlInfo` answers.
pub(super) static SQL_INFO: LazyLock<SqlInfoData> = LazyLock::new(|| {
    let mut b = SqlInfoDataBuilder::new();
    b.append(SqlInfo::FlightSqlServerName, "Confluo");
    b.append(SqlInfo::FlightSqlServerVersion, env!("CARGO_PKG_VERSION"));
    b.append(SqlInfo::FlightSqlServerArrowVersion, "1.3");
    b.append(SqlInfo::FlightSqlServerReadOnly, false);
    b.append(SqlInfo::SqlIdentifierQuoteChar, "`");
    b.build().expect("static SQL info")
});

fn internal(e: impl std::fmt::Display) -> Status {
    Status::internal(e.to_string())
}

/// Every catalog.
pub(super) async fn catalogs(
    shared: &Shared,
    query: CommandGetCatalogs,
) -> Result<RecordBatch, Status> {
    let mut b = query.into_builder();
    for c in shared
        .lakehouse
        .metastore()
        .list_catalogs()
        .await
        .map_err(internal)?
    {
        b.append(c.name);
    }
    b.build().map_err(internal)
}

/// The schemas of the asked catalog (all when none is named), filtered by the builder.
pub(super) async fn schemas(
    shared: &Shared,
    query: CommandGetDbSchemas,
) -> Result<RecordBatch, Status> {
    let schemas = shared
        .lakehouse
        .metastore()
        .list_schemas(query.catalog.as_deref())
        .await
        .map_err(internal)?;
    let mut b = query.into_builder();
    for s in schemas {
        b.append(s.catalog, s.name);
    }
    b.build().map_err(internal)
}

/// The tables, with their columns when `include_schema` (each table opened as `user`).
pub(super) async fn tables(
    shared: &Shared,
    user: &User,
    query: CommandGetTables,
) -> Result<RecordBatch, Status> {
    let tables = shared
        .lakehouse
        .metastore()
        .list_tables(query.catalog.as_deref(), None)
        .await
        .map_err(internal)?;
    let session = if query.include_schema {
        Some(
            open_session(shared, user)
                .await
                .map_err(|e| Status::internal(e.message))?,
        )
    } else {
        None
    };
    let mut b = query.into_builder();
    for t in tables {
        let schema = match &session {
            Some(s) => table_schema(s, &t.name).await,
            None => Schema::empty(),
        };
        b.append(
            t.name.catalog.as_str(),
            t.name.schema.as_str(),
            t.name.table.as_str(),
            "TABLE",
            &schema,
        )
        .map_err(Status::from)?;
    }
    b.build().map_err(internal)
}

/// The columns of `CommandGetTableTypes`' answer.
pub(super) fn table_types_schema() -> Schema {
    Schema::new(vec![Field::new("table_type", DataType::Utf8, false)])
}

/// Every table here is a Delta table: one type.
pub(super) fn table_types() -> Result<RecordBatch, Status> {
    RecordBatch::try_new(
        Arc::new(table_types_schema()),
        vec![Arc::new(StringArray::from(vec!["TABLE"]))],
    )
    .map_err(internal)
}

/// A table's columns (empty when it cannot be opened: the listing goes on).
async fn table_schema(session: &SqlSession, name: &confluo_core::TableName) -> Schema {
    let reference = datafusion::common::TableReference::full(
        name.catalog.as_str(),
        name.schema.as_str(),
        name.table.as_str(),
    );
    match session.context().table_provider(reference).await {
        Ok(p) => p.schema().as_ref().clone(),
        Err(e) => {
            tracing::warn!("flight endpoint: cannot open {name} for its schema: {e}");
            Schema::empty()
        }
    }
}
