//! Spark's JSON functions: `get_json_object`, `from_json`, `to_json`, `schema_of_json`.
//!
//! As in Spark, text that is not JSON gives NULL (or, for `from_json`, a struct of NULLs)
//! rather than failing the query: these functions parse raw payloads, where a bad record is
//! expected and is kept, not lost.

use std::sync::Arc;

use arrow_json::ReaderBuilder;
use arrow_json::reader::infer_json_schema_from_iterator;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, RecordBatch, StringArray, StringBuilder, StructArray,
};
use datafusion::arrow::buffer::NullBuffer;
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Schema};
use datafusion::common::{DataFusionError, Result, ScalarValue, exec_err, plan_err};
use datafusion::logical_expr::{
    ColumnarValue, ReturnFieldArgs, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use serde_json::Value;

fn strings(v: &ColumnarValue, n: usize) -> Result<ArrayRef> {
    Ok(cast(&v.to_array(n)?, &DataType::Utf8)?)
}

fn literal(args: &ReturnFieldArgs, i: usize) -> Option<String> {
    match args.scalar_arguments.get(i).copied().flatten()? {
        ScalarValue::Utf8(s) | ScalarValue::LargeUtf8(s) | ScalarValue::Utf8View(s) => s.clone(),
        _ => None,
    }
}

/// One step of a JSON path.
#[derive(Debug, PartialEq)]
enum Step {
    Key(String),
    Index(usize),
    Every,
}

/// Parses Spark's JSON path subset: `$`, `.name`, `['name']`, `[n]`, `[*]`.
fn parse_path(path: &str) -> Option<Vec<Step>> {
    let mut rest = path.trim().strip_prefix('$')?;
    let mut steps = Vec::new();
    while !rest.is_empty() {
        if let Some(r) = rest.strip_prefix('.') {
            let end = r.find(['.', '[']).unwrap_or(r.len());
            if end == 0 {
                return None;
            }
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end..];
        } else if let Some(r) = rest.strip_prefix("['") {
            let end = r.find("']")?;
            steps.push(Step::Key(r[..end].to_string()));
            rest = &r[end + 2..];
        } else if let Some(r) = rest.strip_prefix("[*]") {
            steps.push(Step::Every);
            rest = r;
        } else if let Some(r) = rest.strip_prefix('[') {
            let end = r.find(']')?;
            steps.push(Step::Index(r[..end].trim().parse().ok()?));
            rest = &r[end + 1..];
        } else {
            return None;
        }
    }
    Some(steps)
}

fn walk<'a>(v: &'a Value, steps: &[Step], out: &mut Vec<&'a Value>) {
    let Some((first, rest)) = steps.split_first() else {
        out.push(v);
        return;
    };
    match (first, v) {
        (Step::Key(k), Value::Object(m)) => {
            if let Some(x) = m.get(k) {
                walk(x, rest, out);
            }
        }
        (Step::Index(i), Value::Array(a)) => {
            if let Some(x) = a.get(*i) {
                walk(x, rest, out);
            }
        }
        (Step::Every, Value::Array(a)) => a.iter().for_each(|x| walk(x, rest, out)),
        _ => {}
    }
}

/// A JSON value as Spark's `get_json_object` returns it: strings bare, others as JSON.
fn as_text(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}

fn get(json: &str, steps: &[Step], wildcard: bool) -> Option<String> {
    let v: Value = serde_json::from_str(json).ok()?;
    let mut found = Vec::new();
    walk(&v, steps, &mut found);
    match found.as_slice() {
        [] => None,
        [one] if !wildcard => as_text(one),
        many => as_text(&Value::Array(many.iter().map(|v| (*v).clone()).collect())),
    }
}

/// `get_json_object(json, path)`: the value at a JSON path, as text; NULL when the text is
/// not JSON or the path finds nothing.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct GetJsonObject {
    signature: Signature,
}

