//! Schemas written as DDL text: `id BIGINT, name STRING, tags ARRAY<STRING>`.
//!
//! Type names follow Spark SQL / Databricks (what users of `schema` and `schemaHints`
//! write). `TIMESTAMP` is a UTC instant (Delta's `timestamp`); `TIMESTAMP_NTZ` has no zone.

use std::sync::Arc;

use arrow::datatypes::{DataType, Field, Fields, Schema, SchemaRef, TimeUnit};

/// Parses a comma-separated list of `name TYPE [NOT NULL] [COMMENT '...']`.
pub fn parse_schema_ddl(text: &str) -> Result<SchemaRef, String> {
    let mut p = Parser::new(text);
    let mut fields = Vec::new();
    loop {
        p.skip_ws();
        if p.at_end() {
            break;
        }
        let name = p.ident()?;
        p.skip_ws();
        p.eat(':');
        let ty = p.data_type()?;
        let mut nullable = true;
        loop {
            p.skip_ws();
            if p.keyword("NOT") {
                p.skip_ws();
                if !p.keyword("NULL") {
                    return Err(p.error("expected NULL after NOT"));
                }
                nullable = false;
            } else if p.keyword("COMMENT") {
                p.skip_ws();
                p.string_literal()?;
            } else {
                break;
            }
        }
        fields.push(Field::new(name, ty, nullable));
        p.skip_ws();
        if !p.eat(',') {
            p.skip_ws();
            if !p.at_end() {
                return Err(p.error("expected `,` between columns"));
            }
            break;
        }
    }
    if fields.is_empty() {
        return Err("the schema has no columns".into());
    }
    Ok(Arc::new(Schema::new(fields)))
}

/// Parses one type name such as `DECIMAL(10,2)` or `ARRAY<STRING>`.
pub fn parse_type(text: &str) -> Result<DataType, String> {
    let mut p = Parser::new(text);
    let t = p.data_type()?;
    p.skip_ws();
    if !p.at_end() {
        return Err(p.error("unexpected text after the type"));
    }
    Ok(t)
}

struct Parser<'a> {
    text: &'a str,
    pos: usize,
}

impl<'a> Parser<'a> {
    fn new(text: &'a str) -> Self {
        Parser { text, pos: 0 }
    }

