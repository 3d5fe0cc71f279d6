//! PostgreSQL types and their Arrow (and so Delta) counterparts.
//!
//! Every column is read through binary `COPY`. Types with a compact, stable binary form are
//! decoded from it directly (integers, floats, bool, numeric with precision and scale,
//! text-like types, bytea, date, time, timestamp, timestamptz, and 1-D arrays of these).
//! Types whose binary form is internal or version-dependent are cast to `text` in the
//! `COPY (SELECT ...)` query, so the server renders them and Confluo stores the canonical
//! text. The choices, and why:
//!
//! | PostgreSQL | Arrow | why |
//! |---|---|---|
//! | `int2/int4/int8` | `Int16/Int32/Int64` | exact |
//! | `numeric(p,s)`, p ≤ 38, 0 ≤ s ≤ p | `Decimal128(p,s)` | exact; `NaN` becomes null |
//! | `numeric` (no precision), or p > 38 | `Utf8` | an unconstrained numeric holds up to 131072 digits before the point and `NaN`/`Infinity`: no fixed decimal type holds every value, and a float would round, so the server's exact text is kept |
//! | `float4/float8` | `Float32/Float64` | exact (bits copied) |
//! | `bool` | `Boolean` | |
//! | `text/varchar/char(n)/name/citext/"char"` | `Utf8` | char(n) keeps its padding, as PostgreSQL sends it |
//! | `bytea` | `Binary` | |
//! | `date` | `Date32` | `±infinity` becomes null (no Arrow date is infinite; clamping would invent a date) and is counted in the snapshot's notes |
//! | `time` | `Utf8`, the server's text (`13:45:30.5`, `24:00:00`) | Delta has no time type, and `24:00:00`, a valid `time`, is no Arrow time of day: the exact text keeps every value and sorts in time order |
//! | `timestamp` | `Timestamp(µs)` | `±infinity` becomes null, as for dates |
//! | `timestamptz` | `Timestamp(µs, "UTC")` | the instant; PostgreSQL does not store the writer's zone |
//! | `interval` | `Utf8`, ISO 8601 (`P1Y2M3DT4H5M6S`) | months, days and microseconds do not convert to one duration (a month is not a fixed number of days); Arrow's month-day-nano interval has no Delta type, so the lossless ISO text is kept (the session sets `intervalstyle = iso_8601`) |
//! | `uuid` | `Utf8` | canonical lowercase text; Delta has no UUID type |
//! | `json/jsonb` | `Utf8` | the document text (jsonb in its normalised form) |
//! | enum | `Utf8` | the label |
//! | `inet/cidr/macaddr/macaddr8` | `Utf8` | canonical text |
//! | `money` | `Decimal128(19,2)` | money is an int8 count of cents (with the default `lc_monetary`); read through `::numeric` so a locale with other fractional digits fails loudly instead of scaling wrong |
//! | `timetz`, `xml`, `bit`, `varbit` | `Utf8` | canonical text |
//! | domain | its base type | a domain's values are its base type's values |
//! | 1-D array of the above | `List` | multi-dimensional arrays are an error naming the column |
//! | anything else (composite, range, geometry, tsvector, …) | error, or `Utf8` with `unsupported_types: text` | |

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, TimeUnit};

/// A column's type, resolved through domains to what is stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PgType {
    /// A non-array type.
    Scalar {
        /// `pg_type.typname` of the base type (e.g. `int4`, `numeric`, `my_enum`).
        name: String,
        /// `pg_type.typtype`: `b` base, `e` enum, `c` composite, `r` range, …
        kind: char,
        /// The type modifier (`atttypmod`), -1 when none.
        typmod: i32,
    },
    /// An array of an element type.
    Array(Box<PgType>),
}

impl PgType {
    /// A base type by name, without modifier.
    pub fn base(name: &str) -> Self {
        PgType::Scalar {
            name: name.to_string(),
            kind: 'b',
            typmod: -1,
        }
    }
}

/// How a column's values arrive in the binary COPY stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Wire {
    /// 1 byte.
    Bool,
    /// Big-endian i16.
    Int2,
    /// Big-endian i32.
    Int4,
    /// Big-endian i64.
    Int8,
    /// Big-endian f32 bits.
    Float4,
    /// Big-endian f64 bits.
    Float8,
    /// PostgreSQL's numeric (base-10000 digits), stored with `scale` fractional digits.
    Numeric {
        /// Decimal precision.
        precision: u8,
        /// Fractional digits.
        scale: i8,
    },
    /// UTF-8 text.
    Text,
    /// Raw bytes.
    Bytea,
    /// Days since 2000-01-01 (i32).
    Date,
    /// Microseconds since 2000-01-01 (i64), no zone.
    Timestamp,
    /// Microseconds since 2000-01-01 UTC (i64).
    Timestamptz,
    /// A 1-D array of elements.
    Array(Box<Wire>),
}

/// How one column is selected, decoded and typed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    /// The Arrow type of the column.
    pub arrow: DataType,
    /// How values are encoded in the COPY stream.
    pub wire: Wire,
    /// A cast applied in the SELECT (`text`, `text[]`, `numeric`), when the binary form of
    /// the type itself is not decoded.
    pub cast: Option<String>,
}

impl ColumnMapping {
    fn direct(arrow: DataType, wire: Wire) -> Self {
        ColumnMapping {
            arrow,
            wire,
            cast: None,
        }
    }

    /// Read as text through a `::text` cast.
    pub fn as_text() -> Self {
        ColumnMapping {
            arrow: DataType::Utf8,
            wire: Wire::Text,
            cast: Some("text".into()),
        }
    }
}

