//! The connection (`host`, `port`, credentials) and an entry's keys (`topics`, ...).

use std::collections::BTreeMap;
use std::time::Duration;

use confluo_core::project::ConnectionConfig;
use confluo_core::source::SourceError;
use serde_yaml_ng::Value;

use super::source::MqttSource;
use crate::connection_options::{ConnectionOptions, OptionError};
use crate::streams::entry_options;

const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "user",
    "password",
    "keep_alive",
    "connect_timeout",
];
const ENTRY_KEYS: &[&str] = &["topics", "topic_levels", "client_id"];

/// A `type: mqtt` connection.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConnector {
    /// The connection's name in `confluo.yaml`.
    pub name: String,
    /// Broker host.
    pub host: String,
    /// Broker port (1883).
    pub port: u16,
    /// User and password, when the broker wants them.
    pub credentials: Option<(String, String)>,
    /// Keep-alive interval.
    pub keep_alive: Duration,
    /// How long to wait for the broker's CONNACK.
    pub connect_timeout: Duration,
}

impl MqttConnector {
    /// Parses connection `name`; unknown keys and bad values are errors naming them.
    pub fn from_connection(name: &str, conn: &ConnectionConfig) -> Result<Self, SourceError> {
        let owner = format!("connection `{name}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let opts = ConnectionOptions::new(name, conn, KNOWN_KEYS).map_err(bad)?;
        let duration = |key: &str, default: u64| {
            opts.duration(key, Duration::from_secs(default))
                .map_err(bad)
        };
        let port = match opts.number("port").map_err(bad)? {
            Some(p) => u16::try_from(p)
                .map_err(|_| SourceError::definite(format!("{owner}: `port` {p} is not a port")))?,
            None => 1883,
        };
        let credentials = match (
            opts.get("user").map_err(bad)?,
            opts.get("password").map_err(bad)?,
        ) {
            (Some(u), p) => Some((u, p.unwrap_or_default())),
            (None, Some(_)) => {
                return Err(SourceError::definite(format!(
                    "{owner}: `password` without `user`\n  hint: add `user:`"
                )));
            }
            (None, None) => None,
        };
        Ok(MqttConnector {
            name: name.to_string(),
            host: opts
                .get("host")
                .map_err(bad)?
                .unwrap_or_else(|| "127.0.0.1".into()),
            port,
            credentials,
            keep_alive: duration("keep_alive", 30)?,
            connect_timeout: duration("connect_timeout", 10)?,
        })
    }

    /// The source an ingest entry reads: `topics` (filters, `+` and `#` allowed; required),
    /// `topic_levels` (names for the topic's levels, which become columns), `client_id` (the
    /// persistent session's id, default `confluo-<entry>`) and `key` (required: the columns
    /// that identify a message, so a redelivery replaces its copy).
    pub fn source(
        &self,
        entry: &str,
        options: &BTreeMap<String, Value>,
    ) -> Result<MqttSource, SourceError> {
        let (shared, opts) = entry_options(entry, options, ENTRY_KEYS)?;
        let owner = format!("ingest entry `{entry}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let topics = opts.list("topics").map_err(bad)?;
        if topics.is_empty() {
            return Err(SourceError::definite(format!(
                "{owner}: `topics` is required\n  hint: e.g. topics: [\"sensors/+/temperature\"]"
            )));
        }
        if shared.key.is_empty() {
            return Err(SourceError::definite(format!(
                "{owner}: MQTT delivers at least once, so the entry needs a `key`: the columns that identify a message (a redelivered one then replaces its copy)\n  hint: e.g. key: [device, ts], or key: [_topic, ts]"
            )));
        }
        let client_id = opts.get("client_id").map_err(bad)?.unwrap_or_else(|| {
            let clean: String = entry
                .chars()
                .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
                .collect();
            format!("confluo-{clean}")
        });
        Ok(MqttSource::new(
            self.clone(),
            shared,
            topics,
            opts.list("topic_levels").map_err(bad)?,
            client_id,
        ))
    }

    /// What `confluo connections test` prints: whether the broker accepts a connection.
    pub async fn test(&self) -> Result<serde_json::Value, SourceError> {
        let id = format!("confluo-test-{}", std::process::id());
        let (_client, mut events) = super::source::connect(self, &id, true).await?;
        // The CONNACK arrived; leave politely.
        let _ = tokio::time::timeout(Duration::from_millis(200), events.poll()).await;
        Ok(serde_json::json!({
            "connection": self.name,
            "type": "mqtt",
            "broker": format!("{}:{}", self.host, self.port),
        }))
    }
}
