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
    /// Text in a character set that is not UTF-8 compatible, decoded as the server's
    /// `CONVERT(col USING utf8mb4)` does.
    Encoded(&'static encoding_rs::Encoding),
    /// `utf32` text: four big-endian bytes per character (encoding_rs has no UTF-32).
    Utf32,
    /// Text in a character set Confluo cannot re-encode (`dec8`, `armscii8`, …): ASCII
    /// passes, anything else is an error naming the character set.
    Unsupported(String),
    /// Text already in UTF-8 (utf8mb4, utf8mb3, ascii) or bytes.
    Plain,
    /// ENUM labels by index (1-based in the binlog; 0 is the empty error value).
    Enum(Vec<String>),
    /// SET labels by bit.
    Set(Vec<String>),
    /// `TIMESTAMP`: seconds since the epoch, rendered as UTC.
    Timestamp,
    /// `YEAR`: the binlog renders 0 (the zero year) as 1900.
    Year,
    /// `BIT(n)`: big-endian bytes, rendered as the unsigned number (`col + 0`).
    Bits,
    /// `TIME(fsp)`: rendered as the server prints it, with `fsp` fraction digits.
    Time { fsp: usize },
    /// MariaDB `UUID`: 16 bytes in text order, rendered `xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx`.
    Uuid,
    /// MariaDB `INET6`: 16 bytes, rendered as the server prints it (see [`inet6_text`]).
    Inet6,
    /// MariaDB `INET4`: 4 bytes, rendered dotted.
    Inet4,
    /// `BINARY(n)`: the binlog leaves out trailing zero bytes, which the value has.
    FixedBinary(usize),
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
            "binary" => Kind::FixedBinary(fraction_digits(&t.column_type).max(1)),
            "uuid" => Kind::Uuid,
            "inet6" => Kind::Inet6,
            "inet4" => Kind::Inet4,
            _ => match column.charset.as_deref().map(str::to_ascii_lowercase) {
                Some(c) if c == "utf32" => Kind::Utf32,
                Some(c) => match text_encoding(&c) {
                    Ok(Some(e)) => Kind::Encoded(e),
                    Ok(None) => Kind::Plain,
                    Err(()) => Kind::Unsupported(c),
                },
                None => Kind::Plain,
            },
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
            (Value::Bytes(b), Kind::FixedBinary(n)) => {
                let mut b = b.clone();
                if b.len() < *n {
                    b.resize(*n, 0);
                }
                return Ok(Some(b));
            }
            (Value::Bytes(b), Kind::Uuid) => {
                let b = zero_padded::<16>(b, "UUID")?;
                let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
                format!(
                    "{}-{}-{}-{}-{}",
                    &hex[..8],
                    &hex[8..12],
                    &hex[12..16],
                    &hex[16..20],
                    &hex[20..]
                )
            }
            (Value::Bytes(b), Kind::Inet6) => inet6_text(&zero_padded::<16>(b, "INET6")?),
            (Value::Bytes(b), Kind::Inet4) => {
                let [a, b, c, d] = zero_padded::<4>(b, "INET4")?;
                format!("{a}.{b}.{c}.{d}")
            }
            (Value::Bytes(b), Kind::Encoded(e)) => {
                let (s, _) = e.decode_without_bom_handling(b);
                s.into_owned()
            }
            (Value::Bytes(b), Kind::Utf32) => b
                .chunks(4)
                .map(|c| {
                    let mut w = [0u8; 4];
                    w[4 - c.len()..].copy_from_slice(c);
                    char::from_u32(u32::from_be_bytes(w)).unwrap_or('\u{fffd}')
                })
                .collect(),
            (Value::Bytes(b), Kind::Unsupported(charset)) if !b.is_ascii() => {
                return Err(format!(
                    "text in character set `{charset}`, which change capture cannot convert to UTF-8\n  hint: convert the column to utf8mb4 (ALTER TABLE ... MODIFY ... CHARACTER SET utf8mb4)"
                ));
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

/// How text of MySQL character set `charset` becomes UTF-8: `None` when it already is
/// (utf8mb4, utf8mb3, ascii, binary), the encoding the server's conversion matches
/// otherwise, `Err` for character sets with no counterpart here.
fn text_encoding(charset: &str) -> Result<Option<&'static encoding_rs::Encoding>, ()> {
    use encoding_rs as e;
    Ok(Some(match charset {
        "utf8mb4" | "utf8mb3" | "utf8" | "ascii" | "binary" => return Ok(None),
        // MySQL's latin1 is Windows-1252, with 0x81, 0x8D, 0x8F, 0x90, 0x9D as the C1
        // controls of the same code, exactly as the WHATWG decoder reads them.
        "latin1" => e::WINDOWS_1252,
        "latin2" => e::ISO_8859_2,
        "latin5" => e::WINDOWS_1254,
        "latin7" => e::ISO_8859_13,
        "cp1250" => e::WINDOWS_1250,
        "cp1251" => e::WINDOWS_1251,
        "cp1256" => e::WINDOWS_1256,
        "cp1257" => e::WINDOWS_1257,
        "cp866" => e::IBM866,
        "greek" => e::ISO_8859_7,
        "hebrew" => e::ISO_8859_8,
        "koi8r" => e::KOI8_R,
        "koi8u" => e::KOI8_U,
        "macroman" => e::MACINTOSH,
        "tis620" => e::WINDOWS_874,
        "sjis" | "cp932" => e::SHIFT_JIS,
        "ujis" | "eucjpms" => e::EUC_JP,
        "euckr" => e::EUC_KR,
        "gbk" | "gb2312" => e::GBK,
        "gb18030" => e::GB18030,
        "big5" => e::BIG5,
        "ucs2" | "utf16" => e::UTF_16BE,
        "utf16le" => e::UTF_16LE,
        _ => return Err(()),
    }))
}

/// A fixed-size binary value, whose trailing zero bytes the binlog leaves out.
fn zero_padded<const N: usize>(b: &[u8], what: &str) -> Result<[u8; N], String> {
    if b.len() > N {
        return Err(format!("{what} of {} bytes", b.len()));
    }
    let mut out = [0u8; N];
    out[..b.len()].copy_from_slice(b);
    Ok(out)
}

/// An IPv6 address as MariaDB (and MySQL's `INET6_NTOA`) prints it: groups in lower-case
/// hex without leading zeros, the longest run of zero groups (even a single one; the first
/// of equal runs) written `::`, and IPv4-compatible (`::a.b.c.d`) and IPv4-mapped
/// (`::ffff:a.b.c.d`) addresses with their last four bytes dotted. Not RFC 5952 in every
/// case (which never shortens one zero group), but what the snapshot reads.
fn inet6_text(b: &[u8; 16]) -> String {
    let words: Vec<u16> = b
        .chunks_exact(2)
        .map(|w| u16::from_be_bytes([w[0], w[1]]))
        .collect();
    // The longest run of zero words: (start, length).
    let mut gap: Option<(usize, usize)> = None;
    let mut run: Option<(usize, usize)> = None;
    for (i, w) in words.iter().enumerate() {
        if *w == 0 {
            run = Some(run.map_or((i, 1), |(p, n)| (p, n + 1)));
        } else if let Some(r) = run.take()
            && gap.is_none_or(|g| r.1 > g.1)
        {
            gap = Some(r);
        }
    }
    if let Some(r) = run
        && gap.is_none_or(|g| r.1 > g.1)
    {
        gap = Some(r);
    }
    let mut out = String::new();
    let mut i = 0;
    while i < 8 {
        match gap {
            Some((p, n)) if p == i => {
                if i == 0 {
                    out.push(':');
                }
                out.push(':');
                i += n;
                continue;
            }
            Some((0, n)) if i == 6 && (n == 6 || (n == 5 && words[5] == 0xffff)) => {
                out.push_str(&format!("{}.{}.{}.{}", b[12], b[13], b[14], b[15]));
                return out;
            }
            _ => {
                out.push_str(&format!("{:x}", words[i]));
                if i != 7 {
                    out.push(':');
                }
            }
        }
        i += 1;
    }
    out
}

/// The number in a type's parentheses: the fraction digits of `time(3)` (0 for `time`), the
/// length of `binary(16)`.
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
        let w = column("varchar", "varchar(5)", Some("cp1251"));
        assert_eq!(text(&w, Value::Bytes(vec![0xcf, 0xf0, 0xe8])), "При");
        let u32c = column("varchar", "varchar(5)", Some("utf32"));
        assert_eq!(text(&u32c, Value::Bytes(vec![0, 1, 0xf6, 0])), "😀");
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

    #[test]
    fn inet6_is_printed_as_mariadb_prints_it() {
        let ip = |hex: &str| {
            let mut b = [0u8; 16];
            for (i, x) in b.iter_mut().enumerate() {
                *x = u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap();
            }
            inet6_text(&b)
        };
        assert_eq!(ip("00000000000000000000ffff01020304"), "::ffff:1.2.3.4");
        assert_eq!(ip("00000000000000000000000001020304"), "::1.2.3.4");
        assert_eq!(ip("20010db8000000000000000000000001"), "2001:db8::1");
        assert_eq!(ip("00000000000000000000000000000001"), "::1");
        assert_eq!(ip("00000000000000000000000000000000"), "::");
        assert_eq!(ip("00010000000200030004000500060007"), "1::2:3:4:5:6:7");
        assert_eq!(ip("00010000000000020000000000000003"), "1:0:0:2::3");
        assert_eq!(ip("fe800000000000000000000000000000"), "fe80::");
    }
}
