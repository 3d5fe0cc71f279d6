//! The connection (`host`, ports, credentials, `vhost`) and an entry's keys.

use std::collections::BTreeMap;
use std::time::Duration;

use confluo_core::project::ConnectionConfig;
use confluo_core::source::{ChangeSource, SourceError};
use serde_yaml_ng::Value;

use super::queue::QueueSource;
use super::stream::{RabbitStreamSource, Start};
use crate::connection_options::{ConnectionOptions, OptionError};
use crate::streams::{
    FunctionOptions, StreamEntry, entry_options, function_error, function_options,
};

const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "stream_port",
    "user",
    "password",
    "vhost",
    "connect_timeout",
];
const ENTRY_KEYS: &[&str] = &["queue", "stream", "prefetch", "start", "consumer"];

/// A `type: rabbitmq` connection.
#[derive(Debug, Clone, PartialEq)]
pub struct RabbitConnector {
    /// The connection's name in `confluo.yaml`.
    pub name: String,
    /// Broker host.
    pub host: String,
    /// AMQP port (5672).
    pub port: u16,
    /// Stream protocol port (5552).
    pub stream_port: u16,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
    /// Virtual host.
    pub vhost: String,
    /// How long to wait for the broker.
    pub connect_timeout: Duration,
}

impl RabbitConnector {
    /// Parses connection `name`; unknown keys and bad values are errors naming them.
    pub fn from_connection(name: &str, conn: &ConnectionConfig) -> Result<Self, SourceError> {
        let owner = format!("connection `{name}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let opts = ConnectionOptions::new(name, conn, KNOWN_KEYS).map_err(bad)?;
        let port = |key: &str, default: u16| -> Result<u16, SourceError> {
            match opts.number(key).map_err(bad)? {
                Some(p) => u16::try_from(p).map_err(|_| {
                    SourceError::definite(format!("{owner}: `{key}` {p} is not a port"))
                }),
                None => Ok(default),
            }
        };
        let connect_timeout = opts
            .duration("connect_timeout", Duration::from_secs(10))
            .map_err(bad)?;
        Ok(RabbitConnector {
            name: name.to_string(),
            host: opts
                .get("host")
                .map_err(bad)?
                .unwrap_or_else(|| "127.0.0.1".into()),
            port: port("port", 5672)?,
            stream_port: port("stream_port", 5552)?,
            user: opts
                .get("user")
                .map_err(bad)?
                .unwrap_or_else(|| "guest".into()),
            password: opts
                .get("password")
                .map_err(bad)?
                .unwrap_or_else(|| "guest".into()),
            vhost: opts
                .get("vhost")
                .map_err(bad)?
                .unwrap_or_else(|| "/".into()),
            connect_timeout,
        })
    }

    /// The AMQP URI (password included: never printed).
    pub(super) fn amqp_uri(&self) -> String {
        let enc = |s: &str| {
            percent_encoding::utf8_percent_encode(s, percent_encoding::NON_ALPHANUMERIC).to_string()
        };
        format!(
            "amqp://{}:{}@{}:{}/{}",
            enc(&self.user),
            enc(&self.password),
            self.host,
            self.port,
            enc(&self.vhost)
        )
    }

    /// The source an ingest entry reads: `queue:` (at least once, upserted by `key`, default
    /// `[_message_id]`; `prefetch` messages in flight, default 10,000) or `stream:` (exactly
    /// once; `start`: first, last, next or an offset, when the table holds nothing yet;
    /// `consumer`: the name its offset is stored under on the server).
    pub fn source(
        &self,
        entry: &str,
        options: &BTreeMap<String, Value>,
    ) -> Result<(StreamEntry, Box<dyn ChangeSource>), SourceError> {
        let (mut shared, opts) = entry_options(entry, options, ENTRY_KEYS)?;
        let owner = format!("ingest entry `{entry}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let consumer = opts
            .get("consumer")
            .map_err(bad)?
            .unwrap_or_else(|| format!("confluo-{entry}"));
        match (
            opts.get("queue").map_err(bad)?,
            opts.get("stream").map_err(bad)?,
        ) {
            (Some(queue), None) => {
                if shared.key.is_empty() {
                    shared.key = vec!["_message_id".into()];
                }
                let prefetch = opts.number("prefetch").map_err(bad)?.unwrap_or(10_000);
                let prefetch = u16::try_from(prefetch).unwrap_or(u16::MAX);
                let source =
                    QueueSource::new(self.clone(), shared.clone(), queue, prefetch, consumer);
                Ok((shared, Box::new(source)))
            }
            (None, Some(stream)) => {
                let start = match opts.get("start").map_err(bad)?.as_deref() {
                    None | Some("first") | Some("earliest") => Start::First,
                    Some("last") => Start::Last,
                    Some("next") | Some("latest") => Start::Next,
                    Some(n) => Start::Offset(n.parse().map_err(|_| {
                        SourceError::definite(format!(
                            "{owner}: `start` `{n}` is not first, last, next or an offset"
                        ))
                    })?),
                };
                let source =
                    RabbitStreamSource::new(self.clone(), shared.clone(), stream, start, consumer);
                Ok((shared, Box::new(source)))
            }
            (Some(_), Some(_)) => Err(SourceError::definite(format!(
                "{owner}: set `queue` or `stream`, not both"
            ))),
            (None, None) => Err(SourceError::definite(format!(
                "{owner}: name what to read: `queue: <name>` (AMQP, at least once) or `stream: <name>` (RabbitMQ stream, exactly once)"
            ))),
        }
    }

    /// What `confluo connections test` prints: whether AMQP and the stream protocol answer.
    pub async fn test(&self) -> Result<serde_json::Value, SourceError> {
        let conn = super::queue::connect(self).await?;
        let _ = conn.close(200, "bye".into()).await;
        let streams = super::stream::environment(self).await.is_ok();
        Ok(serde_json::json!({
            "connection": self.name,
            "type": "rabbitmq",
            "broker": format!("{}:{}", self.host, self.port),
            "streams": streams,
        }))
    }
}

/// The options of `read_rabbitmq(...)` and where each goes.
const READ_RABBITMQ: FunctionOptions = &[
    ("host", "host", true),
    ("port", "port", true),
    ("streamPort", "stream_port", true),
    ("user", "user", true),
    ("password", "password", true),
    ("vhost", "vhost", true),
    ("connectTimeout", "connect_timeout", true),
    ("stream", "stream", false),
    ("queue", "queue", false),
    ("startingPosition", "start", false),
];

/// The source behind `STREAM read_rabbitmq(host => ..., stream => ...)` in pipelines: a
/// RabbitMQ stream read by the offset the flow's commits keep (exactly once), with rows
/// `stream`, `offset`, `value` (the payload's bytes). Queues cannot be replayed and need an
/// acknowledgement after the commit, which a pipeline's flows do not give: they are refused
/// with what to do instead. `reader` names the consumer on the server.
pub fn read_rabbitmq(
    options: &[(String, String)],
    reader: &str,
) -> Result<Box<dyn ChangeSource>, SourceError> {
    let owner = "read_rabbitmq";
    let (conn, mut entry) = function_options(owner, "rabbitmq", options, READ_RABBITMQ, &[])?;
    if entry.contains_key("queue") {
        return Err(SourceError::definite(format!(
            "{owner}: a queue is read at least once and acknowledged after each commit, which a \
             pipeline flow does not do\n  hint: read the queue with an ingest entry \
             (`type: rabbitmq`, `queue:`) and the pipeline from its table with STREAM(...), or \
             read a RabbitMQ stream here (`stream =>`)"
        )));
    }
    if !entry.contains_key("stream") {
        return Err(SourceError::definite(format!(
            "{owner}: `stream` is required, e.g. read_rabbitmq(host => '127.0.0.1', stream => 'orders')"
        )));
    }
    entry.insert(
        "consumer".into(),
        Value::String(format!("confluo-{reader}")),
    );
    let names = function_error(owner, READ_RABBITMQ);
    let connector = RabbitConnector::from_connection(owner, &conn).map_err(&names)?;
    connector
        .source(owner, &entry)
        .map(|(_, source)| source)
        .map_err(&names)
}
