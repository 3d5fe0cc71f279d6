//! JSON: newline-delimited records (the default) or whole documents (`multiLine`).
//!
//! A chunk is decoded in one go by arrow-json. Only when that fails is it taken apart line by
//! line: a line that is not JSON is rescued whole, and within a good line each field that
//! does not fit its column (or is not in the schema) is rescued on its own.

use std::sync::Arc;

use arrow::array::{ArrayRef, RecordBatch, RecordBatchOptions, new_null_array};
use arrow::datatypes::{Schema, SchemaRef};
use arrow_json::ReaderBuilder;
use arrow_json::reader::Decoder;
use memchr::memchr_iter;
use serde_json::{Map, Value};

use super::error::{FilesError, Result};
use super::rescue::{FILE_KEY, LINE_KEY, Rescue};

/// Decodes JSON chunks into batches of a fixed schema.
#[derive(Debug, Clone)]
pub struct JsonDecoder {
    data_schema: SchemaRef,
    out_schema: SchemaRef,
    rescue: bool,
    names: Arc<Vec<String>>,
}

impl JsonDecoder {
    /// A decoder producing `out_schema`; with rescue its last column is the rescued data.
    pub fn new(out_schema: SchemaRef, rescue: bool) -> Self {
        let n = out_schema.fields().len() - usize::from(rescue);
        let data_schema = Arc::new(Schema::new(out_schema.fields()[..n].to_vec()));
        let names = data_schema
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect();
        JsonDecoder {
            data_schema,
            out_schema,
            rescue,
            names: Arc::new(names),
        }
    }

    fn decoder(&self, rows: usize) -> Result<Decoder> {
        ReaderBuilder::new(self.data_schema.clone())
            .with_batch_size(rows.max(1))
            .with_strict_mode(true)
            .with_coerce_primitive(true)
            .build_decoder()
            .map_err(|e| FilesError::BadOption {
                option: "schema".into(),
                message: format!("the schema cannot be read from JSON: {e}"),
            })
    }

    fn try_decode(
        &self,
        text: &[u8],
        rows: usize,
    ) -> std::result::Result<Option<RecordBatch>, String> {
        let mut d = self.decoder(rows).map_err(|e| e.to_string())?;
        let mut pos = 0;
        while pos < text.len() {
            let n = d.decode(&text[pos..]).map_err(|e| e.to_string())?;
            if n == 0 {
                break;
            }
            pos += n;
        }
        d.flush().map_err(|e| e.to_string())
    }

    /// Decodes newline-delimited JSON whose first byte is on line `first_line` (1-based).
    /// Returns the batch and how many rows carry rescued data.
    pub fn decode(&self, file: &str, data: &[u8], first_line: u64) -> Result<(RecordBatch, usize)> {
        // Lines that hold a record, with their line numbers.
        let mut lines: Vec<(usize, usize, u64)> = Vec::new();
        let mut start = 0;
        for (line, nl) in
            (first_line..).zip(memchr_iter(b'\n', data).chain(std::iter::once(data.len())))
        {
            if start > data.len() {
                break;
            }
            let text = &data[start..nl.min(data.len())];
            if !text.trim_ascii().is_empty() {
                lines.push((start, nl.min(data.len()), line));
            }
            start = nl + 1;
        }
        let locate = |row: u32, m: &mut Map<String, Value>| {
            m.insert(FILE_KEY.into(), Value::String(file.to_string()));
            m.insert(LINE_KEY.into(), Value::from(lines[row as usize].2));
        };
        self.decode_records(data, &lines, file, &locate)
    }

