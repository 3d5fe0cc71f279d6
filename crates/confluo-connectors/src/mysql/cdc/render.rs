//! Binlog row values in the text form the snapshot reads.
//!
//! The binlog carries values in the server's storage encoding (an ENUM as its index, a SET
//! as a bit mask, a TIMESTAMP as seconds since the epoch, a string in its column's
//! character set, geometry with its SRID in front). Rendering each into exactly the text
//! the snapshot's `SELECT` returns for the same column lets one parser
//! ([`crate::mysql::decode`]) build Arrow from both, so a row copied and the same row
//! streamed are equal to the bit.

use mysql_async::Value;
use mysql_async::binlog::value::BinlogValue;

use crate::mysql::discover::SourceColumn;
use crate::mysql::types::{ColumnMapping, Parse};

/// How one column's binlog values are rendered, derived once per table shape.
#[derive(Debug, Clone)]
pub struct ColumnRender {
    kind: Kind,
    parse: Parse,
}

#[derive(Debug, Clone)]
enum Kind {
    /// Integers: the width in bytes, and whether the column is unsigned (the binlog does
    /// not say, so a negative value of an unsigned column is re-read as unsigned).
    Integer { bytes: u8, unsigned: bool },
    /// Text in a character set that is not UTF-8 compatible.
    Latin1,
    /// Text already in UTF-8 (utf8mb4, utf8mb3, ascii) or bytes.
    Plain,
    /// ENUM labels by index (1-based in the binlog; 0 is the empty error value).
    Enum(Vec<String>),
    /// SET labels by bit.
    Set(Vec<String>),
    /// Geometry: the stored value is a 4-byte SRID followed by WKB.
    Geometry,
    /// `TIMESTAMP`: seconds since the epoch, rendered as UTC.
    Timestamp,
    /// `YEAR`: the binlog renders 0 (the zero year) as 1900.
    Year,
    /// `BIT(n)`: big-endian bytes, rendered as the unsigned number (`col + 0`).
    Bits,
    /// `TIME(fsp)`: rendered as the server prints it, with `fsp` fraction digits.
    Time { fsp: usize },
}

impl ColumnRender {
    /// How `column`, read through `mapping`, is rendered.
    pub fn new(column: &SourceColumn, mapping: &ColumnMapping) -> Self {
        let t = &column.resolved;
        let kind = match t.data_type.as_str() {
            "tinyint" => Kind::Integer {
                bytes: 1,
                unsigned: t.unsigned(),
            },
            "smallint" => Kind::Integer {
                bytes: 2,
                unsigned: t.unsigned(),
            },
            "mediumint" => Kind::Integer {
                bytes: 3,
                unsigned: t.unsigned(),
            },
            "int" | "integer" => Kind::Integer {
                bytes: 4,
                unsigned: t.unsigned(),
            },
            "bigint" => Kind::Integer {
                bytes: 8,
                unsigned: t.unsigned(),
            },
            "enum" => Kind::Enum(labels(&t.column_type)),
            "set" => Kind::Set(labels(&t.column_type)),
            "timestamp" => Kind::Timestamp,
            "year" => Kind::Year,
            "bit" => Kind::Bits,
            "time" => Kind::Time {
                fsp: fraction_digits(&t.column_type),
            },
            "geometry" | "point" | "linestring" | "polygon" | "multipoint" | "multilinestring"
            | "multipolygon" | "geometrycollection" | "geomcollection" => Kind::Geometry,
            _ if column
                .charset
                .as_deref()
                .is_some_and(|c| c.eq_ignore_ascii_case("latin1")) =>
            {
                Kind::Latin1
            }
            _ => Kind::Plain,
        };
        ColumnRender {
            kind,
            parse: mapping.parse,
        }
    }

