//! Message payloads as Arrow columns, the same for every stream source.
//!
//! `json` (the default) parses each payload as one JSON object into columns: the target
//! table's columns keep their types, fields the table does not have yet are inferred from the
//! batch and become new columns. A payload that is not a JSON object, or a value that does
//! not fit its column, is kept in `_rescued_data` with where the message came from (topic and
//! offset, stream and sequence, ...): nothing is dropped, and the stream goes on. `text`
//! keeps the payload as one string column `value` (bytes that are not UTF-8 are rescued),
//! `binary` as one binary column `value`. `avro` reads each payload as an Avro datum
//! ([`super::avro`]), of a given schema or in Confluent's wire format with a registry.

use std::sync::Arc;

use arrow::array::{ArrayRef, BinaryBuilder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde_json::{Map, Value};

use confluo_core::source::SourceError;

use super::avro::{AvroDecoder, AvroSchemas};
use crate::files::json::{JsonDecoder, infer_lines};
use crate::files::rescue::{self, RAW_KEY};

/// Name of the rescued-data column.
pub const RESCUED: &str = "_rescued_data";

/// Payloads sampled to infer new JSON fields.
const INFER_SAMPLE: usize = 2_000;

/// How payloads are read.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum PayloadFormat {
    /// One JSON object per message, as columns.
    #[default]
    Json,
    /// The payload as text, column `value`.
    Text,
    /// The payload bytes, column `value`.
    Binary,
    /// One Avro datum per message, as columns.
    Avro(AvroSchemas),
}

impl PayloadFormat {
    /// Parses `json`, `text` (or `string`), `binary` (or `bytes`, `raw`) and `avro`;
    /// Avro takes its schemas from `avro` (the entry's `avro_schema` or `schema_registry`).
    pub fn parse(text: &str, avro: Option<AvroSchemas>) -> Result<Self, String> {
        let format = match text.to_ascii_lowercase().as_str() {
            "json" => PayloadFormat::Json,
            "text" | "string" => PayloadFormat::Text,
            "binary" | "bytes" | "raw" => PayloadFormat::Binary,
            "avro" => {
                let schemas = avro.ok_or(
                    "`avro` needs `avro_schema` (the writer schema's JSON) or \
                     `schema_registry` (the URL of a Confluent-compatible registry)",
                )?;
                schemas.check()?;
                return Ok(PayloadFormat::Avro(schemas));
            }
            other => {
                return Err(format!(
                    "`{other}` is not a payload format; use json, text, binary or avro"
                ));
            }
        };
        match avro {
            Some(_) => Err(format!(
                "`avro_schema` and `schema_registry` are for `format: avro`, not {text}"
            )),
            None => Ok(format),
        }
    }
}

/// Turns payloads into columns; remembers the table's columns between batches.
#[derive(Debug, Clone, Default)]
pub struct PayloadDecoder {
    format: PayloadFormat,
    /// The target table's payload columns (without envelope columns and `_rescued_data`).
    known: Vec<Field>,
    /// For `avro`: the writer schemas.
    avro: Option<AvroDecoder>,
}

/// A batch's payload columns and how many messages were (partly) rescued.
pub struct Decoded {
    /// The columns, `_rescued_data` last for JSON and text.
    pub columns: Vec<(Field, ArrayRef)>,
    /// Messages with rescued data.
    pub rescued: usize,
}

impl PayloadDecoder {
    /// A decoder for `format`.
    pub fn new(format: PayloadFormat) -> Self {
        let avro = match &format {
            PayloadFormat::Avro(schemas) => Some(AvroDecoder::new(schemas.clone())),
            _ => None,
        };
        PayloadDecoder {
            format,
            known: Vec::new(),
            avro,
        }
    }

    /// Gets what decoding `payloads` needs from elsewhere first: the Avro writer schemas
    /// a registry holds. Call before [`PayloadDecoder::decode`].
    pub async fn prepare(&mut self, payloads: &[&[u8]]) -> Result<(), SourceError> {
        match &mut self.avro {
            Some(a) => a.prepare(payloads).await,
            None => Ok(()),
        }
    }

    /// The table's columns as they are now (after a commit that created or evolved it);
    /// columns named in `envelope` are the source's own and are left out.
    pub fn set_table_schema(&mut self, schema: &Schema, envelope: &[&str]) {
        self.known = schema
            .fields()
            .iter()
            .filter(|f| f.name() != RESCUED && !envelope.contains(&f.name().as_str()))
            .map(|f| f.as_ref().clone())
            .collect();
    }

    /// Decodes `payloads`; `locate(i, map)` adds where message `i` came from to its rescued
    /// data.
    pub fn decode(
        &self,
        payloads: &[&[u8]],
        locate: &dyn Fn(usize, &mut Map<String, Value>),
    ) -> Result<Decoded, String> {
        match &self.format {
            PayloadFormat::Avro(_) => match &self.avro {
                Some(a) => a.decode(payloads, &self.known, locate),
                None => Err("the Avro decoder is missing".into()),
            },
            PayloadFormat::Json => self.json(payloads, locate),
            PayloadFormat::Text => Ok(text(payloads, locate)),
            PayloadFormat::Binary => {
                let mut b = BinaryBuilder::with_capacity(
                    payloads.len(),
                    payloads.iter().map(|p| p.len()).sum(),
                );
                for p in payloads {
                    b.append_value(p);
                }
                Ok(Decoded {
                    columns: vec![(
                        Field::new("value", DataType::Binary, true),
                        Arc::new(b.finish()),
                    )],
                    rescued: 0,
                })
            }
        }
    }

