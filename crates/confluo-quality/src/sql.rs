//! Pieces of the SQL the checks run: quoted names and literals.

/// A column name, quoted as Databricks SQL quotes (`` `a``b` ``), so any name a table
/// holds can be checked.
pub fn ident(name: &str) -> String {
    format!("`{}`", name.replace('`', "``"))
}

/// A text literal (`'it''s'`).
pub fn literal(text: &str) -> String {
    format!("'{}'", text.replace('\'', "''"))
}

/// A three-part table name, each part quoted.
pub fn table(name: &confluo_core::TableName) -> String {
    format!(
        "{}.{}.{}",
        ident(name.catalog.as_str()),
        ident(name.schema.as_str()),
        ident(name.table.as_str())
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_and_texts_are_quoted() {
        assert_eq!(ident("a`b"), "`a``b`");
        assert_eq!(literal("it's"), "'it''s'");
    }
}
