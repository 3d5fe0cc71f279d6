//! Inferring CSV column types from a sample of records.

use arrow::datatypes::{DataType, TimeUnit};

use super::tokenize::Tokens;
use crate::files::values;

/// The narrowest type seen so far for a column.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    /// Only nulls so far.
    Null,
    /// `true` / `false`.
    Bool,
    /// Whole numbers that fit 64 bits.
    Int,
    /// Other numbers.
    Float,
    /// `YYYY-MM-DD` (or the date format).
    Date,
    /// ISO timestamps (or the timestamp format).
    Timestamp,
    /// Anything else.
    String,
}

impl Kind {
    /// The type two observations share.
    pub fn merge(self, other: Kind) -> Kind {
        use Kind::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, x) | (x, Null) => x,
            (Int, Float) | (Float, Int) => Float,
            (Date, Timestamp) | (Timestamp, Date) => Timestamp,
            _ => String,
        }
    }

    /// The Arrow type for a column of this kind.
    pub fn data_type(self) -> DataType {
        match self {
            Kind::Null | Kind::String => DataType::Utf8,
            Kind::Bool => DataType::Boolean,
            Kind::Int => DataType::Int64,
            Kind::Float => DataType::Float64,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        }
    }

    /// The kind of an existing type (for merging with a table's schema).
    pub fn of(dt: &DataType) -> Kind {
        match dt {
            DataType::Boolean => Kind::Bool,
            DataType::Int8 | DataType::Int16 | DataType::Int32 | DataType::Int64 => Kind::Int,
            DataType::Float32 | DataType::Float64 | DataType::Decimal128(..) => Kind::Float,
            DataType::Date32 => Kind::Date,
            DataType::Timestamp(..) => Kind::Timestamp,
            DataType::Null => Kind::Null,
            _ => Kind::String,
        }
    }
}

/// Settings that change what a value looks like.
#[derive(Debug, Clone, Default)]
pub struct InferFormats {
    /// chrono date format, if not ISO.
    pub date: Option<String>,
    /// chrono timestamp format, if not ISO.
    pub timestamp: Option<String>,
    /// Text meaning null.
    pub null_value: Option<Vec<u8>>,
}

/// Classifies one non-null value.
pub fn classify(b: &[u8], f: &InferFormats) -> Kind {
    let t = values::trim(b);
    if t.is_empty() {
        return Kind::Null;
    }
    if t.eq_ignore_ascii_case(b"true") || t.eq_ignore_ascii_case(b"false") {
        return Kind::Bool;
    }
    let digits = t
        .strip_prefix(b"-")
        .or_else(|| t.strip_prefix(b"+"))
        .unwrap_or(t);
    if values::parse_i64(t).is_some() {
        // Leading zeros (zip codes, ids like 007) would be lost as numbers.
        if digits.len() > 1 && digits[0] == b'0' {
            return Kind::String;
        }
        return Kind::Int;
    }
    if t[0].is_ascii_digit() || matches!(t[0], b'-' | b'+' | b'.') {
        if values::parse_f64(t).is_some()
            && !(digits.len() > 1 && digits[0] == b'0' && digits[1] != b'.')
        {
            return Kind::Float;
        }
        let is_date = match &f.date {
            Some(fmt) => values::parse_date_with(t, fmt).is_some(),
            None => values::parse_iso_date(t).is_some(),
        };
        if is_date {
            return Kind::Date;
        }
        let is_ts = match &f.timestamp {
            Some(fmt) => values::parse_timestamp_with(t, fmt).is_some(),
            None => values::parse_iso_timestamp(t).is_some(),
        };
        if is_ts {
            return Kind::Timestamp;
        }
    } else if let Some(fmt) = &f.date
        && values::parse_date_with(t, fmt).is_some()
    {
        return Kind::Date;
    } else if let Some(fmt) = &f.timestamp
        && values::parse_timestamp_with(t, fmt).is_some()
    {
        return Kind::Timestamp;
    }
    Kind::String
}

/// Infers the kind of each of `n_cols` columns from tokenized records; malformed records
/// are ignored. A few stray texts in an otherwise typed column (at most 5% of at least 20
/// values) do not turn it into a string column: those values are rescued when read, so a
/// typo does not cost the column its type.
pub fn infer_kinds(tokens: &Tokens, data: &[u8], f: &InferFormats) -> Vec<Kind> {
    let n_cols = tokens.n_cols;
    let mut typed = vec![Kind::Null; n_cols];
    let mut strings = vec![0usize; n_cols];
    let mut total = vec![0usize; n_cols];
    for row in 0..tokens.rows() {
        for col in 0..n_cols {
            let span = tokens.field(row, col);
            if span.is_missing() {
                continue;
            }
            let b = span.bytes(data, &tokens.side);
            if b.is_empty() || f.null_value.as_deref() == Some(b) {
                continue;
            }
            total[col] += 1;
            if strings[col] > 0 && strings[col] * 20 > total[col] && total[col] >= 20 {
                // Clearly a text column: no need to look further.
                strings[col] += 1;
                continue;
            }
            match classify(b, f) {
                Kind::String => strings[col] += 1,
                k => typed[col] = typed[col].merge(k),
            }
        }
    }
    (0..n_cols)
        .map(|c| {
            let few_strays = total[c] >= 20 && strings[c] * 20 <= total[c];
            if strings[c] == 0 || (few_strays && typed[c] != Kind::Null && typed[c] != Kind::String)
            {
                typed[c]
            } else {
                Kind::String
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies() {
        let f = InferFormats::default();
        assert_eq!(classify(b"12", &f), Kind::Int);
        assert_eq!(classify(b"007", &f), Kind::String);
        assert_eq!(classify(b"-1.5", &f), Kind::Float);
        assert_eq!(classify(b"0.5", &f), Kind::Float);
        assert_eq!(classify(b"2024-01-31", &f), Kind::Date);
        assert_eq!(classify(b"2024-01-31 10:00:00", &f), Kind::Timestamp);
        assert_eq!(classify(b"TRUE", &f), Kind::Bool);
        assert_eq!(classify(b"abc", &f), Kind::String);
        assert_eq!(Kind::Int.merge(Kind::Float), Kind::Float);
        assert_eq!(Kind::Int.merge(Kind::Date), Kind::String);
    }
}
