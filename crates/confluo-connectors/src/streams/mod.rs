//! What every event-stream connector shares: the keys of a stream ingest entry and payloads
//! as Arrow ([`payload`]). The connectors themselves are folders beside this one (`nats/`,
//! `kafka/`, `mqtt/`, `rabbitmq/`); each implements [`confluo_core::source::ChangeSource`].

pub mod payload;

use std::collections::BTreeMap;

use confluo_core::source::SourceError;
use serde_yaml_ng::Value;

use crate::connection_options::ConnectionOptions;
use payload::PayloadFormat;

/// Keys every stream entry may have besides its connector's own.
pub const ENTRY_KEYS: &[&str] = &["table", "format", "key"];

/// The shared settings of a stream ingest entry.
#[derive(Debug, Clone, PartialEq)]
pub struct StreamEntry {
    /// The entry's name.
    pub name: String,
    /// The target table in the entry's schema (default: the entry's name).
    pub table: String,
    /// How payloads are read.
    pub format: PayloadFormat,
    /// Key columns rows are upserted by (at-least-once sources: a redelivered message
    /// replaces its copy); empty for appends.
    pub key: Vec<String>,
}

/// Reads an entry's keys: the shared ones and `own` (the connector's), refusing any other.
/// Returns the shared settings and the options, for the connector to read its own keys.
pub fn entry_options<'a>(
    entry: &str,
    options: &'a BTreeMap<String, Value>,
    own: &[&str],
) -> Result<(StreamEntry, ConnectionOptions<'a>), SourceError> {
    let owner = format!("ingest entry `{entry}`");
    let mut known: Vec<&str> = ENTRY_KEYS.to_vec();
    known.extend_from_slice(own);
    let opts = ConnectionOptions::over(owner.clone(), options, &known)
        .map_err(|e| SourceError::definite(e.describe(&owner)))?;
    let bad = |e: crate::connection_options::OptionError| SourceError::definite(e.describe(&owner));
    let table = opts
        .get("table")
        .map_err(bad)?
        .unwrap_or_else(|| entry.to_string());
    let format = match opts.get("format").map_err(bad)? {
        Some(f) => PayloadFormat::parse(&f)
            .map_err(|m| SourceError::definite(format!("{owner}: `format` {m}")))?,
        None => PayloadFormat::Json,
    };
    let key = opts.list("key").map_err(bad)?;
    Ok((
        StreamEntry {
            name: entry.to_string(),
            table,
            format,
            key,
        },
        opts,
    ))
}
