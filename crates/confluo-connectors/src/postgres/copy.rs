//! `COPY (SELECT ...) TO STDOUT (FORMAT binary)` decoded straight into Arrow record batches.
//!
//! The binary format is a fixed header, then one tuple per row (a field count, then a
//! length-prefixed value per field, -1 for NULL), then a trailer of field count -1. The
//! driver hands over the stream in chunks that need not align with rows, so a row split
//! across chunks waits in a small carry-over buffer. Batches are cut at
//! [`BATCH_ROWS`] rows or [`BATCH_BYTES`] bytes of values and handed to a bounded channel:
//! when the consumer is slower than the server, the reader waits, and so does the server.

use std::collections::VecDeque;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use futures::StreamExt;
use sqlx::PgConnection;
use tokio::sync::mpsc;

use super::decode::ColumnDecoder;
use super::error::{PostgresError, Result};
use super::types::{ColumnMapping, quote_ident};

/// Rows per batch (a batch may end earlier when its values pass [`BATCH_BYTES`]).
pub const BATCH_ROWS: usize = 65_536;
/// Bytes of values per batch, so tables of wide rows keep batches small.
pub const BATCH_BYTES: usize = 64 << 20;

const SIGNATURE: &[u8; 11] = b"PGCOPY\n\xff\r\n\0";

/// Decodes a binary COPY stream into batches of `schema`.
pub struct CopyDecoder {
    columns: Vec<ColumnDecoder>,
    names: Vec<String>,
    schema: SchemaRef,
    connection: String,
    table: String,
    header_done: bool,
    trailer_seen: bool,
    carry: Vec<u8>,
    rows: usize,
    bytes: usize,
    ready: VecDeque<RecordBatch>,
    batch_rows: usize,
}

impl CopyDecoder {
    /// A decoder for the columns of `schema`, read as `mappings` (same order).
    pub fn new(
        connection: &str,
        table: &str,
        schema: SchemaRef,
        mappings: &[ColumnMapping],
    ) -> Self {
        let columns = mappings
            .iter()
            .zip(schema.fields())
            .map(|(m, f)| ColumnDecoder::new(&m.wire, f.data_type()))
            .collect();
        CopyDecoder {
            columns,
            names: schema.fields().iter().map(|f| f.name().clone()).collect(),
            schema,
            connection: connection.to_string(),
            table: table.to_string(),
            header_done: false,
            trailer_seen: false,
            carry: Vec::new(),
            rows: 0,
            bytes: 0,
            ready: VecDeque::new(),
            batch_rows: BATCH_ROWS,
        }
    }

    /// Cuts batches at `rows` rows instead of [`BATCH_ROWS`] (for tests).
    pub fn with_batch_rows(mut self, rows: usize) -> Self {
        self.batch_rows = rows.max(1);
        self
    }

    fn error(&self, column: &str, message: impl Into<String>) -> PostgresError {
        PostgresError::Decode {
            connection: self.connection.clone(),
            table: self.table.clone(),
            column: column.to_string(),
            message: message.into(),
        }
    }

    /// Feeds one chunk of the stream.
    pub fn push(&mut self, chunk: &[u8]) -> Result<()> {
        if self.carry.is_empty() {
            let used = self.parse(chunk)?;
            self.carry.extend_from_slice(&chunk[used..]);
        } else {
            let mut data = std::mem::take(&mut self.carry);
            data.extend_from_slice(chunk);
            let used = self.parse(&data)?;
            data.drain(..used);
            self.carry = data;
        }
        Ok(())
    }

    /// A finished batch, if one is ready.
    pub fn next_batch(&mut self) -> Option<RecordBatch> {
        self.ready.pop_front()
    }

    /// Ends the stream: checks it was complete and returns the last, partial batch.
    pub fn finish(&mut self) -> Result<Option<RecordBatch>> {
        if !self.carry.is_empty() || (!self.trailer_seen && self.header_done) {
            return Err(self.error("(row)", "the COPY stream ended in the middle of a row"));
        }
        if self.rows > 0 {
            self.cut()?;
        }
        Ok(self.ready.pop_front())
    }