    fn json(
        &self,
        payloads: &[&[u8]],
        locate: &dyn Fn(usize, &mut Map<String, Value>),
    ) -> Result<Decoded, String> {
        // One buffer, records separated by newlines; arrow-json reads a pretty-printed
        // payload as one value too, and a record count that does not match sends every
        // record through the one-by-one path.
        let mut data = Vec::with_capacity(payloads.iter().map(|p| p.len() + 1).sum());
        let mut records = Vec::with_capacity(payloads.len());
        for (i, p) in payloads.iter().enumerate() {
            let start = data.len();
            data.extend_from_slice(p);
            records.push((start, data.len(), i as u64));
            data.push(b'\n');
        }
        let mut fields = self.known.clone();
        let sample_end = records
            .get(INFER_SAMPLE.min(records.len()).saturating_sub(1))
            .map_or(0, |r| r.1);
        if let Ok(inferred) = infer_lines(&data[..sample_end], INFER_SAMPLE) {
            for f in inferred.fields() {
                if !fields
                    .iter()
                    .any(|k| k.name().eq_ignore_ascii_case(f.name()))
                {
                    fields.push(f.as_ref().clone().with_nullable(true));
                }
            }
        }
        fields.push(Field::new(RESCUED, DataType::Utf8, true));
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let locate_row = |row: u32, m: &mut Map<String, Value>| locate(row as usize, m);
        let (batch, rescued) = JsonDecoder::new(schema.clone(), true)
            .decode_records(&data, &records, "message", &locate_row)
            .map_err(|e| e.to_string())?;
        Ok(Decoded {
            columns: columns_of(&batch),
            rescued,
        })
    }
}

fn columns_of(batch: &RecordBatch) -> Vec<(Field, ArrayRef)> {
    batch
        .schema()
        .fields()
        .iter()
        .zip(batch.columns())
        .map(|(f, c)| (f.as_ref().clone(), c.clone()))
        .collect()
}

/// Payloads as text; bytes that are not UTF-8 leave the value null and keep the payload,
/// with `\xNN` for the bad bytes, in `_rescued_data`.
fn text(payloads: &[&[u8]], locate: &dyn Fn(usize, &mut Map<String, Value>)) -> Decoded {
    let mut values = StringBuilder::new();
    let mut resc = StringBuilder::new();
    let mut rescued = 0;
    for (i, p) in payloads.iter().enumerate() {
        match std::str::from_utf8(p) {
            Ok(s) => {
                values.append_value(s);
                resc.append_null();
            }
            Err(e) => {
                values.append_null();
                let mut m = Map::new();
                m.insert(RAW_KEY.into(), Value::String(rescue::text(p)));
                m.insert(
                    rescue::ERROR_KEY.into(),
                    Value::String(format!("not UTF-8 text: {e}")),
                );
                locate(i, &mut m);
                resc.append_value(Value::Object(m).to_string());
                rescued += 1;
            }
        }
    }
    Decoded {
        columns: vec![
            (
                Field::new("value", DataType::Utf8, true),
                Arc::new(values.finish()),
            ),
            (
                Field::new(RESCUED, DataType::Utf8, true),
                Arc::new(resc.finish()),
            ),
        ],
        rescued,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::Int64Type;

    fn at(i: usize, m: &mut Map<String, Value>) {
        m.insert("_offset".into(), Value::from(100 + i));
    }

    #[test]
    fn json_payloads_keep_the_table_types_and_rescue_what_does_not_fit() {
        let mut d = PayloadDecoder::new(PayloadFormat::Json);
        d.set_table_schema(
            &Schema::new(vec![
                Field::new("_offset", DataType::Int64, true),
                Field::new("id", DataType::Int64, true),
            ]),
            &["_offset"],
        );
        let payloads: Vec<&[u8]> = vec![
            br#"{"id": 1, "name": "a"}"#,
            b"{\n  \"id\": 2\n}",
            br#"{"id": "x"}"#,
            b"not json",
            b"",
        ];
        let out = d.decode(&payloads, &at).unwrap();
        let names: Vec<&str> = out.columns.iter().map(|(f, _)| f.name().as_str()).collect();
        assert_eq!(names, ["id", "name", RESCUED]);
        let ids = out.columns[0].1.as_primitive::<Int64Type>();
        assert_eq!((ids.value(0), ids.value(1)), (1, 2));
        assert!(ids.is_null(2));
        assert_eq!(out.rescued, 3);
        let resc = out.columns[2].1.as_string::<i32>();
        assert!(resc.is_null(0) && resc.is_null(1));
        let bad: Value = serde_json::from_str(resc.value(3)).unwrap();
        assert_eq!(bad["_raw"], "not json");
        assert_eq!(bad["_offset"], 103);
        let empty: Value = serde_json::from_str(resc.value(4)).unwrap();
        assert_eq!(empty["_raw"], "");
    }

    #[test]
    fn text_rescues_bytes_that_are_not_utf8() {
        let d = PayloadDecoder::new(PayloadFormat::Text);
        let out = d.decode(&[b"ok", b"caf\xe9"], &at).unwrap();
        let v = out.columns[0].1.as_string::<i32>();
        assert_eq!(v.value(0), "ok");
        assert!(v.is_null(1));
        assert_eq!(out.rescued, 1);
        assert_eq!(PayloadFormat::parse("RAW", None), Ok(PayloadFormat::Binary));
        assert!(PayloadFormat::parse("xml", None).is_err());
        assert!(PayloadFormat::parse("avro", None).is_err());
        let registry = AvroSchemas::Registry("http://127.0.0.1:8081".into());
        assert!(PayloadFormat::parse("json", Some(registry.clone())).is_err());
        assert_eq!(
            PayloadFormat::parse("avro", Some(registry.clone())),
            Ok(PayloadFormat::Avro(registry))
        );
    }
}
