//! The project: a folder with a `confluo.yaml`, found by walking up from the current folder.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// File name of the project file.
pub const PROJECT_FILE: &str = "confluo.yaml";

/// The contents of `confluo.yaml`. Unknown keys are errors, so a typo never passes silently.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ProjectConfig {
    /// The project's name.
    pub name: String,
    /// Where tables are stored.
    #[serde(default)]
    pub storage: StorageConfig,
    /// Catalog used when a name has fewer than three parts.
    #[serde(default = "default_catalog")]
    pub catalog: String,
    /// Schema used when a name has one part.
    #[serde(default = "default_schema")]
    pub schema: String,
    /// Folder for local state (metastore, history), relative to the project.
    #[serde(default = "default_state_dir")]
    pub state_dir: String,
    /// Where the metastore lives.
    #[serde(default)]
    pub metastore: MetastoreConfig,
    /// Named connections to external systems.
    #[serde(default)]
    pub connections: BTreeMap<String, ConnectionConfig>,
    /// Declarative pipelines, by name.
    #[serde(default)]
    pub pipelines: BTreeMap<String, PipelineConfig>,
    /// Managed ingestion from a connection into lakehouse tables, by entry name.
    #[serde(default)]
    pub ingest: BTreeMap<String, IngestConfig>,
    /// Jobs: tasks run in dependency order, by job name.
    #[serde(default)]
    pub jobs: BTreeMap<String, crate::jobs::JobConfig>,
    /// The SMTP server jobs' e-mail notifications and monitors' alerts go through.
    #[serde(default)]
    pub smtp: Option<crate::jobs::SmtpConfig>,
    /// Data quality monitors, by table name.
    #[serde(default)]
    pub monitors: BTreeMap<String, crate::quality::MonitorConfig>,
    /// What `confluo serve` listens with, and whom it lets in.
    #[serde(default)]
    pub server: ServerConfig,
}

/// `server:` in `confluo.yaml`. Command-line flags of `confluo serve` override it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    /// `host:port` of the Postgres wire endpoint; `off` to serve no SQL.
    #[serde(default = "default_postgres_listen")]
    pub postgres: String,
    /// `host:port` of the HTTP API (and `/metrics`); `off` for none.
    #[serde(default = "default_http_listen")]
    pub http: String,
    /// TLS certificate chain (PEM), relative to the project.
    #[serde(default)]
    pub tls_cert: Option<String>,
    /// TLS private key (PEM), relative to the project.
    #[serde(default)]
    pub tls_key: Option<String>,
    /// Refuse clients that do not use TLS.
    #[serde(default)]
    pub require_tls: bool,
    /// Let clients in without a password (a local sandbox only: never on a shared host).
    #[serde(default)]
    pub allow_anonymous: bool,
    /// Connections served at once.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            postgres: default_postgres_listen(),
            http: default_http_listen(),
            tls_cert: None,
            tls_key: None,
            require_tls: false,
            allow_anonymous: false,
            max_connections: default_max_connections(),
        }
    }
}

fn default_postgres_listen() -> String {
    "127.0.0.1:5433".into()
}

fn default_http_listen() -> String {
    "127.0.0.1:8433".into()
}

fn default_max_connections() -> usize {
    256
}

/// A managed ingestion entry: what a connection feeds, kept as lakehouse tables in
/// `schema`. Database connections name source `tables` (one lakehouse table per source
/// table, named like it); stream connections (Kafka, NATS, MQTT, RabbitMQ) name what they
/// read with their own keys, kept in `options` and validated by the connector, which refuses
/// keys it does not know.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct IngestConfig {
    /// The connection (a key of `connections`).
    pub connection: String,
    /// Source tables of a database: names or globs over `schema.table` (`public.*`,
    /// `sales.order_*`).
    #[serde(default)]
    pub tables: Vec<String>,
    /// The target lakehouse schema (`schema` or `catalog.schema`); created if missing.
    pub schema: String,
    /// `snapshot` (a full copy each sync, the default) or `cdc` (change capture).
    #[serde(default)]
    pub mode: IngestMode,
    /// How changes are applied in `cdc` mode: 1 keeps the latest row, 2 keeps history.
    #[serde(default)]
    pub scd_type: ScdType,
    /// Source connections read in parallel (default 4).
    #[serde(default)]
    pub parallelism: Option<usize>,
    /// Every other key: the connector's own (`topics`, `stream`, `format`, ...), which it
    /// validates; a database connector refuses them all.
    #[serde(flatten)]
    pub options: BTreeMap<String, serde_yaml_ng::Value>,
}

