//! Reading a set of files in parallel into batches of one schema.
//!
//! Producer threads open files (decompressing as needed) and cut them into units: chunks of
//! whole records for text formats, groups of row groups for Parquet, whole files for Avro.
//! Worker threads decode units and hand batches to their own sink, so decoding and whatever
//! the sink does (encoding Parquet, feeding a query) run on every core. The queue between
//! them is bounded, which bounds memory whatever the input size.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use arrow::array::RecordBatch;
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};

use super::chunker::{CHUNK_SIZE, Chunker};
use super::csv::tokenize::{CsvDialect, first_record};
use super::csv::{CsvDecoder, CsvLayout};
use super::error::{FilesError, Result};
use super::infer::{csv_names, format_of};
use super::json::{JsonDecoder, documents_to_lines};
use super::listing::SourceFile;
use super::metadata;
use super::options::{FileFormat, ReadOptions};
use super::source::{Opener, read_error};
use super::typed::{self, Aligner};

/// Receives decoded batches; each worker thread owns one.
pub trait BatchSink: Send {
    /// Takes one batch. An error stops the whole scan.
    fn write(&mut self, batch: RecordBatch) -> std::result::Result<(), String>;
}

/// Live counters of a scan, for progress displays and summaries.
#[derive(Debug, Default)]
pub struct ScanProgress {
    /// Raw bytes read from the files (compressed size for compressed files).
    pub bytes_read: Arc<AtomicU64>,
    /// Rows decoded.
    pub rows: AtomicU64,
    /// Rows that carry rescued data.
    pub rescued: AtomicU64,
    /// Files fully read.
    pub files_done: AtomicU64,
    /// Set to stop the scan early (a LIMIT was reached, or the user interrupted).
    pub cancel: AtomicBool,
}

/// A planned read of files into one schema.
#[derive(Debug, Clone)]
pub struct FileScan {
    files: Arc<Vec<SourceFile>>,
    options: Arc<ReadOptions>,
    data_schema: SchemaRef,
    /// What the decoders produce: data columns, then the rescued-data column.
    decoded: SchemaRef,
    /// What the scan yields: `decoded`, then `_metadata` when asked for.
    schema: SchemaRef,
    opener: Opener,
    target: &'static str,
}

enum Unit {
    Csv {
        file: usize,
        layout: Arc<CsvLayout>,
        data: Vec<u8>,
        first_line: u64,
    },
    Json {
        file: usize,
        name: Arc<str>,
        data: Vec<u8>,
        first_line: u64,
    },
    Parquet {
        file: usize,
        row_groups: Vec<usize>,
        first_row: u64,
    },
    Avro {
        file: usize,
    },
}

impl FileScan {
    /// A scan of `files` producing `data_schema` plus, unless disabled, the rescued-data
    /// column. `target` names the schema in type errors ("table schema", ...).
    pub fn new(
        files: Vec<SourceFile>,
        options: ReadOptions,
        data_schema: SchemaRef,
        opener: Opener,
        target: &'static str,
    ) -> Self {
        let mut fields: Vec<Field> = data_schema
            .fields()
            .iter()
            .filter(|f| Some(f.name()) != options.rescued_data_column.as_ref())
            .map(|f| f.as_ref().clone())
            .collect();
        let data_schema = Arc::new(Schema::new(fields.clone()));
        if let Some(r) = &options.rescued_data_column {
            fields.push(Field::new(r, DataType::Utf8, true));
        }
        let decoded = Arc::new(Schema::new(fields.clone()));
        if options.metadata_column {
            fields.push(metadata::field());
        }
        FileScan {
            files: Arc::new(files),
            options: Arc::new(options),
            data_schema,
            decoded,
            schema: Arc::new(Schema::new(fields)),
            opener,
            target,
        }
    }

    /// The output schema (data columns, then the rescued-data column, then `_metadata` when
    /// the options ask for it).
    pub fn schema(&self) -> SchemaRef {
        self.schema.clone()
    }

    /// The data columns alone.
    pub fn data_schema(&self) -> SchemaRef {
        self.data_schema.clone()
    }

    /// The files read.
    pub fn files(&self) -> &[SourceFile] {
        &self.files
    }

    /// The options.
    pub fn options(&self) -> &ReadOptions {
        &self.options
    }

    /// The same scan restricted to some files.
    pub fn with_files(&self, files: Vec<SourceFile>) -> Self {
        FileScan {
            files: Arc::new(files),
            ..self.clone()
        }
    }