impl GetJsonObject {
    /// The function.
    pub fn new() -> Self {
        GetJsonObject {
            signature: Signature::string(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for GetJsonObject {
    fn name(&self) -> &str {
        "get_json_object"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let json = strings(&args.args[0], n)?;
        let paths = strings(&args.args[1], n)?;
        let (json, paths) = (json.as_string::<i32>(), paths.as_string::<i32>());
        let mut out = StringBuilder::new();
        let mut parsed: Option<(String, Option<Vec<Step>>)> = None;
        for i in 0..n {
            if json.is_null(i) || paths.is_null(i) {
                out.append_null();
                continue;
            }
            let path = paths.value(i);
            if parsed.as_ref().is_none_or(|(p, _)| p != path) {
                parsed = Some((path.to_string(), parse_path(path)));
            }
            let steps = parsed.as_ref().and_then(|(_, s)| s.as_deref());
            let value = steps.and_then(|s| get(json.value(i), s, s.contains(&Step::Every)));
            out.append_option(value);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// The struct type a `from_json` schema names: `a INT, b STRING` or `STRUCT<a: INT, ...>`.
fn struct_type(ddl: &str) -> std::result::Result<Fields, String> {
    let t = ddl.trim();
    if t.len() > 6 && t[..6].eq_ignore_ascii_case("struct") {
        return match confluo_connectors::files::schema_ddl::parse_type(t)? {
            DataType::Struct(f) => Ok(f),
            other => Err(format!("{other} is not a struct")),
        };
    }
    Ok(confluo_connectors::files::schema_ddl::parse_schema_ddl(t)?
        .fields()
        .clone())
}

/// `from_json(json, schema)`: JSON text as a struct of the schema's fields (given as a
/// literal). Text that is not a JSON object gives a struct of NULLs, and a value that does
/// not fit its field is NULL with the others kept (Spark's PERMISSIVE mode); NULL text gives
/// NULL.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct FromJson {
    signature: Signature,
}

impl FromJson {
    /// The function.
    pub fn new() -> Self {
        FromJson {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

fn decode(fields: &Fields, rows: &[Value]) -> std::result::Result<RecordBatch, String> {
    let schema = Arc::new(Schema::new(fields.clone()));
    let mut decoder = ReaderBuilder::new(schema.clone())
        .with_coerce_primitive(true)
        .build_decoder()
        .map_err(|e| e.to_string())?;
    decoder.serialize(rows).map_err(|e| e.to_string())?;
    Ok(decoder
        .flush()
        .map_err(|e| e.to_string())?
        .unwrap_or_else(|| RecordBatch::new_empty(schema)))
}

/// One row whose values do not all fit: each field decoded alone, the misfits NULL and the
/// others kept (Spark's partial results).
fn field_by_field(fields: &Fields, row: &Value) -> Result<RecordBatch> {
    let columns = fields
        .iter()
        .map(|f| {
            let one = Fields::from(vec![f.clone()]);
            Ok(match decode(&one, std::slice::from_ref(row)) {
                Ok(b) => b.column(0).clone(),
                Err(_) => datafusion::arrow::array::new_null_array(f.data_type(), 1),
            })
        })
        .collect::<Result<Vec<_>>>()?;
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields.clone())),
        columns,
    )?)
}

impl ScalarUDFImpl for FromJson {
    fn name(&self) -> &str {
        "from_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        exec_err!("from_json's type comes from its schema argument")
    }

    fn return_field_from_args(&self, args: ReturnFieldArgs) -> Result<FieldRef> {
        if !(2..=3).contains(&args.arg_fields.len()) {
            return plan_err!("from_json takes (json, schema [, options])");
        }
        let Some(ddl) = literal(&args, 1) else {
            return plan_err!(
                "from_json: the schema must be a literal string, e.g. from_json(payload, 'id INT, name STRING')"
            );
        };
        let fields = struct_type(&ddl)
            .map_err(|e| DataFusionError::Plan(format!("from_json: schema '{ddl}': {e}")))?;
        let nullable: Fields = fields
            .iter()
            .map(|f| Arc::new(f.as_ref().clone().with_nullable(true)))
            .collect();
        Ok(Arc::new(Field::new(
            self.name(),
            DataType::Struct(nullable),
            true,
        )))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let DataType::Struct(fields) = args.return_field.data_type() else {
            return exec_err!("from_json: the result is not a struct");
        };
        let json = strings(&args.args[0], n)?;
        let json = json.as_string::<i32>();
        let empty = Value::Object(Default::default());
        let rows: Vec<Value> = (0..n)
            .map(|i| {
                if json.is_null(i) {
                    return empty.clone();
                }
                match serde_json::from_str::<Value>(json.value(i)) {
                    Ok(v @ Value::Object(_)) => v,
                    _ => empty.clone(),
                }
            })
            .collect();
        // All rows at once; when one does not fit the schema, row by row, each misfit
        // becoming a struct of NULLs.
        let batch = match decode(fields, &rows) {
            Ok(b) => b,
            Err(_) => {
                let mut parts = Vec::with_capacity(n);
                for row in &rows {
                    let one = std::slice::from_ref(row);
                    parts.push(match decode(fields, one) {
                        Ok(b) => b,
                        Err(_) => field_by_field(fields, row)?,
                    });
                }
                let schema = Arc::new(Schema::new(fields.clone()));
                datafusion::arrow::compute::concat_batches(&schema, &parts)?
            }
        };
        let nulls = NullBuffer::from_iter((0..n).map(|i| json.is_valid(i)));
        let out = StructArray::try_new(fields.clone(), batch.columns().to_vec(), Some(nulls))?;
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// `to_json(value)`: a struct (or map, or array) as JSON text; NULL fields are left out,
/// as Spark does.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ToJson {
    signature: Signature,
}

impl ToJson {
    /// The function.
    pub fn new() -> Self {
        ToJson {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for ToJson {
    fn name(&self) -> &str {
        "to_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let values = args.args[0].to_array(args.number_rows)?;
        let is_struct = matches!(values.data_type(), DataType::Struct(_));
        if !matches!(
            values.data_type(),
            DataType::Struct(_) | DataType::Map(..) | DataType::List(_) | DataType::LargeList(_)
        ) {
            return exec_err!(
                "to_json takes a struct, map or array, not {}",
                values.data_type()
            );
        }
        // Structs are written as rows; anything else inside a one-field row whose wrapper
        // is then cut off.
        let batch = if is_struct {
            let s = values.as_struct();
            let plain = StructArray::try_new(s.fields().clone(), s.columns().to_vec(), None)?;
            RecordBatch::from(plain)
        } else {
            let schema = Arc::new(Schema::new(vec![Field::new(
                "v",
                values.data_type().clone(),
                true,
            )]));
            RecordBatch::try_new(schema, vec![values.clone()])?
        };
        let mut buf = Vec::new();
        {
            let mut w = arrow_json::LineDelimitedWriter::new(&mut buf);
            w.write(&batch)?;
            w.finish()?;
        }
        let text = String::from_utf8(buf).map_err(|e| DataFusionError::Execution(e.to_string()))?;
        let out: StringArray = text
            .lines()
            .enumerate()
            .map(|(i, line)| {
                if values.is_null(i) {
                    None
                } else if is_struct {
                    Some(line.to_string())
                } else {
                    line.strip_prefix("{\"v\":")
                        .and_then(|l| l.strip_suffix('}'))
                        .map(str::to_string)
                }
            })
            .collect();
        if out.len() != values.len() {
            return exec_err!("to_json: {} rows written for {}", out.len(), values.len());
        }
        Ok(ColumnarValue::Array(Arc::new(out)))
    }
}

/// A type in Spark's DDL spelling (`STRUCT<a: BIGINT, b: ARRAY<STRING>>`).
fn spark_type(dt: &DataType) -> String {
    match dt {
        DataType::Struct(fields) => format!(
            "STRUCT<{}>",
            fields
                .iter()
                .map(|f| format!("{}: {}", f.name(), spark_type(f.data_type())))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        DataType::List(f) | DataType::LargeList(f) => {
            format!("ARRAY<{}>", spark_type(f.data_type()))
        }
        DataType::Null => "STRING".into(),
        other => confluo_connectors::arrow_types::type_name(other),
    }
}

/// Sorts struct fields by name, as Spark's JSON inference does.
fn sorted(dt: DataType) -> DataType {
    match dt {
        DataType::Struct(fields) => {
            let mut fs: Vec<Field> = fields
                .iter()
                .map(|f| {
                    f.as_ref()
                        .clone()
                        .with_data_type(sorted(f.data_type().clone()))
                })
                .collect();
            fs.sort_by(|a, b| a.name().cmp(b.name()));
            DataType::Struct(fs.into())
        }
        DataType::List(f) => DataType::new_list(sorted(f.data_type().clone()), true),
        other => other,
    }
}

/// `schema_of_json(json)`: the schema of a JSON example, in DDL (`STRUCT<a: BIGINT>`).
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct SchemaOfJson {
    signature: Signature,
}

impl SchemaOfJson {
    /// The function.
    pub fn new() -> Self {
        SchemaOfJson {
            signature: Signature::string(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for SchemaOfJson {
    fn name(&self) -> &str {
        "schema_of_json"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let json = strings(&args.args[0], n)?;
        let json = json.as_string::<i32>();
        let mut out = StringBuilder::new();
        for i in 0..n {
            if json.is_null(i) {
                out.append_null();
                continue;
            }
            let v: Value = serde_json::from_str(json.value(i)).map_err(|e| {
                DataFusionError::Execution(format!(
                    "schema_of_json: not JSON ({e}): {}",
                    json.value(i)
                ))
            })?;
            let t = match v {
                Value::Object(_) => {
                    let schema = infer_json_schema_from_iterator(std::iter::once(Ok(v)))?;
                    DataType::Struct(schema.fields().clone())
                }
                other => {
                    let wrapped = serde_json::json!({ "v": other });
                    let schema = infer_json_schema_from_iterator(std::iter::once(Ok(wrapped)))?;
                    schema.field(0).data_type().clone()
                }
            };
            out.append_value(spark_type(&sorted(t)));
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_paths() {
        let doc = r#"{"a": {"b": [1, {"c": "x"}]}, "n": null, "s": "t"}"#;
        let at = |p: &str| {
            let steps = parse_path(p).unwrap();
            get(doc, &steps, steps.contains(&Step::Every))
        };
        assert_eq!(at("$.s").as_deref(), Some("t"));
        assert_eq!(at("$.a.b[0]").as_deref(), Some("1"));
        assert_eq!(at("$.a.b[1].c").as_deref(), Some("x"));
        assert_eq!(at("$['a']['b'][1]").as_deref(), Some(r#"{"c":"x"}"#));
        assert_eq!(at("$.a.b[*]").as_deref(), Some(r#"[1,{"c":"x"}]"#));
        assert_eq!(at("$.n"), None);
        assert_eq!(at("$.missing"), None);
        assert!(parse_path("a.b").is_none());
        assert_eq!(get("not json", &parse_path("$.a").unwrap(), false), None);
    }

    #[test]
    fn schemas_in_spark_spelling() {
        let v: Value = serde_json::from_str(r#"{"b": [1, 2], "a": "x"}"#).unwrap();
        let s = infer_json_schema_from_iterator(std::iter::once(Ok(v))).unwrap();
        assert_eq!(
            spark_type(&sorted(DataType::Struct(s.fields().clone()))),
            "STRUCT<a: STRING, b: ARRAY<BIGINT>>"
        );
        assert_eq!(struct_type("id INT, name STRING").unwrap().len(), 2);
    }
}