    /// Decodes records given as `(start, end, line)` ranges of `data`, one row each (an
    /// empty or malformed record is a row too, rescued whole): lines of a file, or messages
    /// of a stream. `file` names the input in errors; `locate` adds where a rescued row came
    /// from to its `_rescued_data`.
    pub fn decode_records(
        &self,
        data: &[u8],
        lines: &[(usize, usize, u64)],
        file: &str,
        locate: &dyn Fn(u32, &mut Map<String, Value>),
    ) -> Result<(RecordBatch, usize)> {
        let n = lines.len();
        if let Ok(Some(batch)) = self.try_decode(data, n)
            && batch.num_rows() == n
        {
            return self.finish(batch, Rescue::default(), file, lines, locate);
        }
        if n == 0 {
            return self.finish(
                RecordBatch::new_empty(self.data_schema.clone()),
                Rescue::default(),
                file,
                lines,
                locate,
            );
        }
        // Slow path: one line at a time.
        let mut rescue = Rescue::default();
        let mut parts: Vec<RecordBatch> = Vec::with_capacity(n);
        for (row, &(s, e, _)) in lines.iter().enumerate() {
            let text = &data[s..e];
            if let Ok(Some(b)) = self.try_decode(text, 1)
                && b.num_rows() == 1
            {
                parts.push(b);
                continue;
            }
            let row = row as u32;
            match serde_json::from_slice::<Value>(text) {
                Err(err) => {
                    rescue.record(row, text, &format!("malformed JSON: {err}"));
                    parts.push(self.null_row());
                }
                Ok(Value::Object(map)) => {
                    let mut kept = Map::new();
                    for (k, v) in map {
                        match self.names.iter().find(|n| n.eq_ignore_ascii_case(&k)) {
                            None => rescue.json_value(row, &k, v),
                            Some(name) => {
                                let mut one = Map::new();
                                one.insert(name.clone(), v.clone());
                                let probe = Value::Object(one).to_string();
                                match self.try_decode(probe.as_bytes(), 1) {
                                    Ok(Some(b)) if b.num_rows() == 1 => {
                                        kept.insert(name.clone(), v);
                                    }
                                    _ => rescue.json_value(row, &k, v),
                                }
                            }
                        }
                    }
                    let text = Value::Object(kept).to_string();
                    match self.try_decode(text.as_bytes(), 1) {
                        Ok(Some(b)) if b.num_rows() == 1 => parts.push(b),
                        _ => parts.push(self.null_row()),
                    }
                }
                Ok(other) => {
                    rescue.record(
                        row,
                        text,
                        &format!("expected a JSON object, found {}", json_kind(&other)),
                    );
                    parts.push(self.null_row());
                }
            }
        }
        let batch = arrow::compute::concat_batches(&self.data_schema, &parts).map_err(|e| {
            FilesError::Corrupt {
                file: file.to_string(),
                message: format!("internal error assembling rows: {e}"),
            }
        })?;
        self.finish(batch, rescue, file, lines, locate)
    }

