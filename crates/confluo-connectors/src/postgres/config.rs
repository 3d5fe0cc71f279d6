//! `type: postgres` connections: the settings in `confluo.yaml`, and the only place
//! connections to the server are made.

use crate::connection_options::{ConnectionOptions, OptionError};
use std::path::PathBuf;
use std::time::Duration;

use confluo_core::project::ConnectionConfig;
use confluo_core::suggest;
use sqlx::Connection;
use sqlx::postgres::{PgConnectOptions, PgSslMode};

use super::error::{PostgresError, Result};

/// Keys a `type: postgres` connection accepts (besides `type`).
pub const KNOWN_KEYS: &[&str] = &[
    "host",
    "port",
    "database",
    "user",
    "password",
    "sslmode",
    "sslrootcert",
    "application_name",
    "connect_timeout",
    "unsupported_types",
    "snapshot_split_rows",
    "publication",
    "slot",
];

/// What to do with a column whose PostgreSQL type has no Arrow mapping.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum UnsupportedTypes {
    /// Fail, naming the table, column and type (the default: nothing is changed silently).
    #[default]
    Error,
    /// Read the column as text (`::text` in the COPY query).
    Text,
}

/// A PostgreSQL connection as configured in `confluo.yaml`.
#[derive(Clone)]
pub struct PostgresConfig {
    /// The connection's name in `confluo.yaml` (used in every message).
    pub name: String,
    /// Host name or address (default `localhost`).
    pub host: String,
    /// Port (default 5432).
    pub port: u16,
    /// Database to connect to.
    pub database: String,
    /// Login role.
    pub user: String,
    /// Password, already expanded from `${env:NAME}`.
    pub password: Option<String>,
    /// TLS mode: disable, prefer (default), require, verify-ca, verify-full.
    pub sslmode: PgSslMode,
    /// CA certificate used by verify-ca and verify-full.
    pub sslrootcert: Option<PathBuf>,
    /// Shown in `pg_stat_activity` (default `confluo`).
    pub application_name: String,
    /// How long to wait for the server to answer a connection attempt (default 10 s).
    pub connect_timeout: Duration,
    /// What to do with types Confluo cannot map.
    pub unsupported_types: UnsupportedTypes,
    /// Tables with more estimated rows than this (`pg_class.reltuples`) are read in key
    /// ranges over several connections (default 1,000,000).
    pub snapshot_split_rows: u64,
    /// Publication used by change capture (default chosen by the change-capture engine).
    pub publication: Option<String>,
    /// Replication slot used by change capture (default chosen by the change-capture engine).
    pub slot: Option<String>,
}

impl std::fmt::Debug for PostgresConfig {
    // The password never reaches logs or error messages.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PostgresConfig")
            .field("name", &self.name)
            .field("host", &self.host)
            .field("port", &self.port)
            .field("database", &self.database)
            .field("user", &self.user)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .field("sslmode", &self.sslmode)
            .field("application_name", &self.application_name)
            .finish_non_exhaustive()
    }
}

impl PostgresConfig {
    /// Whether `conn` is a `type: postgres` (or `postgresql`) connection.
    pub fn is_postgres(conn: &ConnectionConfig) -> bool {
        matches!(conn.kind.as_str(), "postgres" | "postgresql")
    }

