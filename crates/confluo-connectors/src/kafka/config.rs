//! The connection (bootstrap servers, security) and an entry's keys, named as in Spark's
//! Kafka source (`startingOffsets` → `starting_offsets`, ...).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use confluo_core::project::ConnectionConfig;
use confluo_core::source::SourceError;
use rskafka::BackoffConfig;
use rskafka::client::{Client, ClientBuilder, Credentials, SaslConfig};
use serde_yaml_ng::Value;

use super::source::KafkaSource;
use crate::connection_options::{ConnectionOptions, OptionError};
use crate::streams::{FunctionOptions, entry_options, function_error, function_options};

const KNOWN_KEYS: &[&str] = &[
    "bootstrap_servers",
    "security_protocol",
    "sasl_mechanism",
    "user",
    "password",
    "ca_file",
    "client_id",
    "connect_timeout",
];
const ENTRY_KEYS: &[&str] = &[
    "topics",
    "pattern",
    "starting_offsets",
    "starting_timestamp",
    "max_offsets_per_trigger",
    "fail_on_data_loss",
    "topic_refresh_interval",
];

/// How the client authenticates and encrypts, as Kafka's `security.protocol`.
#[derive(Debug, Clone, PartialEq)]
pub enum Security {
    /// No TLS, no SASL.
    Plaintext,
    /// TLS, trusting the Mozilla roots or `ca_file`.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext(Sasl),
    /// SASL over TLS.
    SaslSsl(Sasl),
}

/// A SASL mechanism with its credentials.
#[derive(Debug, Clone, PartialEq)]
pub struct Sasl {
    /// PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    pub mechanism: String,
    /// User.
    pub user: String,
    /// Password.
    pub password: String,
}

/// A `type: kafka` connection.
#[derive(Debug, Clone, PartialEq)]
pub struct KafkaConnector {
    /// The connection's name in `confluo.yaml`.
    pub name: String,
    /// `host:port` of the brokers to start from.
    pub bootstrap: Vec<String>,
    /// Encryption and authentication.
    pub security: Security,
    /// A PEM file of certificates to trust instead of the Mozilla roots.
    pub ca_file: Option<String>,
    /// The client id brokers see.
    pub client_id: String,
    /// How long a request may keep failing (broker down, leader moving) before it is an
    /// error for the runner to retry.
    pub connect_timeout: Duration,
}

/// Where a partition starts when the table holds nothing of it yet.
#[derive(Debug, Clone, PartialEq)]
pub enum Starting {
    /// The oldest record still kept.
    Earliest,
    /// Only records produced from now on.
    Latest,
    /// Per topic and partition, an offset (`-2` earliest, `-1` latest, as in Spark);
    /// partitions not named start at the earliest.
    Offsets(BTreeMap<String, BTreeMap<i32, i64>>),
    /// The first record at or after this time (milliseconds since the epoch).
    Timestamp(i64),
}

/// What an entry reads.
#[derive(Debug, Clone)]
pub enum Subscription {
    /// These topics.
    Topics(Vec<String>),
    /// Every topic whose whole name matches.
    Pattern(regex::Regex),
}

