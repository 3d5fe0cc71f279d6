//! Rows read over the text protocol, parsed into Arrow record batches.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int8Builder, Int16Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::compute::kernels::cast_utils::parse_decimal;
use arrow::datatypes::{DataType, Decimal128Type, SchemaRef};
use arrow::record_batch::RecordBatch;
use chrono::{NaiveDate, NaiveDateTime};
use sqlx::Row;
use sqlx::mysql::MySqlRow;

use super::error::{MysqlError, Result};
use super::types::{ColumnMapping, Parse};

/// Rows per record batch.
pub const BATCH_ROWS: usize = 65_536;

/// One column being built.
enum Col {
    I8(Int8Builder),
    I16(Int16Builder),
    I32(Int32Builder),
    I64(Int64Builder),
    Dec(Decimal128Builder, u8, i8),
    F32(Float32Builder),
    F64(Float64Builder),
    Text(StringBuilder),
    Bin(BinaryBuilder),
    Date(Date32Builder),
    Ts(TimestampMicrosecondBuilder),
}

/// Builds record batches of one table from its rows.
pub struct BatchBuilder {
    connection: String,
    table: String,
    schema: SchemaRef,
    parses: Vec<Parse>,
    cols: Vec<Col>,
    rows: usize,
    /// Values stored as null because they are no valid value of the Arrow type, by column.
    nulled: Vec<u64>,
}

impl BatchBuilder {
    /// A builder for rows with `schema`, read through `mappings` (same order).
    pub fn new(
        connection: &str,
        table: &str,
        schema: SchemaRef,
        mappings: &[ColumnMapping],
    ) -> Self {
        let cols = mappings.iter().map(|m| new_col(&m.arrow)).collect();
        BatchBuilder {
            connection: connection.to_string(),
            table: table.to_string(),
            schema,
            parses: mappings.iter().map(|m| m.parse).collect(),
            cols,
            rows: 0,
            nulled: vec![0; mappings.len()],
        }
    }

    /// Rows appended since the last batch.
    pub fn len(&self) -> usize {
        self.rows
    }

    /// Whether no row was appended since the last batch.
    pub fn is_empty(&self) -> bool {
        self.rows == 0
    }

    /// Values stored as null so far, by column name (only columns with some).
    pub fn nulled(&self) -> Vec<(String, u64)> {
        self.schema
            .fields()
            .iter()
            .zip(&self.nulled)
            .filter(|(_, n)| **n > 0)
            .map(|(f, n)| (f.name().clone(), *n))
            .collect()
    }

    /// Appends one row.
    pub fn append(&mut self, row: &MySqlRow) -> Result<()> {
        for i in 0..self.cols.len() {
            let raw: Option<&[u8]> = row
                .try_get_unchecked(i)
                .map_err(|e| self.err(i, e.to_string()))?;
            self.append_value(i, raw)?;
        }
        self.rows += 1;
        Ok(())
    }

    /// Appends one row given as the values' text (bytes for binary columns), `None` for
    /// NULL, in column order: the binlog reader renders each value as the snapshot reads it.
    pub fn append_raw<'v>(
        &mut self,
        values: impl IntoIterator<Item = Option<&'v [u8]>>,
    ) -> Result<()> {
        for (i, raw) in values.into_iter().enumerate().take(self.cols.len()) {
            self.append_value(i, raw)?;
        }
        self.rows += 1;
        Ok(())
    }

    fn err(&self, i: usize, message: String) -> MysqlError {
        MysqlError::Decode {
            connection: self.connection.clone(),
            table: self.table.clone(),
            column: self.schema.field(i).name().clone(),
            message,
        }
    }

    fn append_value(&mut self, i: usize, raw: Option<&[u8]>) -> Result<()> {
        let Some(raw) = raw else {
            append_null(&mut self.cols[i]);
            return Ok(());
        };
        match parse_into(&mut self.cols[i], self.parses[i], raw) {
            Ok(true) => Ok(()),
            Ok(false) => {
                self.nulled[i] += 1;
                Ok(())
            }
            Err(message) => Err(self.err(i, message)),
        }
    }

    /// The rows appended since the last call, as a batch.
    pub fn finish(&mut self) -> Result<RecordBatch> {
        let arrays: Vec<ArrayRef> = self.cols.iter_mut().map(finish_col).collect();
        self.rows = 0;
        RecordBatch::try_new(self.schema.clone(), arrays).map_err(|e| MysqlError::Decode {
            connection: self.connection.clone(),
            table: self.table.clone(),
            column: "(row)".into(),
            message: e.to_string(),
        })
    }
}

