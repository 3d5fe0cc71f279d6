//! MySQL / MariaDB types and their Arrow (and so Delta) counterparts.
//!
//! Every row is read over the text protocol (`COM_QUERY`): the server renders each value
//! as text (binary strings as their bytes), and Confluo parses that text into Arrow. This
//! keeps the driver out of value decoding, so values it would reject (zero dates such as
//! `0000-00-00`, `TIME` beyond 24 h) reach Confluo, which decides what to do with them.
//! The choices, and why:
//!
//! | MySQL | Arrow | why |
//! |---|---|---|
//! | `TINYINT/SMALLINT/MEDIUMINT/INT/BIGINT` | `Int8/Int16/Int32/Int32/Int64` | exact |
//! | `TINYINT/SMALLINT/MEDIUMINT/INT UNSIGNED` | `Int16/Int32/Int32/Int64` | the next wider signed type holds every value; Delta has no unsigned types |
//! | `BIGINT UNSIGNED` | `Decimal128(20,0)` | no signed integer holds 18446744073709551615; Delta has no `UInt64`, a decimal keeps every value exact |
//! | `BOOL` / `TINYINT(1)` | `Int8` | `BOOL` is an alias of `TINYINT(1)`, which holds -128..127: a Boolean would lose values |
//! | `BIT(n)`, n < 64 | `Int64` | the bits as an unsigned number (`col + 0`) |
//! | `BIT(64)` | `Decimal128(20,0)` | as `BIGINT UNSIGNED`: no signed integer holds every value |
//! | `DECIMAL(p,s)`, p ≤ 38 | `Decimal128(p,s)` | exact |
//! | `DECIMAL(p,s)`, p > 38 | `Utf8` | MySQL allows 65 digits; no Delta decimal holds them, the exact text is kept |
//! | `FLOAT/DOUBLE` | `Float32/Float64` | exact: `FLOAT` is read through `CAST(col AS DOUBLE)`, since the server renders a FLOAT with only 6 significant digits; DOUBLE text round-trips |
//! | `CHAR/VARCHAR/TEXT` | `Utf8` | columns not in utf8mb4 (latin1, …) are read through `CONVERT(col USING utf8mb4)` so the server re-encodes them |
//! | `ENUM/SET` | `Utf8` | the label(s), as MySQL renders them (`a,b` for a set) |
//! | `JSON` | `Utf8` | the document text (MariaDB stores JSON as `LONGTEXT`) |
//! | `BINARY/VARBINARY/BLOB` | `Binary` | the bytes |
//! | `GEOMETRY` (and `POINT`, `POLYGON`, …) | `Binary`, WKB; EWKB (PostGIS's extended WKB, with the SRID) when the SRID is not 0 | read in the server's storage form (SRID + WKB, the same bytes the binlog carries) and converted, so the SRID is kept and a streamed value equals the copied one; GEOS, Shapely and PostGIS read both forms |
//! | `DATE` | `Date32` | zero dates (`0000-00-00`) and dates with a zero part (`2024-00-10`) become null and are counted in the snapshot's notes: they are no date |
//! | `DATETIME(fsp)` | `Timestamp(µs)` | the wall-clock value, no zone; zero dates become null and are counted |
//! | `TIMESTAMP(fsp)` | `Timestamp(µs, "UTC")` | an instant: the session time zone is UTC, so the server renders it in UTC |
//! | `TIME(fsp)` | `Utf8`, the server's text `[-]HH[H]:MM:SS[.f…]` with `fsp` fraction digits (`-838:59:59`, `100:00:00.5` for `TIME(1)`) | MySQL `TIME` is a duration (-838:59:59..838:59:59), not a time of day: no Arrow time type holds negative or 24 h+ values, Delta has no time or duration type, and a count of microseconds would not read as a time; the exact text keeps every value and sorts as the server prints it. The binlog's values are rendered into the same text |
//! | `YEAR` | `Int16` | |
//! | anything else (MariaDB `UUID`/`INET6`/`INET4`, MySQL `VECTOR`, …) | error, or `Utf8` with `unsupported_types: text` (`CAST(col AS CHAR)`) | |