impl KafkaConnector {
    /// Parses connection `name`; unknown keys and bad values are errors naming them.
    pub fn from_connection(name: &str, conn: &ConnectionConfig) -> Result<Self, SourceError> {
        let owner = format!("connection `{name}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let opts = ConnectionOptions::new(name, conn, KNOWN_KEYS).map_err(bad)?;
        let bootstrap: Vec<String> = opts
            .list("bootstrap_servers")
            .map_err(bad)?
            .iter()
            .flat_map(|s| s.split(','))
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty())
            .collect();
        if bootstrap.is_empty() {
            return Err(SourceError::definite(format!(
                "{owner}: `bootstrap_servers` is required\n  hint: add `bootstrap_servers: 127.0.0.1:9092` to {owner} in confluo.yaml"
            )));
        }
        let sasl = || -> Result<Sasl, SourceError> {
            let mechanism = opts
                .get("sasl_mechanism")
                .map_err(bad)?
                .unwrap_or_else(|| "PLAIN".into())
                .to_ascii_uppercase();
            if !["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"].contains(&mechanism.as_str()) {
                return Err(SourceError::definite(format!(
                    "{owner}: `sasl_mechanism` `{mechanism}` is not supported; use PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512"
                )));
            }
            Ok(Sasl {
                mechanism,
                user: opts.require("user").map_err(bad)?,
                password: opts.get("password").map_err(bad)?.unwrap_or_default(),
            })
        };
        let protocol = opts
            .get("security_protocol")
            .map_err(bad)?
            .unwrap_or_else(|| "plaintext".into())
            .to_ascii_lowercase();
        let security = match protocol.as_str() {
            "plaintext" => Security::Plaintext,
            "ssl" => Security::Ssl,
            "sasl_plaintext" => Security::SaslPlaintext(sasl()?),
            "sasl_ssl" => Security::SaslSsl(sasl()?),
            other => {
                return Err(SourceError::definite(format!(
                    "{owner}: `security_protocol` `{other}` is not plaintext, ssl, sasl_plaintext or sasl_ssl"
                )));
            }
        };
        if matches!(security, Security::Plaintext | Security::Ssl)
            && (opts.get("user").map_err(bad)?.is_some()
                || opts.get("sasl_mechanism").map_err(bad)?.is_some())
        {
            return Err(SourceError::definite(format!(
                "{owner}: `user`/`sasl_mechanism` need `security_protocol: sasl_plaintext` or `sasl_ssl` (now {protocol})"
            )));
        }
        let connect_timeout = opts
            .duration("connect_timeout", Duration::from_secs(10))
            .map_err(bad)?;
        Ok(KafkaConnector {
            name: name.to_string(),
            bootstrap,
            security,
            ca_file: opts.get("ca_file").map_err(bad)?,
            client_id: opts
                .get("client_id")
                .map_err(bad)?
                .unwrap_or_else(|| "confluo".into()),
            connect_timeout,
        })
    }

    /// What errors name: the connection and its brokers.
    pub(super) fn what(&self) -> String {
        format!("connection `{}` ({})", self.name, self.bootstrap.join(","))
    }

    /// A client, with every request's retries bounded by `connect_timeout`: an unreachable
    /// broker or a refused login is an error, never a silent wait. A refused login is
    /// definite; anything else transient.
    pub async fn client(&self) -> Result<Client, SourceError> {
        let mut b = ClientBuilder::new(self.bootstrap.clone())
            .client_id(self.client_id.as_str())
            .backoff_config(BackoffConfig {
                init_backoff: Duration::from_millis(50),
                max_backoff: Duration::from_secs(2),
                base: 2.,
                deadline: Some(self.connect_timeout),
            });
        let sasl = match &self.security {
            Security::SaslPlaintext(s) | Security::SaslSsl(s) => Some(s),
            _ => None,
        };
        if let Some(s) = sasl {
            let c = Credentials::new(s.user.clone(), s.password.clone());
            b = b.sasl_config(match s.mechanism.as_str() {
                "SCRAM-SHA-256" => SaslConfig::ScramSha256(c),
                "SCRAM-SHA-512" => SaslConfig::ScramSha512(c),
                _ => SaslConfig::Plain(c),
            });
        }
        if matches!(self.security, Security::Ssl | Security::SaslSsl(_)) {
            b = b.tls_config(self.tls()?);
        }
        let built = tokio::time::timeout(self.connect_timeout + Duration::from_secs(1), b.build());
        match built.await {
            Err(_) => Err(SourceError::transient(format!(
                "{}: no answer within {:?}\n  hint: is the broker running and reachable?",
                self.what(),
                self.connect_timeout
            ))),
            Ok(Ok(c)) => Ok(c),
            Ok(Err(e)) => Err(classify(&self.what(), "connecting", &e)),
        }
    }

