//! `type: mysql` connections (MySQL and MariaDB): the settings in `confluo.yaml`, and the
//! only place connections to the server are made.

use crate::connection_options::{ConnectionOptions, OptionError};
use std::path::PathBuf;
use std::time::Duration;

use confluo_core::project::ConnectionConfig;
use confluo_core::suggest;
use sqlx::Connection;
use sqlx::mysql::{MySqlConnectOptions, MySqlConnection, MySqlDatabaseError, MySqlSslMode};

use super::error::{MysqlError, Result};

/// Keys a `type: mysql` connection accepts (besides `type`).
pub const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "database",
    "user",
    "password",
    "ssl_mode",
    "ssl_ca",
    "connect_timeout",
    "unsupported_types",
    "snapshot_split_rows",
    "server_id",
];

/// TLS modes as written in `confluo.yaml`.
const SSL_MODES: [&str; 5] = [
    "disabled",
    "preferred",
    "required",
    "verify_ca",
    "verify_identity",
];

/// What to do with a column whose MySQL type has no Arrow mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnsupportedTypes {
    /// Fail, naming the table, column and type (the default: nothing is changed silently).
    #[default]
    Error,
    /// Read the column as text (`CAST(col AS CHAR)`).
    Text,
}

/// A MySQL or MariaDB connection as configured in `confluo.yaml`.
#[derive(Clone)]
pub struct MysqlConfig {
    /// The connection's name in `confluo.yaml` (used in every message).
    pub name: String,
    /// Host name or address (default `localhost`).
    pub host: String,
    /// Port (default 3306).
    pub port: u16,
    /// Database (schema) to connect to.
    pub database: String,
    /// Login user.
    pub user: String,
    /// Password, already expanded from `${env:NAME}`.
    pub password: Option<String>,
    /// TLS mode (default `preferred`).
    pub ssl_mode: MySqlSslMode,
    /// CA certificate used by `verify_ca` and `verify_identity`.
    pub ssl_ca: Option<PathBuf>,
    /// How long to wait for the server to answer a connection attempt (default 10 s).
    pub connect_timeout: Duration,
    /// What to do with types Confluo cannot map.
    pub unsupported_types: UnsupportedTypes,
    /// Tables with more estimated rows than this (`information_schema.TABLES.TABLE_ROWS`)
    /// are read in key ranges over several connections (default 1,000,000).
    pub snapshot_split_rows: u64,
    /// The replica id change capture registers with (`server_id`); by default one derived
    /// from the ingest entry's name. It must differ from every other replica's.
    pub server_id: Option<u32>,
}

impl std::fmt::Debug for MysqlConfig {
    // The password never reaches logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MysqlConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("ssl_mode", &ssl_mode_name(self.ssl_mode))
            .finish_non_exhaustive()
    }
}

impl MysqlConfig {
    /// Whether `conn` is a `type: mysql` (or `mariadb`) connection.
    pub fn is_mysql(conn: &ConnectionConfig) -> bool {
        matches!(conn.kind.as_str(), "mysql" | "mariadb")
    }