    /// Values that became null because Arrow cannot hold them (`±infinity`, `NaN`), by
    /// column.
    pub fn nulled(&self) -> Vec<(String, u64)> {
        self.names
            .iter()
            .zip(&self.columns)
            .map(|(n, c)| (n.clone(), c.nulled_total()))
            .filter(|(_, k)| *k > 0)
            .collect()
    }

    /// Parses whole rows from `data`; returns the bytes used.
    fn parse(&mut self, data: &[u8]) -> Result<usize> {
        let mut pos = 0;
        if !self.header_done {
            if data.len() < 19 {
                return Ok(0);
            }
            if &data[..11] != SIGNATURE {
                return Err(self.error("(header)", "not a binary COPY stream"));
            }
            let ext = u32::from_be_bytes([data[15], data[16], data[17], data[18]]) as usize;
            if data.len() < 19 + ext {
                return Ok(0);
            }
            pos = 19 + ext;
            self.header_done = true;
        }
        let ncols = self.columns.len();
        while pos + 2 <= data.len() && !self.trailer_seen {
            let count = i16::from_be_bytes([data[pos], data[pos + 1]]);
            if count == -1 {
                self.trailer_seen = true;
                pos += 2;
                break;
            }
            if count as usize != ncols {
                return Err(self.error(
                    "(row)",
                    format!("a row has {count} fields, expected {ncols}"),
                ));
            }
            // First make sure the whole row is here, so no column gets half a row.
            let mut end = pos + 2;
            let mut complete = true;
            for _ in 0..ncols {
                let Some(h) = data.get(end..end + 4) else {
                    complete = false;
                    break;
                };
                let len = i32::from_be_bytes([h[0], h[1], h[2], h[3]]);
                end += 4 + len.max(0) as usize;
                if end > data.len() {
                    complete = false;
                    break;
                }
            }
            if !complete {
                break;
            }
            let mut p = pos + 2;
            for i in 0..ncols {
                let len = i32::from_be_bytes([data[p], data[p + 1], data[p + 2], data[p + 3]]);
                p += 4;
                if len < 0 {
                    self.columns[i].append_null();
                } else {
                    let v = &data[p..p + len as usize];
                    p += len as usize;
                    if let Err(m) = self.columns[i].append(v) {
                        return Err(self.error(&self.names[i], m));
                    }
                }
            }
            self.bytes += end - pos;
            self.rows += 1;
            pos = end;
            if self.rows >= self.batch_rows || self.bytes >= BATCH_BYTES {
                self.cut()?;
            }
        }
        Ok(pos)
    }

    fn cut(&mut self) -> Result<()> {
        let arrays = self.columns.iter_mut().map(|c| c.finish()).collect();
        let batch = RecordBatch::try_new(self.schema.clone(), arrays)
            .map_err(|e| self.error("(batch)", e.to_string()))?;
        self.rows = 0;
        self.bytes = 0;
        self.ready.push_back(batch);
        Ok(())
    }
}

/// The `COPY (SELECT ...) TO STDOUT (FORMAT binary)` statement for `columns` of `table`
/// (already quoted `schema.name`), with an optional WHERE clause.
pub fn copy_statement(
    table_sql: &str,
    columns: &[(String, ColumnMapping)],
    filter: Option<&str>,
) -> String {
    let select: Vec<String> = columns
        .iter()
        .map(|(name, m)| match &m.cast {
            Some(c) => format!("{}::{c}", quote_ident(name)),
            None => quote_ident(name),
        })
        .collect();
    let mut sql = format!("COPY (SELECT {} FROM {table_sql}", select.join(", "));
    if let Some(f) = filter {
        sql.push_str(" WHERE ");
        sql.push_str(f);
    }
    sql.push_str(") TO STDOUT (FORMAT binary)");
    sql
}