    fn tls(&self) -> Result<Arc<rustls::ClientConfig>, SourceError> {
        use rustls_pki_types::CertificateDer;
        use rustls_pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        match &self.ca_file {
            Some(path) => {
                let certs = CertificateDer::pem_file_iter(path).map_err(|e| {
                    SourceError::definite(format!(
                        "connection `{}`: reading `ca_file` {path}: {e}",
                        self.name
                    ))
                })?;
                for cert in certs {
                    let cert = cert.map_err(|e| {
                        SourceError::definite(format!(
                            "connection `{}`: `ca_file` {path}: {e}",
                            self.name
                        ))
                    })?;
                    roots.add(cert).map_err(|e| {
                        SourceError::definite(format!(
                            "connection `{}`: `ca_file` {path}: {e}",
                            self.name
                        ))
                    })?;
                }
            }
            None => roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned()),
        }
        // Both crypto providers are linked (other clients bring aws-lc-rs): name one.
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = rustls::ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| SourceError::definite(format!("connection `{}`: TLS: {e}", self.name)))?
            .with_root_certificates(roots)
            .with_no_client_auth();
        Ok(Arc::new(config))
    }

    /// The source an ingest entry reads: `topics` (a name or a list) or `pattern` (a
    /// regular expression over whole topic names), `starting_offsets` (earliest, latest or
    /// Spark's JSON `{"topic": {"0": 42, "1": -2}}`) or `starting_timestamp` (ms) for
    /// partitions the table holds nothing of, `max_offsets_per_trigger` records per batch
    /// at most, `fail_on_data_loss` (default true).
    pub fn source(
        &self,
        entry: &str,
        options: &BTreeMap<String, Value>,
    ) -> Result<KafkaSource, SourceError> {
        let (shared, opts) = entry_options(entry, options, ENTRY_KEYS)?;
        let owner = format!("ingest entry `{entry}`");
        let bad = |e: OptionError| SourceError::definite(e.describe(&owner));
        let topics = opts.list("topics").map_err(bad)?;
        let subscription = match (topics.is_empty(), opts.get("pattern").map_err(bad)?) {
            (false, None) => Subscription::Topics(topics),
            (true, Some(p)) => {
                Subscription::Pattern(regex::Regex::new(&format!("^(?:{p})$")).map_err(|e| {
                    SourceError::definite(format!(
                        "{owner}: `pattern` is not a regular expression: {e}"
                    ))
                })?)
            }
            (false, Some(_)) => {
                return Err(SourceError::definite(format!(
                    "{owner}: set `topics` or `pattern`, not both"
                )));
            }
            (true, None) => {
                return Err(SourceError::definite(format!(
                    "{owner}: name what to read: `topics: <name or list>` or `pattern: <regular expression>`"
                )));
            }
        };
        let starting = match (
            opts.get("starting_offsets").map_err(bad)?,
            opts.get("starting_timestamp").map_err(bad)?,
        ) {
            (Some(_), Some(_)) => {
                return Err(SourceError::definite(format!(
                    "{owner}: set `starting_offsets` or `starting_timestamp`, not both"
                )));
            }
            (None, Some(t)) => Starting::Timestamp(t.trim().parse().map_err(|_| {
                SourceError::definite(format!(
                    "{owner}: `starting_timestamp` `{t}` is not milliseconds since the epoch"
                ))
            })?),
            (Some(s), None) => parse_starting(&s)
                .map_err(|m| SourceError::definite(format!("{owner}: `starting_offsets` {m}")))?,
            (None, None) => Starting::Earliest,
        };
        let fail_on_data_loss = opts.flag("fail_on_data_loss", true).map_err(bad)?;
        let max_per_batch = opts
            .number("max_offsets_per_trigger")
            .map_err(bad)?
            .map(|n| n.max(1) as usize);
        // How often topics (for a pattern) and partitions are listed again; Kafka clients
        // call it metadata.max.age.ms.
        let refresh = opts
            .duration("topic_refresh_interval", Duration::from_secs(30))
            .map_err(bad)?;
        if refresh < Duration::from_millis(100) {
            return Err(SourceError::definite(format!(
                "{owner}: `topic_refresh_interval` must be at least 100ms"
            )));
        }
        Ok(KafkaSource::new(
            self.clone(),
            shared,
            subscription,
            starting,
            fail_on_data_loss,
            max_per_batch,
        )
        .with_refresh(refresh))
    }

    /// What `confluo connections test` prints: the brokers answer, and their topics.
    pub async fn test(&self) -> Result<serde_json::Value, SourceError> {
        let client = self.client().await?;
        let topics = client
            .list_topics()
            .await
            .map_err(|e| classify(&self.what(), "listing topics", &e))?;
        let names: Vec<serde_json::Value> = topics
            .iter()
            .map(|t| serde_json::json!({"topic": t.name, "partitions": t.partitions.len()}))
            .collect();
        Ok(serde_json::json!({
            "connection": self.name,
            "type": "kafka",
            "bootstrap_servers": self.bootstrap,
            "topics": names,
        }))
    }
}