/// The keys every ingest entry may have, whatever its connector.
pub const INGEST_KEYS: &[&str] = &[
    "connection",
    "tables",
    "schema",
    "mode",
    "scd_type",
    "parallelism",
];

/// How an ingestion entry keeps its tables in sync.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "snake_case")]
pub enum IngestMode {
    /// A consistent full copy, overwriting the tables.
    #[default]
    Snapshot,
    /// A snapshot, then the source's change stream.
    Cdc,
}

/// Slowly changing dimension type of a CDC target.
#[derive(Debug, Clone, Copy, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(try_from = "u8", into = "u8")]
pub enum ScdType {
    /// Latest row per key.
    #[default]
    Type1,
    /// Every version, with `__START_AT` / `__END_AT`.
    Type2,
}

impl TryFrom<u8> for ScdType {
    type Error = String;
    fn try_from(v: u8) -> std::result::Result<Self, String> {
        match v {
            1 => Ok(ScdType::Type1),
            2 => Ok(ScdType::Type2),
            n => Err(format!("scd_type must be 1 or 2, not {n}")),
        }
    }
}

impl From<ScdType> for u8 {
    fn from(t: ScdType) -> u8 {
        match t {
            ScdType::Type1 => 1,
            ScdType::Type2 => 2,
        }
    }
}

/// A declarative pipeline: the SQL files that define it and where its datasets go.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct PipelineConfig {
    /// Globs of SQL files, relative to the project (default `pipelines/**/*.sql`).
    #[serde(default = "default_libraries")]
    pub libraries: Vec<String>,
    /// Catalog for the pipeline's datasets (default: the project's).
    #[serde(default)]
    pub catalog: Option<String>,
    /// Schema for the pipeline's datasets (default: the project's).
    #[serde(default, alias = "database", alias = "target")]
    pub schema: Option<String>,
    /// Values for `${key}` in the SQL (overridden by `SET key = value` in the files).
    #[serde(default)]
    pub configuration: BTreeMap<String, String>,
    /// After each update that succeeds, run the `monitors:` of the tables it updated; the
    /// run fails when one of their checks does.
    #[serde(default)]
    pub monitors: bool,
}

impl Default for PipelineConfig {
    fn default() -> Self {
        PipelineConfig {
            libraries: default_libraries(),
            catalog: None,
            schema: None,
            configuration: BTreeMap::new(),
            monitors: false,
        }
    }
}

fn default_libraries() -> Vec<String> {
    vec!["pipelines/**/*.sql".into()]
}

/// File names of a Spark Declarative Pipelines spec, used when there is no `confluo.yaml`.
pub const SPARK_PIPELINE_FILES: [&str; 4] = [
    "spark-pipeline.yml",
    "spark-pipeline.yaml",
    "pipeline.yml",
    "pipeline.yaml",
];

/// A Spark Declarative Pipelines spec (`spark-pipeline.yml`).
#[derive(Debug, Deserialize)]
struct SparkPipelineSpec {
    name: String,
    #[serde(default)]
    #[allow(dead_code)]
    storage: Option<String>,
    #[serde(default)]
    catalog: Option<String>,
    #[serde(default, alias = "schema")]
    database: Option<String>,
    #[serde(default)]
    configuration: BTreeMap<String, serde_yaml_ng::Value>,
    #[serde(default)]
    libraries: Vec<SparkLibrary>,
}

#[derive(Debug, Deserialize)]
struct SparkLibrary {
    glob: SparkGlob,
}

#[derive(Debug, Deserialize)]
struct SparkGlob {
    include: String,
}

impl SparkPipelineSpec {
    fn into_config(self) -> ProjectConfig {
        let mut config = ProjectConfig::with_name(self.name.clone());
        let configuration = self
            .configuration
            .into_iter()
            .map(|(k, v)| {
                let v = match v {
                    serde_yaml_ng::Value::String(s) => s,
                    other => serde_yaml_ng::to_string(&other)
                        .unwrap_or_default()
                        .trim()
                        .to_string(),
                };
                (k, v)
            })
            .collect();
        let libraries = self
            .libraries
            .into_iter()
            .map(|l| {
                // SDP globs name folders (`transformations/**`); only SQL files are ours.
                let g = l.glob.include;
                if g.ends_with("**") || g.ends_with('/') {
                    format!("{}/*.sql", g.trim_end_matches('/'))
                } else {
                    g
                }
            })
            .collect();
        config.pipelines.insert(
            self.name,
            PipelineConfig {
                libraries,
                catalog: self.catalog,
                schema: self.database,
                configuration,
                monitors: false,
            },
        );
        config
    }
}