    /// Parses the connection `name` from `confluo.yaml`. Unknown keys, bad values and unset
    /// environment variables are errors naming the connection and the key.
    pub fn from_connection(name: &str, conn: &ConnectionConfig) -> Result<Self> {
        let err = |key: &str, message: String| PostgresError::Config {
            connection: name.to_string(),
            key: key.to_string(),
            message,
        };
        if !Self::is_postgres(conn) {
            return Err(err(
                "type",
                format!(
                    "is `{}`, not `postgres`\n  hint: this command needs a PostgreSQL connection",
                    conn.kind
                ),
            ));
        }
        let opts = ConnectionOptions::new(name, conn, KNOWN_KEYS).map_err(|e| match e {
            OptionError::Unknown { key, hint } => PostgresError::UnknownKey {
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
            None => 5432,
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| err("port", format!("`{p}` is not a port number (1-65535)")))?,
        };
        let sslmode = match get("sslmode")?.as_deref() {
            None => PgSslMode::Prefer,
            Some(s) => match s.to_ascii_lowercase().as_str() {
                "disable" => PgSslMode::Disable,
                "allow" => PgSslMode::Allow,
                "prefer" => PgSslMode::Prefer,
                "require" => PgSslMode::Require,
                "verify-ca" | "verify_ca" => PgSslMode::VerifyCa,
                "verify-full" | "verify_full" => PgSslMode::VerifyFull,
                other => {
                    let modes = ["disable", "prefer", "require", "verify-ca", "verify-full"];
                    let near = suggest::nearest(other, modes);
                    return Err(err(
                        "sslmode",
                        format!(
                            "`{other}` is not a TLS mode; use one of {}{}",
                            modes.join(", "),
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
        Ok(PostgresConfig {
            name: name.to_string(),
            host: get("host")?.unwrap_or_else(|| "localhost".into()),
            port,
            database: require("database")?,
            user: require("user")?,
            password: get("password")?,
            sslmode,
            sslrootcert: get("sslrootcert")?.map(PathBuf::from),
            application_name: get("application_name")?.unwrap_or_else(|| "confluo".into()),
            connect_timeout,
            unsupported_types,
            snapshot_split_rows,
            publication: get("publication")?,
            slot: get("slot")?,
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

    /// The driver's connection options. Session settings make text renderings stable:
    /// intervals in ISO 8601, dates in ISO, times in UTC, bytea in hex (the copy's `::text`
    /// casts and the change stream's text values depend on them).
    pub fn connect_options(&self) -> PgConnectOptions {
        let mut o = PgConnectOptions::new_without_pgpass()
            .host(&self.host)
            .port(self.port)
            .username(&self.user)
            .database(&self.database)
            .ssl_mode(self.sslmode)
            .application_name(&self.application_name)
            .options([
                ("intervalstyle", "iso_8601"),
                ("datestyle", "ISO"),
                ("timezone", "UTC"),
                ("extra_float_digits", "3"),
                ("bytea_output", "hex"),
            ]);
        if let Some(p) = &self.password {
            o = o.password(p);
        }
        if let Some(ca) = &self.sslrootcert {
            o = o.ssl_root_cert(ca);
        }
        o
    }

    /// Opens one connection. Failures say which connection, where, and what to check.
    pub async fn connect(&self) -> Result<sqlx::PgConnection> {
        let opts = self.connect_options();
        match tokio::time::timeout(self.connect_timeout, sqlx::PgConnection::connect_with(&opts))
            .await
        {
            Ok(Ok(conn)) => Ok(conn),
            Ok(Err(e)) => Err(self.connect_error(e)),
            Err(_) => Err(PostgresError::Connect {
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
    fn connect_error(&self, e: sqlx::Error) -> PostgresError {
        let (message, hint) = match &e {
            sqlx::Error::Database(db) => {
                let code = db.code().map(|c| c.to_string()).unwrap_or_default();
                let hint = match code.as_str() {
                    "28P01" | "28000" => format!(
                        "check `user` ({}) and `password` of connection `{}` (a `${{env:NAME}}` password reads the variable when Confluo starts), and the server's pg_hba.conf",
                        self.user, self.name
                    ),
                    "3D000" => format!(
                        "database `{}` does not exist on {}; check `database`, or create it (CREATE DATABASE)",
                        self.database,
                        self.addr()
                    ),
                    "53300" => "the server has no free connection slots; lower `parallelism` or raise max_connections".into(),
                    _ => "check the connection settings in confluo.yaml".into(),
                };
                (db.message().to_string(), hint)
            }
            sqlx::Error::Io(io) if is_tls_failure(&io.to_string()) => (
                format!("TLS failed: {io}"),
                self.tls_hint(),
            ),
            sqlx::Error::Io(io) => (
                format!("cannot reach the server: {io}"),
                "check `host` and `port`, and that PostgreSQL is running and listening there (listen_addresses)".into(),
            ),
            sqlx::Error::Tls(t) => (format!("TLS failed: {t}"), self.tls_hint()),
            sqlx::Error::Protocol(m) => (
                format!("the server did not answer like PostgreSQL: {m}"),
                "check `host` and `port`: something else listens there, or a proxy is in the way".into(),
            ),
            other => (
                other.to_string(),
                "check the connection settings in confluo.yaml".into(),
            ),
        };
        PostgresError::Connect {
            connection: self.name.clone(),
            addr: self.addr(),
            message,
            hint,
        }
    }
}

impl PostgresConfig {
    fn tls_hint(&self) -> String {
        format!(
            "check `sslmode` ({}) and `sslrootcert` (the CA that signed the server's certificate; verify-full also checks that `host` matches the certificate's name); use `sslmode: disable` only on a trusted network",
            sslmode_name(self.sslmode)
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
pub fn sslmode_name(mode: PgSslMode) -> &'static str {
    match mode {
        PgSslMode::Disable => "disable",
        PgSslMode::Allow => "allow",
        PgSslMode::Prefer => "prefer",
        PgSslMode::Require => "require",
        PgSslMode::VerifyCa => "verify-ca",
        PgSslMode::VerifyFull => "verify-full",
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
        let c = PostgresConfig::from_connection(
            "crm",
            &conn("type: postgres\nhost: db\ndatabase: crm\nuser: u\nconnect_timeout: 3s\n"),
        )
        .unwrap();
        assert_eq!(c.port, 5432);
        assert_eq!(c.application_name, "confluo");
        assert_eq!(c.connect_timeout, Duration::from_secs(3));
        assert_eq!(c.unsupported_types, UnsupportedTypes::Error);
        assert_eq!(c.addr(), "db:5432");
        assert!(!format!("{c:?}").contains("password: Some(\""));
    }

    #[test]
    fn unknown_key_suggests() {
        let e = PostgresConfig::from_connection(
            "crm",
            &conn("type: postgres\ndatabase: d\nuser: u\nhots: x\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("connection `crm`") && e.contains("`hots`"),
            "{e}"
        );
        assert!(e.contains("did you mean `host`"), "{e}");
    }

    #[test]
    fn bad_sslmode_and_unset_env() {
        let e = PostgresConfig::from_connection(
            "crm",
            &conn("type: postgres\ndatabase: d\nuser: u\nsslmode: verify-fulll\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(e.contains("sslmode") && e.contains("verify-full"), "{e}");
        let e = PostgresConfig::from_connection(
            "crm",
            &conn("type: postgres\ndatabase: d\nuser: u\npassword: ${env:CONFLUO_PG_UNSET_X}\n"),
        )
        .unwrap_err()
        .to_string();
        assert!(
            e.contains("CONFLUO_PG_UNSET_X") && e.contains("password"),
            "{e}"
        );
    }
}
