//! `COPY table|(query) TO STDOUT [WITH (FORMAT text|csv, HEADER, DELIMITER, NULL)]`: the
//! rows streamed in PostgreSQL's text or CSV format, batch by batch.

use bytes::Bytes;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::util::display::{ArrayFormatter, FormatOptions};
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{
    CopyOption, CopySource, CopyTarget, Ident, ObjectName, Query, Statement,
};
use futures::StreamExt;
use pgwire::api::results::{CopyResponse, Response};
use pgwire::error::PgWireResult;
use pgwire::messages::copy::CopyData;

use super::encode::{sql_error, user_error};

/// How the rows are written.
#[derive(Debug, Clone)]
pub struct CopyFormat {
    csv: bool,
    header: bool,
    delimiter: char,
    null: String,
}

/// The query a `COPY ... TO STDOUT` reads, and its format; an error for what the
/// endpoint cannot do (COPY FROM, files on the server, binary).
pub fn plan(statement: &Statement) -> PgWireResult<(Statement, CopyFormat)> {
    let Statement::Copy {
        source,
        to,
        target,
        options,
        ..
    } = statement
    else {
        return Err(user_error("XX000", "not a COPY statement"));
    };
    if !to {
        return Err(user_error(
            "0A000",
            "COPY FROM is not supported here: load data with INSERT, `confluo ingest` or `read_files`",
        ));
    }
    if !matches!(target, CopyTarget::Stdout) {
        return Err(user_error(
            "0A000",
            "COPY TO a file on the server is not supported: use COPY ... TO STDOUT (psql: \\copy)",
        ));
    }
    let mut f = CopyFormat {
        csv: false,
        header: false,
        delimiter: '\t',
        null: "\\N".into(),
    };
    let mut delimiter = None;
    let mut null = None;
    for o in options {
        match o {
            CopyOption::Format(name) => match name.value.to_lowercase().as_str() {
                "csv" => f.csv = true,
                "text" => f.csv = false,
                other => {
                    return Err(user_error(
                        "0A000",
                        format!("COPY format `{other}` is not supported: use text or csv"),
                    ));
                }
            },
            CopyOption::Header(h) => f.header = *h,
            CopyOption::Delimiter(d) => delimiter = Some(*d),
            CopyOption::Null(n) => null = Some(n.clone()),
            _ => {}
        }
    }
    if f.csv {
        f.delimiter = ',';
        f.null = String::new();
    }
    if let Some(d) = delimiter {
        f.delimiter = d;
    }
    if let Some(n) = null {
        f.null = n;
    }
    let query: Query = match source {
        CopySource::Query(q) => (**q).clone(),
        CopySource::Table {
            table_name,
            columns,
        } => select_from(table_name, columns)?,
    };
    Ok((Statement::Query(Box::new(query)), f))
}

fn select_from(table: &ObjectName, columns: &[Ident]) -> PgWireResult<Query> {
    let cols = if columns.is_empty() {
        "*".to_string()
    } else {
        columns
            .iter()
            .map(|c| c.to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let sql = format!("SELECT {cols} FROM {table}");
    let dialect = datafusion::sql::sqlparser::dialect::PostgreSqlDialect {};
    let mut parsed = datafusion::sql::sqlparser::parser::Parser::parse_sql(&dialect, &sql)
        .map_err(|e| user_error("42601", format!("COPY {table}: {e}")))?;
    match parsed.pop() {
        Some(Statement::Query(q)) => Ok(*q),
        _ => Err(user_error("42601", format!("COPY {table}: not a table"))),
    }
}

/// The response streaming `rows` in `format`.
pub fn response(rows: SendableRecordBatchStream, format: CopyFormat) -> Response {
    let schema = rows.schema();
    let columns = schema.fields().len();
    let header = format.header.then(|| {
        let names: Vec<String> = schema
            .fields()
            .iter()
            .map(|f| field_text(f.name(), &format))
            .collect();
        Ok(CopyData::new(Bytes::from(format!(
            "{}\n",
            names.join(&format.delimiter.to_string())
        ))))
    });
    let body = rows.map(move |batch| match batch {
        Ok(b) => encode(&b, &format).map(CopyData::new),
        Err(e) => Err(sql_error(&confluo_sql::SqlError::from(e), None)),
    });
    let stream = futures::stream::iter(header).chain(body);
    Response::CopyOut(CopyResponse::new(0, columns, stream))
}

fn encode(batch: &RecordBatch, f: &CopyFormat) -> PgWireResult<Bytes> {
    // PostgreSQL's spelling of timestamps (a space, not ISO's `T`).
    let options = FormatOptions::default()
        .with_null("")
        .with_timestamp_format(Some("%Y-%m-%d %H:%M:%S%.f"))
        .with_timestamp_tz_format(Some("%Y-%m-%d %H:%M:%S%.f%:z"));
    let formatters: Vec<ArrayFormatter> = batch
        .columns()
        .iter()
        .map(|c| ArrayFormatter::try_new(c.as_ref(), &options))
        .collect::<Result<_, _>>()
        .map_err(|e| user_error("XX000", format!("COPY: {e}")))?;
    let mut out = String::with_capacity(batch.num_rows() * 16 * batch.num_columns().max(1));
    let mut cell = String::new();
    for row in 0..batch.num_rows() {
        for (i, (fmt, col)) in formatters.iter().zip(batch.columns()).enumerate() {
            if i > 0 {
                out.push(f.delimiter);
            }
            if col.is_null(row) {
                out.push_str(&f.null);
                continue;
            }
            cell.clear();
            use std::fmt::Write;
            let _ = write!(cell, "{}", fmt.value(row));
            out.push_str(&field_text(&cell, f));
        }
        out.push('\n');
    }
    Ok(Bytes::from(out))
}

/// One value: CSV quoting, or the text format's backslash escapes.
fn field_text(v: &str, f: &CopyFormat) -> String {
    if f.csv {
        let needs = v.is_empty()
            || v.contains(f.delimiter)
            || v.contains('"')
            || v.contains('\n')
            || v.contains('\r');
        if needs {
            format!("\"{}\"", v.replace('"', "\"\""))
        } else {
            v.to_string()
        }
    } else {
        let mut s = String::with_capacity(v.len());
        for c in v.chars() {
            match c {
                '\\' => s.push_str("\\\\"),
                '\n' => s.push_str("\\n"),
                '\r' => s.push_str("\\r"),
                '\t' => s.push_str("\\t"),
                c if c == f.delimiter => {
                    s.push('\\');
                    s.push(c)
                }
                c => s.push(c),
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_and_csv_escaping() {
        let text = CopyFormat {
            csv: false,
            header: false,
            delimiter: '\t',
            null: "\\N".into(),
        };
        assert_eq!(field_text("a\tb\\c\nd", &text), "a\\tb\\\\c\\nd");
        let csv = CopyFormat {
            csv: true,
            header: true,
            delimiter: ',',
            null: String::new(),
        };
        assert_eq!(field_text("a,b", &csv), "\"a,b\"");
        assert_eq!(field_text("say \"hi\"", &csv), "\"say \"\"hi\"\"\"");
        assert_eq!(field_text("", &csv), "\"\"");
        assert_eq!(field_text("plain", &csv), "plain");
    }
}
