//! Prometheus metrics of `confluo serve`, served at `/metrics` in the OpenMetrics text
//! format: what the endpoints count as they work (queries, their latency, rows and bytes
//! sent, logins, open connections), and what the metastore and event logs say at scrape
//! time (job runs by state, how long since each ingest entry committed and each pipeline
//! completed an update).

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use confluo_core::TableName;
use confluo_lakehouse::Lakehouse;

/// Labels of what an endpoint counts.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Endpoint {
    endpoint: &'static str,
}

/// Labels of a finished query or login.
#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Outcome {
    endpoint: &'static str,
    outcome: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct JobState {
    job: String,
    state: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Entry {
    entry: String,
    table: String,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct Pipeline {
    pipeline: String,
}

type Histograms = Family<Endpoint, Histogram, fn() -> Histogram>;

/// The process's metrics; one per `confluo serve`, shared by its endpoints.
pub struct Metrics {
    registry: Registry,
    queries: Family<Outcome, Counter>,
    latency: Histograms,
    rows: Family<Endpoint, Counter>,
    bytes: Family<Endpoint, Counter>,
    logins: Family<Outcome, Counter>,
    connections: Family<Endpoint, Gauge>,
    job_runs: Family<JobState, Counter>,
    sync_age: Family<Entry, Gauge<f64, std::sync::atomic::AtomicU64>>,
    pipeline_age: Family<Pipeline, Gauge<f64, std::sync::atomic::AtomicU64>>,
}

fn latency_histogram() -> Histogram {
    // 1 ms to ~65 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 17))
}

impl Default for Metrics {
    fn default() -> Self {
        Self::new()
    }
}

impl Metrics {
    /// A registry with every metric at zero.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("confluo");
        let queries = Family::<Outcome, Counter>::default();
        registry.register(
            "queries",
            "Statements run, by endpoint and outcome (ok, error, cancelled)",
            queries.clone(),
        );
        let latency: Histograms = Family::new_with_constructor(latency_histogram);
        registry.register(
            "query_duration_seconds",
            "Time from a statement's arrival to its last row sent",
            latency.clone(),
        );
        let rows = Family::<Endpoint, Counter>::default();
        registry.register("rows_returned", "Rows sent to clients", rows.clone());
        let bytes = Family::<Endpoint, Counter>::default();
        registry.register(
            "result_bytes",
            "Bytes of results sent to clients (HTTP bodies)",
            bytes.clone(),
        );
        let logins = Family::<Outcome, Counter>::default();
        registry.register(
            "logins",
            "Login attempts, by endpoint and outcome (success, failure, refused)",
            logins.clone(),
        );
        let connections = Family::<Endpoint, Gauge>::default();
        registry.register(
            "open_connections",
            "Client connections open now",
            connections.clone(),
        );
        let job_runs = Family::<JobState, Counter>::default();
        registry.register(
            "job_runs",
            "Job runs recorded in the metastore, by job and state",
            job_runs.clone(),
        );
        let sync_age = Family::default();
        registry.register(
            "sync_seconds_since_commit",
            "Seconds since each ingest entry last committed a batch (its lag when the source is busy)",
            Family::clone(&sync_age),
        );
        let pipeline_age = Family::default();
        registry.register(
            "pipeline_seconds_since_update",
            "Seconds since each pipeline last completed an update",
            Family::clone(&pipeline_age),
        );
        Metrics {
            registry,
            queries,
            latency,
            rows,
            bytes,
            logins,
            connections,
            job_runs,
            sync_age,
            pipeline_age,
        }
    }

    /// A statement finished: `outcome` is `ok`, `error` or `cancelled`.
    pub fn query(&self, endpoint: &'static str, outcome: &'static str, took: Duration, rows: u64) {
        self.queries
            .get_or_create(&Outcome { endpoint, outcome })
            .inc();
        self.latency
            .get_or_create(&Endpoint { endpoint })
            .observe(took.as_secs_f64());
        self.rows.get_or_create(&Endpoint { endpoint }).inc_by(rows);
    }

    /// Result bytes sent.
    pub fn bytes(&self, endpoint: &'static str, n: u64) {
        self.bytes.get_or_create(&Endpoint { endpoint }).inc_by(n);
    }

    /// A login attempt: `success`, `failure` or `refused`.
    pub fn login(&self, endpoint: &'static str, outcome: &'static str) {
        self.logins
            .get_or_create(&Outcome { endpoint, outcome })
            .inc();
    }

    /// A connection opened; the guard counts it closed when dropped.
    pub fn connection(self: &Arc<Self>, endpoint: &'static str) -> ConnectionGuard {
        self.connections.get_or_create(&Endpoint { endpoint }).inc();
        ConnectionGuard {
            metrics: self.clone(),
            endpoint,
        }
    }

    /// Reads what the metastore and event logs say now, then renders every metric.
    pub async fn render(
        &self,
        lakehouse: &Arc<Lakehouse>,
        pipelines: &[(String, TableName)],
    ) -> String {
        if let Err(e) = self.observe_state(lakehouse, pipelines).await {
            tracing::warn!("/metrics: cannot read the metastore: {e}");
        }
        let mut out = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut out, &self.registry);
        out
    }

    async fn observe_state(
        &self,
        lakehouse: &Arc<Lakehouse>,
        pipelines: &[(String, TableName)],
    ) -> confluo_lakehouse::Result<()> {
        let ms = lakehouse.metastore();
        for (job, state, n) in ms.job_run_counts().await? {
            let c = self.job_runs.get_or_create(&JobState { job, state });
            // Counts only grow (runs are never deleted); a counter moves by the difference.
            let seen = c.get();
            if n as u64 > seen {
                c.inc_by(n as u64 - seen);
            }
        }
        let now = chrono::Utc::now().timestamp_millis();
        for o in ms.source_offsets().await? {
            self.sync_age
                .get_or_create(&Entry {
                    entry: o.entry,
                    table: o.table,
                })
                .set((now - o.updated_ms).max(0) as f64 / 1000.0);
        }
        // One session for every event log of this scrape, opened only if one exists.
        let mut session = None;
        for (name, log) in pipelines {
            if ms.get_table(log).await?.is_none() {
                continue;
            }
            if session.is_none() {
                session = confluo_sql::SqlSession::new(lakehouse.clone()).await.ok();
            }
            let Some(session) = &session else { break };
            if let Some(at) = last_update_ms(session, log).await {
                self.pipeline_age
                    .get_or_create(&Pipeline {
                        pipeline: name.clone(),
                    })
                    .set((now - at).max(0) as f64 / 1000.0);
            }
        }
        Ok(())
    }
}

