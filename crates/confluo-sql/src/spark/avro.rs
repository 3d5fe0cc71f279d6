//! `from_avro(value, schema [, options])`: Avro datums (Kafka values, files' binary columns)
//! as structs, as Spark reads them in pipelines.
//!
//! The decoding is the stream connectors' own ([`AvroDecoder`] with a given schema), so a
//! datum reads the same in an `ingest:` entry and in SQL. As in Spark, a datum that is not
//! one of the schema fails the query by default (`FAILFAST`), naming the row and why;
//! `map('mode', 'PERMISSIVE')` makes it NULL instead.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray, UInt32Array};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::{cast, take};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};

use confluo_connectors::files::rescue::ERROR_KEY;
use confluo_connectors::streams::avro::{AvroDecoder, AvroSchemas, given_fields};

fn schema_text(v: Option<&ScalarValue>) -> Option<String> {
    match v? {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        _ => None,
    }
}

/// `mode` from an options map (`map('mode', 'PERMISSIVE')`): whether bad datums are NULL.
fn permissive(options: Option<&ColumnarValue>) -> Result<bool> {
    let Some(ColumnarValue::Scalar(ScalarValue::Map(map))) = options else {
        return match options {
            None => Ok(false),
            Some(_) => exec_err!("from_avro: options are a map, e.g. map('mode', 'PERMISSIVE')"),
        };
    };
    if map.is_empty() || map.is_null(0) {
        return Ok(false);
    }
    let entries = map.value(0);
    let keys = cast(entries.column(0), &DataType::Utf8)?;
    let values = cast(entries.column(1), &DataType::Utf8)?;
    let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
    let mut permissive = false;
    for i in 0..keys.len() {
        let key = keys.value(i);
        if !key.eq_ignore_ascii_case("mode") {
            return exec_err!("from_avro: unknown option `{key}` (only `mode` is read)");
        }
        permissive = match values.value(i).to_ascii_uppercase().as_str() {
            "PERMISSIVE" => true,
            "FAILFAST" => false,
            other => return exec_err!("from_avro: mode is PERMISSIVE or FAILFAST, not {other}"),
        };
    }
    Ok(permissive)
}

/// The function.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FromAvro {
    signature: Signature,
}

impl FromAvro {
    /// The function.
    pub fn new() -> Self {
        FromAvro {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for FromAvro {
    fn name(&self) -> &str {
        "from_avro"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        exec_err!("from_avro's type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if !(2..=3).contains(&args.arg_fields.len()) {
            return plan_err!("from_avro takes (value, avro_schema_json [, options])");
        }
        let Some(text) = schema_text(args.scalar_arguments[1]) else {
            return plan_err!(
                "from_avro: the schema must be a literal string (the Avro schema's JSON)"
            );
        };
        let fields =
            given_fields(&text).map_err(|e| DataFusionError::Plan(format!("from_avro: {e}")))?;
        let fields: Fields = fields.into_iter().map(|f| f.with_nullable(true)).collect();
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(fields),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let DataType::Struct(fields) = args.return_field.data_type() else {
            return exec_err!("from_avro: the result is not a struct");
        };
        let text = match &args.args[1] {
            ColumnarValue::Scalar(s) => schema_text(Some(s)),
            _ => None,
        };
        let Some(text) = text else {
            return exec_err!("from_avro: the schema must be a literal string");
        };
        let permissive = permissive(args.args.get(2))?;
        let values = cast(&args.args[0].to_array(n)?, &DataType::Binary)?;
        let values = values.as_binary::<i32>();
        // Decode the non-null values; each row then takes its datum's row (or a null).
        let mut payloads: Vec<&[u8]> = Vec::with_capacity(n);
        let mut pick: Vec<Option<u32>> = Vec::with_capacity(n);
        for i in 0..n {
            if values.is_null(i) {
                pick.push(None);
            } else {
                pick.push(Some(payloads.len() as u32));
                payloads.push(values.value(i));
            }
        }
        let known: Vec<Field> = fields.iter().map(|f| f.as_ref().clone()).collect();
        let decoded = AvroDecoder::new(AvroSchemas::Given(text))
            .decode(&payloads, &known, &|_, _| {})
            .map_err(|e| DataFusionError::Execution(format!("from_avro: {e}")))?;
        let (_, rescued) = decoded.columns.last().expect("a rescued-data column");
        let rescued = rescued.as_string::<i32>();
        let mut bad = vec![false; payloads.len()];
        for (p, b) in bad.iter_mut().enumerate() {
            if rescued.is_null(p) {
                continue;
            }
            if !permissive {
                let why = serde_json::from_str::<serde_json::Value>(rescued.value(p))
                    .ok()
                    .and_then(|v| {
                        v.get(ERROR_KEY)
                            .and_then(|e| e.as_str().map(str::to_string))
                    })
                    .unwrap_or_else(|| rescued.value(p).to_string());
                let row = pick.iter().position(|x| *x == Some(p as u32)).unwrap_or(p) + 1;
                return exec_err!(
                    "from_avro: row {row} is not a datum of the schema: {why}\n  hint: pass map('mode', 'PERMISSIVE') to get NULL for such rows"
                );
            }
            *b = true;
        }
        let columns: Vec<ArrayRef> = decoded
            .columns
            .iter()
            .take(fields.len())
            .map(|(_, a)| a.clone())
            .collect();
        let all = StructArray::try_new(fields.clone(), columns, None)?;
        let indices = UInt32Array::from(pick.clone());
        let taken = take(&all, &indices, None)?;
        let taken = taken.as_struct();
        let nulls = NullBuffer::from_iter(pick.iter().map(|p| p.is_some_and(|p| !bad[p as usize])));
        let out = StructArray::try_new(fields.clone(), taken.columns().to_vec(), Some(nulls))?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}
