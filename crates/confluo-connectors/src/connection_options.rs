//! The settings of a connection in `confluo.yaml`, read the same way by every database
//! connector: unknown keys are errors with a suggestion, values are single scalars with
//! `${env:NAME}` expanded, required ones say where to add them.

use std::collections::BTreeMap;
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

impl OptionError {
    /// The error as a sentence about `owner` (``connection `bus` ``, ``ingest entry `e` ``).
    pub fn describe(&self, owner: &str) -> String {
        match self {
            OptionError::Unknown { key, hint } => format!("{owner}: unknown key `{key}`{hint}"),
            OptionError::Invalid { key, message } => format!("{owner}: `{key}` {message}"),
        }
    }
}

/// The settings of one connection (or of one ingest entry's connector-specific keys).
pub struct ConnectionOptions<'a> {
    /// Where to add a missing key, for hints: ``connection `pg` ``, ``ingest entry `e` ``.
    owner: String,
    options: &'a BTreeMap<String, Value>,
}

impl<'a> ConnectionOptions<'a> {
    /// The settings of connection `name`, refusing keys outside `known`.
    pub fn new(
        name: &'a str,
        conn: &'a ConnectionConfig,
        known: &[&str],
    ) -> Result<Self, OptionError> {
        Self::over(format!("connection `{name}`"), &conn.options, known)
    }

    /// Settings of `owner` (``ingest entry `e` ``) given as a map, refusing keys outside
    /// `known`.
    pub fn over(
        owner: String,
        options: &'a BTreeMap<String, Value>,
        known: &[&str],
    ) -> Result<Self, OptionError> {
        for key in options.keys() {
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
        Ok(ConnectionOptions { owner, options })
    }

    /// A value as text, `${env:NAME}` expanded; `None` when absent or null.
    pub fn get(&self, key: &str) -> Result<Option<String>, OptionError> {
        let invalid = |message: String| OptionError::Invalid {
            key: key.to_string(),
            message,
        };
        let Some(v) = self.options.get(key) else {
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

    /// A list of values (`[a, b]`), or one value as a list of one; empty when absent.
    pub fn list(&self, key: &str) -> Result<Vec<String>, OptionError> {
        let invalid = |message: String| OptionError::Invalid {
            key: key.to_string(),
            message,
        };
        match self.options.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Sequence(items)) => items
                .iter()
                .map(|v| match v {
                    Value::String(s) => expand(s).map_err(&invalid),
                    Value::Number(n) => Ok(n.to_string()),
                    _ => Err(invalid("expected a list of names".into())),
                })
                .collect(),
            Some(_) => Ok(self.get(key)?.into_iter().collect()),
        }
    }

    /// A whole number, when present.
    pub fn number(&self, key: &str) -> Result<Option<u64>, OptionError> {
        self.get(key)?
            .map(|t| {
                t.trim().parse::<u64>().map_err(|_| OptionError::Invalid {
                    key: key.to_string(),
                    message: format!("`{t}` is not a whole number"),
                })
            })
            .transpose()
    }

    /// A duration (`10`, `10s`, `1.5s`, `500ms`); `default` when absent.
    pub fn duration(&self, key: &str, default: Duration) -> Result<Duration, OptionError> {
        match self.get(key)? {
            None => Ok(default),
            Some(t) => parse_seconds(&t).ok_or_else(|| OptionError::Invalid {
                key: key.to_string(),
                message: format!("`{t}` is not a duration (10s, 500ms)"),
            }),
        }
    }

    /// `true` or `false`; `default` when absent.
    pub fn flag(&self, key: &str, default: bool) -> Result<bool, OptionError> {
        match self.get(key)?.as_deref() {
            None => Ok(default),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(v) => Err(OptionError::Invalid {
                key: key.to_string(),
                message: format!("`{v}` is not true or false"),
            }),
        }
    }

    /// A value that must be there and not empty.
    pub fn require(&self, key: &str) -> Result<String, OptionError> {
        self.get(key)?
            .filter(|s| !s.is_empty())
            .ok_or_else(|| OptionError::Invalid {
                key: key.to_string(),
                message: format!(
                    "is required\n  hint: add `{key}:` to {} in confluo.yaml",
                    self.owner
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
