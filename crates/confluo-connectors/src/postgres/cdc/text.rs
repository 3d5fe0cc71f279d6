//! Values of the change stream, which `pgoutput` sends in the types' text output form, into
//! Arrow arrays of the same types the snapshot produces ([`crate::postgres::types`]). The
//! session that reads the slot sets `DateStyle = ISO` and `TimeZone = UTC`, so dates and
//! times arrive in one fixed form; columns the snapshot reads through a `::text` cast (uuid,
//! json, interval, enums, …) arrive as exactly that text.

use std::sync::Arc;

use arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, ListArray, StringArray, TimestampMicrosecondArray,
};
use arrow::buffer::{NullBuffer, OffsetBuffer};
use arrow::datatypes::{DataType, Field};
use chrono::{NaiveDate, NaiveDateTime, NaiveTime};

use crate::postgres::types::Wire;

const UNIX_EPOCH_DAYS_FROM_CE: i32 = 719_163;

fn utf8(v: &[u8]) -> Result<&str, String> {
    std::str::from_utf8(v).map_err(|e| format!("text is not valid UTF-8: {e}"))
}

/// Parses `2024-01-02` or `0044-03-15 BC`; `None` for ±infinity.
fn date(text: &str) -> Result<Option<NaiveDate>, String> {
    if text.ends_with("infinity") {
        return Ok(None);
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let d = NaiveDate::parse_from_str(body, "%Y-%m-%d")
        .map_err(|e| format!("`{text}` is not a date: {e}"))?;
    Ok(Some(if bc {
        // 1 BC is year 0 in the proleptic calendar chrono uses.
        NaiveDate::from_ymd_opt(1 - d.year_ce().1 as i32, d.month0() + 1, d.day0() + 1)
            .ok_or_else(|| format!("`{text}` is out of range"))?
    } else {
        d
    }))
}

use chrono::Datelike;

fn time_micros(text: &str) -> Result<i64, String> {
    if text == "24:00:00" {
        return Ok(86_400_000_000);
    }
    let t = NaiveTime::parse_from_str(text, "%H:%M:%S%.f")
        .map_err(|e| format!("`{text}` is not a time: {e}"))?;
    Ok((t - NaiveTime::MIN).num_microseconds().unwrap_or(0))
}

/// Parses `2024-01-02 03:04:05.123456[+00]`; `None` for ±infinity.
fn timestamp_micros(text: &str, with_zone: bool) -> Result<Option<i64>, String> {
    if text.ends_with("infinity") {
        return Ok(None);
    }
    let (body, bc) = match text.strip_suffix(" BC") {
        Some(b) => (b, true),
        None => (text, false),
    };
    let body = if with_zone {
        // TimeZone is UTC for this session: the offset is always +00.
        body.strip_suffix("+00").ok_or_else(|| {
            format!("`{text}` is not a UTC timestamp (the session's TimeZone must be UTC)")
        })?
    } else {
        body
    };
    let (d, t) = body
        .split_once(' ')
        .ok_or_else(|| format!("`{text}` is not a timestamp"))?;
    let d = date(&if bc { format!("{d} BC") } else { d.to_string() })?
        .ok_or_else(|| format!("`{text}` is not a timestamp"))?;
    let micros = time_micros(t)?;
    let dt = NaiveDateTime::new(d, NaiveTime::MIN);
    Ok(Some(dt.and_utc().timestamp_micros() + micros))
}

fn hex(v: &[u8]) -> Result<Vec<u8>, String> {
    let body = v
        .strip_prefix(b"\\x")
        .ok_or("bytea is not in hex form (bytea_output must be hex)")?;
    if body.len() % 2 != 0 {
        return Err("bytea hex has an odd number of digits".into());
    }
    let digit = |c: u8| -> Result<u8, String> {
        (c as char)
            .to_digit(16)
            .map(|d| d as u8)
            .ok_or_else(|| format!("`{}` is not a hex digit", c as char))
    };
    body.chunks(2)
        .map(|p| Ok(digit(p[0])? << 4 | digit(p[1])?))
        .collect()
}

/// Scaled integer of a decimal text (`-12.50`), `None` for NaN/±Infinity. `money` text has a
/// currency sign and group separators, which are dropped.
fn decimal(text: &str, scale: i8) -> Result<Option<i128>, String> {
    if matches!(text, "NaN" | "Infinity" | "-Infinity") {
        return Ok(None);
    }
    let negative = text.starts_with('-') || (text.starts_with('(') && text.ends_with(')'));
    let mut int: i128 = 0;
    let mut frac_digits: i32 = 0;
    let mut in_frac = false;
    let overflow = || format!("`{text}` does not fit in 38 digits");
    for c in text.chars() {
        match c {
            '0'..='9' => {
                if in_frac {
                    frac_digits += 1;
                }
                int = int
                    .checked_mul(10)
                    .and_then(|i| i.checked_add(c as i128 - '0' as i128))
                    .ok_or_else(overflow)?;
            }
            '.' => in_frac = true,
            _ => {}
        }
    }
    let shift = scale as i32 - frac_digits;
    if shift >= 0 {
        int = 10i128
            .checked_pow(shift as u32)
            .and_then(|p| int.checked_mul(p))
            .ok_or_else(overflow)?;
    } else {
        let p = 10i128.pow((-shift) as u32);
        if int % p != 0 {
            return Err(format!("`{text}` has more than {scale} fractional digits"));
        }
        int /= p;
    }
    Ok(Some(if negative { -int } else { int }))
}

/// Splits a one-dimensional array literal (`{1,NULL,"a b","q\"x"}`) into its elements.
fn array_elements(v: &[u8]) -> Result<Vec<Option<Vec<u8>>>, String> {
    let text = utf8(v)?;
    // A lower bound other than 1 is written as `[0:2]={...}`.
    let body = match text.find('=') {
        Some(i) if text.starts_with('[') => &text[i + 1..],
        _ => text,
    };
    let inner = body
        .strip_prefix('{')
        .and_then(|b| b.strip_suffix('}'))
        .ok_or_else(|| format!("`{text}` is not an array"))?;
    let mut out = Vec::new();
    if inner.is_empty() {
        return Ok(out);
    }
    let bytes = inner.as_bytes();
    let mut i = 0;
    loop {
        if bytes.get(i) == Some(&b'{') {
            return Err("multi-dimensional arrays are not supported".into());
        }
        if bytes.get(i) == Some(&b'"') {
            let mut value = Vec::new();
            i += 1;
            while i < bytes.len() && bytes[i] != b'"' {
                if bytes[i] == b'\\' {
                    i += 1;
                }
                if let Some(&b) = bytes.get(i) {
                    value.push(b);
                }
                i += 1;
            }
            i += 1;
            out.push(Some(value));
        } else {
            let start = i;
            while i < bytes.len() && bytes[i] != b',' {
                i += 1;
            }
            let raw = &inner[start..i];
            out.push(if raw == "NULL" {
                None
            } else {
                Some(raw.as_bytes().to_vec())
            });
        }
        match bytes.get(i) {
            Some(b',') => i += 1,
            None => break,
            Some(c) => return Err(format!("unexpected `{}` in array `{text}`", *c as char)),
        }
    }
    Ok(out)
}

/// Decodes one column of text values (`None` = SQL NULL) into an array of `arrow` type.
/// Values with no Arrow counterpart (±infinity, NaN in a decimal) become null, as in the
/// snapshot.
pub fn decode_column(
    wire: &Wire,
    arrow: &DataType,
    values: &[Option<&[u8]>],
) -> Result<ArrayRef, String> {
    macro_rules! parsed {
        ($array:ty, $parse:expr) => {{
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                out.push(match v {
                    None => None,
                    Some(v) => {
                        let f: &dyn Fn(&str) -> Result<Option<_>, String> = &$parse;
                        f(utf8(v)?)?
                    }
                });
            }
            Arc::new(<$array>::from(out)) as ArrayRef
        }};
    }
    fn num<T: std::str::FromStr>(s: &str) -> Result<Option<T>, String> {
        s.parse()
            .map(Some)
            .map_err(|_| format!("`{s}` is not a number of the column's type"))
    }
    fn float<T: std::str::FromStr>(s: &str) -> Result<Option<T>, String> {
        let s = match s {
            "Infinity" => "inf",
            "-Infinity" => "-inf",
            other => other,
        };
        num(s)
    }
    Ok(match wire {
        Wire::Text => {
            let mut out = Vec::with_capacity(values.len());
            for v in values {
                out.push(match v {
                    None => None,
                    Some(v) => Some(utf8(v)?),
                });
            }
            Arc::new(StringArray::from(out))
        }
        Wire::Bool => parsed!(BooleanArray, |s| Ok(Some(s == "t" || s == "true"))),
        Wire::Int2 => parsed!(Int16Array, num::<i16>),
        Wire::Int4 => parsed!(Int32Array, num::<i32>),
        Wire::Int8 => parsed!(Int64Array, num::<i64>),
        Wire::Float4 => parsed!(Float32Array, float::<f32>),
        Wire::Float8 => parsed!(Float64Array, float::<f64>),
        Wire::Numeric { precision, scale } => {
            let s = *scale;
            let a = parsed!(Decimal128Array, |t| decimal(t, s));
            let a = a
                .as_any()
                .downcast_ref::<Decimal128Array>()
                .expect("built above")
                .clone()
                .with_precision_and_scale(*precision, *scale)
                .map_err(|e| e.to_string())?;
            Arc::new(a)
        }
        Wire::Bytea => {
            let mut out: Vec<Option<Vec<u8>>> = Vec::with_capacity(values.len());
            for v in values {
                out.push(match v {
                    None => None,
                    Some(v) => Some(hex(v)?),
                });
            }
            Arc::new(BinaryArray::from_iter(out))
        }
        Wire::Date => parsed!(Date32Array, |t| Ok(
            date(t)?.map(|d| d.num_days_from_ce() - UNIX_EPOCH_DAYS_FROM_CE)
        )),
        Wire::Timestamp => parsed!(TimestampMicrosecondArray, |t| timestamp_micros(t, false)),
        Wire::Timestamptz => {
            let a = parsed!(TimestampMicrosecondArray, |t| timestamp_micros(t, true));
            let a = a
                .as_any()
                .downcast_ref::<TimestampMicrosecondArray>()
                .expect("built above")
                .clone()
                .with_timezone("UTC");
            Arc::new(a)
        }
        Wire::Array(elem) => {
            let field = match arrow {
                DataType::List(f) => f.clone(),
                other => return Err(format!("array column typed {other}")),
            };
            let mut offsets = vec![0i32];
            let mut valid = Vec::with_capacity(values.len());
            let mut items: Vec<Option<Vec<u8>>> = Vec::new();
            for v in values {
                match v {
                    None => valid.push(false),
                    Some(v) => {
                        items.extend(array_elements(v)?);
                        valid.push(true);
                    }
                }
                offsets.push(items.len() as i32);
            }
            let refs: Vec<Option<&[u8]>> = items.iter().map(|i| i.as_deref()).collect();
            let inner = decode_column(elem, field.data_type(), &refs)?;
            Arc::new(
                ListArray::try_new(
                    Arc::new(Field::new(field.name(), inner.data_type().clone(), true)),
                    OffsetBuffer::new(offsets.into()),
                    inner,
                    Some(NullBuffer::from(valid)),
                )
                .map_err(|e| e.to_string())?,
            )
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::Array;

    fn col(wire: Wire, arrow: DataType, values: &[Option<&str>]) -> ArrayRef {
        let raw: Vec<Option<&[u8]>> = values.iter().map(|v| v.map(str::as_bytes)).collect();
        decode_column(&wire, &arrow, &raw).unwrap()
    }

    #[test]
    fn scalars_in_their_text_form() {
        let a = col(
            Wire::Numeric {
                precision: 10,
                scale: 2,
            },
            DataType::Decimal128(10, 2),
            &[Some("-12.5"), Some("NaN"), None],
        );
        let d = a.as_any().downcast_ref::<Decimal128Array>().unwrap();
        assert_eq!(d.value(0), -1250);
        assert!(d.is_null(1) && d.is_null(2));

        let a = col(
            Wire::Timestamptz,
            DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into())),
            &[Some("2024-01-02 03:04:05.5+00"), Some("infinity")],
        );
        let t = a
            .as_any()
            .downcast_ref::<TimestampMicrosecondArray>()
            .unwrap();
        assert_eq!(t.value(0), 1_704_164_645_500_000);
        assert!(t.is_null(1));

        let a = col(
            Wire::Date,
            DataType::Date32,
            &[Some("1970-01-02"), Some("0001-01-01 BC")],
        );
        let d = a.as_any().downcast_ref::<Date32Array>().unwrap();
        assert_eq!(d.value(0), 1);
        assert_eq!(d.value(1), -719_528);

        let a = col(Wire::Bytea, DataType::Binary, &[Some("\\x00ff")]);
        assert_eq!(
            a.as_any().downcast_ref::<BinaryArray>().unwrap().value(0),
            &[0, 255]
        );

        let a = col(
            Wire::Float8,
            DataType::Float64,
            &[Some("-Infinity"), Some("NaN"), Some("1.5e-7")],
        );
        let f = a.as_any().downcast_ref::<Float64Array>().unwrap();
        assert!(f.value(0).is_infinite() && f.value(1).is_nan() && f.value(2) == 1.5e-7);
    }

    #[test]
    fn arrays_with_quotes_and_nulls() {
        let list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
        let a = col(
            Wire::Array(Box::new(Wire::Text)),
            list,
            &[Some(r#"{a,NULL,"b c","q\"x"}"#), Some("{}"), None],
        );
        let l = a.as_any().downcast_ref::<ListArray>().unwrap();
        let first = l.value(0);
        let s = first.as_any().downcast_ref::<StringArray>().unwrap();
        assert_eq!(s.value(0), "a");
        assert!(s.is_null(1));
        assert_eq!((s.value(2), s.value(3)), ("b c", "q\"x"));
        assert_eq!(l.value(1).len(), 0);
        assert!(l.is_null(2));
        let bad = decode_column(
            &Wire::Array(Box::new(Wire::Int4)),
            &DataType::List(Arc::new(Field::new("item", DataType::Int32, true))),
            &[Some(b"{{1},{2}}")],
        );
        assert!(bad.unwrap_err().contains("multi-dimensional"));
    }
}
