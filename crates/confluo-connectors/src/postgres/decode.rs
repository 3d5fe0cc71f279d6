//! Decoders from PostgreSQL's binary send format straight into Arrow builders: one decoder
//! per column, chosen once per snapshot; each value is appended without an intermediate
//! value type.

use std::sync::Arc;

use arrow::array::builder::NullBufferBuilder;
use arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder,
    Float64Builder, Int16Builder, Int32Builder, Int64Builder, ListArray, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::buffer::OffsetBuffer;
use arrow::datatypes::{DataType, Field};

use super::types::Wire;

/// Days between 1970-01-01 (Arrow's epoch) and 2000-01-01 (PostgreSQL's).
const PG_EPOCH_DAYS: i32 = 10_957;
/// Microseconds between the two epochs.
const PG_EPOCH_MICROS: i64 = PG_EPOCH_DAYS as i64 * 86_400_000_000;

/// Builders of one column.
enum Builder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Utf8(StringBuilder),
    Binary(BinaryBuilder),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    List {
        field: Arc<Field>,
        offsets: Vec<i32>,
        validity: NullBufferBuilder,
        inner: Box<ColumnDecoder>,
    },
}

/// Decodes one column's values into an Arrow array.
pub struct ColumnDecoder {
    builder: Builder,
    /// Values with no Arrow counterpart that became null (`±infinity`, `NaN`).
    pub nulled: u64,
}

impl ColumnDecoder {
    /// A decoder for values encoded as `wire`, producing `arrow` arrays.
    pub fn new(wire: &Wire, arrow: &DataType) -> Self {
        let builder = match wire {
            Wire::Bool => Builder::Bool(BooleanBuilder::new()),
            Wire::Int2 => Builder::Int16(Int16Builder::new()),
            Wire::Int4 => Builder::Int32(Int32Builder::new()),
            Wire::Int8 => Builder::Int64(Int64Builder::new()),
            Wire::Float4 => Builder::Float32(Float32Builder::new()),
            Wire::Float8 => Builder::Float64(Float64Builder::new()),
            Wire::Numeric { precision, scale } => Builder::Decimal(
                Decimal128Builder::new().with_data_type(DataType::Decimal128(*precision, *scale)),
                *scale,
            ),
            Wire::Text => Builder::Utf8(StringBuilder::new()),
            Wire::Bytea => Builder::Binary(BinaryBuilder::new()),
            Wire::Date => Builder::Date(Date32Builder::new()),
            Wire::Timestamp => Builder::Timestamp(TimestampMicrosecondBuilder::new()),
            Wire::Timestamptz => {
                Builder::Timestamp(TimestampMicrosecondBuilder::new().with_timezone("UTC"))
            }
            Wire::Array(elem) => {
                let field = match arrow {
                    DataType::List(f) => f.clone(),
                    _ => Arc::new(Field::new("item", DataType::Null, true)),
                };
                let inner = ColumnDecoder::new(elem, field.data_type());
                Builder::List {
                    field,
                    offsets: vec![0],
                    validity: NullBufferBuilder::new(0),
                    inner: Box::new(inner),
                }
            }
        };
        ColumnDecoder { builder, nulled: 0 }
    }

