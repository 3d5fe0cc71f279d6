//! Table patterns of an ingest entry or a discovery: `schema.table` with globs in either
//! part (`public.*`, `sales.order_*`), shared by the database connectors. What a pattern
//! without a dot means is the connector's choice (`default_schema`).

use globset::{Glob, GlobMatcher};

/// Compiled patterns, each kept with its text for messages.
#[derive(Debug, Clone, Default)]
pub struct TablePatterns {
    patterns: Vec<(String, GlobMatcher, GlobMatcher)>,
}

impl TablePatterns {
    /// Compiles `patterns`; one without a dot is a table name in `default_schema` (a glob
    /// too: `*` means every schema). An invalid glob is an error naming the pattern.
    pub fn new(patterns: &[String], default_schema: &str) -> Result<Self, String> {
        let mut out = Vec::with_capacity(patterns.len());
        for p in patterns {
            let (schema, table) = p.split_once('.').unwrap_or((default_schema, p.as_str()));
            let glob = |g: &str| {
                Glob::new(g)
                    .map(|g| g.compile_matcher())
                    .map_err(|e| format!("`{p}` is not a valid pattern: {e}"))
            };
            out.push((p.clone(), glob(schema)?, glob(table)?));
        }
        Ok(TablePatterns { patterns: out })
    }

    /// Whether there are no patterns at all.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Whether some pattern selects `schema.name`.
    pub fn matches(&self, schema: &str, name: &str) -> bool {
        self.patterns
            .iter()
            .any(|(_, s, t)| s.is_match(schema) && t.is_match(name))
    }

    /// Patterns that select none of `tables` (`(schema, name)` pairs).
    pub fn unmatched<'a>(&'a self, tables: &[(&str, &str)]) -> Vec<&'a str> {
        self.patterns
            .iter()
            .filter(|(_, s, t)| !tables.iter().any(|(sc, n)| s.is_match(sc) && t.is_match(n)))
            .map(|(p, _, _)| p.as_str())
            .collect()
    }
}