    fn rest(&self) -> &'a str {
        &self.text[self.pos..]
    }

    fn at_end(&self) -> bool {
        self.pos >= self.text.len()
    }

    fn error(&self, msg: &str) -> String {
        format!("{msg} at position {} in `{}`", self.pos + 1, self.text)
    }

    fn skip_ws(&mut self) {
        while let Some(c) = self.rest().chars().next() {
            if c.is_whitespace() {
                self.pos += c.len_utf8();
            } else {
                break;
            }
        }
    }

    fn eat(&mut self, c: char) -> bool {
        self.skip_ws();
        if self.rest().starts_with(c) {
            self.pos += c.len_utf8();
            true
        } else {
            false
        }
    }

    fn expect(&mut self, c: char) -> Result<(), String> {
        if self.eat(c) {
            Ok(())
        } else {
            Err(self.error(&format!("expected `{c}`")))
        }
    }

    fn keyword(&mut self, kw: &str) -> bool {
        let r = self.rest();
        if r.len() >= kw.len()
            && r[..kw.len()].eq_ignore_ascii_case(kw)
            && !r[kw.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_alphanumeric() || c == '_')
        {
            self.pos += kw.len();
            true
        } else {
            false
        }
    }

    fn ident(&mut self) -> Result<String, String> {
        self.skip_ws();
        let r = self.rest();
        if let Some(q) = r.chars().next().filter(|c| *c == '`' || *c == '"') {
            let mut out = String::new();
            let mut chars = r[1..].char_indices().peekable();
            while let Some((i, c)) = chars.next() {
                if c == q {
                    if chars.peek().map(|(_, c)| *c) == Some(q) {
                        chars.next();
                        out.push(q);
                        continue;
                    }
                    self.pos += 1 + i + 1;
                    return Ok(out);
                }
                out.push(c);
            }
            return Err(self.error("unterminated quoted name"));
        }
        let len = r
            .char_indices()
            .find(|(_, c)| !(c.is_alphanumeric() || *c == '_' || *c == '$'))
            .map(|(i, _)| i)
            .unwrap_or(r.len());
        if len == 0 {
            return Err(self.error("expected a column name"));
        }
        self.pos += len;
        Ok(r[..len].to_string())
    }

    fn number(&mut self) -> Result<u32, String> {
        self.skip_ws();
        let r = self.rest();
        let len = r.chars().take_while(|c| c.is_ascii_digit()).count();
        if len == 0 {
            return Err(self.error("expected a number"));
        }
        self.pos += len;
        r[..len].parse().map_err(|_| self.error("number too large"))
    }

    fn string_literal(&mut self) -> Result<String, String> {
        self.skip_ws();
        let r = self.rest();
        if !r.starts_with('\'') {
            return Err(self.error("expected a quoted string"));
        }
        let mut out = String::new();
        let mut chars = r[1..].char_indices().peekable();
        while let Some((i, c)) = chars.next() {
            if c == '\'' {
                if chars.peek().map(|(_, c)| *c) == Some('\'') {
                    chars.next();
                    out.push('\'');
                    continue;
                }
                self.pos += 1 + i + 1;
                return Ok(out);
            }
            out.push(c);
        }
        Err(self.error("unterminated string"))
    }

    fn data_type(&mut self) -> Result<DataType, String> {
        self.skip_ws();
        let start = self.pos;
        let name = self.ident()?.to_ascii_uppercase();
        let t = match name.as_str() {
            "TINYINT" | "BYTE" | "INT8" => DataType::Int8,
            "SMALLINT" | "SHORT" | "INT16" => DataType::Int16,
            "INT" | "INTEGER" | "INT32" => DataType::Int32,
            "BIGINT" | "LONG" | "INT64" => DataType::Int64,
            "FLOAT" | "REAL" | "FLOAT32" => DataType::Float32,
            "DOUBLE" | "FLOAT64" => {
                self.skip_ws();
                self.keyword("PRECISION");
                DataType::Float64
            }
            "BOOLEAN" | "BOOL" => DataType::Boolean,
            "STRING" | "TEXT" | "VARCHAR" | "CHAR" | "CHARACTER" | "UTF8" => {
                if self.eat('(') {
                    self.number()?;
                    self.expect(')')?;
                }
                DataType::Utf8
            }
            "BINARY" | "BYTEA" | "BLOB" | "VARBINARY" => DataType::Binary,
            "DATE" => DataType::Date32,
            "TIMESTAMP" | "TIMESTAMPTZ" | "TIMESTAMP_LTZ" => {
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()))
            }
            "TIMESTAMP_NTZ" | "DATETIME" => DataType::Timestamp(TimeUnit::Microsecond, None),
            "DECIMAL" | "DEC" | "NUMERIC" => {
                let (mut p, mut s) = (10u32, 0u32);
                if self.eat('(') {
                    p = self.number()?;
                    if self.eat(',') {
                        s = self.number()?;
                    }
                    self.expect(')')?;
                }
                if p == 0 || p > 38 || s > p {
                    return Err(format!(
                        "DECIMAL({p},{s}) is not valid: precision is 1 to 38 and scale at most the precision"
                    ));
                }
                DataType::Decimal128(p as u8, s as i8)
            }
            "ARRAY" => {
                self.expect('<')?;
                let inner = self.data_type()?;
                self.expect('>')?;
                DataType::List(Arc::new(Field::new("element", inner, true)))
            }
            "MAP" => {
                self.expect('<')?;
                let k = self.data_type()?;
                self.expect(',')?;
                let v = self.data_type()?;
                self.expect('>')?;
                DataType::Map(
                    Arc::new(Field::new(
                        "key_value",
                        DataType::Struct(Fields::from(vec![
                            Field::new("key", k, false),
                            Field::new("value", v, true),
                        ])),
                        false,
                    )),
                    false,
                )
            }
            "STRUCT" => {
                self.expect('<')?;
                let mut fields = Vec::new();
                loop {
                    if self.eat('>') {
                        break;
                    }
                    let n = self.ident()?;
                    self.eat(':');
                    let t = self.data_type()?;
                    fields.push(Field::new(n, t, true));
                    if !self.eat(',') {
                        self.expect('>')?;
                        break;
                    }
                }
                DataType::Struct(fields.into())
            }
            _ => {
                self.pos = start;
                return Err(self.error(&format!("unknown type `{name}`")));
            }
        };
        Ok(t)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_ddl() {
        let s = parse_schema_ddl(
            "id BIGINT NOT NULL, `first name` STRING, amt DECIMAL(10, 2), tags ARRAY<STRING>, p STRUCT<x: INT, y DOUBLE>, m MAP<STRING,INT>, ts TIMESTAMP",
        )
        .unwrap();
        assert_eq!(s.fields().len(), 7);
        assert!(!s.field(0).is_nullable());
        assert_eq!(s.field(1).name(), "first name");
        assert_eq!(s.field(2).data_type(), &DataType::Decimal128(10, 2));
        assert!(matches!(
            s.field(6).data_type(),
            DataType::Timestamp(TimeUnit::Microsecond, Some(_))
        ));
    }

    #[test]
    fn errors_say_where() {
        let e = parse_schema_ddl("id BIGNUM").unwrap_err();
        assert!(e.contains("BIGNUM") && e.contains("position 4"), "{e}");
        assert!(parse_schema_ddl("a INT b INT").is_err());
        assert!(parse_type("DECIMAL(40,2)").is_err());
    }
}