    fn null_row(&self) -> RecordBatch {
        let cols: Vec<ArrayRef> = self
            .data_schema
            .fields()
            .iter()
            .map(|f| new_null_array(f.data_type(), 1))
            .collect();
        RecordBatch::try_new_with_options(
            self.data_schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(1)),
        )
        .expect("null columns match the schema")
    }

    fn finish(
        &self,
        batch: RecordBatch,
        rescue: Rescue,
        file: &str,
        lines: &[(usize, usize, u64)],
        locate: &dyn Fn(u32, &mut Map<String, Value>),
    ) -> Result<(RecordBatch, usize)> {
        let rescued = rescue.len();
        if !self.rescue {
            if let Some((row, column, value)) = rescue.first() {
                return Err(FilesError::BadValue {
                    file: file.to_string(),
                    line: lines[row as usize].2,
                    column,
                    value,
                    expected: "its column type (mode FAILFAST stops at the first bad value)".into(),
                });
            }
            return Ok((batch, 0));
        }
        let n = batch.num_rows();
        let mut cols = batch.columns().to_vec();
        cols.push(rescue.finish_at(n, locate));
        let out = RecordBatch::try_new_with_options(
            self.out_schema.clone(),
            cols,
            &RecordBatchOptions::new().with_row_count(Some(n)),
        )
        .map_err(|e| FilesError::Corrupt {
            file: file.to_string(),
            message: format!("internal error assembling rows: {e}"),
        })?;
        Ok((out, rescued))
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Turns whole JSON documents (one object, an array of objects, or several concatenated
/// documents) into newline-delimited records. Text that does not parse is kept as one last
/// line, which the decoder then rescues.
pub fn documents_to_lines(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut stream = serde_json::Deserializer::from_slice(data).into_iter::<Value>();
    loop {
        let offset = stream.byte_offset();
        match stream.next() {
            None => break,
            Some(Ok(Value::Array(items))) => {
                for item in items {
                    out.extend_from_slice(item.to_string().as_bytes());
                    out.push(b'\n');
                }
            }
            Some(Ok(v)) => {
                out.extend_from_slice(v.to_string().as_bytes());
                out.push(b'\n');
            }
            Some(Err(_)) => {
                let rest = &data[offset..];
                let flat: Vec<u8> = rest
                    .iter()
                    .map(|&b| if b == b'\n' || b == b'\r' { b' ' } else { b })
                    .collect();
                out.extend_from_slice(flat.trim_ascii());
                out.push(b'\n');
                break;
            }
        }
    }
    out
}

/// Infers a schema from sample lines; lines that are not JSON objects are skipped. As for
/// CSV, a few stray strings in an otherwise numeric or boolean field (at most 5% of at
/// least 20 values) do not make it a string field: they are rescued when read.
pub fn infer_lines(data: &[u8], max_rows: usize) -> std::result::Result<Schema, String> {
    let mut values: Vec<Value> = data
        .split(|b| *b == b'\n')
        .filter(|l| !l.trim_ascii().is_empty())
        .filter_map(|l| serde_json::from_slice::<Value>(l).ok())
        .filter(Value::is_object)
        .take(max_rows)
        .collect();
    // Per field: (strings, other scalars).
    let mut counts: std::collections::HashMap<String, (usize, usize)> = Default::default();
    for v in &values {
        if let Value::Object(m) = v {
            for (k, x) in m {
                let c = counts.entry(k.clone()).or_default();
                match x {
                    Value::String(_) => c.0 += 1,
                    Value::Number(_) | Value::Bool(_) => c.1 += 1,
                    _ => {}
                }
            }
        }
    }
    let strays: Vec<&String> = counts
        .iter()
        .filter(|(_, (s, o))| *s > 0 && *o >= 20 && s * 20 <= s + o)
        .map(|(k, _)| k)
        .collect();
    if !strays.is_empty() {
        for v in &mut values {
            if let Value::Object(m) = v {
                for k in &strays {
                    if matches!(m.get(*k), Some(Value::String(_))) {
                        m.remove(*k);
                    }
                }
            }
        }
    }
    arrow_json::reader::infer_json_schema_from_iterator(values.into_iter().map(Ok))
        .map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{DataType, Field, Int64Type};

    fn decoder() -> JsonDecoder {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, true),
            Field::new("name", DataType::Utf8, true),
            Field::new("_rescued_data", DataType::Utf8, true),
        ]));
        JsonDecoder::new(schema, true)
    }

    #[test]
    fn good_lines_fast() {
        let (b, r) = decoder()
            .decode("f", b"{\"id\":1,\"name\":\"a\"}\n\n{\"id\":2}\n", 1)
            .unwrap();
        assert_eq!(b.num_rows(), 2);
        assert_eq!(r, 0);
        assert_eq!(b.column(2).null_count(), 2);
    }

    #[test]
    fn bad_lines_and_fields_rescued() {
        let data = b"{\"id\":1,\"name\":\"a\"}\n{\"id\":\"x\",\"name\":\"b\"}\n{broken\n{\"id\":4,\"extra\":true}\n[1]\n";
        let (b, r) = decoder().decode("f.json", data, 1).unwrap();
        assert_eq!(b.num_rows(), 5);
        assert_eq!(r, 4);
        let ids = b.column(0).as_primitive::<Int64Type>();
        assert_eq!(ids.value(0), 1);
        assert!(ids.is_null(1));
        assert_eq!(b.column(1).as_string::<i32>().value(1), "b");
        let resc = b.column(2).as_string::<i32>();
        let v: Value = serde_json::from_str(resc.value(1)).unwrap();
        assert_eq!(v["id"], "x");
        assert_eq!(v["_line"], 2);
        let v: Value = serde_json::from_str(resc.value(2)).unwrap();
        assert_eq!(v["_raw"], "{broken");
        let v: Value = serde_json::from_str(resc.value(3)).unwrap();
        assert_eq!(v["extra"], true);
        assert_eq!(ids.value(3), 4);
    }

    #[test]
    fn documents() {
        let lines = documents_to_lines(b"[{\"a\":1},\n{\"a\":2}]\n{\"a\":3}");
        assert_eq!(lines, b"{\"a\":1}\n{\"a\":2}\n{\"a\":3}\n");
    }
}