/// Precision and scale of a `numeric` type modifier, if it has one.
pub fn numeric_precision_scale(typmod: i32) -> Option<(i32, i32)> {
    if typmod < 4 {
        return None;
    }
    let t = typmod - 4;
    let precision = (t >> 16) & 0xffff;
    // PostgreSQL 15 allows a negative scale: the low 11 bits are a signed number.
    let scale = ((t & 0x7ff) ^ 1024) - 1024;
    Some((precision, scale))
}

/// The Arrow mapping of a type, or `None` when Confluo has none.
pub fn map_type(ty: &PgType) -> Option<ColumnMapping> {
    match ty {
        PgType::Array(elem) => {
            let inner = match elem.as_ref() {
                PgType::Array(_) => return None,
                scalar => map_type(scalar)?,
            };
            Some(ColumnMapping {
                arrow: DataType::List(Arc::new(Field::new("item", inner.arrow, true))),
                wire: Wire::Array(Box::new(inner.wire)),
                cast: inner.cast.map(|c| format!("{c}[]")),
            })
        }
        PgType::Scalar { name, kind, typmod } => {
            if *kind == 'e' {
                return Some(ColumnMapping::as_text());
            }
            if *kind != 'b' {
                return None;
            }
            let m = match name.as_str() {
                "bool" => ColumnMapping::direct(DataType::Boolean, Wire::Bool),
                "int2" => ColumnMapping::direct(DataType::Int16, Wire::Int2),
                "int4" => ColumnMapping::direct(DataType::Int32, Wire::Int4),
                "int8" => ColumnMapping::direct(DataType::Int64, Wire::Int8),
                "oid" | "xid" | "cid" => ColumnMapping {
                    arrow: DataType::Int64,
                    wire: Wire::Int8,
                    cast: Some("int8".into()),
                },
                "float4" => ColumnMapping::direct(DataType::Float32, Wire::Float4),
                "float8" => ColumnMapping::direct(DataType::Float64, Wire::Float8),
                "numeric" => match numeric_precision_scale(*typmod) {
                    Some((p, s)) if (1..=38).contains(&p) && (0..=p).contains(&s) => {
                        ColumnMapping::direct(
                            DataType::Decimal128(p as u8, s as i8),
                            Wire::Numeric {
                                precision: p as u8,
                                scale: s as i8,
                            },
                        )
                    }
                    _ => ColumnMapping::as_text(),
                },
                "money" => ColumnMapping {
                    arrow: DataType::Decimal128(19, 2),
                    wire: Wire::Numeric {
                        precision: 19,
                        scale: 2,
                    },
                    cast: Some("numeric".into()),
                },
                "text" | "varchar" | "bpchar" | "name" => {
                    ColumnMapping::direct(DataType::Utf8, Wire::Text)
                }
                "bytea" => ColumnMapping::direct(DataType::Binary, Wire::Bytea),
                "date" => ColumnMapping::direct(DataType::Date32, Wire::Date),
                "timestamp" => ColumnMapping::direct(
                    DataType::Timestamp(TimeUnit::Microsecond, None),
                    Wire::Timestamp,
                ),
                "timestamptz" => ColumnMapping::direct(
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    Wire::Timestamptz,
                ),
                // `time` runs to 24:00:00, which no Arrow time holds; Delta has no time type.
                "time" | "citext" | "char" | "interval" | "uuid" | "json" | "jsonb" | "inet"
                | "cidr" | "macaddr" | "macaddr8" | "timetz" | "xml" | "bit" | "varbit" => {
                    ColumnMapping::as_text()
                }
                _ => return None,
            };
            Some(m)
        }
    }
}

/// Whether a type can split a table into key ranges (a single-column integer key).
pub fn is_integer_key(ty: &PgType) -> bool {
    matches!(ty, PgType::Scalar { name, kind: 'b', .. } if matches!(name.as_str(), "int2" | "int4" | "int8"))
}

/// Quotes an identifier for SQL (`"` doubled).
pub fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Quotes a string literal for SQL (`'` doubled).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numeric_modifiers() {
        // numeric(10,2): typmod = ((10 << 16) | 2) + 4
        assert_eq!(numeric_precision_scale((10 << 16 | 2) + 4), Some((10, 2)));
        assert_eq!(numeric_precision_scale(-1), None);
        let m = map_type(&PgType::Scalar {
            name: "numeric".into(),
            kind: 'b',
            typmod: (38 << 16 | 10) + 4,
        })
        .unwrap();
        assert_eq!(m.arrow, DataType::Decimal128(38, 10));
        let m = map_type(&PgType::base("numeric")).unwrap();
        assert_eq!(m.arrow, DataType::Utf8);
        assert_eq!(m.cast.as_deref(), Some("text"));
        let m = map_type(&PgType::Scalar {
            name: "numeric".into(),
            kind: 'b',
            typmod: (50 << 16 | 2) + 4,
        })
        .unwrap();
        assert_eq!(m.arrow, DataType::Utf8);
    }

    #[test]
    fn arrays_and_unsupported() {
        let m = map_type(&PgType::Array(Box::new(PgType::base("uuid")))).unwrap();
        assert_eq!(m.cast.as_deref(), Some("text[]"));
        assert!(matches!(m.arrow, DataType::List(_)));
        assert!(map_type(&PgType::base("tsvector")).is_none());
        assert!(
            map_type(&PgType::Scalar {
                name: "addr".into(),
                kind: 'c',
                typmod: -1
            })
            .is_none()
        );
        assert_eq!(quote_ident("a\"b"), "\"a\"\"b\"");
    }
}
