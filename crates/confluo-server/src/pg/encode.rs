//! Results and errors on the wire: Arrow batches become Postgres rows through arrow-pg
//! (text or binary per column, as the client asked); Confluo's errors become
//! `ErrorResponse`s with a SQLSTATE a client can act on and the position they point at.

use std::sync::Arc;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SendableRecordBatchStream;
use futures::{StreamExt, stream};
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldInfo, QueryResponse};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::format::FormatOptions;

use confluo_sql::SqlError;

/// The row description of `schema`.
pub fn fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    arrow_pg::datatypes::arrow_schema_to_pg_fields(schema, format, options)
}

/// A streamed query response. The first batch is read here, inside the statement, so
/// the costly part of most queries (aggregates, sorts, joins) runs while a cancel request
/// can still stop it, and a failing query fails before any row is sent.
pub async fn response(
    mut rows: SendableRecordBatchStream,
    format: &Format,
    options: Arc<FormatOptions>,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(fields(&rows.schema(), format, Some(options))?);
    let first = rows
        .next()
        .await
        .transpose()
        .map_err(|e| sql_error(&SqlError::from(e), None))?;
    let batches = stream::iter(first.map(Ok)).chain(rows);
    let encode_fields = fields.clone();
    let data = batches
        .map(move |batch: datafusion::error::Result<RecordBatch>| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(b) => arrow_pg::datatypes::encode_recordbatch(encode_fields.clone(), b),
                Err(e) => Box::new(std::iter::once(Err(sql_error(&SqlError::from(e), None)))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, data))
}

/// A Confluo SQL error as a Postgres error: the SQLSTATE by kind, the position (a
/// 1-based character offset into `sql`) when the error points somewhere.
pub fn sql_error(e: &SqlError, sql: Option<&str>) -> PgWireError {
    let message = e.to_string();
    let lower = message.to_lowercase();
    let code = match e {
        SqlError::Parse(_) => "42601",
        _ if lower.contains("no field named")
            || (lower.contains("column") && lower.contains("not found")) =>
        {
            "42703"
        }
        _ if lower.contains("table")
            && (lower.contains("not found") || lower.contains("does not exist")) =>
        {
            "42P01"
        }
        _ if lower.contains("schema")
            && (lower.contains("not found") || lower.contains("does not exist")) =>
        {
            "3F000"
        }
        SqlError::Plan { .. } => "42000",
        SqlError::DataFusion(datafusion::error::DataFusionError::Plan(_))
        | SqlError::DataFusion(datafusion::error::DataFusionError::SQL(..)) => "42000",
        SqlError::DataFusion(datafusion::error::DataFusionError::NotImplemented(_)) => "0A000",
        _ if lower.contains("cast")
            || lower.contains("overflow")
            || lower.contains("divide by zero") =>
        {
            "22000"
        }
        _ => "XX000",
    };
    let mut info = ErrorInfo::new("ERROR".into(), code.into(), message);
    if let (Some(sql), Some(loc)) = (sql, e.location())
        && loc.line > 0
    {
        info.position = Some(char_offset(sql, loc.line, loc.column).to_string());
    }
    PgWireError::UserError(Box::new(info))
}

/// An error of ours that is not SQL's (a session that cannot open, an unsupported form).
pub fn user_error(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "ERROR".into(),
        code.into(),
        message.into(),
    )))
}

/// The 1-based character offset of line `line`, column `column` (both 1-based).
fn char_offset(sql: &str, line: u64, column: u64) -> usize {
    let mut offset = 0;
    for (i, l) in sql.split('\n').enumerate() {
        if i as u64 + 1 == line {
            return offset + column.max(1) as usize;
        }
        offset += l.chars().count() + 1;
    }
    offset.max(1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_count_characters_across_lines() {
        assert_eq!(char_offset("SELECT x", 1, 8), 8);
        assert_eq!(char_offset("SELECT\n  é, x", 2, 6), 13);
    }
}