/// Runs `statement` on `conn` and sends every batch through `tx` (waiting while the channel
/// is full). Returns the rows read and the per-column counts of values that became null.
/// Returns early, without error, when the receiver is gone.
pub async fn copy_out<T>(
    conn: &mut PgConnection,
    statement: &str,
    mut decoder: CopyDecoder,
    tx: &mpsc::Sender<T>,
    wrap: impl Fn(RecordBatch) -> T,
) -> Result<(u64, Vec<(String, u64)>)> {
    let connection = decoder.connection.clone();
    let table = decoder.table.clone();
    let mut stream = conn
        .copy_out_raw(statement)
        .await
        .map_err(PostgresError::query(
            &connection,
            format!("reading {table}"),
        ))?;
    let mut rows = 0u64;
    while let Some(chunk) = stream.next().await {
        // The error is only built on failure: this loop runs once per row.
        let chunk = match chunk {
            Ok(c) => c,
            Err(e) => {
                return Err(PostgresError::query(
                    &connection,
                    format!("reading {table}"),
                )(e));
            }
        };
        decoder.push(&chunk)?;
        while let Some(batch) = decoder.next_batch() {
            rows += batch.num_rows() as u64;
            if tx.send(wrap(batch)).await.is_err() {
                return Ok((rows, decoder.nulled()));
            }
        }
    }
    drop(stream);
    if let Some(batch) = decoder.finish()? {
        rows += batch.num_rows() as u64;
        let _ = tx.send(wrap(batch)).await;
    }
    Ok((rows, decoder.nulled()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::postgres::types::{PgType, map_type};
    use arrow::array::AsArray;
    use arrow::datatypes::{Field, Int32Type, Schema};
    use std::sync::Arc;

    fn stream(rows: &[(Option<i32>, Option<&str>)]) -> Vec<u8> {
        let mut v = SIGNATURE.to_vec();
        v.extend(0u32.to_be_bytes());
        v.extend(0u32.to_be_bytes());
        for (a, b) in rows {
            v.extend(2i16.to_be_bytes());
            match a {
                Some(a) => {
                    v.extend(4i32.to_be_bytes());
                    v.extend(a.to_be_bytes());
                }
                None => v.extend((-1i32).to_be_bytes()),
            }
            match b {
                Some(b) => {
                    v.extend((b.len() as i32).to_be_bytes());
                    v.extend(b.as_bytes());
                }
                None => v.extend((-1i32).to_be_bytes()),
            }
        }
        v.extend((-1i16).to_be_bytes());
        v
    }

    fn decoder() -> CopyDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("a", arrow::datatypes::DataType::Int32, true),
            Field::new("b", arrow::datatypes::DataType::Utf8, true),
        ]));
        let maps = [
            map_type(&PgType::base("int4")).unwrap(),
            map_type(&PgType::base("text")).unwrap(),
        ];
        CopyDecoder::new("c", "public.t", schema, &maps)
    }

    #[test]
    fn rows_split_across_chunks_and_batches() {
        let rows: Vec<(Option<i32>, Option<&str>)> = (0..10)
            .map(|i| (Some(i), if i % 3 == 0 { None } else { Some("ünï") }))
            .collect();
        let data = stream(&rows);
        // Feed in awkward 5-byte chunks.
        let mut d = decoder().with_batch_rows(4);
        let mut batches = Vec::new();
        for chunk in data.chunks(5) {
            d.push(chunk).unwrap();
            while let Some(b) = d.next_batch() {
                batches.push(b);
            }
        }
        if let Some(b) = d.finish().unwrap() {
            batches.push(b);
        }
        assert_eq!(
            batches.iter().map(|b| b.num_rows()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        let last = &batches[2];
        assert_eq!(last.column(0).as_primitive::<Int32Type>().value(1), 9);
        assert!(last.column(1).is_null(1));
        assert_eq!(last.column(1).as_string::<i32>().value(0), "ünï");
    }

    #[test]
    fn truncated_stream_is_an_error() {
        let data = stream(&[(Some(1), Some("x"))]);
        let mut d = decoder();
        d.push(&data[..data.len() - 5]).unwrap();
        assert!(d.finish().is_err());
        let mut d = decoder();
        assert!(d.push(b"PGCOPY\nXXXXXXXXXXXXXXXXXXX").is_err());
    }

    #[test]
    fn statement() {
        let cols = vec![
            ("id".to_string(), map_type(&PgType::base("int8")).unwrap()),
            ("u".to_string(), map_type(&PgType::base("uuid")).unwrap()),
        ];
        assert_eq!(
            copy_statement("\"public\".\"t\"", &cols, Some("\"id\" >= 5")),
            "COPY (SELECT \"id\", \"u\"::text FROM \"public\".\"t\" WHERE \"id\" >= 5) TO STDOUT (FORMAT binary)"
        );
    }
}
