//! The rescued-data column: values that do not fit the schema, kept as JSON with the file
//! and line they came from, so nothing is dropped silently.

use std::collections::BTreeMap;

use arrow::array::{ArrayRef, StringBuilder};
use serde_json::{Map, Value};

/// Key holding a malformed record's raw text.
pub const RAW_KEY: &str = "_raw";
/// Key holding why a record was malformed.
pub const ERROR_KEY: &str = "_error";
/// Key holding the source file.
pub const FILE_KEY: &str = "_file_path";
/// Key holding the 1-based line (text formats) or row (binary formats).
pub const LINE_KEY: &str = "_line";

/// Rescued values of one batch, by row.
#[derive(Debug, Default)]
pub struct Rescue {
    rows: BTreeMap<u32, Map<String, Value>>,
}

/// Text of raw bytes: UTF-8 as is; invalid bytes written as `\xNN` so they survive.
pub fn text(raw: &[u8]) -> String {
    match std::str::from_utf8(raw) {
        Ok(s) => s.to_string(),
        Err(_) => {
            let mut out = String::with_capacity(raw.len() + 8);
            for chunk in raw.utf8_chunks() {
                out.push_str(chunk.valid());
                for b in chunk.invalid() {
                    out.push_str(&format!("\\x{b:02X}"));
                }
            }
            out
        }
    }
}

impl Rescue {
    /// Whether nothing was rescued.
    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// Number of rows with rescued data.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    /// The first rescued row: its index, the column (or `(record)`) and the raw value.
    pub fn first(&self) -> Option<(u32, String, String)> {
        let (row, m) = self.rows.iter().next()?;
        let (k, v) = match m.get(RAW_KEY) {
            Some(raw) => ("(record)".to_string(), raw),
            None => m.iter().next().map(|(k, v)| (k.clone(), v))?,
        };
        let v = v
            .as_str()
            .map(str::to_string)
            .unwrap_or_else(|| v.to_string());
        Some((*row, k, v))
    }

    /// Keeps one column's value that did not fit.
    pub fn value(&mut self, row: u32, column: &str, raw: &[u8]) {
        self.rows
            .entry(row)
            .or_default()
            .insert(column.to_string(), Value::String(text(raw)));
    }

    /// Keeps one column's value given as JSON (from JSON input).
    pub fn json_value(&mut self, row: u32, column: &str, value: Value) {
        self.rows
            .entry(row)
            .or_default()
            .insert(column.to_string(), value);
    }

    /// Keeps a whole malformed record.
    pub fn record(&mut self, row: u32, raw: &[u8], error: &str) {
        let m = self.rows.entry(row).or_default();
        m.insert(RAW_KEY.into(), Value::String(text(raw)));
        m.insert(ERROR_KEY.into(), Value::String(error.to_string()));
    }

    /// Builds the column for `n_rows` rows; `line_of` gives each row's line or row number.
    pub fn finish(self, n_rows: usize, file: &str, line_of: impl Fn(u32) -> u64) -> ArrayRef {
        self.finish_at(n_rows, |row, m| {
            m.insert(FILE_KEY.into(), Value::String(file.to_string()));
            m.insert(LINE_KEY.into(), Value::from(line_of(row)));
        })
    }

    /// Builds the column for `n_rows` rows; `locate` adds where each rescued row came from
    /// (a file and line, a topic, partition and offset, ...).
    pub fn finish_at(
        self,
        n_rows: usize,
        locate: impl Fn(u32, &mut Map<String, Value>),
    ) -> ArrayRef {
        let mut b = StringBuilder::with_capacity(n_rows, self.rows.len() * 64);
        let mut next = 0u32;
        for (row, mut m) in self.rows {
            while next < row {
                b.append_null();
                next += 1;
            }
            locate(row, &mut m);
            b.append_value(Value::Object(m).to_string());
            next += 1;
        }
        while (next as usize) < n_rows {
            b.append_null();
            next += 1;
        }
        std::sync::Arc::new(b.finish())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};

    #[test]
    fn builds_sparse_column() {
        let mut r = Rescue::default();
        r.value(1, "amount", b"12x");
        r.record(3, b"a,\"b", "unbalanced quote");
        r.value(3, "bad", b"caf\xe9");
        let col = r.finish(5, "f.csv", |row| row as u64 + 2);
        let s = col.as_string::<i32>();
        assert_eq!(s.null_count(), 3);
        let v: Value = serde_json::from_str(s.value(1)).unwrap();
        assert_eq!(v["amount"], "12x");
        assert_eq!(v["_line"], 3);
        let v: Value = serde_json::from_str(s.value(3)).unwrap();
        assert_eq!(v["bad"], "caf\\xE9");
        assert_eq!(v["_error"], "unbalanced quote");
    }
}
