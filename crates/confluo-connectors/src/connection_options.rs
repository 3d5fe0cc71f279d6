//! The settings of a connection in `confluo.yaml`, read the same way by every database
//! connector: unknown keys are errors with a suggestion, values are single scalars with
//! `${env:NAME}` expanded, required ones say where to add them.

use std::time::Duration;

use confluo_core::project::{ConnectionConfig, expand_env};
use confluo_core::suggest;
use serde_yaml_ng::Value;

/// A setting that cannot be used.
#[derive(Debug, Clone, PartialEq)]
pub enum OptionError {
    /// A key the connector does not know (often a typo); `hint` suggests or lists keys.
    Unknown {
        /// The key as written.
        key: String,
        /// "did you mean" hint, or the list of valid keys.
        hint: String,
    },
    /// A key whose value is wrong or missing.
    Invalid {
        /// The key.
        key: String,
        /// What is wrong, with a hint.
        message: String,
    },
}

/// The settings of one connection.
pub struct ConnectionOptions<'a> {
    name: &'a str,
    conn: &'a ConnectionConfig,
}

impl<'a> ConnectionOptions<'a> {
    /// The settings of connection `name`, refusing keys outside `known`.
    pub fn new(
        name: &'a str,
        conn: &'a ConnectionConfig,
        known: &[&str],
    ) -> Result<Self, OptionError> {
        for key in conn.options.keys() {
            if !known.contains(&key.as_str()) {
                let near = suggest::nearest(key, known.iter().copied());
                let hint = if near.is_empty() {
                    format!("\n  hint: valid keys are {}", known.join(", "))
                } else {
                    suggest::hint(&near)
                };
                return Err(OptionError::Unknown {
                    key: key.clone(),
                    hint,
                });
            }
        }
        Ok(ConnectionOptions { name, conn })
    }

    /// A value as text, `${env:NAME}` expanded; `None` when absent or null.
    pub fn get(&self, key: &str) -> Result<Option<String>, OptionError> {
        let invalid = |message: String| OptionError::Invalid {
            key: key.to_string(),
            message,
        };
        let Some(v) = self.conn.options.get(key) else {
            return Ok(None);
        };
        let text = match v {
            Value::Null => return Ok(None),
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            Value::Bool(b) => b.to_string(),
            _ => return Err(invalid("expected a single value, not a list or map".into())),
        };
        expand(&text).map(Some).map_err(invalid)
    }

    /// A value that must be there and not empty.
    pub fn require(&self, key: &str) -> Result<String, OptionError> {
        self.get(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OptionError::Invalid {
                key: key.to_string(),
                message: format!(
                    "is required\n  hint: add `{key}:` to connection `{}` in confluo.yaml",
                    self.name
                ),
            })
    }
}

fn expand(text: &str) -> Result<String, String> {
    if !text.contains("${env:") {
        return Ok(text.to_string());
    }
    expand_env(text).map_err(|e| match e {
        confluo_core::Error::Config { key, message } => format!(
            "{message} (referenced as {key})\n  hint: export the variable before running confluo"
        ),
        other => other.to_string(),
    })
}

/// `10`, `10s`, `1.5s`, `500ms` as a duration.
pub fn parse_seconds(text: &str) -> Option<Duration> {
    let t = text.trim();
    if let Some(ms) = t.strip_suffix("ms") {
        return ms.trim().parse::<u64>().ok().map(Duration::from_millis);
    }
    let s = t.strip_suffix('s').unwrap_or(t).trim();
    s.parse::<f64>()
        .ok()
        .filter(|v| v.is_finite() && *v > 0.0)
        .map(Duration::from_secs_f64)
}
