//! Data quality monitoring: checks declared per table in `confluo.yaml` (`monitors:`),
//! evaluated against a table's newest Delta version with DataFusion; profiles of every
//! column by one scan; every outcome appended to the metric store
//! (`system.quality.check_results`, `system.quality.metrics`), failing rows kept in
//! `<table>_failures`; anomalies judged against each metric's own history (robust scores,
//! seasonality), schema and distribution drift; alerts once per change of status, to
//! webhooks, Slack-compatible hooks and e-mail.

pub mod alerts;
pub mod anomalies;
pub mod anomaly;
pub mod checks;
pub mod compare;
pub mod drift;
pub mod error;
pub mod profile;
pub mod prometheus;
pub mod run;
pub mod spec;
pub mod sql;
pub mod store;
pub mod threshold;

pub use checks::{CheckResult, Status};
pub use error::{QualityError, Result};
pub use run::{MonitorReport, run_all, run_monitor};
pub use spec::{Monitor, monitors};
