//! Printing query results: an aligned table on a terminal, or CSV, JSON or Parquet.

use std::fs::File;
use std::io::{IsTerminal, Write};
use std::path::Path;

use anyhow::Context as _;
use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use arrow::util::display::{ArrayFormatter, FormatOptions};
use clap::ValueEnum;
use comfy_table::{Cell, CellAlignment, ContentArrangement, Table, presets};
use datafusion::execution::SendableRecordBatchStream;
use futures::StreamExt;

/// Output formats of `confluo query`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    /// An aligned table (the default on a terminal).
    Table,
    /// Comma-separated values with a header.
    Csv,
    /// A JSON array of objects.
    Json,
    /// Newline-delimited JSON objects.
    Jsonl,
    /// Apache Parquet (to --output, or to a non-terminal stdout).
    Parquet,
}

/// Streams a result to stdout or a file; returns the number of rows.
pub async fn write_stream(
    mut stream: SendableRecordBatchStream,
    format: OutputFormat,
    output: Option<&Path>,
) -> anyhow::Result<u64> {
    let schema = stream.schema();
    let sink: Box<dyn Write + Send> = match output {
        Some(p) => {
            if let Some(dir) = p.parent().filter(|d| !d.as_os_str().is_empty()) {
                std::fs::create_dir_all(dir)
                    .with_context(|| format!("cannot create {}", dir.display()))?;
            }
            Box::new(std::io::BufWriter::new(
                File::create(p).with_context(|| format!("cannot create {}", p.display()))?,
            ))
        }
        None => {
            if format == OutputFormat::Parquet && std::io::stdout().is_terminal() {
                anyhow::bail!(
                    "refusing to write Parquet to a terminal\n  hint: pass --output FILE or redirect stdout"
                );
            }
            Box::new(std::io::BufWriter::new(std::io::stdout()))
        }
    };
    let mut rows = 0u64;
    match format {
        OutputFormat::Table => {
            let mut batches = Vec::new();
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                batches.push(b);
            }
            let mut sink = sink;
            writeln!(sink, "{}", table(&schema, &batches)?)?;
            writeln!(
                sink,
                "({} row{})",
                crate::progress::count(rows),
                if rows == 1 { "" } else { "s" }
            )?;
            sink.flush()?;
        }
        OutputFormat::Csv => {
            let mut w = arrow_csv::WriterBuilder::new()
                .with_header(true)
                .build(sink);
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&nested_as_text(&b)?)?;
            }
            w.into_inner().flush()?;
        }
        OutputFormat::Json => {
            let mut w = arrow_json::ArrayWriter::new(sink);
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.finish()?;
            let mut inner = w.into_inner();
            if rows == 0 {
                write!(inner, "[]")?;
            }
            writeln!(inner)?;
            inner.flush()?;
        }
        OutputFormat::Jsonl => {
            let mut w = arrow_json::LineDelimitedWriter::new(sink);
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.finish()?;
            w.into_inner().flush()?;
        }
        OutputFormat::Parquet => {
            let mut w = parquet::arrow::ArrowWriter::try_new(sink, schema.clone(), None)?;
            while let Some(b) = stream.next().await {
                let b = b?;
                rows += b.num_rows() as u64;
                w.write(&b)?;
            }
            w.into_inner()?.flush()?;
        }
    }
    Ok(rows)
}

/// `batch` with its nested columns (arrays, structs, maps) as text (`[1, 2]`, `{a: 1}`):
/// CSV has no nested values, and refusing a whole result for one such column helps nobody.
fn nested_as_text(batch: &RecordBatch) -> anyhow::Result<RecordBatch> {
    use arrow::array::{Array, ArrayRef, StringBuilder};
    use arrow::datatypes::{Field, Schema};
    if !batch
        .schema()
        .fields()
        .iter()
        .any(|f| f.data_type().is_nested())
    {
        return Ok(batch.clone());
    }
    let opts = FormatOptions::default();
    let mut fields = Vec::new();
    let mut columns: Vec<ArrayRef> = Vec::new();
    for (f, c) in batch.schema().fields().iter().zip(batch.columns()) {
        if !f.data_type().is_nested() {
            fields.push(f.as_ref().clone());
            columns.push(c.clone());
            continue;
        }
        let fmt = ArrayFormatter::try_new(c.as_ref(), &opts)?;
        let mut b = StringBuilder::new();
        for row in 0..c.len() {
            if c.is_null(row) {
                b.append_null();
            } else {
                b.append_value(fmt.value(row).to_string());
            }
        }
        fields.push(Field::new(f.name(), arrow::datatypes::DataType::Utf8, true));
        columns.push(std::sync::Arc::new(b.finish()));
    }
    Ok(RecordBatch::try_new(
        std::sync::Arc::new(Schema::new(fields)),
        columns,
    )?)
}

/// Longest cell shown in table output; CSV, JSON and Parquet keep every character.
const MAX_CELL: usize = 100;

fn clip(s: String) -> String {
    if s.chars().count() <= MAX_CELL {
        s
    } else {
        let mut t: String = s.chars().take(MAX_CELL - 1).collect();
        t.push('…');
        t
    }
}

/// An aligned table of the batches (long cells are clipped).
pub fn table(schema: &SchemaRef, batches: &[RecordBatch]) -> anyhow::Result<String> {
    let mut t = Table::new();
    t.load_preset(presets::UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Disabled)
        .set_header(schema.fields().iter().map(|f| Cell::new(f.name())));
    let opts = FormatOptions::default().with_null("NULL");
    let numeric: Vec<bool> = schema
        .fields()
        .iter()
        .map(|f| f.data_type().is_numeric())
        .collect();
    for b in batches {
        let fmts: Vec<ArrayFormatter> = b
            .columns()
            .iter()
            .map(|c| ArrayFormatter::try_new(c.as_ref(), &opts))
            .collect::<Result<_, _>>()?;
        for row in 0..b.num_rows() {
            t.add_row(fmts.iter().enumerate().map(|(i, f)| {
                let c = Cell::new(clip(f.value(row).to_string()));
                if numeric[i] {
                    c.set_alignment(CellAlignment::Right)
                } else {
                    c
                }
            }));
        }
    }
    Ok(t.to_string())
}

/// Rows of text as a table with a header, the way `jobs` and `monitor` print lists.
pub fn grid(header: &[&str], rows: Vec<Vec<String>>) -> String {
    use comfy_table::{ContentArrangement, Table, presets::UTF8_FULL_CONDENSED};
    let mut t = Table::new();
    t.load_preset(UTF8_FULL_CONDENSED)
        .set_content_arrangement(ContentArrangement::Dynamic)
        .set_header(header.to_vec());
    for r in rows {
        t.add_row(r);
    }
    t.to_string()
}

/// A moment (ms since the epoch) as `2026-01-31 12:00:00` (UTC).
pub fn moment(ms: i64) -> String {
    chrono::DateTime::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d %H:%M:%S").to_string())
        .unwrap_or_default()
}
