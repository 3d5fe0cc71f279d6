//! Options of `read_files` and `confluo ingest`, as users spell them.

use std::fmt;

use arrow::datatypes::SchemaRef;

use super::error::{FilesError, Result};
use super::schema_ddl::parse_schema_ddl;

/// File formats Confluo reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// Comma- (or otherwise) separated values.
    Csv,
    /// JSON: newline-delimited by default, whole documents with `multiLine`.
    Json,
    /// Apache Parquet.
    Parquet,
    /// Apache Avro object container files.
    Avro,
}

impl FileFormat {
    /// Parses a format name.
    pub fn parse(name: &str) -> Result<Self> {
        match name.to_ascii_lowercase().as_str() {
            "csv" | "tsv" | "text/csv" => Ok(FileFormat::Csv),
            "json" | "ndjson" | "jsonl" => Ok(FileFormat::Json),
            "parquet" => Ok(FileFormat::Parquet),
            "avro" => Ok(FileFormat::Avro),
            other => Err(FilesError::BadOption {
                option: "format".into(),
                message: format!("unknown format `{other}`; expected csv, json, parquet or avro"),
            }),
        }
    }

    /// Guesses the format from a file name, looking through compression suffixes.
    pub fn from_path(path: &str) -> Option<Self> {
        let lower = path.to_ascii_lowercase();
        let base = lower
            .trim_end_matches(".gz")
            .trim_end_matches(".gzip")
            .trim_end_matches(".zst")
            .trim_end_matches(".zstd");
        let ext = base.rsplit('.').next()?;
        match ext {
            "csv" | "tsv" | "txt" => Some(FileFormat::Csv),
            "json" | "ndjson" | "jsonl" => Some(FileFormat::Json),
            "parquet" | "pq" => Some(FileFormat::Parquet),
            "avro" => Some(FileFormat::Avro),
            _ => None,
        }
    }
}

impl fmt::Display for FileFormat {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileFormat::Csv => "csv",
            FileFormat::Json => "json",
            FileFormat::Parquet => "parquet",
            FileFormat::Avro => "avro",
        })
    }
}

/// Compression of the input files.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    /// Decide per file from its name and first bytes.
    #[default]
    Auto,
    /// Not compressed.
    None,
    /// gzip (also multi-member).
    Gzip,
    /// Zstandard.
    Zstd,
}

/// How to read a set of files. Names follow Spark/Databricks (`header`, `sep`, `multiLine`,
/// `schemaHints`, ...); snake_case spellings work too.
#[derive(Debug, Clone)]
pub struct ReadOptions {
    /// The format; guessed from file names when not given.
    pub format: Option<FileFormat>,
    /// CSV: the first line holds column names.
    pub header: bool,
    /// CSV: field separator.
    pub delimiter: u8,
    /// CSV: quote character.
    pub quote: u8,
    /// CSV: escape character inside quoted fields (a doubled quote always works).
    pub escape: Option<u8>,
    /// CSV: text that stands for null (an unquoted empty field is always null).
    pub null_value: Option<String>,
    /// Lines starting with this byte are skipped.
    pub comment: Option<u8>,
    /// chrono format for dates (default ISO `%Y-%m-%d`).
    pub date_format: Option<String>,
    /// chrono format for timestamps (default ISO 8601).
    pub timestamp_format: Option<String>,
    /// CSV: quoted fields may span lines. JSON: files are whole documents.
    pub multi_line: bool,
    /// Infer column types (otherwise every column is a string).
    pub infer_schema: bool,
    /// An explicit schema: no inference.
    pub schema: Option<SchemaRef>,
    /// Types for some columns, overriding inference.
    pub schema_hints: Option<SchemaRef>,
    /// Rows sampled per file for inference.
    pub sample_rows: usize,
    /// Files sampled for inference.
    pub sample_files: usize,
    /// Input compression.
    pub compression: Compression,
    /// Name of the rescued-data column; `None` disables rescue (bad values then fail).
    pub rescued_data_column: Option<String>,
    /// Recurse into sub-folders of a folder path.
    pub recursive: bool,
    /// Only files whose name matches this glob (e.g. `*.csv`).
    pub path_glob_filter: Option<String>,
    /// Adds the `_metadata` column (each row's file path, name, size and modification
    /// time). Not a reader option a user types: SQL planning sets it when a query names
    /// `_metadata`, which `SELECT *` leaves out as Databricks does.
    pub metadata_column: bool,
}