/// The options of Databricks' `read_kafka(...)` (case-insensitive, as in Spark) and where
/// each goes: a connection key, or an entry key.
const READ_KAFKA: FunctionOptions = &[
    ("bootstrapServers", "bootstrap_servers", true),
    ("kafka.bootstrap.servers", "bootstrap_servers", true),
    ("kafka.security.protocol", "security_protocol", true),
    ("kafka.sasl.mechanism", "sasl_mechanism", true),
    ("kafka.sasl.username", "user", true),
    ("kafka.sasl.password", "password", true),
    ("kafka.ssl.ca.location", "ca_file", true),
    ("subscribe", "topics", false),
    ("subscribePattern", "pattern", false),
    ("startingOffsets", "starting_offsets", false),
    ("startingTimestamp", "starting_timestamp", false),
    ("maxOffsetsPerTrigger", "max_offsets_per_trigger", false),
    ("failOnDataLoss", "fail_on_data_loss", false),
];

/// The source behind Databricks' `read_kafka(bootstrapServers => ..., subscribe => ...)`:
/// the same connector as an ingest entry's, with rows in `read_kafka`'s columns. Unknown
/// options are errors with a suggestion; `assign` and JAAS configuration are refused with
/// what to write instead.
pub fn read_kafka(options: &[(String, String)]) -> Result<KafkaSource, SourceError> {
    let owner = "read_kafka";
    for (name, _) in options {
        match name.to_ascii_lowercase().as_str() {
            "assign" => {
                return Err(SourceError::definite(format!(
                    "{owner}: `assign` is not supported yet\n  hint: name the topics with `subscribe` (a comma-separated list) and where to start with `startingOffsets`"
                )));
            }
            "kafka.sasl.jaas.config" => {
                return Err(SourceError::definite(format!(
                    "{owner}: `kafka.sasl.jaas.config` is not read\n  hint: give `kafka.sasl.username` and `kafka.sasl.password` (with `secret(...)` for the password)"
                )));
            }
            _ => {}
        }
    }
    let (mut conn, entry) = function_options(owner, "kafka", options, READ_KAFKA, &["topics"])?;
    if !conn.options.contains_key("bootstrap_servers") {
        return Err(SourceError::definite(format!(
            "{owner}: `bootstrapServers` is required, e.g. read_kafka(bootstrapServers => '127.0.0.1:9092', subscribe => 'orders')"
        )));
    }
    if conn.options.contains_key("user") && !conn.options.contains_key("security_protocol") {
        conn.options.insert(
            "security_protocol".into(),
            Value::String("sasl_plaintext".into()),
        );
    }
    // Errors speak of the options as the user wrote them.
    let spark_names = function_error(owner, READ_KAFKA);
    let connector = KafkaConnector::from_connection(owner, &conn).map_err(&spark_names)?;
    let source = connector.source(owner, &entry).map_err(&spark_names)?;
    Ok(source.with_spark_columns())
}