/// Storage root of the lakehouse: a local folder or an object-store URL.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, from = "StorageConfigRepr")]
pub struct StorageConfig {
    /// `./lakehouse`, `/abs/path`, `file:///...` or `s3://bucket/prefix`.
    pub root: String,
    /// Options for the object store (endpoint, region, credentials as `${env:NAME}`).
    #[serde(default)]
    pub options: BTreeMap<String, String>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum StorageConfigRepr {
    Root(String),
    #[serde(rename_all = "snake_case")]
    Full {
        #[serde(default = "default_root")]
        root: String,
        #[serde(default)]
        options: BTreeMap<String, String>,
    },
}

impl From<StorageConfigRepr> for StorageConfig {
    fn from(repr: StorageConfigRepr) -> Self {
        match repr {
            StorageConfigRepr::Root(root) => StorageConfig {
                root,
                options: BTreeMap::new(),
            },
            StorageConfigRepr::Full { root, options } => StorageConfig { root, options },
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            root: default_root(),
            options: BTreeMap::new(),
        }
    }
}

/// Where catalogs, schemas and tables are recorded.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields)]
pub struct MetastoreConfig {
    /// `sqlite://path` or `postgres://...`; empty means SQLite in the state folder.
    #[serde(default)]
    pub url: Option<String>,
}

/// A connection to an external system. Only the shape is fixed here: `type` picks the
/// connector, which validates the remaining keys itself.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ConnectionConfig {
    /// The connector, e.g. `postgres` or `mysql`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Connector-specific settings.
    #[serde(flatten)]
    pub options: BTreeMap<String, serde_yaml_ng::Value>,
}

fn default_root() -> String {
    "./lakehouse".into()
}
fn default_catalog() -> String {
    "main".into()
}
fn default_schema() -> String {
    "default".into()
}
fn default_state_dir() -> String {
    ".confluo".into()
}

impl ProjectConfig {
    /// A configuration with every default and the given name.
    pub fn with_name(name: impl Into<String>) -> Self {
        ProjectConfig {
            name: name.into(),
            storage: StorageConfig::default(),
            catalog: default_catalog(),
            schema: default_schema(),
            state_dir: default_state_dir(),
            metastore: MetastoreConfig::default(),
            connections: BTreeMap::new(),
            pipelines: BTreeMap::new(),
            ingest: BTreeMap::new(),
            jobs: BTreeMap::new(),
            smtp: None,
            monitors: BTreeMap::new(),
            server: ServerConfig::default(),
        }
    }

    /// Parses project YAML; `path` is only used in error messages.
    pub fn from_yaml(text: &str, path: &Path) -> Result<Self> {
        serde_yaml_ng::from_str(text).map_err(|e| {
            let location = e
                .location()
                .map(|l| format!(":{}:{}", l.line(), l.column()))
                .unwrap_or_default();
            Error::ProjectFile {
                path: path.to_path_buf(),
                location,
                message: e.to_string(),
            }
        })
    }
}

/// A loaded project: its root folder and configuration.
#[derive(Debug, Clone)]
pub struct Project {
    /// The folder holding `confluo.yaml`.
    pub root: PathBuf,
    /// The parsed configuration.
    pub config: ProjectConfig,
}

impl Project {
    /// Finds the project containing `start` by walking up to the first `confluo.yaml`.
    pub fn discover(start: &Path) -> Result<Self> {
        let start = absolute(start)?;
        let mut dir = Some(start.as_path());
        while let Some(d) = dir {
            if d.join(PROJECT_FILE).is_file() {
                return Self::load(d);
            }
            if SPARK_PIPELINE_FILES.iter().any(|f| d.join(f).is_file()) {
                return Self::load(d);
            }
            dir = d.parent();
        }
        Err(Error::ProjectNotFound { start })
    }