impl Default for ReadOptions {
    fn default() -> Self {
        ReadOptions {
            format: None,
            header: true,
            delimiter: b',',
            quote: b'"',
            escape: None,
            null_value: None,
            comment: None,
            date_format: None,
            timestamp_format: None,
            multi_line: false,
            infer_schema: true,
            schema: None,
            schema_hints: None,
            sample_rows: 10_000,
            sample_files: 20,
            compression: Compression::Auto,
            rescued_data_column: Some(RESCUED_DATA.to_string()),
            recursive: true,
            path_glob_filter: None,
            metadata_column: false,
        }
    }
}

/// Default name of the column holding values that did not fit.
pub const RESCUED_DATA: &str = "_rescued_data";

/// The option names accepted, for error messages.
pub const OPTION_NAMES: &[&str] = &[
    "format",
    "header",
    "sep",
    "delimiter",
    "quote",
    "escape",
    "nullValue",
    "comment",
    "dateFormat",
    "timestampFormat",
    "multiLine",
    "inferSchema",
    "schema",
    "schemaHints",
    "samplingRows",
    "samplingFiles",
    "compression",
    "rescuedDataColumn",
    "recursiveFileLookup",
    "pathGlobFilter",
];

fn canonical(key: &str) -> String {
    key.chars()
        .filter(|c| *c != '_' && *c != '-' && *c != '.')
        .collect::<String>()
        .to_ascii_lowercase()
}

fn parse_bool(option: &str, value: &str) -> Result<bool> {
    match value.trim().to_ascii_lowercase().as_str() {
        "true" | "yes" | "1" | "on" => Ok(true),
        "false" | "no" | "0" | "off" => Ok(false),
        _ => Err(FilesError::BadOption {
            option: option.into(),
            message: format!("expected true or false, got `{value}`"),
        }),
    }
}

fn parse_char(option: &str, value: &str) -> Result<u8> {
    let v = match value {
        "\\t" | "tab" => "\t",
        "\\\\" => "\\",
        other => other,
    };
    let bytes = v.as_bytes();
    if bytes.len() == 1 && bytes[0].is_ascii() {
        Ok(bytes[0])
    } else {
        Err(FilesError::BadOption {
            option: option.into(),
            message: format!("expected a single ASCII character, got `{value}`"),
        })
    }
}

fn parse_count(option: &str, value: &str) -> Result<usize> {
    value
        .trim()
        .parse::<usize>()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| FilesError::BadOption {
            option: option.into(),
            message: format!("expected a positive whole number, got `{value}`"),
        })
}

