//! Turning tokenized CSV records into Arrow columns, one typed column at a time.
//!
//! A value that does not parse as its column's type becomes null in that column and is kept,
//! as written, in the rescued-data column; a malformed record keeps its whole raw text there.

use std::sync::Arc;

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, BooleanBuilder, PrimitiveBuilder, RecordBatch, StringBuilder,
    new_null_array,
};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{
    ArrowPrimitiveType, DataType, Date32Type, Decimal128Type, Float32Type, Float64Type, Int8Type,
    Int16Type, Int32Type, Int64Type, SchemaRef, TimeUnit, TimestampMicrosecondType,
};

use super::tokenize::{CsvDialect, FieldSpan, Tokens, tokenize};
use crate::files::error::{FilesError, Result};
use crate::files::options::ReadOptions;
use crate::files::rescue::{self, Rescue};
use crate::files::values;

/// How one file's columns map onto the output columns.
#[derive(Debug, Clone)]
pub struct CsvLayout {
    /// The file, as shown to users.
    pub file: Arc<str>,
    /// Column names in the file (from its header, or `_c0`, `_c1`, ...).
    pub names: Vec<String>,
    /// For each file column, the output column it fills; `None` means the column is not
    /// in the schema and its values are rescued.
    pub target_of: Vec<Option<usize>>,
}

/// Decodes CSV chunks into batches of a fixed schema.
#[derive(Debug, Clone)]
pub struct CsvDecoder {
    schema: SchemaRef,
    data_cols: usize,
    dialect: CsvDialect,
    null_value: Option<Vec<u8>>,
    date_format: Option<String>,
    timestamp_format: Option<String>,
    rescue: bool,
}

struct Ctx<'a> {
    data: &'a [u8],
    side: &'a [u8],
    tokens: &'a Tokens,
    null_value: Option<&'a [u8]>,
    utf8_ok: bool,
}

impl Ctx<'_> {
    #[inline]
    fn get(&self, row: usize, col: usize) -> Option<(&[u8], FieldSpan)> {
        let span = self.tokens.field(row, col);
        if span.is_missing() {
            return None;
        }
        let b = span.bytes(self.data, self.side);
        if b.is_empty() && !span.is_quoted() {
            return None;
        }
        if let Some(nv) = self.null_value
            && b == nv
        {
            return None;
        }
        Some((b, span))
    }
}

impl CsvDecoder {
    /// A decoder producing `schema`; when rescue is on, its last column is the rescued data.
    pub fn new(schema: SchemaRef, options: &ReadOptions) -> Self {
        let rescue = options.rescued_data_column.is_some();
        let data_cols = schema.fields().len() - usize::from(rescue);
        CsvDecoder {
            schema,
            data_cols,
            dialect: dialect(options),
            null_value: options.null_value.as_ref().map(|s| s.as_bytes().to_vec()),
            date_format: options.date_format.as_deref().map(values::java_to_chrono),
            timestamp_format: options
                .timestamp_format
                .as_deref()
                .map(values::java_to_chrono),
            rescue,
        }
    }