    /// The value's text (or bytes, for binary columns); `None` for NULL.
    pub fn render(&self, value: &BinlogValue<'_>) -> Result<Option<Vec<u8>>, String> {
        let v = match value {
            BinlogValue::Value(v) => v,
            BinlogValue::Jsonb(j) => {
                // MySQL's binary JSON; MariaDB stores JSON as text and never sends this.
                let json = serde_json::Value::try_from(j.clone())
                    .map_err(|e| format!("binary JSON: {e}"))?;
                return Ok(Some(json.to_string().into_bytes()));
            }
            BinlogValue::JsonDiff(_) => {
                return Err("a partial JSON update (binlog_row_value_options=PARTIAL_JSON) carries no whole value; turn that option off".into());
            }
        };
        let text = match (v, &self.kind) {
            (Value::NULL, _) => return Ok(None),
            (Value::Int(i), Kind::Integer { bytes, unsigned }) => {
                if *unsigned && *i < 0 {
                    let bits = 8 * u32::from(*bytes);
                    let u = if bits == 64 {
                        *i as u64
                    } else {
                        (*i as u64) & ((1u64 << bits) - 1)
                    };
                    u.to_string()
                } else if !*unsigned && *bytes < 8 && *i >= 1i64 << (8 * u32::from(*bytes) - 1) {
                    // Read without the sign (the driver reads MEDIUMINT as unsigned when
                    // the table map carries no signedness): restore it.
                    (*i - (1i64 << (8 * u32::from(*bytes)))).to_string()
                } else {
                    i.to_string()
                }
            }
            (Value::Int(i), Kind::Enum(labels)) => match usize::try_from(*i) {
                Ok(0) => String::new(),
                Ok(n) if n <= labels.len() => labels[n - 1].clone(),
                _ => return Err(format!("ENUM index {i} is out of range")),
            },
            (Value::Int(i), _) => i.to_string(),
            (Value::UInt(u), _) => u.to_string(),
            (Value::Float(f), _) => f.to_string(),
            (Value::Double(d), _) => d.to_string(),
            (Value::Bytes(b), Kind::Set(labels)) => {
                let mut mask = 0u64;
                for (i, byte) in b.iter().enumerate().take(8) {
                    mask |= u64::from(*byte) << (8 * i);
                }
                labels
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| mask & (1 << i) != 0)
                    .map(|(_, l)| l.as_str())
                    .collect::<Vec<_>>()
                    .join(",")
            }
            (Value::Bytes(b), Kind::Bits) => {
                let mut n = 0u64;
                for byte in b.iter() {
                    n = (n << 8) | u64::from(*byte);
                }
                n.to_string()
            }
            (Value::Bytes(b), Kind::Geometry) => {
                return Ok(Some(b.get(4..).unwrap_or_default().to_vec()));
            }
            (Value::Bytes(b), Kind::Timestamp) => {
                let s = std::str::from_utf8(b).map_err(|_| "TIMESTAMP is not text")?;
                let (secs, micros) = s.split_once('.').unwrap_or((s, "0"));
                let secs: i64 = secs.parse().map_err(|_| format!("TIMESTAMP `{s}`"))?;
                let micros: u32 = micros.parse().map_err(|_| format!("TIMESTAMP `{s}`"))?;
                if secs == 0 && micros == 0 {
                    "0000-00-00 00:00:00".to_string()
                } else {
                    let t = chrono::DateTime::from_timestamp(secs, micros * 1000)
                        .ok_or_else(|| format!("TIMESTAMP `{s}` is out of range"))?;
                    t.naive_utc().format("%Y-%m-%d %H:%M:%S%.6f").to_string()
                }
            }
            (Value::Bytes(b), Kind::Year) => {
                if b.as_slice() == b"1900" {
                    "0".to_string()
                } else {
                    return Ok(Some(b.clone()));
                }
            }
            (Value::Bytes(b), Kind::Latin1) => {
                // MySQL's latin1 is Windows-1252.
                let (s, _, _) = encoding_rs::WINDOWS_1252.decode(b);
                s.into_owned()
            }
            (Value::Bytes(b), _) => return Ok(Some(b.clone())),
            (Value::Date(y, mo, d, h, mi, s, us), _) => match self.parse {
                Parse::Date => format!("{y:04}-{mo:02}-{d:02}"),
                _ => format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02}.{us:06}"),
            },
            (Value::Time(neg, days, h, m, s, us), kind) => {
                let hours = u64::from(*days) * 24 + u64::from(*h);
                let sign = if *neg { "-" } else { "" };
                let mut text = format!("{sign}{hours:02}:{m:02}:{s:02}");
                let fsp = match kind {
                    Kind::Time { fsp } => *fsp,
                    _ => 6,
                };
                if fsp > 0 {
                    let digits = format!("{us:06}");
                    text.push('.');
                    text.push_str(&digits[..fsp.min(6)]);
                }
                text
            }
        };
        Ok(Some(text.into_bytes()))
    }
}

