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

use crate::metrics::QueryTimer;

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
    mut timer: QueryTimer,
) -> PgWireResult<QueryResponse> {
    let fields = Arc::new(fields(&rows.schema(), format, Some(options))?);
    let first = rows.next().await.transpose().map_err(|e| {
        timer.outcome("error");
        sql_error(&SqlError::from(e), None)
    })?;
    let batches = stream::iter(first.map(Ok)).chain(rows);
    let encode_fields = fields.clone();
    let data = batches
        .map(move |batch: datafusion::error::Result<RecordBatch>| {
            let rows: Box<dyn Iterator<Item = PgWireResult<DataRow>> + Send + Sync> = match batch {
                Ok(b) => {
                    timer.rows(b.num_rows() as u64);
                    let b = text_timestamps(b, &encode_fields);
                    arrow_pg::datatypes::encode_recordbatch(encode_fields.clone(), b)
                }
                Err(e) => {
                    timer.outcome("error");
                    Box::new(std::iter::once(Err(sql_error(&SqlError::from(e), None))))
                }
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(QueryResponse::new(fields, data))
}

/// Timestamps without a time zone sent as text in the ISO DateStyle (the default), written
/// a column at a time in PostgreSQL's spelling (`2025-01-01 00:00:01`, fractions only when
/// there are some). The per-value `format` of chrono behind arrow-pg made a timestamp column
/// take twice as long as PostgreSQL's; everything else (binary results, other DateStyles,
/// zoned timestamps, years past 9999) goes through arrow-pg unchanged.
fn text_timestamps(batch: RecordBatch, fields: &[FieldInfo]) -> RecordBatch {
    use datafusion::arrow::array::{Array, StringBuilder};
    use datafusion::arrow::compute::cast;
    use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
    use pgwire::api::Type;
    use pgwire::api::results::FieldFormat;

    let mut columns = batch.columns().to_vec();
    let mut schema_fields: Vec<Field> = batch
        .schema()
        .fields()
        .iter()
        .map(|f| f.as_ref().clone())
        .collect();
    let mut changed = false;
    for (i, info) in fields.iter().enumerate().take(columns.len()) {
        let DataType::Timestamp(_, None) = columns[i].data_type() else {
            continue;
        };
        if info.format() != FieldFormat::Text
            || *info.datatype() != Type::TIMESTAMP
            || !info
                .format_options()
                .date_style
                .trim_start()
                .to_ascii_uppercase()
                .starts_with("ISO")
        {
            continue;
        }
        let Ok(micros) = cast(
            &columns[i],
            &DataType::Timestamp(TimeUnit::Microsecond, None),
        ) else {
            continue;
        };
        let Some(micros) = micros
            .as_any()
            .downcast_ref::<datafusion::arrow::array::TimestampMicrosecondArray>()
        else {
            continue;
        };
        let mut out = StringBuilder::with_capacity(micros.len(), micros.len() * 26);
        let mut buf = String::with_capacity(32);
        let mut ok = true;
        for v in micros.iter() {
            match v {
                None => out.append_null(),
                Some(us) => {
                    buf.clear();
                    if !iso_timestamp(us, &mut buf) {
                        ok = false;
                        break;
                    }
                    out.append_value(&buf);
                }
            }
        }
        if !ok {
            continue;
        }
        columns[i] = Arc::new(out.finish());
        schema_fields[i] = Field::new(schema_fields[i].name(), DataType::Utf8, true);
        changed = true;
    }
    if !changed {
        return batch;
    }
    let schema = Arc::new(Schema::new(schema_fields));
    RecordBatch::try_new(schema, columns).unwrap_or(batch)
}

/// `YYYY-MM-DD HH:MM:SS[.ffffff]` (trailing zeros of the fraction dropped, as PostgreSQL
/// does); false for years outside 1–9999, which PostgreSQL spells differently.
fn iso_timestamp(micros: i64, out: &mut String) -> bool {
    use chrono::{Datelike, Timelike};
    let Some(t) = chrono::DateTime::from_timestamp_micros(micros) else {
        return false;
    };
    let t = t.naive_utc();
    let year = t.year();
    if !(1..=9999).contains(&year) {
        return false;
    }
    let two = |n: u32, out: &mut String| {
        out.push((b'0' + (n / 10) as u8) as char);
        out.push((b'0' + (n % 10) as u8) as char);
    };
    let y = year as u32;
    two(y / 100, out);
    two(y % 100, out);
    out.push('-');
    two(t.month(), out);
    out.push('-');
    two(t.day(), out);
    out.push(' ');
    two(t.hour(), out);
    out.push(':');
    two(t.minute(), out);
    out.push(':');
    two(t.second(), out);
    let mut frac = micros.rem_euclid(1_000_000) as u32;
    if frac > 0 {
        out.push('.');
        let mut digits = 6;
        while frac.is_multiple_of(10) {
            frac /= 10;
            digits -= 1;
        }
        let s = format!("{frac:0digits$}");
        out.push_str(&s);
    }
    true
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
    fn timestamps_are_spelled_as_postgresql_does() {
        let mut s = String::new();
        let at = |text: &str| {
            chrono::NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f")
                .unwrap()
                .and_utc()
                .timestamp_micros()
        };
        for text in [
            "2025-01-01 00:00:01",
            "2024-02-29 23:59:59.5",
            "1969-12-31 23:59:59.000001",
            "0001-01-01 00:00:00",
            "9999-12-31 12:00:00.123456",
        ] {
            s.clear();
            assert!(iso_timestamp(at(text), &mut s));
            assert_eq!(s, text);
        }
        assert!(!iso_timestamp(i64::MAX, &mut s));
    }

    #[test]
    fn offsets_count_characters_across_lines() {
        assert_eq!(char_offset("SELECT x", 1, 8), 8);
        assert_eq!(char_offset("SELECT\n  é, x", 2, 6), 13);
    }
}