use arrow::datatypes::{DataType, TimeUnit};

/// A column's type as `information_schema.COLUMNS` describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct MyType {
    /// `DATA_TYPE`, lowercase (`int`, `varchar`, `datetime`, …).
    pub data_type: String,
    /// `COLUMN_TYPE`, lowercase (`int(10) unsigned`, `enum('a','b')`, …).
    pub column_type: String,
    /// `NUMERIC_PRECISION`.
    pub precision: Option<u32>,
    /// `NUMERIC_SCALE`.
    pub scale: Option<u32>,
    /// `CHARACTER_SET_NAME` (None for non-text columns).
    pub charset: Option<String>,
}

impl MyType {
    /// Whether the column is declared `UNSIGNED`.
    pub fn unsigned(&self) -> bool {
        self.column_type.contains("unsigned")
    }
}

/// How a value's text becomes an Arrow value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parse {
    /// A signed integer into the Arrow integer type of the column.
    Int,
    /// An unsigned 64-bit integer into `Decimal128(20,0)`.
    BigUnsigned,
    /// An unsigned 64-bit integer whose bits are stored as `Int64` (`BIT(n)`).
    Bits,
    /// A decimal into `Decimal128(p,s)`.
    Decimal,
    /// A float.
    Float,
    /// Text (already utf8mb4).
    Text,
    /// Raw bytes.
    Bytes,
    /// `YYYY-MM-DD`.
    Date,
    /// `YYYY-MM-DD HH:MM:SS[.ffffff]`.
    DateTime,
    /// `[-]HHH:MM:SS[.ffffff]`, kept as the text the server prints.
    Time,
    /// A geometry's storage form (4-byte little-endian SRID, then WKB), stored as WKB, or
    /// EWKB when the SRID is not 0.
    Geometry,
}

/// How one column is read: its Arrow type, how its text is parsed, and the expression
/// selected for it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnMapping {
    /// The Arrow type of the column.
    pub arrow: DataType,
    /// How the value's text is parsed.
    pub parse: Parse,
    /// The SELECT expression, with `{}` standing for the quoted column name.
    pub select: &'static str,
}

impl ColumnMapping {
    fn plain(arrow: DataType, parse: Parse) -> Self {
        ColumnMapping {
            arrow,
            parse,
            select: "{}",
        }
    }

    /// Read as text through `CAST(col AS CHAR)` (for `unsupported_types: text`).
    pub fn as_text() -> Self {
        ColumnMapping {
            arrow: DataType::Utf8,
            parse: Parse::Text,
            select: "CAST({} AS CHAR)",
        }
    }

    /// The SELECT expression for column `name`.
    pub fn select_expr(&self, name: &str) -> String {
        self.select.replace("{}", &quote_ident(name))
    }
}

