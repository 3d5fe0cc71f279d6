//! Self-describing formats (Parquet, Avro): reading their schemas and rows, and aligning
//! each file's columns with the target schema by name.

use std::collections::HashSet;
use std::io::BufReader;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::compute::{CastOptions, cast_with_options};
use arrow::datatypes::{DataType, Schema, SchemaRef};
use parquet::arrow::arrow_reader::{
    ArrowReaderMetadata, ArrowReaderOptions, ParquetRecordBatchReaderBuilder,
};
use serde_json::Value;

use super::error::{FilesError, Result};
use super::listing::SourceFile;
use super::options::Compression;
use super::rescue::Rescue;
use super::source::{Opener, RandomAccess};

/// Rows per batch read from typed files.
const BATCH_ROWS: usize = 64 * 1024;
/// Row groups are grouped into units of at least this many rows.
const UNIT_ROWS: i64 = 256 * 1024;

fn corrupt(f: &SourceFile, what: &str, e: impl std::fmt::Display) -> FilesError {
    FilesError::Corrupt {
        file: f.location.clone(),
        message: format!("{what}: {e}"),
    }
}

fn parquet_metadata(
    opener: &Opener,
    f: &SourceFile,
) -> Result<(RandomAccess, ArrowReaderMetadata)> {
    let ra = opener.random_access(f)?;
    let options = ArrowReaderOptions::new();
    let meta = match &ra {
        RandomAccess::File(file) => ArrowReaderMetadata::load(file, options),
        RandomAccess::Bytes(b) => ArrowReaderMetadata::load(b, options),
    }
    .map_err(|e| corrupt(f, "not a readable Parquet file", e))?;
    Ok((ra, meta))
}

/// The Arrow schema of a Parquet file.
pub fn parquet_schema(opener: &Opener, f: &SourceFile) -> Result<SchemaRef> {
    let (_, meta) = parquet_metadata(opener, f)?;
    Ok(meta.schema().clone())
}

/// Splits a Parquet file into units of whole row groups: `(row groups, first row)`.
pub fn parquet_units(opener: &Opener, f: &SourceFile) -> Result<Vec<(Vec<usize>, u64)>> {
    let (_, meta) = parquet_metadata(opener, f)?;
    let mut units = Vec::new();
    let mut current = Vec::new();
    let mut rows = 0i64;
    let mut first = 0u64;
    let mut offset = 0u64;
    for (i, rg) in meta.metadata().row_groups().iter().enumerate() {
        current.push(i);
        rows += rg.num_rows();
        offset += rg.num_rows() as u64;
        if rows >= UNIT_ROWS {
            units.push((std::mem::take(&mut current), first));
            first = offset;
            rows = 0;
        }
    }
    if !current.is_empty() {
        units.push((current, first));
    }
    Ok(units)
}

/// Reads row groups of a Parquet file, handing each aligned batch to `emit`.
pub fn read_parquet(
    opener: &Opener,
    f: &SourceFile,
    row_groups: Vec<usize>,
    first_row: u64,
    aligner: &Aligner,
    emit: &mut dyn FnMut(RecordBatch, usize) -> Result<()>,
) -> Result<()> {
    let (ra, meta) = parquet_metadata(opener, f)?;
    let mut row = first_row;
    macro_rules! drain {
        ($input:expr) => {{
            let reader = ParquetRecordBatchReaderBuilder::new_with_metadata($input, meta)
                .with_row_groups(row_groups)
                .with_batch_size(BATCH_ROWS)
                .build()
                .map_err(|e| corrupt(f, "cannot read Parquet rows", e))?;
            for batch in reader {
                let batch = batch.map_err(|e| corrupt(f, "cannot read Parquet rows", e))?;
                let n = batch.num_rows() as u64;
                let (b, rescued) = aligner.align(&batch, f, row)?;
                row += n;
                emit(b, rescued)?;
            }
        }};
    }
    match ra {
        RandomAccess::File(file) => drain!(file),
        RandomAccess::Bytes(bytes) => drain!(bytes),
    }
    Ok(())
}

/// The Arrow schema of an Avro object container file.
pub fn avro_schema(opener: &Opener, f: &SourceFile, compression: Compression) -> Result<SchemaRef> {
    let r = opener.open(f, compression, None)?;
    let reader = arrow_avro::reader::ReaderBuilder::new()
        .with_batch_size(BATCH_ROWS)
        .build(BufReader::new(r))
        .map_err(|e| corrupt(f, "not a readable Avro file", e))?;
    Ok(reader.schema())
}

