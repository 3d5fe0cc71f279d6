//! Identifiers and three-part table names.
//!
//! Unquoted identifiers are case-insensitive: they are folded to lowercase, as DataFusion
//! does. Quoted identifiers (`"Name"` or `` `Name` ``) keep their exact spelling.

use std::fmt;

use crate::error::{Error, Result};

/// One normalised identifier part.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Ident(String);

impl Ident {
    /// Normalises an identifier as written by a user: quoted ones are kept as they are,
    /// unquoted ones are lowercased.
    pub fn parse(text: &str) -> Result<Self> {
        let parts = split_parts(text)?;
        match parts.as_slice() {
            [one] => Ok(one.clone()),
            _ => Err(Error::InvalidName {
                name: text.to_string(),
                reason: "expected a single identifier".into(),
            }),
        }
    }

    /// An identifier whose spelling is already normalised (e.g. read from the metastore).
    pub fn new_exact(value: impl Into<String>) -> Self {
        Ident(value.into())
    }

    /// The normalised spelling.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Whether printing this identifier needs quotes to read back the same.
    pub fn needs_quotes(&self) -> bool {
        let mut chars = self.0.chars();
        let first_ok = chars
            .next()
            .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        !(first_ok
            && self
                .0
                .chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_'))
    }
}

impl fmt::Display for Ident {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.needs_quotes() {
            write!(f, "`{}`", self.0.replace('`', "``"))
        } else {
            f.write_str(&self.0)
        }
    }
}

/// A fully qualified `catalog.schema.table` name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TableName {
    /// The catalog.
    pub catalog: Ident,
    /// The schema within the catalog.
    pub schema: Ident,
    /// The table within the schema.
    pub table: Ident,
}

impl TableName {
    /// Builds a name from parts that are already normalised.
    pub fn new(
        catalog: impl Into<String>,
        schema: impl Into<String>,
        table: impl Into<String>,
    ) -> Self {
        TableName {
            catalog: Ident::new_exact(catalog),
            schema: Ident::new_exact(schema),
            table: Ident::new_exact(table),
        }
    }

    /// Parses a one-, two- or three-part name, filling missing parts from the defaults.
    pub fn parse(text: &str, default_catalog: &str, default_schema: &str) -> Result<Self> {
        let parts = split_parts(text)?;
        let (catalog, schema, table) = match parts.as_slice() {
            [t] => (
                Ident::new_exact(default_catalog),
                Ident::new_exact(default_schema),
                t.clone(),
            ),
            [s, t] => (Ident::new_exact(default_catalog), s.clone(), t.clone()),
            [c, s, t] => (c.clone(), s.clone(), t.clone()),
            _ => {
                return Err(Error::InvalidName {
                    name: text.to_string(),
                    reason: "a table name has at most three parts: catalog.schema.table".into(),
                });
            }
        };
        Ok(TableName {
            catalog,
            schema,
            table,
        })
    }

    /// The `catalog.schema` part.
    pub fn schema_name(&self) -> String {
        format!("{}.{}", self.catalog, self.schema)
    }
}

impl fmt::Display for TableName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}.{}.{}", self.catalog, self.schema, self.table)
    }
}

/// Splits a dotted name into normalised parts, honouring `"..."` and `` `...` `` quoting
/// (a doubled quote inside stands for one).
pub fn split_parts(text: &str) -> Result<Vec<Ident>> {
    let invalid = |reason: &str| Error::InvalidName {
        name: text.to_string(),
        reason: reason.to_string(),
    };
    let mut parts = Vec::new();
    let mut chars = text.trim().chars().peekable();
    loop {
        let part = match chars.peek() {
            Some(&q) if q == '"' || q == '`' => {
                chars.next();
                let mut value = String::new();
                loop {
                    match chars.next() {
                        Some(c) if c == q => {
                            if chars.peek() == Some(&q) {
                                chars.next();
                                value.push(q);
                            } else {
                                break;
                            }
                        }
                        Some(c) => value.push(c),
                        None => return Err(invalid("unterminated quoted identifier")),
                    }
                }
                if value.is_empty() {
                    return Err(invalid("empty identifier"));
                }
                Ident(value)
            }
            _ => {
                let mut value = String::new();
                while let Some(&c) = chars.peek() {
                    if c == '.' {
                        break;
                    }
                    if !(c.is_alphanumeric() || c == '_' || c == '$') {
                        return Err(invalid(&format!(
                            "unexpected character `{c}` (quote the name with backticks to use it)"
                        )));
                    }
                    value.push(c);
                    chars.next();
                }
                if value.is_empty() {
                    return Err(invalid("empty identifier"));
                }
                Ident(value.to_lowercase())
            }
        };
        parts.push(part);
        match chars.next() {
            None => break,
            Some('.') => continue,
            Some(c) => return Err(invalid(&format!("unexpected `{c}` after identifier"))),
        }
    }
    Ok(parts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unquoted_fold_quoted_exact() {
        let n = TableName::parse("Bronze.Orders", "main", "default").unwrap();
        assert_eq!(n.to_string(), "main.bronze.orders");
        let n = TableName::parse("`My Cat`.\"S\".t", "main", "default").unwrap();
        assert_eq!(n.catalog.as_str(), "My Cat");
        assert_eq!(n.schema.as_str(), "S");
        assert_eq!(n.to_string(), "`My Cat`.`S`.t");
        assert!(TableName::parse("a.b.c.d", "m", "d").is_err());
        assert!(TableName::parse("a..b", "m", "d").is_err());
        assert!(TableName::parse("a-b", "m", "d").is_err());
    }
}
