//! Comparing Arrow types the way a Delta table stores them: the one comparison every reader
//! and writer uses (file ingest and its schema evolution, snapshot re-syncs, change apply,
//! AUTO CDC, MERGE), and the SQL-style names messages print.
//!
//! Delta keeps a column's logical type, not Arrow's physical choices: strings and binaries
//! of any Arrow width or view, dictionaries as their values, timestamps in microseconds, and
//! no names for a list's element or a map's entries. What it does keep — nullability of
//! nested values and fields, struct field names, decimal precision and scale, whether a
//! timestamp has a time zone — is what [`mismatch`] reports.

use arrow::datatypes::{DataType, Field};

/// Where a value of type `incoming` does not fit a table column of type `table` as it is
/// (no cast beyond Arrow's physical form), in words naming the nested place; `None` when it
/// fits. A non-null incoming value fits a nullable table value, not the other way round.
pub fn mismatch(table: &DataType, incoming: &DataType) -> Option<String> {
    mismatch_at(table, incoming, "")
}

/// Whether `incoming` fits `table` as it is ([`mismatch`] finds nothing).
pub fn same_stored_type(table: &DataType, incoming: &DataType) -> bool {
    mismatch(table, incoming).is_none()
}

fn at(path: &str, what: &str) -> String {
    if path.is_empty() {
        what.to_string()
    } else {
        format!("{path} {what}")
    }
}

fn nested(path: &str, name: &str) -> String {
    if path.is_empty() {
        format!("field `{name}`")
    } else {
        format!("{path}, field `{name}`")
    }
}

/// The type without its Arrow-only physical choices.
fn logical(dt: &DataType) -> &DataType {
    match dt {
        DataType::Dictionary(_, v) => logical(v),
        other => other,
    }
}

fn child(table: &Field, incoming: &Field, path: String) -> Option<String> {
    if !table.is_nullable() && incoming.is_nullable() {
        return Some(format!(
            "{path} may be null here but is NOT NULL in the table"
        ));
    }
    mismatch_at(table.data_type(), incoming.data_type(), &path)
}

fn mismatch_at(table: &DataType, incoming: &DataType, path: &str) -> Option<String> {
    use DataType::*;
    let (t, i) = (logical(table), logical(incoming));
    let differ = || {
        Some(at(
            path,
            &format!("{} here but {} in the table", type_name(i), type_name(t)),
        ))
    };
    match (t, i) {
        (Utf8 | LargeUtf8 | Utf8View, Utf8 | LargeUtf8 | Utf8View)
        | (Binary | LargeBinary | BinaryView, Binary | LargeBinary | BinaryView) => None,
        (Timestamp(_, tz_t), Timestamp(_, tz_i)) => match (tz_t, tz_i) {
            (Some(_), Some(_)) | (None, None) => None,
            (Some(_), None) => Some(at(
                path,
                "has no time zone here (TIMESTAMP_NTZ) but is an instant (TIMESTAMP) in the table",
            )),
            (None, Some(_)) => Some(at(
                path,
                "is an instant (TIMESTAMP) here but has no time zone (TIMESTAMP_NTZ) in the table",
            )),
        },
        (Decimal128(p1, s1), Decimal32(p2, s2) | Decimal64(p2, s2) | Decimal128(p2, s2))
            if p1 == p2 && s1 == s2 =>
        {
            None
        }
        (Decimal128(..), Decimal32(..) | Decimal64(..) | Decimal128(..)) => Some(at(
            path,
            &format!(
                "has precision and scale {} here but {} in the table",
                type_name(i),
                type_name(t)
            ),
        )),
        (
            List(ft) | LargeList(ft) | FixedSizeList(ft, _),
            List(fi) | LargeList(fi) | FixedSizeList(fi, _),
        ) => child(ft, fi, at(path, "element")),
        (Map(et, _), Map(ei, _)) => match (et.data_type(), ei.data_type()) {
            (Struct(kt), Struct(ki)) if kt.len() == 2 && ki.len() == 2 => {
                child(&kt[0], &ki[0], at(path, "map key"))
                    .or_else(|| child(&kt[1], &ki[1], at(path, "map value")))
            }
            _ => differ(),
        },
        (Struct(ft), Struct(fi)) => {
            for f in fi.iter() {
                let Some(tf) = ft
                    .iter()
                    .find(|t| t.name() == f.name())
                    .or_else(|| ft.iter().find(|t| t.name().eq_ignore_ascii_case(f.name())))
                else {
                    return Some(format!(
                        "{} is not in the table's struct",
                        nested(path, f.name())
                    ));
                };
                if let Some(m) = child(tf, f, nested(path, tf.name())) {
                    return Some(m);
                }
            }
            ft.iter()
                .filter(|t| !t.is_nullable())
                .find(|t| !fi.iter().any(|f| f.name().eq_ignore_ascii_case(t.name())))
                .map(|t| format!("{} (NOT NULL) is missing here", nested(path, t.name())))
        }
        (a, b) if a == b => None,
        _ => differ(),
    }
}