    /// Parses the connection `name` from `confluo.yaml`. Unknown keys, bad values and unset
    /// environment variables are errors naming the connection and the key.
    pub fn from_connection(name: &str, conn: &ConnectionConfig) -> Result<Self> {
        let err = |key: &str, message: String| MysqlError::Config {
            connection: name.to_string(),
            key: key.to_string(),
            message,
        };
        if !Self::is_mysql(conn) {
            return Err(err(
                "type",
                format!(
                    "is `{}`, not `mysql`\n  hint: this command needs a MySQL or MariaDB connection",
                    conn.kind
                ),
            ));
        }
        let opts = ConnectionOptions::new(name, conn, KNOWN_KEYS).map_err(|e| match e {
            OptionError::Unknown { key, hint } => MysqlError::UnknownKey {
                connection: name.to_string(),
                key,
                hint,
            },
            OptionError::Invalid { key, message } => err(&key, message),
        })?;
        let option = |e: OptionError| match e {
            OptionError::Invalid { key, message } | OptionError::Unknown { key, hint: message } => {
                err(&key, message)
            }
        };
        let get = |key: &str| opts.get(key).map_err(option);
        let require = |key: &str| opts.require(key).map_err(option);
        let port = match get("port")? {
            None => 3306,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| err("port", format!("`{p}` is not a port number (1-65535)")))?,
        };
        let ssl_mode = match get("ssl_mode")?.as_deref() {
            None => MySqlSslMode::Preferred,
            Some(s) => match s.to_ascii_lowercase().replace('-', "_").as_str() {
                "disabled" | "disable" => MySqlSslMode::Disabled,
                "preferred" | "prefer" => MySqlSslMode::Preferred,
                "required" | "require" => MySqlSslMode::Required,
                "verify_ca" => MySqlSslMode::VerifyCa,
                "verify_identity" => MySqlSslMode::VerifyIdentity,
                other => {
                    let near = suggest::nearest(other, SSL_MODES);
                    return Err(err(
                        "ssl_mode",
                        format!(
                            "`{other}` is not a TLS mode; use one of {}{}",
                            SSL_MODES.join(", "),
                            suggest::hint(&near)
                        ),
                    ));
                }
            },
        };
        let connect_timeout = opts
            .duration("connect_timeout", Duration::from_secs(10))
            .map_err(option)?;
        let unsupported_types = match get("unsupported_types")?.as_deref() {
            None | Some("error") => UnsupportedTypes::Error,
            Some("text") => UnsupportedTypes::Text,
            Some(other) => {
                return Err(err(
                    "unsupported_types",
                    format!("`{other}` is not valid; use `error` or `text`"),
                ));
            }
        };
        let snapshot_split_rows = match get("snapshot_split_rows")? {
            None => 1_000_000,
            Some(n) => n.replace('_', "").parse::<u64>().map_err(|_| {
                err(
                    "snapshot_split_rows",
                    format!("`{n}` is not a number of rows"),
                )
            })?,
        };
        let server_id = match get("server_id")? {
            None => None,
            Some(n) => Some(n.parse::<u32>().ok().filter(|&n| n > 0).ok_or_else(|| {
                err(
                    "server_id",
                    format!("`{n}` is not a replica server id (1-4294967295, unique among the server's replicas)"),
                )
            })?),
        };
        Ok(MysqlConfig {
            name: name.to_string(),
            server_id,
            host: get("host")?.unwrap_or_else(|| "localhost".into()),
            port,
            database: require("database")?,
            user: require("user")?,
            // An empty password (e.g. an empty variable) means none, as for the mysql client.
            password: get("password")?.filter(|p| !p.is_empty()),
            ssl_mode,
            ssl_ca: get("ssl_ca")?.map(PathBuf::from),
            connect_timeout,
            unsupported_types,
            snapshot_split_rows,
        })
    }

    /// `host:port`, as shown in messages.
    pub fn addr(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    /// The driver's connection options. The driver sets the session time zone to UTC
    /// (TIMESTAMP values arrive in UTC) and the character set to utf8mb4.
    pub fn connect_options(&self) -> MySqlConnectOptions {
        let mut o = MySqlConnectOptions::new()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.database)
            .ssl_mode(self.ssl_mode)
            .charset("utf8mb4");
        if let Some(p) = &self.password {
            o = o.password(p);
        }
        if let Some(ca) = &self.ssl_ca {
            o = o.ssl_ca(ca);
        }
        o
    }

    /// Opens one connection. Failures say which connection, where, and what to check.
    pub async fn connect(&self) -> Result<MySqlConnection> {
        let opts = self.connect_options();
        match tokio::time::timeout(self.connect_timeout, MySqlConnection::connect_with(&opts)).await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(MysqlError::Connect {
                connection: self.name.clone(),
                addr: self.addr(),
                message: format!(
                    "no answer within {} s",
                    self.connect_timeout.as_secs_f64()
                ),
                hint: "check `host` and `port`, that the server is running, and that no firewall drops the traffic; raise `connect_timeout` for a slow network".into(),
            }),
        }
    }

    /// Turns a driver error at connect time into a message with a hint.
    fn connect_error(&self, e: sqlx::Error) -> MysqlError {
        let (message, hint) = match &e {
            sqlx::Error::Database(db) => {
                let number = db
                    .try_downcast_ref::<MySqlDatabaseError>()
                    .map(|d| d.number())
                    .unwrap_or(0);
                let hint = match number {
                    // ER_ACCESS_DENIED_ERROR, ER_DBACCESS_DENIED_ERROR
                    1045 | 1044 | 1698 => format!(
                        "check `user` ({}) and `password` of connection `{}` (a `${{env:NAME}}` password reads the variable when Confluo starts), and that the user may log in from this host",
                        self.user, self.name
                    ),
                    // ER_BAD_DB_ERROR
                    1049 => format!(
                        "database `{}` does not exist on {}; check `database`, or create it (CREATE DATABASE)",
                        self.database,
                        self.addr()
                    ),
                    // ER_CON_COUNT_ERROR, ER_TOO_MANY_USER_CONNECTIONS
                    1040 | 1203 => "the server has no free connections; lower `parallelism` or raise max_connections".into(),
                    _ => "check the connection settings in confluo.yaml".into(),
                };
                (db.message().to_string(), hint)
            }
            sqlx::Error::Io(io) if is_tls_failure(&io.to_string()) => {
                (format!("TLS failed: {io}"), self.tls_hint())
            }
            sqlx::Error::Io(io) => (
                format!("cannot reach the server: {io}"),
                "check `host` and `port`, and that MySQL/MariaDB is running and listening there (bind-address, skip-networking)".into(),
            ),
            sqlx::Error::Tls(t) => (format!("TLS failed: {t}"), self.tls_hint()),
            sqlx::Error::Protocol(m) => (
                format!("the server did not answer like MySQL: {m}"),
                "check `host` and `port`: something else listens there, or a proxy is in the way".into(),
            ),
            other => (
                other.to_string(),
                "check the connection settings in confluo.yaml".into(),
            ),
        };
        MysqlError::Connect {
            connection: self.name.clone(),
            addr: self.addr(),
            message,
            hint,
        }
    }

    fn tls_hint(&self) -> String {
        format!(
            "check `ssl_mode` ({}) and `ssl_ca` (the CA that signed the server's certificate; verify_identity also checks that `host` matches the certificate's name); use `ssl_mode: disabled` only on a trusted network",
            ssl_mode_name(self.ssl_mode)
        )
    }
}