    /// Loads the project in `dir` (which must hold a `confluo.yaml`).
    pub fn load(dir: &Path) -> Result<Self> {
        let root = absolute(dir)?;
        let path = root.join(PROJECT_FILE);
        if !path.is_file()
            && let Some(spec) = SPARK_PIPELINE_FILES
                .iter()
                .map(|f| root.join(f))
                .find(|p| p.is_file())
        {
            let text = std::fs::read_to_string(&spec).map_err(|e| Error::io(&spec, e))?;
            let parsed: SparkPipelineSpec =
                serde_yaml_ng::from_str(&text).map_err(|e| Error::ProjectFile {
                    path: spec.clone(),
                    location: e
                        .location()
                        .map(|l| format!(":{}:{}", l.line(), l.column()))
                        .unwrap_or_default(),
                    message: e.to_string(),
                })?;
            return Ok(Project {
                root,
                config: parsed.into_config(),
            });
        }
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::ProjectNotFound {
                    start: root.clone(),
                }
            } else {
                Error::io(&path, e)
            }
        })?;
        let config = ProjectConfig::from_yaml(&text, &path)?;
        Ok(Project { root, config })
    }

    /// A project made from a configuration in memory (used by `confluo demo` and tests).
    pub fn in_memory(root: PathBuf, config: ProjectConfig) -> Self {
        Project { root, config }
    }

    /// The state folder (metastore, ingest records, shell history).
    pub fn state_dir(&self) -> PathBuf {
        self.resolve(&self.config.state_dir)
    }

    /// The storage root as a URL string: local paths are made absolute.
    pub fn storage_root(&self) -> String {
        let root = &self.config.storage.root;
        if root.contains("://") {
            root.clone()
        } else {
            self.resolve(root).to_string_lossy().into_owned()
        }
    }

    /// The metastore URL: the configured one, or SQLite in the state folder.
    pub fn metastore_url(&self) -> String {
        match &self.config.metastore.url {
            Some(url) if !url.is_empty() => expand_env(url).unwrap_or_else(|_| url.clone()),
            _ => format!(
                "sqlite://{}?mode=rwc",
                self.state_dir().join("metastore.db").display()
            ),
        }
    }

    /// Resolves a path relative to the project root.
    pub fn resolve(&self, path: &str) -> PathBuf {
        let p = Path::new(path);
        if p.is_absolute() {
            p.to_path_buf()
        } else {
            normalize(&self.root.join(p))
        }
    }
}

/// Replaces every `${env:NAME}` in `text` with the variable's value.
pub fn expand_env(text: &str) -> Result<String> {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find("${env:") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 6..];
        let end = after.find('}').ok_or_else(|| Error::Config {
            key: text.to_string(),
            message: "unterminated `${env:` reference".into(),
        })?;
        let name = &after[..end];
        let value = std::env::var(name).map_err(|_| Error::Config {
            key: format!("${{env:{name}}}"),
            message: format!("environment variable {name} is not set"),
        })?;
        out.push_str(&value);
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn absolute(path: &Path) -> Result<PathBuf> {
    let p = if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()
            .map_err(|e| Error::io(path, e))?
            .join(path)
    };
    Ok(normalize(&p))
}

