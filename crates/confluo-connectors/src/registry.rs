//! The connector registry: the one place a connection's `type:` is looked at. Each system
//! is one line; everything else works with the parsed [`Connection`].

use std::collections::BTreeMap;

use confluo_core::project::ConnectionConfig;
use confluo_core::source::{ChangeSource, SourceError};
use confluo_core::suggest;
use serde_yaml_ng::Value;

use crate::kafka::KafkaConnector;
use crate::mqtt::MqttConnector;
use crate::mysql::{MysqlConfig, MysqlError};
use crate::nats::NatsConnector;
use crate::postgres::{PostgresConfig, PostgresError};
use crate::rabbitmq::RabbitConnector;

/// The source of a stream ingest entry and the table it feeds.
pub struct StreamSource {
    /// The target table's name in the entry's schema.
    pub table: String,
    /// The source.
    pub source: Box<dyn ChangeSource>,
}

/// A connection of `confluo.yaml`, parsed and validated by its connector.
#[derive(Debug, Clone)]
pub enum Connection {
    /// `type: postgres` / `postgresql`.
    Postgres(PostgresConfig),
    /// `type: mysql` / `mariadb`.
    Mysql(MysqlConfig),
    /// `type: kafka`.
    Kafka(KafkaConnector),
    /// `type: nats` (JetStream).
    Nats(NatsConnector),
    /// `type: mqtt`.
    Mqtt(MqttConnector),
    /// `type: rabbitmq` (queues and streams).
    Rabbitmq(RabbitConnector),
}

/// Why a connection cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConnectionError {
    /// A PostgreSQL setting is wrong.
    #[error(transparent)]
    Postgres(#[from] PostgresError),
    /// A MySQL setting is wrong.
    #[error(transparent)]
    Mysql(#[from] MysqlError),
    /// A stream connector's setting is wrong.
    #[error(transparent)]
    Stream(#[from] SourceError),
    /// The project has no connection of this name.
    #[error("no connection named `{name}` in confluo.yaml{hint}")]
    Missing {
        /// The name asked for.
        name: String,
        /// Near names, or where connections are declared.
        hint: String,
    },
    /// The connection is of another system than the use needs.
    #[error("connection `{name}` is of type `{kind}`; this needs a {wanted} connection")]
    WrongType {
        /// The connection.
        name: String,
        /// Its type.
        kind: &'static str,
        /// What was needed.
        wanted: &'static str,
    },
    /// No connector has this `type:`.
    #[error("connection `{name}`: unknown type `{kind}`{hint}")]
    UnknownType {
        /// The connection.
        name: String,
        /// The type as written.
        kind: String,
        /// A suggestion, or the list of types.
        hint: String,
    },
}

type Parse = fn(&str, &ConnectionConfig) -> Result<Connection, ConnectionError>;

/// Every system: the `type:` names it answers to, and how its connection is parsed.
const SYSTEMS: &[(&[&str], Parse)] = &[
    (&["postgres", "postgresql"], |n, c| {
        Ok(Connection::Postgres(PostgresConfig::from_connection(n, c)?))
    }),
    (&["mysql", "mariadb"], |n, c| {
        Ok(Connection::Mysql(MysqlConfig::from_connection(n, c)?))
    }),
    (&["kafka"], |n, c| {
        Ok(Connection::Kafka(KafkaConnector::from_connection(n, c)?))
    }),
    (&["nats"], |n, c| {
        Ok(Connection::Nats(NatsConnector::from_connection(n, c)?))
    }),
    (&["mqtt"], |n, c| {
        Ok(Connection::Mqtt(MqttConnector::from_connection(n, c)?))
    }),
    (&["rabbitmq", "amqp"], |n, c| {
        Ok(Connection::Rabbitmq(RabbitConnector::from_connection(
            n, c,
        )?))
    }),
];

/// The connection `name` among a project's `connections:`, parsed by its connector; a
/// missing name suggests near ones.
pub fn named(
    connections: &std::collections::BTreeMap<String, ConnectionConfig>,
    name: &str,
) -> Result<Connection, ConnectionError> {
    let Some(conn) = connections.get(name) else {
        let near = suggest::nearest(name, connections.keys().map(String::as_str));
        let hint = if !near.is_empty() {
            suggest::hint(&near)
        } else if connections.is_empty() {
            "\n  hint: add it under `connections:` in confluo.yaml".to_string()
        } else {
            let names: Vec<&str> = connections.keys().map(String::as_str).collect();
            format!("\n  hint: connections are {}", names.join(", "))
        };
        return Err(ConnectionError::Missing {
            name: name.to_string(),
            hint,
        });
    };
    connection(name, conn)
}

/// Parses connection `name` with the connector its `type:` names.
pub fn connection(name: &str, conn: &ConnectionConfig) -> Result<Connection, ConnectionError> {
    let kind = conn.kind.to_ascii_lowercase();
    for (names, parse) in SYSTEMS {
        if names.contains(&kind.as_str()) {
            return parse(name, conn);
        }
    }
    let all: Vec<&str> = SYSTEMS
        .iter()
        .flat_map(|(n, _)| n.iter().copied())
        .collect();
    let near = suggest::nearest(&kind, all.iter().copied());
    Err(ConnectionError::UnknownType {
        name: name.to_string(),
        kind: conn.kind.clone(),
        hint: if near.is_empty() {
            format!("\n  hint: types are {}", all.join(", "))
        } else {
            suggest::hint(&near)
        },
    })
}

impl Connection {
    /// The type as users write it.
    pub fn kind(&self) -> &'static str {
        match self {
            Connection::Postgres(_) => "postgres",
            Connection::Mysql(_) => "mysql",
            Connection::Kafka(_) => "kafka",
            Connection::Nats(_) => "nats",
            Connection::Mqtt(_) => "mqtt",
            Connection::Rabbitmq(_) => "rabbitmq",
        }
    }

    /// The PostgreSQL settings, or an error naming the connection's real type.
    pub fn into_postgres(self, name: &str) -> Result<PostgresConfig, ConnectionError> {
        match self {
            Connection::Postgres(cfg) => Ok(cfg),
            other => Err(ConnectionError::WrongType {
                name: name.to_string(),
                kind: other.kind(),
                wanted: "PostgreSQL",
            }),
        }
    }

    /// Whether it is an event stream (entries name streams, not tables).
    pub fn is_stream(&self) -> bool {
        !matches!(self, Connection::Postgres(_) | Connection::Mysql(_))
    }

    /// The source a stream ingest entry reads, with its target table's name; `None` for
    /// database connections (their entries copy and capture tables).
    pub fn stream_source(
        &self,
        entry: &str,
        options: &BTreeMap<String, Value>,
    ) -> Option<Result<StreamSource, SourceError>> {
        match self {
            Connection::Kafka(k) => Some(k.source(entry, options).map(|s| StreamSource {
                table: s.entry().table.clone(),
                source: Box::new(s),
            })),
            Connection::Nats(n) => Some(n.source(entry, options).map(|s| StreamSource {
                table: s.entry().table.clone(),
                source: Box::new(s),
            })),
            Connection::Mqtt(m) => Some(m.source(entry, options).map(|s| StreamSource {
                table: s.entry().table.clone(),
                source: Box::new(s),
            })),
            Connection::Rabbitmq(r) => {
                Some(r.source(entry, options).map(|(e, source)| StreamSource {
                    table: e.table,
                    source,
                }))
            }
            Connection::Postgres(_) | Connection::Mysql(_) => None,
        }
    }

    /// `confluo connections test` for a stream connection.
    pub async fn test_stream(&self) -> Option<Result<serde_json::Value, SourceError>> {
        match self {
            Connection::Kafka(k) => Some(k.test().await),
            Connection::Nats(n) => Some(n.test().await),
            Connection::Mqtt(m) => Some(m.test().await),
            Connection::Rabbitmq(r) => Some(r.test().await),
            Connection::Postgres(_) | Connection::Mysql(_) => None,
        }
    }
}

/// A table function of pipelines that reads an event stream: `STREAM read_kafka(...)`,
/// `read_nats(...)`, `read_rabbitmq(...)`. Each reads exactly once: the flow's commits keep
/// the source's offsets, and an update reads what the source held as it started.
pub struct StreamFunction {
    /// Its name in SQL.
    pub name: &'static str,
    /// The prefix of the flow's offset keys (`kafka:orders/0`).
    pub system: &'static str,
    /// The options that name what it reads, for labels (`subscribe => 'orders'`).
    pub names: &'static [&'static str],
    /// The source, from the options as written; `reader` names the flow reading it (for a
    /// server-side consumer name).
    pub open: OpenStream,
}