/// When the pipeline whose event log is `log` last completed an update.
async fn last_update_ms(session: &confluo_sql::SqlSession, log: &TableName) -> Option<i64> {
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    let sql = format!(
        "SELECT CAST(to_unixtime(max(timestamp)) * 1000 AS BIGINT) FROM \"{}\".\"{}\".\"{}\" WHERE event_type = 'update_completed'",
        log.catalog.as_str(),
        log.schema.as_str(),
        log.table.as_str()
    );
    let batches = session.query(&sql).await.ok()?;
    let col = batches
        .first()?
        .column(0)
        .as_primitive_opt::<Int64Type>()?
        .clone();
    (!col.is_null(0)).then(|| col.value(0))
}

/// One statement being answered: counted (outcome, latency, rows) when dropped, so a
/// result stream that ends, fails or is abandoned by its client is counted once.
pub struct QueryTimer {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
    started: std::time::Instant,
    rows: u64,
    outcome: &'static str,
}

impl QueryTimer {
    /// A statement that arrived at `started`.
    pub fn new(metrics: Arc<Metrics>, endpoint: &'static str, started: std::time::Instant) -> Self {
        QueryTimer {
            metrics,
            endpoint,
            started,
            rows: 0,
            outcome: "ok",
        }
    }

    /// Rows sent.
    pub fn rows(&mut self, n: u64) {
        self.rows += n;
    }

    /// Rows sent so far.
    pub fn rows_sent(&self) -> u64 {
        self.rows
    }

    /// How it ended: `ok` (the default), `error` or `cancelled`.
    pub fn outcome(&mut self, outcome: &'static str) {
        self.outcome = outcome;
    }
}

impl Drop for QueryTimer {
    fn drop(&mut self) {
        self.metrics.query(
            self.endpoint,
            self.outcome,
            self.started.elapsed(),
            self.rows,
        );
    }
}

/// Counts a connection as open while it lives.
pub struct ConnectionGuard {
    metrics: Arc<Metrics>,
    endpoint: &'static str,
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        self.metrics
            .connections
            .get_or_create(&Endpoint {
                endpoint: self.endpoint,
            })
            .dec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_end_in_total_and_histograms_have_buckets() {
        let m = Arc::new(Metrics::new());
        m.query("http", "ok", Duration::from_millis(3), 10);
        m.login("postgres", "failure");
        let guard = m.connection("http");
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(
            out.contains("confluo_queries_total{endpoint=\"http\",outcome=\"ok\"} 1"),
            "{out}"
        );
        assert!(out.contains("confluo_rows_returned_total{endpoint=\"http\"} 10"));
        assert!(out.contains("confluo_logins_total{endpoint=\"postgres\",outcome=\"failure\"} 1"));
        assert!(
            out.contains("confluo_query_duration_seconds_bucket{le=\"0.004\",endpoint=\"http\"} 1"),
            "{out}"
        );
        assert!(out.contains("confluo_open_connections{endpoint=\"http\"} 1"));
        drop(guard);
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &m.registry).unwrap();
        assert!(out.contains("confluo_open_connections{endpoint=\"http\"} 0"));
    }

    /// What the metastore says is read at scrape time: job runs by state and how long ago
    /// each ingest entry committed.
    #[tokio::test]
    async fn scrapes_read_job_runs_and_sync_lag_from_the_metastore() {
        use confluo_core::{Project, ProjectConfig};
        let dir = tempfile::tempdir().unwrap();
        let project = Project::in_memory(dir.path().to_path_buf(), ProjectConfig::with_name("t"));
        let lh = Arc::new(Lakehouse::open(&project).await.unwrap());
        let ms = lh.metastore();
        ms.set_source_offset(
            "confluo:ingest:orders",
            "orders",
            "main.raw.orders",
            &serde_json::json!({"lsn": 1}),
        )
        .await
        .unwrap();
        let m = Metrics::new();
        let out = m.render(&lh, &[]).await;
        assert!(
            out.contains(
                "confluo_sync_seconds_since_commit{entry=\"orders\",table=\"main.raw.orders\"}"
            ),
            "{out}"
        );
        // A pipeline that never ran has no lag to report, and does not fail the scrape.
        let log = TableName::parse("main.default.p_event_log", "main", "default").unwrap();
        let out = m.render(&lh, &[("p".into(), log)]).await;
        assert!(!out.contains("pipeline=\"p\""), "{out}");
    }
}