    /// Reads every file, giving each worker's batches to its sink (one worker per sink).
    /// Blocks until done; returns the sinks.
    pub fn run<S: BatchSink>(&self, sinks: Vec<S>, progress: &ScanProgress) -> Result<Vec<S>> {
        let workers = sinks.len().max(1);
        let producers = self.files.len().clamp(1, 2);
        let (tx, rx) = crossbeam_channel::bounded::<Unit>(workers * 2);
        let next_file = AtomicUsize::new(0);
        let error: Mutex<Option<FilesError>> = Mutex::new(None);
        let fail = |e: FilesError| {
            let mut slot = error.lock().expect("error slot");
            if slot.is_none() {
                *slot = Some(e);
            }
            progress.cancel.store(true, Ordering::Relaxed);
        };
        let csv = CsvDecoder::new(self.decoded.clone(), &self.options);
        let json = JsonDecoder::new(
            self.decoded.clone(),
            self.options.rescued_data_column.is_some(),
        );
        let aligner = Aligner::new(
            self.decoded.clone(),
            self.options.rescued_data_column.is_some(),
            self.target,
        );
        let sinks = std::thread::scope(|s| {
            for _ in 0..producers {
                let tx = tx.clone();
                let next_file = &next_file;
                let fail = &fail;
                s.spawn(move || {
                    loop {
                        if progress.cancel.load(Ordering::Relaxed) {
                            break;
                        }
                        let i = next_file.fetch_add(1, Ordering::Relaxed);
                        if i >= self.files.len() {
                            break;
                        }
                        if let Err(e) = self.produce(i, &tx, progress) {
                            fail(e);
                            break;
                        }
                        progress.files_done.fetch_add(1, Ordering::Relaxed);
                    }
                });
            }
            drop(tx);
            let handles: Vec<_> = sinks
                .into_iter()
                .map(|mut sink| {
                    let rx = rx.clone();
                    let (csv, json, aligner, fail) = (&csv, &json, &aligner, &fail);
                    s.spawn(move || {
                        while let Ok(unit) = rx.recv() {
                            if progress.cancel.load(Ordering::Relaxed) {
                                continue;
                            }
                            let mut emit = |batch: RecordBatch, rescued: usize| -> Result<()> {
                                progress
                                    .rows
                                    .fetch_add(batch.num_rows() as u64, Ordering::Relaxed);
                                progress
                                    .rescued
                                    .fetch_add(rescued as u64, Ordering::Relaxed);
                                sink.write(batch).map_err(FilesError::Sink)
                            };
                            if let Err(e) = self.decode(unit, csv, json, aligner, &mut emit) {
                                fail(e);
                            }
                        }
                        sink
                    })
                })
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("scan worker panicked"))
                .collect::<Vec<S>>()
        });
        match error.into_inner().expect("error slot") {
            Some(e) => Err(e),
            None => Ok(sinks),
        }
    }

    fn decode(
        &self,
        unit: Unit,
        csv: &CsvDecoder,
        json: &JsonDecoder,
        aligner: &Aligner,
        emit: &mut dyn FnMut(RecordBatch, usize) -> Result<()>,
    ) -> Result<()> {
        let file = match &unit {
            Unit::Csv { file, .. }
            | Unit::Json { file, .. }
            | Unit::Parquet { file, .. }
            | Unit::Avro { file } => *file,
        };
        let mut with_metadata;
        let emit: &mut dyn FnMut(RecordBatch, usize) -> Result<()> = if self.options.metadata_column
        {
            with_metadata = |batch: RecordBatch, rescued: usize| {
                let batch = metadata::attach(batch, &self.files[file], &self.schema)
                    .map_err(|e| FilesError::Sink(format!("_metadata: {e}")))?;
                emit(batch, rescued)
            };
            &mut with_metadata
        } else {
            emit
        };
        match unit {
            Unit::Csv {
                layout,
                data,
                first_line,
                ..
            } => {
                let (batch, rescued) = csv.decode(&layout, &data, first_line)?;
                emit(batch, rescued)
            }
            Unit::Json {
                name,
                data,
                first_line,
                ..
            } => {
                let (batch, rescued) = json.decode(&name, &data, first_line)?;
                emit(batch, rescued)
            }
            Unit::Parquet {
                file,
                row_groups,
                first_row,
            } => typed::read_parquet(
                &self.opener,
                &self.files[file],
                row_groups,
                first_row,
                aligner,
                emit,
            ),
            Unit::Avro { file } => typed::read_avro(
                &self.opener,
                &self.files[file],
                self.options.compression,
                aligner,
                emit,
            ),
        }
    }

    fn send(&self, tx: &crossbeam_channel::Sender<Unit>, unit: Unit) -> Result<()> {
        tx.send(unit).map_err(|_| FilesError::Cancelled)
    }

    fn produce(
        &self,
        i: usize,
        tx: &crossbeam_channel::Sender<Unit>,
        progress: &ScanProgress,
    ) -> Result<()> {
        let f = &self.files[i];
        let o = &self.options;
        match format_of(f, o)? {
            FileFormat::Csv => {
                let d = super::csv::decode::dialect(o);
                let mut reader =
                    self.opener
                        .open(f, o.compression, Some(progress.bytes_read.clone()))?;
                // Read until the first record (the header, or the first row) is complete.
                let mut head = Vec::with_capacity(1 << 16);
                let (fields, consumed, lines) = loop {
                    let before = head.len();
                    std::io::Read::read_to_end(
                        &mut std::io::Read::take(&mut reader, 1 << 16),
                        &mut head,
                    )
                    .map_err(|e| read_error(f, e))?;
                    let at_eof = head.len() == before;
                    let body = head.strip_prefix(b"\xef\xbb\xbf").unwrap_or(&head);
                    let bom = head.len() - body.len();
                    match first_record(body, &d) {
                        Some((fields, consumed, lines))
                            if at_eof || consumed < body.len() || body.ends_with(b"\n") =>
                        {
                            break (fields, consumed + bom, lines);
                        }
                        None if at_eof => return Ok(()),
                        _ => continue,
                    }
                };
                let names = csv_names(&fields, o.header);
                let target_of = names
                    .iter()
                    .map(|n| {
                        self.data_schema
                            .fields()
                            .iter()
                            .position(|f| f.name() == n)
                            .or_else(|| {
                                self.data_schema
                                    .fields()
                                    .iter()
                                    .position(|f| f.name().eq_ignore_ascii_case(n))
                            })
                    })
                    .collect();
                let layout = Arc::new(CsvLayout {
                    file: f.location.as_str().into(),
                    names,
                    target_of,
                });
                let (initial, first_line) = if o.header {
                    (head[consumed..].to_vec(), 1 + lines as u64)
                } else {
                    let bom = if head.starts_with(b"\xef\xbb\xbf") {
                        3
                    } else {
                        0
                    };
                    (head[bom..].to_vec(), 1)
                };
                let mut chunker = Chunker::new(reader, initial, first_line, CHUNK_SIZE, d);
                while let Some((data, first_line)) =
                    chunker.next_chunk().map_err(|e| read_error(f, e))?
                {
                    if progress.cancel.load(Ordering::Relaxed) {
                        return Err(FilesError::Cancelled);
                    }
                    self.send(
                        tx,
                        Unit::Csv {
                            file: i,
                            layout: layout.clone(),
                            data,
                            first_line,
                        },
                    )?;
                }
            }
            FileFormat::Json => {
                let name: Arc<str> = f.location.as_str().into();
                let d = CsvDialect {
                    delimiter: b'\n',
                    quote: 0,
                    escape: None,
                    comment: None,
                    multi_line: false,
                };
                let reader: Box<dyn std::io::Read + Send> = if o.multi_line {
                    let all = self.opener.read_all(f, o.compression)?;
                    progress.bytes_read.fetch_add(f.size, Ordering::Relaxed);
                    Box::new(std::io::Cursor::new(documents_to_lines(&all)))
                } else {
                    self.opener
                        .open(f, o.compression, Some(progress.bytes_read.clone()))?
                };
                let mut chunker = Chunker::new(reader, Vec::new(), 1, CHUNK_SIZE, d);
                while let Some((data, first_line)) =
                    chunker.next_chunk().map_err(|e| read_error(f, e))?
                {
                    if progress.cancel.load(Ordering::Relaxed) {
                        return Err(FilesError::Cancelled);
                    }
                    self.send(
                        tx,
                        Unit::Json {
                            file: i,
                            name: name.clone(),
                            data,
                            first_line,
                        },
                    )?;
                }
            }
            FileFormat::Parquet => {
                for (row_groups, first_row) in typed::parquet_units(&self.opener, f)? {
                    self.send(
                        tx,
                        Unit::Parquet {
                            file: i,
                            row_groups,
                            first_row,
                        },
                    )?;
                }
                progress.bytes_read.fetch_add(f.size, Ordering::Relaxed);
            }
            FileFormat::Avro => {
                self.send(tx, Unit::Avro { file: i })?;
                progress.bytes_read.fetch_add(f.size, Ordering::Relaxed);
            }
        }
        Ok(())
    }
}

/// Collects every batch in memory (tests and small reads).
#[derive(Debug, Default)]
pub struct CollectSink(pub Vec<RecordBatch>);

impl BatchSink for CollectSink {
    fn write(&mut self, batch: RecordBatch) -> std::result::Result<(), String> {
        self.0.push(batch);
        Ok(())
    }
}
