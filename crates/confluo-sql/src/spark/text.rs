//! Spark's regex string functions: `regexp_extract` and `split`.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, ListBuilder, StringBuilder};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field};
use datafusion::common::{DataFusionError, Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDFImpl, Signature, Volatility,
};
use regex::Regex;

fn column(v: &ColumnarValue, n: usize, to: &DataType) -> Result<ArrayRef> {
    Ok(cast(&v.to_array(n)?, to)?)
}

/// Compiles each distinct pattern once (a pattern is nearly always a literal).
#[derive(Default)]
struct Patterns {
    last: Option<(String, Regex)>,
}

impl Patterns {
    fn get(&mut self, function: &str, pattern: &str) -> Result<&Regex> {
        if self.last.as_ref().is_none_or(|(p, _)| p != pattern) {
            let re = Regex::new(pattern).map_err(|e| {
                DataFusionError::Execution(format!("{function}: bad pattern '{pattern}': {e}"))
            })?;
            self.last = Some((pattern.to_string(), re));
        }
        Ok(&self.last.as_ref().expect("just set").1)
    }
}

/// `regexp_extract(str, pattern [, group])`: the text a group of the first match captured
/// (group 1 by default, 0 for the whole match); an empty string when nothing matches, as in
/// Spark.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct RegexpExtract {
    signature: Signature,
}

impl RegexpExtract {
    /// The function.
    pub fn new() -> Self {
        RegexpExtract {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for RegexpExtract {
    fn name(&self) -> &str {
        "regexp_extract"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !(2..=3).contains(&args.len()) {
            return exec_err!("regexp_extract takes (str, pattern [, group])");
        }
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let text = column(&args.args[0], n, &DataType::Utf8)?;
        let pats = column(&args.args[1], n, &DataType::Utf8)?;
        let groups = match args.args.get(2) {
            Some(g) => Some(column(g, n, &DataType::Int64)?),
            None => None,
        };
        let (text, pats) = (text.as_string::<i32>(), pats.as_string::<i32>());
        let groups = groups
            .as_ref()
            .map(|g| g.as_primitive::<datafusion::arrow::datatypes::Int64Type>());
        let mut patterns = Patterns::default();
        let mut out = StringBuilder::new();
        for i in 0..n {
            if text.is_null(i) || pats.is_null(i) || groups.is_some_and(|g| g.is_null(i)) {
                out.append_null();
                continue;
            }
            let group = groups.map_or(1, |g| g.value(i));
            let re = patterns.get("regexp_extract", pats.value(i))?;
            if group < 0 || group as usize > re.captures_len() - 1 {
                return exec_err!(
                    "regexp_extract: pattern '{}' has {} group(s), so group {group} does not exist",
                    pats.value(i),
                    re.captures_len() - 1
                );
            }
            let got = re
                .captures(text.value(i))
                .and_then(|c| c.get(group as usize))
                .map_or("", |m| m.as_str());
            out.append_value(got);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `split(str, pattern [, limit])`: the text around each match of a regex, as an array; a
/// positive limit caps the pieces (the last holds the rest), as in Spark.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct Split {
    signature: Signature,
}

impl Split {
    /// The function.
    pub fn new() -> Self {
        Split {
            signature: Signature::variadic_any(Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for Split {
    fn name(&self) -> &str {
        "split"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, args: &[DataType]) -> Result<DataType> {
        if !(2..=3).contains(&args.len()) {
            return exec_err!("split takes (str, pattern [, limit])");
        }
        Ok(DataType::List(Arc::new(Field::new_list_field(
            DataType::Utf8,
            true,
        ))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let n = args.number_rows;
        let text = column(&args.args[0], n, &DataType::Utf8)?;
        let pats = column(&args.args[1], n, &DataType::Utf8)?;
        let limits = match args.args.get(2) {
            Some(l) => Some(column(l, n, &DataType::Int64)?),
            None => None,
        };
        let (text, pats) = (text.as_string::<i32>(), pats.as_string::<i32>());
        let limits = limits
            .as_ref()
            .map(|l| l.as_primitive::<datafusion::arrow::datatypes::Int64Type>());
        let mut patterns = Patterns::default();
        let mut out = ListBuilder::new(StringBuilder::new());
        for i in 0..n {
            if text.is_null(i) || pats.is_null(i) {
                out.append_null();
                continue;
            }
            let limit = limits.map_or(-1, |l| if l.is_null(i) { -1 } else { l.value(i) });
            let re = patterns.get("split", pats.value(i))?;
            let s = text.value(i);
            if limit > 0 {
                for piece in re.splitn(s, limit as usize) {
                    out.values().append_value(piece);
                }
            } else {
                for piece in re.split(s) {
                    out.values().append_value(piece);
                }
            }
            out.append(true);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}