/// Reads an Avro file, handing each aligned batch to `emit`.
pub fn read_avro(
    opener: &Opener,
    f: &SourceFile,
    compression: Compression,
    aligner: &Aligner,
    emit: &mut dyn FnMut(RecordBatch, usize) -> Result<()>,
) -> Result<()> {
    let r = opener.open(f, compression, None)?;
    let reader = arrow_avro::reader::ReaderBuilder::new()
        .with_batch_size(BATCH_ROWS)
        .build(BufReader::new(r))
        .map_err(|e| corrupt(f, "not a readable Avro file", e))?;
    let mut row = 0u64;
    for batch in reader {
        let batch = batch.map_err(|e| corrupt(f, "cannot read Avro rows", e))?;
        let n = batch.num_rows() as u64;
        let (b, rescued) = aligner.align(&batch, f, row)?;
        row += n;
        emit(b, rescued)?;
    }
    Ok(())
}

/// Whether a file column of type `from` can be stored in a column of type `to` without
/// losing meaning.
pub fn compatible(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if crate::arrow_types::same_stored_type(to, from) {
        return true;
    }
    match (from, to) {
        (Null, _) => true,
        (Dictionary(_, v), t) => compatible(v, t),
        (Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32, Int16 | Int32 | Int64) => {
            int_fits(from, to)
        }
        (UInt64, Decimal128(p, 0)) => *p >= 20,
        (Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64, Float32 | Float64) => {
            true
        }
        (Int8 | Int16 | Int32 | Int64, Decimal128(..)) => true,
        (Float16 | Float32, Float32 | Float64) => true,
        (Decimal32(p1, s1) | Decimal64(p1, s1) | Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        (Decimal128(..), Float64) => true,
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View) => true,
        (
            Binary | LargeBinary | BinaryView | FixedSizeBinary(_),
            Binary | LargeBinary | BinaryView,
        ) => true,
        (Date32 | Date64, Date32 | Timestamp(..)) => true,
        (Timestamp(..), Timestamp(..)) => true,
        (Time32(_) | Time64(_), Utf8) => true,
        (
            Boolean | Int8 | Int16 | Int32 | Int64 | UInt8 | UInt16 | UInt32 | UInt64 | Float32
            | Float64 | Decimal128(..) | Date32 | Timestamp(..),
            Utf8,
        ) => true,
        (List(a) | LargeList(a), List(b) | LargeList(b)) => {
            compatible(a.data_type(), b.data_type())
        }
        (Struct(a), Struct(b)) => a.iter().all(|fa| {
            b.iter()
                .find(|fb| fb.name().eq_ignore_ascii_case(fa.name()))
                .is_some_and(|fb| compatible(fa.data_type(), fb.data_type()))
        }),
        (Map(a, _), Map(b, _)) => compatible(a.data_type(), b.data_type()),
        _ => false,
    }
}

fn int_fits(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    let width = |t: &DataType| match t {
        Int8 => 8,
        Int16 | UInt8 => 16,
        Int32 | UInt16 => 32,
        Int64 | UInt32 => 64,
        _ => 128,
    };
    width(from) <= width(to)
}

/// Aligns batches of self-describing files with the output schema.
#[derive(Debug, Clone)]
pub struct Aligner {
    out: SchemaRef,
    data_cols: usize,
    rescue: bool,
    target: &'static str,
}

impl Aligner {
    /// An aligner producing `out` (with the rescued-data column last when `rescue`);
    /// `target` names the schema in errors ("table schema", ...).
    pub fn new(out: SchemaRef, rescue: bool, target: &'static str) -> Self {
        let data_cols = out.fields().len() - usize::from(rescue);
        Aligner {
            out,
            data_cols,
            rescue,
            target,
        }
    }