/// Whether every value of `from` is a value of `to` after a cast (so a table of type `to`
/// takes `from` without a schema change): integers into wider integers, floats and
/// decimals that hold them, decimals into decimals with as many digits on both sides of
/// the point, dates into timestamps, and lists and structs whose parts do.
pub fn can_cast_losslessly(from: &DataType, to: &DataType) -> bool {
    use DataType::*;
    if same_stored_type(to, from) {
        return true;
    }
    match (logical(from), logical(to)) {
        (Int8, Int16 | Int32 | Int64 | Float32 | Float64)
        | (Int16, Int32 | Int64 | Float32 | Float64)
        | (Int32, Int64 | Float64)
        | (Int64, Decimal128(..))
        | (Float32, Float64)
        | (Null, _)
        | (Date32, Timestamp(..)) => true,
        (Decimal128(p1, s1), Decimal128(p2, s2)) => {
            s2 >= s1 && (*p2 as i16 - *s2 as i16) >= (*p1 as i16 - *s1 as i16)
        }
        (List(a) | LargeList(a), List(b) | LargeList(b)) => {
            (b.is_nullable() || !a.is_nullable())
                && can_cast_losslessly(a.data_type(), b.data_type())
        }
        (Struct(a), Struct(b)) => a.iter().all(|fa| {
            b.iter()
                .find(|fb| fb.name().eq_ignore_ascii_case(fa.name()))
                .is_some_and(|fb| {
                    (fb.is_nullable() || !fa.is_nullable())
                        && can_cast_losslessly(fa.data_type(), fb.data_type())
                })
        }),
        _ => false,
    }
}

/// SQL-style type names for messages: nested values that may not be null say `NOT NULL`.
pub fn type_name(dt: &DataType) -> String {
    use DataType::*;
    let inner = |f: &Field| {
        let name = type_name(f.data_type());
        if f.is_nullable() {
            name
        } else {
            format!("{name} NOT NULL")
        }
    };
    match dt {
        Boolean => "BOOLEAN".into(),
        Int8 => "TINYINT".into(),
        Int16 => "SMALLINT".into(),
        Int32 => "INT".into(),
        Int64 => "BIGINT".into(),
        UInt8 | UInt16 | UInt32 | UInt64 => format!("{dt} (unsigned)"),
        Float16 | Float32 => "FLOAT".into(),
        Float64 => "DOUBLE".into(),
        Utf8 | LargeUtf8 | Utf8View => "STRING".into(),
        Binary | LargeBinary | BinaryView | FixedSizeBinary(_) => "BINARY".into(),
        Date32 | Date64 => "DATE".into(),
        Timestamp(_, Some(_)) => "TIMESTAMP".into(),
        Timestamp(_, None) => "TIMESTAMP_NTZ".into(),
        Decimal128(p, s) | Decimal32(p, s) | Decimal64(p, s) | Decimal256(p, s) => {
            format!("DECIMAL({p},{s})")
        }
        List(f) | LargeList(f) | FixedSizeList(f, _) => format!("ARRAY<{}>", inner(f)),
        Struct(fs) => format!(
            "STRUCT<{}>",
            fs.iter()
                .map(|f| format!("{}: {}", f.name(), inner(f)))
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Map(e, _) => match e.data_type() {
            Struct(kv) if kv.len() == 2 => format!("MAP<{}, {}>", inner(&kv[0]), inner(&kv[1])),
            _ => "MAP".into(),
        },
        Dictionary(_, v) => type_name(v),
        other => other.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use super::*;

    fn list(name: &str, dt: DataType, nullable: bool) -> DataType {
        DataType::List(Arc::new(Field::new(name, dt, nullable)))
    }

    #[test]
    fn element_names_are_not_stored_but_nullability_is() {
        let table = list("element", DataType::Int32, true);
        assert!(same_stored_type(
            &table,
            &list("item", DataType::Int32, true)
        ));
        assert!(same_stored_type(
            &table,
            &list("item", DataType::Int32, false)
        ));
        let strict = list("element", DataType::Int32, false);
        assert_eq!(
            mismatch(&strict, &list("item", DataType::Int32, true)).unwrap(),
            "element may be null here but is NOT NULL in the table"
        );
        assert_eq!(type_name(&strict), "ARRAY<INT NOT NULL>");
    }

    #[test]
    fn differences_name_their_place() {
        let s = |f: Vec<Field>| DataType::Struct(f.into());
        let table = s(vec![Field::new(
            "a",
            list("element", DataType::Decimal128(10, 2), true),
            true,
        )]);
        let incoming = s(vec![Field::new(
            "a",
            list("item", DataType::Decimal128(12, 2), true),
            true,
        )]);
        assert_eq!(
            mismatch(&table, &incoming).unwrap(),
            "field `a` element has precision and scale DECIMAL(12,2) here but DECIMAL(10,2) in the table"
        );
        assert!(!can_cast_losslessly(&incoming, &table));
        assert!(can_cast_losslessly(&table, &incoming));
        let ntz = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, None);
        let utc = DataType::Timestamp(arrow::datatypes::TimeUnit::Microsecond, Some("UTC".into()));
        assert!(mismatch(&utc, &ntz).unwrap().contains("no time zone here"));
        assert!(same_stored_type(
            &utc,
            &DataType::Timestamp(
                arrow::datatypes::TimeUnit::Nanosecond,
                Some("+01:00".into())
            )
        ));
        assert!(same_stored_type(&DataType::Utf8, &DataType::Utf8View));
    }
}