impl ReadOptions {
    /// Applies one `key => value` option.
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match canonical(key).as_str() {
            "format" => self.format = Some(FileFormat::parse(value)?),
            "header" => self.header = parse_bool(key, value)?,
            "sep" | "delimiter" | "separator" | "fieldseparator" => {
                self.delimiter = parse_char(key, value)?
            }
            "quote" => self.quote = parse_char(key, value)?,
            "escape" => self.escape = Some(parse_char(key, value)?),
            "nullvalue" => self.null_value = Some(value.to_string()),
            "comment" => self.comment = Some(parse_char(key, value)?),
            "dateformat" => self.date_format = Some(value.to_string()),
            "timestampformat" => self.timestamp_format = Some(value.to_string()),
            "multiline" => self.multi_line = parse_bool(key, value)?,
            "inferschema" | "infercolumntypes" => self.infer_schema = parse_bool(key, value)?,
            "schema" => {
                self.schema = Some(parse_schema_ddl(value).map_err(|m| FilesError::BadOption {
                    option: key.into(),
                    message: m,
                })?)
            }
            "schemahints" => {
                self.schema_hints =
                    Some(parse_schema_ddl(value).map_err(|m| FilesError::BadOption {
                        option: key.into(),
                        message: m,
                    })?)
            }
            "samplingrows" | "samplerows" => self.sample_rows = parse_count(key, value)?,
            "samplingfiles" | "samplefiles" => self.sample_files = parse_count(key, value)?,
            "compression" | "codec" => {
                self.compression = match value.to_ascii_lowercase().as_str() {
                    "auto" | "infer" => Compression::Auto,
                    "none" | "uncompressed" => Compression::None,
                    "gzip" | "gz" => Compression::Gzip,
                    "zstd" | "zst" => Compression::Zstd,
                    other => {
                        return Err(FilesError::BadOption {
                            option: key.into(),
                            message: format!(
                                "unknown compression `{other}`; expected auto, none, gzip or zstd"
                            ),
                        });
                    }
                }
            }
            "rescueddatacolumn" => {
                self.rescued_data_column = (!value.is_empty()).then(|| value.to_string())
            }
            "recursivefilelookup" | "recursive" => self.recursive = parse_bool(key, value)?,
            "pathglobfilter" => self.path_glob_filter = Some(value.to_string()),
            "mode" => match value.to_ascii_lowercase().as_str() {
                "permissive" => {}
                "failfast" => self.rescued_data_column = None,
                other => {
                    return Err(FilesError::BadOption {
                        option: key.into(),
                        message: format!(
                            "mode `{other}` is not supported: Confluo never drops rows; use PERMISSIVE (bad values go to the rescued-data column) or FAILFAST"
                        ),
                    });
                }
            },
            "encoding" | "charset" => {
                if !matches!(value.to_ascii_lowercase().as_str(), "utf-8" | "utf8") {
                    return Err(FilesError::BadOption {
                        option: key.into(),
                        message: format!("only UTF-8 input is supported, not `{value}`"),
                    });
                }
            }
            _ => {
                let suggestions = confluo_core::suggest::nearest(key, OPTION_NAMES.iter().copied());
                return Err(FilesError::BadOption {
                    option: key.into(),
                    message: format!(
                        "unknown option{}",
                        if suggestions.is_empty() {
                            format!("; valid options are {}", OPTION_NAMES.join(", "))
                        } else {
                            confluo_core::suggest::hint(&suggestions)
                        }
                    ),
                });
            }
        }
        Ok(())
    }

    /// Builds options from `key => value` pairs.
    pub fn from_pairs<'a>(pairs: impl IntoIterator<Item = (&'a str, &'a str)>) -> Result<Self> {
        let mut o = ReadOptions::default();
        for (k, v) in pairs {
            o.set(k, v)?;
        }
        Ok(o)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn options_by_any_spelling() {
        let o = ReadOptions::from_pairs([
            ("format", "csv"),
            ("sep", ";"),
            ("null_value", "NA"),
            ("multiLine", "true"),
            ("header", "false"),
        ])
        .unwrap();
        assert_eq!(o.format, Some(FileFormat::Csv));
        assert_eq!(o.delimiter, b';');
        assert_eq!(o.null_value.as_deref(), Some("NA"));
        assert!(o.multi_line);
        assert!(!o.header);
    }

    #[test]
    fn bad_options_name_the_option() {
        let e = ReadOptions::from_pairs([("hedaer", "true")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("hedaer") && e.contains("header"), "{e}");
        let e = ReadOptions::from_pairs([("header", "maybe")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("header") && e.contains("maybe"), "{e}");
        let e = ReadOptions::from_pairs([("format", "xml")])
            .unwrap_err()
            .to_string();
        assert!(e.contains("xml"), "{e}");
    }

    #[test]
    fn format_from_names() {
        assert_eq!(FileFormat::from_path("a/b.csv.gz"), Some(FileFormat::Csv));
        assert_eq!(FileFormat::from_path("x.jsonl.zst"), Some(FileFormat::Json));
        assert_eq!(
            FileFormat::from_path("x.parquet"),
            Some(FileFormat::Parquet)
        );
        assert_eq!(FileFormat::from_path("x.bin"), None);
    }
}