/// A geometry's storage form (little-endian SRID, then WKB) as WKB, or as EWKB when the
/// SRID is not 0: the type word gets PostGIS's SRID flag and the SRID follows it, in the
/// WKB's byte order.
fn ewkb(raw: &[u8]) -> std::result::Result<std::borrow::Cow<'_, [u8]>, String> {
    const SRID_FLAG: u32 = 0x2000_0000;
    let (Some(srid), Some(wkb)) = (raw.get(..4), raw.get(4..)) else {
        return Err(format!("a geometry of {} bytes", raw.len()));
    };
    let srid = u32::from_le_bytes(srid.try_into().expect("4 bytes"));
    if srid == 0 {
        return Ok(std::borrow::Cow::Borrowed(wkb));
    }
    let (Some(&order), Some(ty)) = (wkb.first(), wkb.get(1..5)) else {
        return Err(format!("a geometry of {} bytes", raw.len()));
    };
    let ty: [u8; 4] = ty.try_into().expect("4 bytes");
    let (ty, srid) = if order == 0 {
        (
            (u32::from_be_bytes(ty) | SRID_FLAG).to_be_bytes(),
            srid.to_be_bytes(),
        )
    } else {
        (
            (u32::from_le_bytes(ty) | SRID_FLAG).to_le_bytes(),
            srid.to_le_bytes(),
        )
    };
    let mut out = Vec::with_capacity(wkb.len() + 4);
    out.push(order);
    out.extend_from_slice(&ty);
    out.extend_from_slice(&srid);
    out.extend_from_slice(&wkb[5..]);
    Ok(std::borrow::Cow::Owned(out))
}

/// Parses one non-null value into its column. `Ok(false)`: the value is no valid value
/// of the Arrow type (a zero date) and was stored as null.
fn parse_into(col: &mut Col, parse: Parse, raw: &[u8]) -> std::result::Result<bool, String> {
    if let Col::Bin(b) = col {
        if parse == Parse::Geometry {
            b.append_value(ewkb(raw)?);
        } else {
            b.append_value(raw);
        }
        return Ok(true);
    }
    let text = std::str::from_utf8(raw)
        .map_err(|_| "the server sent text that is not UTF-8".to_string())?;
    let bad = |what: &str| format!("`{text}` is not {what}");
    match (col, parse) {
        (Col::Text(b), _) => b.append_value(text),
        (Col::I8(b), _) => b.append_value(text.parse().map_err(|_| bad("a TINYINT"))?),
        (Col::I16(b), _) => b.append_value(text.parse().map_err(|_| bad("a 16-bit integer"))?),
        (Col::I32(b), _) => b.append_value(text.parse().map_err(|_| bad("a 32-bit integer"))?),
        (Col::I64(b), Parse::Bits) => b.append_value(text.parse().map_err(|_| bad("a BIT value"))?),
        (Col::I64(b), _) => b.append_value(text.parse().map_err(|_| bad("a 64-bit integer"))?),
        (Col::Dec(b, _, _), Parse::BigUnsigned) => {
            let v: u64 = text.parse().map_err(|_| bad("a BIGINT UNSIGNED"))?;
            b.append_value(v as i128)
        }
        (Col::Dec(b, p, s), _) => {
            let (p, s) = (*p, *s);
            let v = parse_decimal::<Decimal128Type>(text, p, s)
                .map_err(|e| format!("`{text}` is not a DECIMAL({p},{s}): {e}"))?;
            b.append_value(v)
        }
        (Col::F32(b), _) => b.append_value(text.parse().map_err(|_| bad("a FLOAT"))?),
        (Col::F64(b), _) => b.append_value(text.parse().map_err(|_| bad("a DOUBLE"))?),
        (Col::Date(b), _) => match parse_date(text) {
            Some(d) => b.append_value(d),
            None => {
                b.append_null();
                return Ok(false);
            }
        },
        (Col::Ts(b), _) => match parse_datetime(text) {
            Some(t) => b.append_value(t),
            None => {
                b.append_null();
                return Ok(false);
            }
        },
        (Col::Bin(_), _) => {}
    }
    Ok(true)
}

