//! What every event-stream connector shares: the keys of a stream ingest entry and payloads
//! as Arrow ([`payload`]). The connectors themselves are folders beside this one (`nats/`,
//! `kafka/`, `mqtt/`, `rabbitmq/`); each implements [`confluo_core::source::ChangeSource`].

pub mod avro;
pub mod payload;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{ArrayRef, RecordBatch};
use arrow::datatypes::{Field, Schema};
use confluo_core::source::{Apply, ReadLimits, SourceError};
use futures::{Stream, StreamExt};
use serde_yaml_ng::Value;

use confluo_core::project::ConnectionConfig;
use confluo_core::suggest;

use crate::connection_options::ConnectionOptions;
use avro::AvroSchemas;
use payload::{Decoded, PayloadFormat};

/// Keys every stream entry may have besides its connector's own.
pub const ENTRY_KEYS: &[&str] = &["table", "format", "key", "avro_schema", "schema_registry"];

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

impl StreamEntry {
    /// How the entry's rows land: upserted by `key` when it has one, else appended.
    pub fn apply(&self) -> Apply {
        if self.key.is_empty() {
            Apply::Append
        } else {
            Apply::Upsert {
                keys: self.key.clone(),
            }
        }
    }
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
    let avro = match (
        opts.get("avro_schema").map_err(bad)?,
        opts.get("schema_registry").map_err(bad)?,
    ) {
        (Some(_), Some(_)) => {
            return Err(SourceError::definite(format!(
                "{owner}: give `avro_schema` or `schema_registry`, not both"
            )));
        }
        (Some(s), None) => Some(AvroSchemas::Given(s)),
        (None, Some(r)) => Some(AvroSchemas::Registry(r)),
        (None, None) => None,
    };
    let format = opts.get("format").map_err(bad)?;
    let format = PayloadFormat::parse(format.as_deref().unwrap_or("json"), avro)
        .map_err(|m| SourceError::definite(format!("{owner}: `format`: {m}")))?;
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

/// Reads one batch from a stream of messages: waits up to `wait` for the first one (none:
/// an empty batch, "nothing new"), then keeps filling for `limits.linger` or until the
/// batch holds `limits.max_messages` messages or `limits.max_bytes` bytes (`size` of each).
/// Messages `keep` refuses (already committed) are skipped. The stream ending is an error
/// (`closed` says how), as is an error it yields: both transient, for the runner to
/// reconnect.
pub async fn gather<S, T, E>(
    messages: &mut S,
    limits: &ReadLimits,
    wait: Duration,
    size: impl Fn(&T) -> usize,
    mut keep: impl FnMut(&T) -> bool,
    closed: &str,
) -> Result<Vec<T>, String>
where
    S: Stream<Item = Result<T, E>> + Unpin,
    E: std::fmt::Display,
{
    let mut got = Vec::new();
    let mut bytes = 0usize;
    let mut until: Option<Instant> = None;
    while got.len() < limits.max_messages && bytes < limits.max_bytes {
        let left = match until {
            Some(u) => u.saturating_duration_since(Instant::now()),
            None => wait,
        };
        match tokio::time::timeout(left, messages.next()).await {
            Err(_) => break,
            Ok(None) => return Err(closed.to_string()),
            Ok(Some(Err(e))) => return Err(e.to_string()),
            Ok(Some(Ok(m))) => {
                if !keep(&m) {
                    continue;
                }
                bytes += size(&m);
                got.push(m);
                until.get_or_insert_with(|| Instant::now() + limits.linger);
            }
        }
    }
    Ok(got)
}

/// A batch's rows: the source's envelope columns, then the payload's (a payload column
/// named like an envelope column is left out: the envelope is what the source vouches for).
pub fn assemble(
    envelope: Vec<(Field, ArrayRef)>,
    payload: Decoded,
    what: &str,
) -> Result<(RecordBatch, u64), SourceError> {
    let mut fields = Vec::with_capacity(envelope.len() + payload.columns.len());
    let mut columns = Vec::with_capacity(fields.capacity());
    for (f, c) in envelope {
        fields.push(f);
        columns.push(c);
    }
    for (f, c) in payload.columns {
        if fields.iter().any(|e: &Field| e.name() == f.name()) {
            continue;
        }
        fields.push(f);
        columns.push(c);
    }
    let batch = RecordBatch::try_new(Arc::new(Schema::new(fields)), columns)
        .map_err(|e| SourceError::definite(format!("{what}: {e}")))?;
    Ok((batch, payload.rescued as u64))
}

/// How a pipeline table function's named options (`read_kafka(subscribe => ...)`) map onto
/// a connection and an ingest entry: (the option as written, the key, whether the key is
/// the connection's). Matching is case-insensitive, as in Spark.
pub type FunctionOptions = &'static [(&'static str, &'static str, bool)];

/// Splits the options of table function `function` into a connection of type `kind` and
/// an entry's keys (payloads kept as bytes: `format: binary`). Keys in `lists` take a
/// comma-separated list. An unknown option is an error with a suggestion.
pub fn function_options(
    function: &str,
    kind: &str,
    options: &[(String, String)],
    map: FunctionOptions,
    lists: &[&str],
) -> Result<(ConnectionConfig, BTreeMap<String, Value>), SourceError> {
    let mut conn = ConnectionConfig {
        kind: kind.into(),
        options: BTreeMap::new(),
    };
    let mut entry: BTreeMap<String, Value> = BTreeMap::new();
    entry.insert("format".into(), Value::String("binary".into()));
    for (name, value) in options {
        let Some((_, key, on_connection)) =
            map.iter().find(|(o, _, _)| o.eq_ignore_ascii_case(name))
        else {
            let near = suggest::nearest(name, map.iter().map(|(o, _, _)| *o));
            let all: Vec<&str> = map.iter().map(|(o, _, _)| *o).collect();
            return Err(SourceError::definite(format!(
                "{function}: unknown option `{name}`{}",
                if near.is_empty() {
                    format!("\n  hint: options are {}", all.join(", "))
                } else {
                    suggest::hint(&near)
                }
            )));
        };
        let value = if lists.contains(key) {
            Value::Sequence(
                value
                    .split(',')
                    .map(|t| Value::String(t.trim().to_string()))
                    .collect(),
            )
        } else {
            Value::String(value.clone())
        };
        if *on_connection {
            conn.options.insert(key.to_string(), value);
        } else {
            entry.insert(key.to_string(), value);
        }
    }
    Ok((conn, entry))
}

/// Rewrites an error about a table function's connection or entry to speak of its options
/// as the user wrote them.
pub fn function_error(function: &str, map: FunctionOptions) -> impl Fn(SourceError) -> SourceError {
    let function = function.to_string();
    move |e: SourceError| {
        let mut m = e
            .message
            .replace(&format!("connection `{function}`"), &function)
            .replace(&format!("ingest entry `{function}`"), &function);
        for (option, key, _) in map {
            m = m.replace(&format!("`{key}`"), &format!("`{option}`"));
        }
        SourceError { message: m, ..e }
    }
}
