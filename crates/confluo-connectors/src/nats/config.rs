//! The connection (`url`, credentials) and an entry's keys (`stream`, `subjects`, ...).

use std::collections::BTreeMap;
use std::time::Duration;

use confluo_core::project::ConnectionConfig;
use confluo_core::source::SourceError;
use serde_yaml_ng::Value;

use super::source::{JetStreamSource, Start};
use crate::connection_options::{ConnectionOptions, OptionError};
use crate::streams::{FunctionOptions, entry_options, function_error, function_options};

const KNOWN_KEYS: &[&str] = &["url", "user", "password", "token", "connect_timeout"];
const ENTRY_KEYS: &[&str] = &[
    "stream",
    "subjects",
    "consumer",
    "start",
    "fail_on_data_loss",
];

/// A `type: nats` connection.
#[derive(Debug, Clone, PartialEq)]
pub struct NatsConnector {
    /// The connection's name in `confluo.yaml`.
    pub name: String,
    /// Server URL(s), comma-separated (`nats://127.0.0.1:4222`).
    pub url: String,
    /// User and password, when the server wants them.
    pub user: Option<(String, String)>,
    /// A token, when the server wants one.
    pub token: Option<String>,
    /// How long to wait for the server.
    pub connect_timeout: Duration,
}

impl NatsConnector {
    /// Parses connection `name`; unknown keys and bad values are errors naming them.
    pub fn from_connection(name: &str, conn: &ConnectionConfig) -> Result<Self, SourceError> {
        let owner = format!("connection `{name}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let opts = ConnectionOptions::new(name, conn, KNOWN_KEYS).map_err(bad)?;
        let user = match (
            opts.get("user").map_err(bad)?,
            opts.get("password").map_err(bad)?,
        ) {
            (Some(u), p) => Some((u, p.unwrap_or_default())),
            (None, Some(_)) => {
                return Err(SourceError::definite(format!(
                    "{owner}: `password` without `user`\n  hint: add `user:` (or use `token:`)"
                )));
            }
            (None, None) => None,
        };
        let connect_timeout = opts
            .duration("connect_timeout", Duration::from_secs(10))
            .map_err(bad)?;
        Ok(NatsConnector {
            name: name.to_string(),
            url: opts
                .get("url")
                .map_err(bad)?
                .unwrap_or_else(|| "nats://127.0.0.1:4222".into()),
            user,
            token: opts.get("token").map_err(bad)?,
            connect_timeout,
        })
    }

    /// Connects; an unreachable server is transient (the runner retries), a refused login
    /// definite.
    pub async fn connect(&self) -> Result<async_nats::Client, SourceError> {
        let mut o = async_nats::ConnectOptions::new()
            .name("confluo")
            .connection_timeout(self.connect_timeout);
        if let Some((u, p)) = &self.user {
            o = o.user_and_password(u.clone(), p.clone());
        }
        if let Some(t) = &self.token {
            o = o.token(t.clone());
        }
        o.connect(self.url.as_str()).await.map_err(|e| {
            use async_nats::ConnectErrorKind as K;
            let message = format!("connection `{}` ({}): {e}", self.name, self.url);
            match e.kind() {
                K::Authentication | K::AuthorizationViolation => SourceError::definite(format!(
                    "{message}\n  hint: check `user`/`password` or `token` of the connection"
                )),
                K::ServerParse => SourceError::definite(message),
                _ => SourceError::transient(format!(
                    "{message}\n  hint: is the server running and reachable at {}?",
                    self.url
                )),
            }
        })
    }

    /// The source an ingest entry reads, from its keys: `stream` (required), `subjects`
    /// (filters within the stream), `consumer` (durable name, default `confluo_<entry>`),
    /// `start` (`earliest`, `latest` or a sequence, when the table holds nothing yet) and
    /// `fail_on_data_loss` (default true: messages removed by the stream's limits before
    /// they were read are an error).
    pub fn source(
        &self,
        entry: &str,
        options: &BTreeMap<String, Value>,
    ) -> Result<JetStreamSource, SourceError> {
        let (shared, opts) = entry_options(entry, options, ENTRY_KEYS)?;
        let owner = format!("ingest entry `{entry}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let stream = opts.require("stream").map_err(bad)?;
        let start = match opts.get("start").map_err(bad)?.as_deref() {
            None | Some("earliest") => Start::Earliest,
            Some("latest") => Start::Latest,
            Some(n) => Start::Sequence(n.parse().map_err(|_| {
                SourceError::definite(format!(
                    "{owner}: `start` `{n}` is not earliest, latest or a stream sequence"
                ))
            })?),
        };
        let fail_on_data_loss = opts.flag("fail_on_data_loss", true).map_err(bad)?;
        let consumer = opts
            .get("consumer")
            .map_err(bad)?
            .unwrap_or_else(|| consumer_name(entry));
        Ok(JetStreamSource::new(
            self.clone(),
            shared,
            stream,
            opts.list("subjects").map_err(bad)?,
            consumer,
            start,
            fail_on_data_loss,
        ))
    }

    /// What `confluo connections test` prints: the server, its version and whether
    /// JetStream answers.
    pub async fn test(&self) -> Result<serde_json::Value, SourceError> {
        let client = self.connect().await?;
        let info = client.server_info();
        // The account's JetStream usage, read as plain JSON: its shape varies between server
        // versions, and all that matters here is whether JetStream answers.
        let account: Option<serde_json::Value> = client
            .request("$JS.API.INFO", bytes::Bytes::new())
            .await
            .ok()
            .and_then(|m| serde_json::from_slice(&m.payload).ok());
        let error = account
            .as_ref()
            .and_then(|a| a.get("error"))
            .and_then(|e| e.get("description"))
            .and_then(|d| d.as_str())
            .map(str::to_string);
        Ok(serde_json::json!({
            "connection": self.name,
            "type": "nats",
            "server": format!("{}:{}", info.host, info.port),
            "version": info.version,
            "jetstream": account.is_some() && error.is_none(),
            "streams": account.as_ref().and_then(|a| a.get("streams")).cloned(),
            "error": error,
        }))
    }
}

/// The options of `read_nats(...)` and where each goes.
const READ_NATS: FunctionOptions = &[
    ("servers", "url", true),
    ("user", "user", true),
    ("password", "password", true),
    ("token", "token", true),
    ("connectTimeout", "connect_timeout", true),
    ("stream", "stream", false),
    ("subjects", "subjects", false),
    ("startingPosition", "start", false),
    ("failOnDataLoss", "fail_on_data_loss", false),
];

/// The source behind `STREAM read_nats(servers => ..., stream => ...)` in pipelines: a
/// JetStream stream read by the stream sequence the flow's commits keep (exactly once),
/// with rows `subject`, `sequence`, `published`, `headers`, `value` (the payload's bytes).
/// `reader` names the durable consumer (one per flow, so two flows do not share one).
pub fn read_nats(
    options: &[(String, String)],
    reader: &str,
) -> Result<JetStreamSource, SourceError> {
    let owner = "read_nats";
    let (conn, mut entry) = function_options(owner, "nats", options, READ_NATS, &["subjects"])?;
    if !entry.contains_key("stream") {
        return Err(SourceError::definite(format!(
            "{owner}: `stream` is required, e.g. read_nats(servers => 'nats://127.0.0.1:4222', stream => 'ORDERS')"
        )));
    }
    entry.insert("consumer".into(), Value::String(consumer_name(reader)));
    let names = function_error(owner, READ_NATS);
    let connector = NatsConnector::from_connection(owner, &conn).map_err(&names)?;
    connector.source(owner, &entry).map_err(&names)
}

/// A durable consumer name from `name`: characters NATS does not allow become `_`.
fn consumer_name(name: &str) -> String {
    let clean: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!("confluo_{clean}")
}
