//! Inferring one schema for a set of files from a sample of each.

use std::io::Read;
use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::csv::decode::dialect;
use super::csv::infer::{InferFormats, Kind, infer_kinds};
use super::csv::tokenize::{first_record, last_record_end, tokenize};
use super::error::{FilesError, Result};
use super::json;
use super::listing::SourceFile;
use super::options::{FileFormat, ReadOptions};
use super::source::{Opener, read_error};
use super::typed;

/// Most bytes read from one file for inference.
const SAMPLE_BYTES: usize = 32 << 20;

/// The format of one file: the option if given, else from its name.
pub fn format_of(f: &SourceFile, options: &ReadOptions) -> Result<FileFormat> {
    options
        .format
        .or_else(|| FileFormat::from_path(&f.location))
        .ok_or_else(|| FilesError::BadOption {
            option: "format".into(),
            message: format!(
                "cannot tell the format of {} from its name; pass format (csv, json, parquet or avro)",
                f.location
            ),
        })
}

/// Reads up to `max` decompressed bytes from the start of a file, stopping early once
/// `lines` newlines were seen.
pub fn read_head(
    opener: &Opener,
    f: &SourceFile,
    options: &ReadOptions,
    lines: usize,
) -> Result<(Vec<u8>, bool)> {
    let mut r = opener.open(f, options.compression, None)?;
    let mut buf = Vec::with_capacity(1 << 20);
    let mut newlines = 0usize;
    loop {
        let start = buf.len();
        let n = (&mut r)
            .take(1 << 20)
            .read_to_end(&mut buf)
            .map_err(|e| read_error(f, e))?;
        if n == 0 {
            return Ok((buf, true));
        }
        newlines += bytecount::count(&buf[start..], b'\n');
        if newlines > lines || buf.len() >= SAMPLE_BYTES {
            return Ok((buf, false));
        }
    }
}

/// Column names of a CSV file (from its header, or `_c0..`), made unique and non-empty.
pub fn csv_names(fields: &[Vec<u8>], header: bool) -> Vec<String> {
    let mut names: Vec<String> = Vec::with_capacity(fields.len());
    for (i, f) in fields.iter().enumerate() {
        let mut name = if header {
            String::from_utf8_lossy(f)
                .trim()
                .trim_start_matches('\u{feff}')
                .to_string()
        } else {
            String::new()
        };
        if name.is_empty() {
            name = format!("_c{i}");
        }
        if names.iter().any(|n| n.eq_ignore_ascii_case(&name)) {
            name = format!("{name}_{i}");
        }
        names.push(name);
    }
    names
}

/// The columns of one CSV file with inferred types.
fn infer_csv(opener: &Opener, f: &SourceFile, options: &ReadOptions) -> Result<Vec<Field>> {
    let (head, eof) = read_head(opener, f, options, options.sample_rows + 1)?;
    let head = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head);
    let d = dialect(options);
    let Some((first, consumed, _)) = first_record(head, &d) else {
        return Ok(Vec::new());
    };
    let names = csv_names(&first, options.header);
    let body = if options.header {
        &head[consumed..]
    } else {
        head
    };
    let body = if eof {
        body
    } else {
        &body[..last_record_end(body, &d).unwrap_or(0)]
    };
    let kinds = if options.infer_schema {
        let tokens = tokenize(body, &d, names.len(), options.sample_rows);
        let formats = InferFormats {
            date: options
                .date_format
                .as_deref()
                .map(super::values::java_to_chrono),
            timestamp: options
                .timestamp_format
                .as_deref()
                .map(super::values::java_to_chrono),
            null_value: options.null_value.as_ref().map(|s| s.as_bytes().to_vec()),
        };
        infer_kinds(&tokens, body, &formats)
    } else {
        vec![Kind::String; names.len()]
    };
    Ok(names
        .into_iter()
        .zip(kinds)
        .map(|(n, k)| Field::new(n, k.data_type(), true))
        .collect())
}

fn infer_json(opener: &Opener, f: &SourceFile, options: &ReadOptions) -> Result<Vec<Field>> {
    let lines = if options.multi_line {
        json::documents_to_lines(&opener.read_all(f, options.compression)?)
    } else {
        read_head(opener, f, options, options.sample_rows + 1)?.0
    };
    let schema =
        json::infer_lines(&lines, options.sample_rows).map_err(|e| FilesError::Corrupt {
            file: f.location.clone(),
            message: format!("cannot infer a schema: {e}"),
        })?;
    Ok(schema.fields().iter().map(|f| f.as_ref().clone()).collect())
}

/// Merges text-format columns: types widen, and a real conflict becomes a string column
/// (values that do not fit a column are rescued at read time instead).
fn merge_text(acc: &mut Vec<Field>, next: Vec<Field>) {
    for field in next {
        match acc
            .iter_mut()
            .find(|a| a.name().eq_ignore_ascii_case(field.name()))
        {
            None => acc.push(field),
            Some(a) => {
                if a.data_type() == field.data_type() {
                    continue;
                }
                let (ka, kb) = (Kind::of(a.data_type()), Kind::of(field.data_type()));
                let merged = if ka == Kind::String && kb == Kind::String {
                    // Nested JSON types that differ: keep the text.
                    if matches!(a.data_type(), DataType::Struct(_) | DataType::List(_))
                        || matches!(field.data_type(), DataType::Struct(_) | DataType::List(_))
                    {
                        DataType::Utf8
                    } else {
                        a.data_type().clone()
                    }
                } else {
                    ka.merge(kb).data_type()
                };
                *a = a.clone().with_data_type(merged);
            }
        }
    }
}

/// Infers the data columns of a set of files from the first `sample_files` of them.
pub fn infer_schema(
    files: &[SourceFile],
    options: &ReadOptions,
    opener: &Opener,
) -> Result<SchemaRef> {
    if let Some(schema) = &options.schema {
        return Ok(schema.clone());
    }
    let mut fields: Vec<Field> = Vec::new();
    for f in files.iter().take(options.sample_files) {
        match format_of(f, options)? {
            FileFormat::Csv => merge_text(&mut fields, infer_csv(opener, f, options)?),
            FileFormat::Json => merge_text(&mut fields, infer_json(opener, f, options)?),
            FileFormat::Parquet => {
                let s = typed::parquet_schema(opener, f)?;
                typed::merge_typed(&mut fields, &storage_schema(&s), f)?;
            }
            FileFormat::Avro => {
                let s = typed::avro_schema(opener, f, options.compression)?;
                typed::merge_typed(&mut fields, &storage_schema(&s), f)?;
            }
        }
    }
    if let Some(hints) = &options.schema_hints {
        for hint in hints.fields() {
            match fields
                .iter_mut()
                .find(|f| f.name().eq_ignore_ascii_case(hint.name()))
            {
                Some(f) => *f = f.clone().with_data_type(hint.data_type().clone()),
                None => fields.push(hint.as_ref().clone().with_nullable(true)),
            }
        }
    }
    if let Some(rescued) = &options.rescued_data_column {
        fields.retain(|f| f.name() != rescued);
    }
    if fields.is_empty() {
        return Err(FilesError::Corrupt {
            file: files
                .first()
                .map(|f| f.location.clone())
                .unwrap_or_default(),
            message: "no columns found (the files are empty)".into(),
        });
    }
    Ok(Arc::new(Schema::new(fields)))
}

fn storage_schema(s: &Schema) -> Schema {
    Schema::new(
        s.fields()
            .iter()
            .map(|f| Field::new(f.name(), typed::storage_type(f.data_type()), true))
            .collect::<Vec<_>>(),
    )
}