    /// Appends a SQL NULL.
    pub fn append_null(&mut self) {
        match &mut self.builder {
            Builder::Bool(b) => b.append_null(),
            Builder::Int16(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float32(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Decimal(b, _) => b.append_null(),
            Builder::Utf8(b) => b.append_null(),
            Builder::Binary(b) => b.append_null(),
            Builder::Date(b) => b.append_null(),
            Builder::Timestamp(b) => b.append_null(),
            Builder::List {
                offsets, validity, ..
            } => {
                let last = *offsets.last().unwrap_or(&0);
                offsets.push(last);
                validity.append_null();
            }
        }
    }

    /// Appends one value in binary send format. An error says what is wrong with it.
    pub fn append(&mut self, v: &[u8]) -> Result<(), String> {
        match &mut self.builder {
            Builder::Bool(b) => b.append_value(fixed::<1>(v)?[0] != 0),
            Builder::Int16(b) => b.append_value(i16::from_be_bytes(fixed(v)?)),
            Builder::Int32(b) => b.append_value(i32::from_be_bytes(fixed(v)?)),
            Builder::Int64(b) => b.append_value(i64::from_be_bytes(fixed(v)?)),
            Builder::Float32(b) => b.append_value(f32::from_be_bytes(fixed(v)?)),
            Builder::Float64(b) => b.append_value(f64::from_be_bytes(fixed(v)?)),
            Builder::Decimal(b, scale) => match numeric_to_i128(v, *scale)? {
                Some(n) => b.append_value(n),
                None => {
                    self.nulled += 1;
                    b.append_null()
                }
            },
            Builder::Utf8(b) => b.append_value(
                std::str::from_utf8(v).map_err(|e| format!("text is not valid UTF-8: {e}"))?,
            ),
            Builder::Binary(b) => b.append_value(v),
            Builder::Date(b) => match i32::from_be_bytes(fixed(v)?) {
                i32::MAX | i32::MIN => {
                    self.nulled += 1;
                    b.append_null()
                }
                d => b.append_value(d.checked_add(PG_EPOCH_DAYS).ok_or("date out of range")?),
            },
            Builder::Timestamp(b) => match i64::from_be_bytes(fixed(v)?) {
                i64::MAX | i64::MIN => {
                    self.nulled += 1;
                    b.append_null()
                }
                t => b.append_value(
                    t.checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of range")?,
                ),
            },
            Builder::List {
                offsets,
                validity,
                inner,
                ..
            } => {
                let n = decode_array(v, inner)?;
                let last = *offsets.last().unwrap_or(&0);
                let next = i32::try_from(n)
                    .ok()
                    .and_then(|n| last.checked_add(n))
                    .ok_or("array batch too large")?;
                offsets.push(next);
                validity.append_non_null();
            }
        }
        Ok(())
    }

    /// Values with no Arrow counterpart that became null, here and in array elements.
    pub fn nulled_total(&self) -> u64 {
        match &self.builder {
            Builder::List { inner, .. } => self.nulled + inner.nulled_total(),
            _ => self.nulled,
        }
    }

    /// Takes the values appended so far as an array; the decoder starts empty again.
    pub fn finish(&mut self) -> ArrayRef {
        match &mut self.builder {
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Int16(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float32(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Decimal(b, _) => Arc::new(b.finish()),
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Binary(b) => Arc::new(b.finish()),
            Builder::Date(b) => Arc::new(b.finish()),
            Builder::Timestamp(b) => Arc::new(b.finish()),
            Builder::List {
                field,
                offsets,
                validity,
                inner,
            } => {
                let values = inner.finish();
                let offs = std::mem::replace(offsets, vec![0]);
                Arc::new(ListArray::new(
                    field.clone(),
                    OffsetBuffer::new(offs.into()),
                    values,
                    validity.finish(),
                ))
            }
        }
    }
}

fn fixed<const N: usize>(v: &[u8]) -> Result<[u8; N], String> {
    v.try_into()
        .map_err(|_| format!("expected {N} bytes, got {}", v.len()))
}

fn be_i32(v: &[u8], at: usize) -> Result<i32, String> {
    v.get(at..at + 4)
        .map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
        .ok_or_else(|| "array value is truncated".to_string())
}

/// Decodes a binary array into `inner`; returns the number of elements.
fn decode_array(v: &[u8], inner: &mut ColumnDecoder) -> Result<usize, String> {
    let ndim = be_i32(v, 0)?;
    // Header: ndim, has-nulls flag, element type oid; then (length, lower bound) per dim.
    match ndim {
        0 => return Ok(0),
        1 => {}
        n => {
            return Err(format!(
                "a {n}-dimensional array; only one-dimensional arrays are supported"
            ));
        }
    }
    let len = be_i32(v, 12)?;
    let mut pos = 20;
    for _ in 0..len {
        let l = be_i32(v, pos)?;
        pos += 4;
        if l < 0 {
            inner.append_null();
        } else {
            let end = pos + l as usize;
            let item = v.get(pos..end).ok_or("array element is truncated")?;
            inner.append(item)?;
            pos = end;
        }
    }
    Ok(len.max(0) as usize)
}

const NUMERIC_POS: u16 = 0x0000;
const NUMERIC_NEG: u16 = 0x4000;

/// Decodes a binary `numeric` as an integer scaled by `10^scale`. `NaN` and `±Infinity`
/// have no decimal value and give `None`; more fractional digits than `scale`, or a value
/// beyond 38 digits, is an error.
pub fn numeric_to_i128(v: &[u8], scale: i8) -> Result<Option<i128>, String> {
    if v.len() < 8 {
        return Err(format!("numeric value of {} bytes is truncated", v.len()));
    }
    let ndigits = i16::from_be_bytes([v[0], v[1]]) as i32;
    let weight = i16::from_be_bytes([v[2], v[3]]) as i32;
    let sign = u16::from_be_bytes([v[4], v[5]]);
    if sign != NUMERIC_POS && sign != NUMERIC_NEG {
        return Ok(None);
    }
    if v.len() < 8 + 2 * ndigits.max(0) as usize {
        return Err("numeric value is truncated".into());
    }
    let overflow = || "numeric value does not fit in 38 digits".to_string();
    let mut acc: i128 = 0;
    for i in 0..ndigits as usize {
        let d = u16::from_be_bytes([v[8 + 2 * i], v[9 + 2 * i]]) as i128;
        acc = acc
            .checked_mul(10_000)
            .and_then(|a| a.checked_add(d))
            .ok_or_else(overflow)?;
    }
    // acc = value * 10^exp10; the result must be value * 10^scale.
    let exp10 = 4 * (ndigits - 1 - weight);
    let shift = scale as i32 - exp10;
    if acc != 0 {
        if shift >= 0 {
            acc = 10i128
                .checked_pow(shift as u32)
                .and_then(|p| acc.checked_mul(p))
                .ok_or_else(overflow)?;
        } else {
            let p = 10i128.checked_pow((-shift) as u32);
            match p {
                Some(p) if acc % p == 0 => acc /= p,
                _ => {
                    return Err(format!(
                        "numeric value has more than {scale} fractional digits"
                    ));
                }
            }
        }
    }
    Ok(Some(if sign == NUMERIC_NEG { -acc } else { acc }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::{Array, AsArray};
    use arrow::datatypes::{Decimal128Type, Int32Type};

    /// Binary numeric from its parts.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[u16]) -> Vec<u8> {
        let mut v = Vec::new();
        v.extend((digits.len() as i16).to_be_bytes());
        v.extend(weight.to_be_bytes());
        v.extend(sign.to_be_bytes());
        v.extend(dscale.to_be_bytes());
        for d in digits {
            v.extend(d.to_be_bytes());
        }
        v
    }

    #[test]
    fn numerics() {
        // 12345.67 = [1, 2345, 6700], weight 1
        let v = numeric(1, NUMERIC_POS, 2, &[1, 2345, 6700]);
        assert_eq!(numeric_to_i128(&v, 2).unwrap(), Some(1_234_567));
        assert_eq!(numeric_to_i128(&v, 4).unwrap(), Some(123_456_700));
        // -0.05 = [500], weight -1
        let v = numeric(-1, NUMERIC_NEG, 2, &[500]);
        assert_eq!(numeric_to_i128(&v, 2).unwrap(), Some(-5));
        // 0 has no digits
        assert_eq!(numeric_to_i128(&numeric(0, 0, 2, &[]), 2).unwrap(), Some(0));
        // 1e20 = [1], weight 5
        assert_eq!(
            numeric_to_i128(&numeric(5, 0, 0, &[1]), 0).unwrap(),
            Some(100_000_000_000_000_000_000)
        );
        // NaN
        assert_eq!(
            numeric_to_i128(&numeric(0, 0xC000, 0, &[]), 2).unwrap(),
            None
        );
        // too many fractional digits for scale 1
        assert!(numeric_to_i128(&numeric(-1, 0, 2, &[1234]), 1).is_err());
        // 38 nines fit, with scale 0
        let nines = numeric(
            9,
            0,
            0,
            &[99, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999, 9999],
        );
        assert_eq!(
            numeric_to_i128(&nines, 0).unwrap(),
            Some(99_999_999_999_999_999_999_999_999_999_999_999_999)
        );
        assert!(numeric_to_i128(&[0, 1], 0).is_err());
    }

    #[test]
    fn scalars_and_infinity() {
        let mut d = ColumnDecoder::new(&Wire::Date, &DataType::Date32);
        d.append(&0i32.to_be_bytes()).unwrap();
        d.append(&i32::MAX.to_be_bytes()).unwrap();
        d.append_null();
        let a = d.finish();
        let a = a.as_primitive::<arrow::datatypes::Date32Type>();
        assert_eq!(a.value(0), 10_957);
        assert!(a.is_null(1) && a.is_null(2));
        assert_eq!(d.nulled_total(), 1);

        let mut t = ColumnDecoder::new(&Wire::Timestamptz, &DataType::Null);
        t.append(&0i64.to_be_bytes()).unwrap();
        let a = t.finish();
        assert_eq!(
            a.as_primitive::<arrow::datatypes::TimestampMicrosecondType>()
                .value(0),
            946_684_800_000_000
        );
        assert_eq!(
            a.data_type(),
            &DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()))
        );

        let mut s = ColumnDecoder::new(&Wire::Text, &DataType::Utf8);
        s.append("héllo ✓".as_bytes()).unwrap();
        assert!(s.append(&[0xff, 0xfe]).is_err());
        assert_eq!(s.finish().as_string::<i32>().value(0), "héllo ✓");

        let mut i = ColumnDecoder::new(&Wire::Int2, &DataType::Int16);
        assert!(i.append(&[1, 2, 3]).is_err());
    }

    #[test]
    fn arrays() {
        let ty = DataType::List(Arc::new(Field::new("item", DataType::Int32, true)));
        let mut d = ColumnDecoder::new(&Wire::Array(Box::new(Wire::Int4)), &ty);
        // {7,NULL,-1}
        let mut v = Vec::new();
        for x in [1i32, 1, 23, 3, 1] {
            v.extend(x.to_be_bytes());
        }
        v.extend(4i32.to_be_bytes());
        v.extend(7i32.to_be_bytes());
        v.extend((-1i32).to_be_bytes());
        v.extend(4i32.to_be_bytes());
        v.extend((-1i32).to_be_bytes());
        d.append(&v).unwrap();
        d.append_null();
        // empty array: ndim 0
        let mut e = Vec::new();
        for x in [0i32, 0, 23] {
            e.extend(x.to_be_bytes());
        }
        d.append(&e).unwrap();
        let a = d.finish();
        let l = a.as_list::<i32>();
        assert_eq!(l.len(), 3);
        let first = l.value(0);
        let first = first.as_primitive::<Int32Type>();
        assert_eq!(first.len(), 3);
        assert_eq!(first.value(0), 7);
        assert!(first.is_null(1));
        assert_eq!(first.value(2), -1);
        assert!(l.is_null(1));
        assert_eq!(l.value(2).len(), 0);
        // two dimensions are refused
        let mut two = Vec::new();
        for x in [2i32, 0, 23, 1, 1, 1, 1] {
            two.extend(x.to_be_bytes());
        }
        assert!(d.append(&two).unwrap_err().contains("2-dimensional"));

        let dec = DataType::Decimal128(10, 2);
        let mut n = ColumnDecoder::new(
            &Wire::Numeric {
                precision: 10,
                scale: 2,
            },
            &dec,
        );
        n.append(&numeric(0, NUMERIC_NEG, 2, &[3, 1400])).unwrap();
        let a = n.finish();
        assert_eq!(a.data_type(), &dec);
        assert_eq!(a.as_primitive::<Decimal128Type>().value(0), -314);
    }
}