/// Whether an I/O error at connect time is really a TLS failure (rustls reports
/// certificate problems through the I/O error).
fn is_tls_failure(message: &str) -> bool {
    let m = message.to_ascii_lowercase();
    ["certificate", "tls", "handshake", "ssl"]
        .iter()
        .any(|w| m.contains(w))
}

/// The spelling of a TLS mode in `confluo.yaml`.
pub fn ssl_mode_name(mode: MySqlSslMode) -> &'static str {
    match mode {
        MySqlSslMode::Disabled => "disabled",
        MySqlSslMode::Preferred => "preferred",
        MySqlSslMode::Required => "required",
        MySqlSslMode::VerifyCa => "verify_ca",
        MySqlSslMode::VerifyIdentity => "verify_identity",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conn(yaml: &str) -> ConnectionConfig {
        serde_yaml_ng::from_str(yaml).unwrap()
    }

    #[test]
    fn defaults_and_values() {
        let c = MysqlConfig::from_connection(
            "shop",
            &conn("type: mysql\nhost: db\ndatabase: shop\nuser: u\npassword: p\nconnect_timeout: 3s\n"),
        )
        .unwrap();
        assert_eq!(c.port, 3306);
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.unsupported_types, UnsupportedTypes::Error);
        assert_eq!(c.addr(), "db:3306");
        assert!(!format!("{c:?}").contains("\"p\""));
    }

    #[test]
    fn unknown_key_and_bad_ssl_mode() {
        let e = MysqlConfig::from_connection(
            "shop",
            &conn("type: mysql\ndatabase: d\nuser: u\nhots: x\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connection `shop`") && e.contains("did you mean `host`"),
            "{e}"
        );
        let e = MysqlConfig::from_connection(
            "shop",
            &conn("type: mysql\ndatabase: d\nuser: u\nssl_mode: verify_identiti\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("ssl_mode") && e.contains("verify_identity"),
            "{e}"
        );
    }
}