/// The fraction digits of `time(3)` (0 for `time`).
fn fraction_digits(column_type: &str) -> usize {
    column_type
        .split_once('(')
        .and_then(|(_, rest)| rest.split_once(')'))
        .and_then(|(n, _)| n.trim().parse().ok())
        .unwrap_or(0)
}

/// The labels of `enum('a','b')` or `set('x','y')`, unquoted.
fn labels(column_type: &str) -> Vec<String> {
    let Some(open) = column_type.find('(') else {
        return Vec::new();
    };
    let body = column_type[open + 1..]
        .strip_suffix(')')
        .unwrap_or(&column_type[open + 1..]);
    let mut out = Vec::new();
    let mut chars = body.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '\'' {
            continue;
        }
        let mut label = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\'' if chars.peek() == Some(&'\'') => {
                    chars.next();
                    label.push('\'');
                }
                '\'' => break,
                '\\' => {
                    if let Some(n) = chars.next() {
                        label.push(n);
                    }
                }
                c => label.push(c),
            }
        }
        out.push(label);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mysql::types::{MyType, map_type};

    fn column(data_type: &str, column_type: &str, charset: Option<&str>) -> ColumnRender {
        let c = SourceColumn {
            name: "c".into(),
            mysql_type: column_type.into(),
            resolved: MyType {
                data_type: data_type.into(),
                column_type: column_type.into(),
                charset: charset.map(str::to_string),
                ..MyType::default()
            },
            charset: charset.map(str::to_string),
            nullable: true,
            ordinal: 1,
        };
        let m = map_type(&c.resolved).unwrap();
        ColumnRender::new(&c, &m)
    }

    fn text(r: &ColumnRender, v: Value) -> String {
        String::from_utf8(r.render(&BinlogValue::Value(v)).unwrap().unwrap()).unwrap()
    }

    #[test]
    fn storage_forms_become_the_snapshot_text() {
        let u8c = column("tinyint", "tinyint(3) unsigned", None);
        assert_eq!(text(&u8c, Value::Int(-1)), "255");
        let i24 = column("mediumint", "mediumint(9)", None);
        assert_eq!(text(&i24, Value::Int(8388608)), "-8388608");
        assert_eq!(text(&i24, Value::Int(-5)), "-5");
        let u64c = column("bigint", "bigint(20) unsigned", None);
        assert_eq!(text(&u64c, Value::Int(-1)), "18446744073709551615");
        let e = column("enum", "enum('a','it''s')", Some("utf8mb4"));
        assert_eq!(text(&e, Value::Int(2)), "it's");
        let s = column("set", "set('x','y','z')", Some("utf8mb4"));
        assert_eq!(text(&s, Value::Bytes(vec![0b101])), "x,z");
        let ts = column("timestamp", "timestamp(6)", None);
        assert_eq!(
            text(&ts, Value::Bytes(b"1700000000.500000".to_vec())),
            "2023-11-14 22:13:20.500000"
        );
        let bit = column("bit", "bit(10)", None);
        assert_eq!(text(&bit, Value::Bytes(vec![1, 2])), "258");
        let l1 = column("varchar", "varchar(5)", Some("latin1"));
        assert_eq!(
            text(&l1, Value::Bytes(vec![0x63, 0x61, 0x66, 0xe9])),
            "café"
        );
        let t = column("time", "time(6)", None);
        assert_eq!(
            text(&t, Value::Time(true, 1, 2, 3, 4, 5)),
            "-26:03:04.000005"
        );
        let t0 = column("time", "time", None);
        assert_eq!(
            text(&t0, Value::Time(false, 34, 22, 59, 59, 0)),
            "838:59:59"
        );
        let t1 = column("time", "time(1)", None);
        assert_eq!(
            text(&t1, Value::Time(false, 0, 1, 2, 3, 500_000)),
            "01:02:03.5"
        );
        let d = column("date", "date", None);
        assert_eq!(text(&d, Value::Date(0, 0, 0, 0, 0, 0, 0)), "0000-00-00");
    }
}