fn new_col(t: &DataType) -> Col {
    match t {
        DataType::Int8 => Col::I8(Int8Builder::new()),
        DataType::Int16 => Col::I16(Int16Builder::new()),
        DataType::Int32 => Col::I32(Int32Builder::new()),
        DataType::Int64 => Col::I64(Int64Builder::new()),
        DataType::Decimal128(p, s) => Col::Dec(
            Decimal128Builder::new().with_data_type(DataType::Decimal128(*p, *s)),
            *p,
            *s,
        ),
        DataType::Float32 => Col::F32(Float32Builder::new()),
        DataType::Float64 => Col::F64(Float64Builder::new()),
        DataType::Binary => Col::Bin(BinaryBuilder::new()),
        DataType::Date32 => Col::Date(Date32Builder::new()),
        DataType::Timestamp(_, tz) => {
            Col::Ts(TimestampMicrosecondBuilder::new().with_timezone_opt(tz.clone()))
        }
        _ => Col::Text(StringBuilder::new()),
    }
}

fn append_null(c: &mut Col) {
    match c {
        Col::I8(b) => b.append_null(),
        Col::I16(b) => b.append_null(),
        Col::I32(b) => b.append_null(),
        Col::I64(b) => b.append_null(),
        Col::Dec(b, _, _) => b.append_null(),
        Col::F32(b) => b.append_null(),
        Col::F64(b) => b.append_null(),
        Col::Text(b) => b.append_null(),
        Col::Bin(b) => b.append_null(),
        Col::Date(b) => b.append_null(),
        Col::Ts(b) => b.append_null(),
    }
}

fn finish_col(c: &mut Col) -> ArrayRef {
    match c {
        Col::I8(b) => Arc::new(b.finish()),
        Col::I16(b) => Arc::new(b.finish()),
        Col::I32(b) => Arc::new(b.finish()),
        Col::I64(b) => Arc::new(b.finish()),
        Col::Dec(b, _, _) => Arc::new(b.finish()),
        Col::F32(b) => Arc::new(b.finish()),
        Col::F64(b) => Arc::new(b.finish()),
        Col::Text(b) => Arc::new(b.finish()),
        Col::Bin(b) => Arc::new(b.finish()),
        Col::Date(b) => Arc::new(b.finish()),
        Col::Ts(b) => Arc::new(b.finish()),
    }
}

/// Days since 1970-01-01, or `None` for zero dates and dates with a zero part.
pub fn parse_date(text: &str) -> Option<i32> {
    let d = NaiveDate::parse_from_str(text, "%Y-%m-%d").ok()?;
    let epoch = NaiveDate::from_ymd_opt(1970, 1, 1)?;
    i32::try_from(d.signed_duration_since(epoch).num_days()).ok()
}

/// Microseconds since 1970-01-01 00:00:00, or `None` for zero dates.
pub fn parse_datetime(text: &str) -> Option<i64> {
    let t = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f").ok()?;
    Some(t.and_utc().timestamp_micros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zero_dates_are_none() {
        assert_eq!(parse_date("1970-01-02"), Some(1));
        assert_eq!(parse_date("0000-00-00"), None);
        assert_eq!(parse_date("2024-00-10"), None);
        assert_eq!(parse_datetime("0000-00-00 00:00:00"), None);
        assert_eq!(parse_datetime("1970-01-01 00:00:01.5"), Some(1_500_000));
    }
    #[test]
    fn geometries_keep_their_srid_as_ewkb() {
        // POINT(1 2): little-endian WKB, type 1.
        let wkb: Vec<u8> = [
            &[1u8, 1, 0, 0, 0][..],
            &1f64.to_le_bytes(),
            &2f64.to_le_bytes(),
        ]
        .concat();
        let stored = |srid: u32| [&srid.to_le_bytes()[..], &wkb].concat();
        assert_eq!(ewkb(&stored(0)).unwrap().as_ref(), wkb.as_slice());
        let s4326 = stored(4326);
        let e = ewkb(&s4326).unwrap();
        assert_eq!(&e[..9], &[1, 1, 0, 0, 0x20, 0xe6, 0x10, 0, 0]);
        assert_eq!(&e[9..], &wkb[5..]);
        assert!(ewkb(&[0, 0]).is_err());
    }
}