/// `earliest`, `latest` or Spark's JSON form.
fn parse_starting(text: &str) -> Result<Starting, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "earliest" => return Ok(Starting::Earliest),
        "latest" => return Ok(Starting::Latest),
        _ => {}
    }
    let json: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        format!(
            "`{text}` is not earliest, latest or JSON like {{\"orders\": {{\"0\": 42, \"1\": -2}}}}"
        )
    })?;
    let mut out = BTreeMap::new();
    let obj = json
        .as_object()
        .ok_or_else(|| "must be a JSON object of topics".to_string())?;
    for (topic, parts) in obj {
        let parts = parts
            .as_object()
            .ok_or_else(|| format!("topic `{topic}`: expected an object of partition → offset"))?;
        let mut p = BTreeMap::new();
        for (part, off) in parts {
            let n: i32 = part
                .parse()
                .map_err(|_| format!("topic `{topic}`: `{part}` is not a partition number"))?;
            let o = off.as_i64().filter(|o| *o >= -2).ok_or_else(|| {
                format!("topic `{topic}` partition {n}: `{off}` is not an offset (-2 earliest, -1 latest)")
            })?;
            p.insert(n, o);
        }
        out.insert(topic.clone(), p);
    }
    Ok(Starting::Offsets(out))
}

/// An rskafka error as a source error: refused logins, unknown topics and authorisation
/// failures are definite; the rest (network, leaders moving, timeouts) transient.
pub(super) fn classify(what: &str, doing: &str, e: &rskafka::client::error::Error) -> SourceError {
    use rskafka::client::error::{Error, ProtocolError as P};
    let text = e.to_string();
    let definite = match e {
        Error::ServerError { protocol_error, .. } => matches!(
            protocol_error,
            P::SaslAuthenticationFailed
                | P::TopicAuthorizationFailed
                | P::ClusterAuthorizationFailed
                | P::UnsupportedSaslMechanism
                | P::IllegalSaslState
        ),
        _ => text.contains("SASL") || text.contains("Sasl") || text.contains("authentication"),
    };
    // The broker's certificate is not trusted: retrying will not change that.
    if text.contains("invalid peer certificate") || text.contains("certificate verify") {
        return SourceError::definite(format!(
            "{what}: {doing}: {text}\n  hint: give the CA that signed the broker's certificate as `ca_file` (the Mozilla roots are trusted otherwise), and check that the certificate names the host in `bootstrap_servers`"
        ));
    }
    if definite {
        SourceError::definite(format!(
            "{what}: {doing}: {text}\n  hint: check `security_protocol`, `sasl_mechanism`, `user` and `password` of the connection"
        ))
    } else {
        SourceError::transient(format!(
            "{what}: {doing}: {text}\n  hint: is the broker running and reachable?"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starting_offsets_read_as_spark_writes_them() {
        assert_eq!(parse_starting("earliest").unwrap(), Starting::Earliest);
        assert_eq!(parse_starting("LATEST").unwrap(), Starting::Latest);
        let Starting::Offsets(o) = parse_starting(r#"{"t": {"0": 5, "1": -2}}"#).unwrap() else {
            panic!()
        };
        assert_eq!(o["t"][&0], 5);
        assert_eq!(o["t"][&1], -2);
        assert!(
            parse_starting("soonest")
                .unwrap_err()
                .contains("not earliest")
        );
        assert!(
            parse_starting(r#"{"t": {"x": 1}}"#)
                .unwrap_err()
                .contains("not a partition")
        );
        assert!(
            parse_starting(r#"{"t": {"0": -7}}"#)
                .unwrap_err()
                .contains("not an offset")
        );
    }
}