/// The Arrow mapping of a MySQL type, or `None` when Confluo has none.
pub fn map_type(t: &MyType) -> Option<ColumnMapping> {
    use DataType as D;
    let unsigned = t.unsigned();
    let m = match t.data_type.as_str() {
        "tinyint" => ColumnMapping::plain(if unsigned { D::Int16 } else { D::Int8 }, Parse::Int),
        "smallint" => ColumnMapping::plain(if unsigned { D::Int32 } else { D::Int16 }, Parse::Int),
        "mediumint" => ColumnMapping::plain(D::Int32, Parse::Int),
        "int" | "integer" => {
            ColumnMapping::plain(if unsigned { D::Int64 } else { D::Int32 }, Parse::Int)
        }
        "bigint" if unsigned => ColumnMapping::plain(D::Decimal128(20, 0), Parse::BigUnsigned),
        "bigint" => ColumnMapping::plain(D::Int64, Parse::Int),
        "bit" if t.precision.unwrap_or(1) >= 64 => ColumnMapping {
            arrow: D::Decimal128(20, 0),
            parse: Parse::BigUnsigned,
            select: "({} + 0)",
        },
        "bit" => ColumnMapping {
            arrow: D::Int64,
            parse: Parse::Bits,
            select: "({} + 0)",
        },
        "decimal" | "numeric" => {
            let p = t.precision.unwrap_or(10);
            let s = t.scale.unwrap_or(0);
            if (1..=38).contains(&p) && s <= p {
                ColumnMapping::plain(D::Decimal128(p as u8, s as i8), Parse::Decimal)
            } else {
                ColumnMapping::plain(D::Utf8, Parse::Text)
            }
        }
        // The server renders FLOAT with 6 significant digits; as DOUBLE its text holds
        // the exact single-precision value.
        "float" => ColumnMapping {
            arrow: D::Float32,
            parse: Parse::Float,
            select: "CAST({} AS DOUBLE)",
        },
        "double" | "real" => ColumnMapping::plain(D::Float64, Parse::Float),
        "char" | "varchar" | "tinytext" | "text" | "mediumtext" | "longtext" | "enum" | "set"
        | "json" => {
            let utf8mb4 = t
                .charset
                .as_deref()
                .is_none_or(|c| c.eq_ignore_ascii_case("utf8mb4"));
            ColumnMapping {
                arrow: D::Utf8,
                parse: Parse::Text,
                select: if utf8mb4 {
                    "{}"
                } else {
                    "CONVERT({} USING utf8mb4)"
                },
            }
        }
        "binary" | "varbinary" | "tinyblob" | "blob" | "mediumblob" | "longblob" => {
            ColumnMapping::plain(D::Binary, Parse::Bytes)
        }
        "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
        | "multipolygon" | "geometrycollection" | "geomcollection" => {
            ColumnMapping::plain(D::Binary, Parse::Geometry)
        }
        "date" => ColumnMapping::plain(D::Date32, Parse::Date),
        "datetime" => {
            ColumnMapping::plain(D::Timestamp(TimeUnit::Microsecond, None), Parse::DateTime)
        }
        "timestamp" => ColumnMapping::plain(
            D::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Parse::DateTime,
        ),
        "time" => ColumnMapping::plain(D::Utf8, Parse::Time),
        "year" => ColumnMapping::plain(D::Int16, Parse::Int),
        _ => return None,
    };
    Some(m)
}

/// Whether a column of this type can split a table into key ranges (an integer that fits
/// `BIGINT`).
pub fn is_integer_key(t: &MyType) -> bool {
    match t.data_type.as_str() {
        "tinyint" | "smallint" | "mediumint" | "int" | "integer" => true,
        "bigint" => !t.unsigned(),
        _ => false,
    }
}

/// `` `name` ``, with backticks doubled.
pub fn quote_ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// `'text'` as a MySQL string literal (quotes and backslashes escaped).
pub fn quote_literal(text: &str) -> String {
    format!("'{}'", text.replace('\\', "\\\\").replace('\'', "''"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(data_type: &str, column_type: &str) -> MyType {
        MyType {
            data_type: data_type.into(),
            column_type: column_type.into(),
            ..MyType::default()
        }
    }

    #[test]
    fn integers_widen_when_unsigned() {
        assert_eq!(
            map_type(&t("tinyint", "tinyint(4)")).unwrap().arrow,
            DataType::Int8
        );
        assert_eq!(
            map_type(&t("int", "int(10) unsigned")).unwrap().arrow,
            DataType::Int64
        );
        assert_eq!(
            map_type(&t("bigint", "bigint(20) unsigned")).unwrap().arrow,
            DataType::Decimal128(20, 0)
        );
        assert!(map_type(&t("uuid", "uuid")).is_none());
    }

    #[test]
    fn latin1_is_converted() {
        let mut ty = t("varchar", "varchar(10)");
        ty.charset = Some("latin1".into());
        assert_eq!(
            map_type(&ty).unwrap().select_expr("a`b"),
            "CONVERT(`a``b` USING utf8mb4)"
        );
        assert_eq!(quote_literal("it's \\"), "'it''s \\\\'");
    }
}