/// Removes `.` and `..` components without touching the file system.
fn normalize(path: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// The commented starter `confluo.yaml` written by `confluo init`.
pub fn starter_yaml(name: &str) -> String {
    format!(
        r#"# Confluo project file. Every command finds the project by walking up from the
# current folder to this file, or takes --project DIR.
name: {name}

# Where Delta tables are stored: a local folder (relative to this file) or an
# object store such as s3://bucket/prefix (put credentials in `options` as ${{env:NAME}}).
storage:
  root: ./lakehouse
  # options:
  #   aws_endpoint: http://127.0.0.1:9000
  #   aws_access_key_id: ${{env:AWS_ACCESS_KEY_ID}}
  #   aws_secret_access_key: ${{env:AWS_SECRET_ACCESS_KEY}}

# Names with fewer than three parts are completed with these.
catalog: main
schema: default

# Local state: the metastore (SQLite), ingest records and shell history.
state_dir: .confluo

# The metastore defaults to SQLite in state_dir. Several workers can share one in
# PostgreSQL instead:
# metastore:
#   url: postgres://confluo@127.0.0.1:5432/confluo

# Connections to external systems. Secrets are never written inline.
connections: {{}}
#   crm:
#     type: postgres
#     host: 127.0.0.1
#     port: 5432
#     database: crm
#     user: confluo
#     password: ${{env:CRM_PASSWORD}}
#     sslmode: prefer            # disable | prefer | require | verify-ca | verify-full
#     unsupported_types: error   # or text: read types Confluo cannot map as text

# Managed ingestion: `confluo sync` copies source tables into lakehouse tables, one per
# source table, named like it, in `schema` (created if missing).
ingest: {{}}
#   crm:
#     connection: crm
#     tables: ["public.*"]       # names or globs over schema.table
#     schema: bronze
#     mode: snapshot             # snapshot (full copy each sync) | cdc (change capture)
#     parallelism: 4

# Declarative pipelines: SQL files (Lakeflow / Spark Declarative Pipelines dialect)
# that define streaming tables, materialized views, views and flows. `confluo run`
# updates them; `confluo validate` checks them without moving data.
pipelines: {{}}
#   shop:
#     libraries: ["pipelines/**/*.sql"]
#     schema: analytics
#     configuration:
#       source_path: data/orders

# Jobs: tasks run in dependency order, with retries, timeouts and parameters.
# `confluo jobs run NAME` runs one now; `confluo serve` runs the schedules.
jobs: {{}}
#   nightly:
#     schedule: {{cron: "0 6 * * *", timezone: UTC, missed: last}}
#     tasks:
#       - key: sync
#         sync: crm
#       - key: refresh
#         pipeline: shop
#         depends_on: [sync]
#       - key: check
#         sql: "SELECT count(*) AS n FROM analytics.orders"
#         depends_on: [refresh]
#         retries: 2
#         retry_backoff: 30s
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn starter_parses_with_defaults() {
        let cfg =
            ProjectConfig::from_yaml(&starter_yaml("demo"), Path::new("confluo.yaml")).unwrap();
        assert_eq!(cfg, ProjectConfig::with_name("demo"));
    }

    #[test]
    fn unknown_keys_are_errors_with_location() {
        let err = ProjectConfig::from_yaml("name: x\nstorag: ./y\n", Path::new("p/confluo.yaml"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("p/confluo.yaml:2:1"), "{err}");
        assert!(err.contains("storag"), "{err}");
    }

    #[test]
    fn ingest_entries() {
        let cfg = ProjectConfig::from_yaml(
            "name: x\ningest:\n  crm:\n    connection: pg\n    tables: [public.*]\n    schema: bronze\n",
            Path::new("c"),
        )
        .unwrap();
        let e = &cfg.ingest["crm"];
        assert_eq!(e.mode, IngestMode::Snapshot);
        assert_eq!(e.scd_type, ScdType::Type1);
        let err = ProjectConfig::from_yaml(
            "name: x\ningest:\n  crm:\n    connection: pg\n    tables: [a]\n    schema: b\n    scd_type: 3\n",
            Path::new("c"),
        )
        .unwrap_err()
        .to_string();
        assert!(err.contains("scd_type must be 1 or 2"), "{err}");
        // Other keys are the connector's to read (and refuse: `confluo sync` names a typo).
        let cfg = ProjectConfig::from_yaml(
            "name: x\ningest:\n  crm:\n    connection: pg\n    tables: [a]\n    schema: b\n    modee: cdc\n",
            Path::new("c"),
        )
        .unwrap();
        assert!(cfg.ingest["crm"].options.contains_key("modee"));
    }

    #[test]
    fn storage_as_plain_string() {
        let cfg =
            ProjectConfig::from_yaml("name: x\nstorage: /data/lake\n", Path::new("c")).unwrap();
        assert_eq!(cfg.storage.root, "/data/lake");
    }

    #[test]
    fn discover_walks_up() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(PROJECT_FILE), starter_yaml("p")).unwrap();
        let nested = dir.path().join("a/b");
        std::fs::create_dir_all(&nested).unwrap();
        let p = Project::discover(&nested).unwrap();
        assert_eq!(
            p.root,
            dir.path()
                .canonicalize()
                .unwrap_or(dir.path().to_path_buf())
        );
        assert!(Project::discover(Path::new("/")).is_err());
    }

    #[test]
    fn env_expansion() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("CONFLUO_TEST_SECRET", "s3cr3t") };
        assert_eq!(
            expand_env("a${env:CONFLUO_TEST_SECRET}b").unwrap(),
            "as3cr3tb"
        );
        assert!(expand_env("${env:CONFLUO_SURELY_UNSET_VAR}").is_err());
    }
}
