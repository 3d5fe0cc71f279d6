//! How errors reach the user: what went wrong, where (with the line and a caret), and a hint.

use confluo_sql::SqlError;

/// An error with the SQL text it refers to, if any.
#[derive(Debug)]
pub struct CliError {
    /// The error.
    pub error: anyhow::Error,
    /// The SQL text (for carets), and a label for it.
    pub source: Option<(String, String)>,
}

impl<E: Into<anyhow::Error>> From<E> for CliError {
    fn from(e: E) -> Self {
        CliError {
            error: e.into(),
            source: None,
        }
    }
}

impl CliError {
    /// A SQL error in `text`, labelled `label` (e.g. "query" or a file name).
    pub fn sql(e: SqlError, text: &str, label: &str) -> Self {
        CliError {
            error: e.into(),
            source: Some((text.to_string(), label.to_string())),
        }
    }
}

/// Prints an error to stderr.
pub fn print_error(e: &CliError) {
    eprint!("{}", format_error(e));
}

/// Formats an error: message, hints, then the offending line with a caret.
pub fn format_error(e: &CliError) -> String {
    let mut out = String::new();
    let msg = e.error.to_string();
    out.push_str(&format!("error: {msg}\n"));
    let mut cause = e.error.source();
    while let Some(c) = cause {
        let text = c.to_string();
        if !msg.contains(&text) {
            out.push_str(&format!("  caused by: {text}\n"));
        }
        cause = c.source();
    }
    if let (Some((text, label)), Some(sql)) = (&e.source, e.error.downcast_ref::<SqlError>())
        && let Some(loc) = sql.location()
    {
        out.push_str(&snippet(
            text,
            label,
            loc.line as usize,
            loc.column as usize,
        ));
    }
    out
}

/// The line of `text` at `line` with a caret under `column` (both 1-based).
pub fn snippet(text: &str, label: &str, line: usize, column: usize) -> String {
    let Some(src) = text.lines().nth(line.saturating_sub(1)) else {
        return String::new();
    };
    let width = line.to_string().len();
    let pad = " ".repeat(width);
    let caret_pad: String = src
        .chars()
        .take(column.saturating_sub(1))
        .map(|c| if c == '\t' { '\t' } else { ' ' })
        .collect();
    format!(" {pad}--> {label}:{line}:{column}\n {pad} |\n {line} | {src}\n {pad} | {caret_pad}^\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caret_under_column() {
        let s = snippet("SELECT 1;\nSELECT * FROM ordres", "query", 2, 15);
        assert!(s.contains("--> query:2:15"), "{s}");
        assert!(s.contains(" 2 | SELECT * FROM ordres\n"), "{s}");
        assert!(s.ends_with("  |               ^\n"), "{s:?}");
    }
}