    /// The output schema.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// Decodes a chunk of whole records whose first byte is on line `first_line` (1-based).
    /// Returns the batch and how many rows carry rescued data.
    pub fn decode(
        &self,
        layout: &CsvLayout,
        data: &[u8],
        first_line: u64,
    ) -> Result<(RecordBatch, usize)> {
        let tokens = tokenize(data, &self.dialect, layout.names.len(), usize::MAX);
        let n = tokens.rows();
        let ctx = Ctx {
            data,
            side: &tokens.side,
            tokens: &tokens,
            null_value: self.null_value.as_deref(),
            utf8_ok: std::str::from_utf8(data).is_ok(),
        };
        let mut rescue = Rescue::default();
        let mut columns: Vec<Option<ArrayRef>> = vec![None; self.data_cols];
        for (file_col, target) in layout.target_of.iter().enumerate() {
            match target {
                Some(j) => {
                    let field = self.schema.field(*j);
                    columns[*j] = Some(self.convert(
                        &ctx,
                        file_col,
                        field.name(),
                        field.data_type(),
                        &mut rescue,
                    )?);
                }
                None => {
                    let name = &layout.names[file_col];
                    for row in 0..n {
                        if let Some((b, _)) = ctx.get(row, file_col) {
                            rescue.value(row as u32, name, b);
                        }
                    }
                }
            }
        }
        for bad in &tokens.bad {
            let raw = &data[bad.raw_start as usize..][..bad.raw_len as usize];
            rescue.record(bad.row, raw, &bad.reason.to_string());
        }
        let rescued = rescue.len();
        let lines = &tokens.lines;
        if !self.rescue
            && let Some((row, column, value)) = rescue.first()
        {
            return Err(FilesError::BadValue {
                file: layout.file.to_string(),
                line: first_line + lines[row as usize] as u64,
                column,
                value,
                expected: "its column type (mode FAILFAST stops at the first bad value)".into(),
            });
        }
        let mut arrays: Vec<ArrayRef> = columns
            .into_iter()
            .enumerate()
            .map(|(j, c)| c.unwrap_or_else(|| new_null_array(self.schema.field(j).data_type(), n)))
            .collect();
        if self.rescue {
            arrays.push(rescue.finish(n, &layout.file, |row| {
                first_line + lines[row as usize] as u64
            }));
        }
        let batch = RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &arrow::array::RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| FilesError::Corrupt {
            file: layout.file.to_string(),
            message: format!("internal error assembling rows: {e}"),
        })?;
        Ok((batch, rescued))
    }

    fn convert(
        &self,
        ctx: &Ctx,
        col: usize,
        name: &str,
        dt: &DataType,
        rescue: &mut Rescue,
    ) -> Result<ArrayRef> {
        let n = ctx.tokens.rows();
        Ok(match dt {
            DataType::Utf8 => {
                let mut b = StringBuilder::with_capacity(n, n * 8);
                for row in 0..n {
                    match ctx.get(row, col) {
                        None => b.append_null(),
                        Some((bytes, _)) => {
                            if ctx.utf8_ok {
                                // SAFETY: the whole chunk was checked to be valid UTF-8, and
                                // unescaping only removes ASCII quote bytes.
                                b.append_value(unsafe { std::str::from_utf8_unchecked(bytes) });
                            } else {
                                match std::str::from_utf8(bytes) {
                                    Ok(s) => b.append_value(s),
                                    Err(_) => {
                                        rescue.value(row as u32, name, bytes);
                                        b.append_null();
                                    }
                                }
                            }
                        }
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Int64 => primitive::<Int64Type>(ctx, col, name, rescue, values::parse_i64),
            DataType::Int32 => primitive::<Int32Type>(ctx, col, name, rescue, |b| {
                values::parse_i64(b).and_then(|v| v.try_into().ok())
            }),
            DataType::Int16 => primitive::<Int16Type>(ctx, col, name, rescue, |b| {
                values::parse_i64(b).and_then(|v| v.try_into().ok())
            }),
            DataType::Int8 => primitive::<Int8Type>(ctx, col, name, rescue, |b| {
                values::parse_i64(b).and_then(|v| v.try_into().ok())
            }),
            DataType::Float64 => {
                primitive::<Float64Type>(ctx, col, name, rescue, values::parse_f64)
            }
            DataType::Float32 => primitive::<Float32Type>(ctx, col, name, rescue, |b| {
                values::parse_f64(b).map(|v| v as f32)
            }),
            DataType::Date32 => match &self.date_format {
                None => primitive::<Date32Type>(ctx, col, name, rescue, |b| {
                    values::parse_iso_date(b).or_else(|| {
                        values::parse_iso_timestamp(b)
                            .map(|us| us.div_euclid(86_400_000_000) as i32)
                    })
                }),
                Some(f) => primitive::<Date32Type>(ctx, col, name, rescue, |b| {
                    values::parse_date_with(b, f)
                }),
            },
            DataType::Timestamp(TimeUnit::Microsecond, tz) => {
                let arr = match &self.timestamp_format {
                    None => primitive::<TimestampMicrosecondType>(
                        ctx,
                        col,
                        name,
                        rescue,
                        values::parse_iso_timestamp,
                    ),
                    Some(f) => primitive::<TimestampMicrosecondType>(ctx, col, name, rescue, |b| {
                        values::parse_timestamp_with(b, f)
                            .or_else(|| values::parse_iso_timestamp(b))
                    }),
                };
                let arr = arr
                    .as_any()
                    .downcast_ref::<arrow::array::TimestampMicrosecondArray>()
                    .expect("built above")
                    .clone();
                Arc::new(arr.with_timezone_opt(tz.clone()))
            }
            DataType::Decimal128(p, s) => {
                let (p, s) = (*p, *s);
                let arr = primitive::<Decimal128Type>(ctx, col, name, rescue, |b| {
                    values::parse_decimal(b, p, s)
                });
                let arr = arr
                    .as_any()
                    .downcast_ref::<arrow::array::Decimal128Array>()
                    .expect("built above")
                    .clone();
                Arc::new(
                    arr.with_precision_and_scale(p, s)
                        .map_err(|e| FilesError::BadOption {
                            option: "schema".into(),
                            message: e.to_string(),
                        })?,
                )
            }
            DataType::Boolean => {
                let mut b = BooleanBuilder::with_capacity(n);
                for row in 0..n {
                    match ctx.get(row, col) {
                        None => b.append_null(),
                        Some((bytes, _)) => match values::parse_bool(bytes) {
                            Some(v) => b.append_value(v),
                            None if values::trim(bytes).is_empty() => b.append_null(),
                            None => {
                                rescue.value(row as u32, name, bytes);
                                b.append_null();
                            }
                        },
                    }
                }
                Arc::new(b.finish())
            }
            DataType::Binary => {
                let mut b = BinaryBuilder::with_capacity(n, n * 8);
                for row in 0..n {
                    match ctx.get(row, col) {
                        None => b.append_null(),
                        Some((bytes, _)) => b.append_value(bytes),
                    }
                }
                Arc::new(b.finish())
            }
            other => {
                // Anything else (nested types, other units): parse as text, then cast.
                let mut b = StringBuilder::with_capacity(n, n * 8);
                for row in 0..n {
                    match ctx.get(row, col) {
                        None => b.append_null(),
                        Some((bytes, _)) => b.append_value(rescue::text(bytes)),
                    }
                }
                let strings = b.finish();
                let cast = cast_with_options(
                    &strings,
                    other,
                    &CastOptions {
                        safe: true,
                        ..Default::default()
                    },
                )
                .map_err(|e| FilesError::BadOption {
                    option: "schema".into(),
                    message: format!("column `{name}`: CSV text cannot be read as {other}: {e}"),
                })?;
                for row in 0..n {
                    if strings.is_valid(row) && cast.is_null(row) {
                        rescue.value(row as u32, name, strings.value(row).as_bytes());
                    }
                }
                cast
            }
        })
    }
}

#[inline]
fn primitive<T: ArrowPrimitiveType>(
    ctx: &Ctx,
    col: usize,
    name: &str,
    rescue: &mut Rescue,
    parse: impl Fn(&[u8]) -> Option<T::Native>,
) -> ArrayRef {
    let n = ctx.tokens.rows();
    let mut b = PrimitiveBuilder::<T>::with_capacity(n);
    for row in 0..n {
        match ctx.get(row, col) {
            None => b.append_null(),
            Some((bytes, _)) => match parse(bytes) {
                Some(v) => b.append_value(v),
                None if values::trim(bytes).is_empty() => b.append_null(),
                None => {
                    rescue.value(row as u32, name, bytes);
                    b.append_null();
                }
            },
        }
    }
    Arc::new(b.finish())
}

/// The tokenizer settings of some options.
pub fn dialect(options: &ReadOptions) -> CsvDialect {
    CsvDialect {
        delimiter: options.delimiter,
        quote: options.quote,
        escape: options.escape,
        comment: options.comment,
        multi_line: options.multi_line,
    }
}