/// Opens a stream table function's source from its options and the reader's name.
pub type OpenStream = fn(&[(String, String)], &str) -> Result<Box<dyn ChangeSource>, SourceError>;

/// Every stream table function. MQTT and RabbitMQ queues are not here: they deliver at
/// least once and want an acknowledgement after each commit (`read_mqtt` says so).
pub const STREAM_FUNCTIONS: &[StreamFunction] = &[
    StreamFunction {
        name: "read_kafka",
        system: "kafka",
        names: &["subscribe", "subscribePattern"],
        open: |o, _| Ok(Box::new(crate::kafka::read_kafka(o)?)),
    },
    StreamFunction {
        name: "read_nats",
        system: "nats",
        names: &["stream", "subjects"],
        open: |o, reader| Ok(Box::new(crate::nats::read_nats(o, reader)?)),
    },
    StreamFunction {
        name: "read_rabbitmq",
        system: "rabbitmq",
        names: &["stream", "queue"],
        open: crate::rabbitmq::read_rabbitmq,
    },
    StreamFunction {
        name: "read_mqtt",
        system: "mqtt",
        names: &["topics"],
        open: |_, _| {
            Err(SourceError::definite(
                "read_mqtt: MQTT delivers at least once and wants an acknowledgement after \
                 each commit, which a pipeline flow does not give\n  hint: read the topics \
                 with an ingest entry (`type: mqtt`, de-duplicated by `key`) and the pipeline \
                 from its table with STREAM(...)",
            ))
        },
    },
];

/// The stream table function called `name` (case-insensitive).
pub fn stream_function(name: &str) -> Option<&'static StreamFunction> {
    STREAM_FUNCTIONS
        .iter()
        .find(|f| f.name.eq_ignore_ascii_case(name))
}

impl StreamFunction {
    /// How a call reads in messages and labels: `read_kafka(subscribe => 'orders')`.
    pub fn label(&self, options: &[(String, String)]) -> String {
        let named: Vec<String> = options
            .iter()
            .filter(|(k, _)| self.names.iter().any(|n| n.eq_ignore_ascii_case(k)))
            .map(|(k, v)| format!("{k} => '{v}'"))
            .collect();
        format!("{}({})", self.name, named.join(", "))
    }
}