    /// Matches columns by name (case-insensitively), casts compatible types, fills missing
    /// columns with nulls, and rescues columns the schema lacks. An incompatible type is an
    /// error naming the file, column and both types.
    pub fn align(
        &self,
        batch: &RecordBatch,
        f: &SourceFile,
        first_row: u64,
    ) -> Result<(RecordBatch, usize)> {
        let n = batch.num_rows();
        let in_schema = batch.schema();
        let mut used = HashSet::new();
        let mut cols: Vec<ArrayRef> = Vec::with_capacity(self.out.fields().len());
        for field in self.out.fields().iter().take(self.data_cols) {
            let idx = in_schema.index_of(field.name()).ok().or_else(|| {
                in_schema
                    .fields()
                    .iter()
                    .position(|x| x.name().eq_ignore_ascii_case(field.name()))
            });
            match idx {
                None => cols.push(new_null_array(field.data_type(), n)),
                Some(i) => {
                    used.insert(i);
                    let col = batch.column(i);
                    if col.data_type() == field.data_type() {
                        cols.push(col.clone());
                    } else if compatible(col.data_type(), field.data_type()) {
                        let c = cast_with_options(
                            col,
                            field.data_type(),
                            &CastOptions {
                                safe: false,
                                ..Default::default()
                            },
                        )
                        .map_err(|e| {
                            incompatible(
                                f,
                                field.name(),
                                col.data_type(),
                                field.data_type(),
                                self.target,
                                Some(e.to_string()),
                            )
                        })?;
                        cols.push(c);
                    } else {
                        return Err(incompatible(
                            f,
                            field.name(),
                            col.data_type(),
                            field.data_type(),
                            self.target,
                            None,
                        ));
                    }
                }
            }
        }
        let extra: Vec<usize> = (0..in_schema.fields().len())
            .filter(|i| !used.contains(i))
            .collect();
        let mut rescued = 0;
        if self.rescue {
            let mut rescue = Rescue::default();
            if !extra.is_empty() {
                let sub = batch
                    .project(&extra)
                    .map_err(|e| corrupt(f, "cannot read columns", e))?;
                let mut w = arrow_json::LineDelimitedWriter::new(Vec::new());
                w.write(&sub)
                    .map_err(|e| corrupt(f, "cannot keep extra columns", e))?;
                w.finish()
                    .map_err(|e| corrupt(f, "cannot keep extra columns", e))?;
                let text = w.into_inner();
                for (row, line) in text.split(|b| *b == b'\n').enumerate().take(n) {
                    if let Ok(Value::Object(m)) = serde_json::from_slice::<Value>(line) {
                        for (k, v) in m {
                            rescue.json_value(row as u32, &k, v);
                        }
                    }
                }
            }
            rescued = rescue.len();
            cols.push(rescue.finish(n, &f.location, |row| first_row + row as u64 + 1));
        }
        let out = RecordBatch::try_new_with_options(
            self.out.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| corrupt(f, "internal error assembling rows", e))?;
        Ok((out, rescued))
    }
}

fn incompatible(
    f: &SourceFile,
    column: &str,
    found: &DataType,
    expected: &DataType,
    target: &str,
    detail: Option<String>,
) -> FilesError {
    FilesError::IncompatibleType {
        file: f.location.clone(),
        column: column.to_string(),
        found: type_name(found),
        expected: format!(
            "{}{}",
            type_name(expected),
            detail.map(|d| format!(" ({d})")).unwrap_or_default()
        ),
        target: target.to_string(),
    }
}

/// SQL-style type names for messages.
pub use crate::arrow_types::type_name;

/// Merges the schema of another file into `acc`: new columns are appended; a column whose
/// types differ widens when one holds the other, else it is an error naming the file.
pub fn merge_typed(
    acc: &mut Vec<arrow::datatypes::Field>,
    next: &Schema,
    f: &SourceFile,
) -> Result<()> {
    for field in next.fields() {
        match acc
            .iter_mut()
            .find(|a| a.name().eq_ignore_ascii_case(field.name()))
        {
            None => acc.push(field.as_ref().clone().with_nullable(true)),
            Some(a) => {
                let (have, got) = (a.data_type().clone(), field.data_type().clone());
                if crate::arrow_types::same_stored_type(&have, &got) || compatible(&got, &have) {
                    continue;
                }
                if compatible(&have, &got) {
                    *a = a.clone().with_data_type(got);
                    continue;
                }
                return Err(incompatible(
                    f,
                    field.name(),
                    &got,
                    &have,
                    "schema inferred from earlier files",
                    None,
                ));
            }
        }
    }
    Ok(())
}

/// Plain types for storage: dictionaries unpacked, view types made plain.
pub fn storage_type(dt: &DataType) -> DataType {
    match dt {
        DataType::Dictionary(_, v) => storage_type(v),
        DataType::Utf8View | DataType::LargeUtf8 => DataType::Utf8,
        DataType::BinaryView | DataType::LargeBinary => DataType::Binary,
        other => other.clone(),
    }
}
