//! Declarative pipelines: streaming tables, materialized views, views and flows defined in
//! Lakeflow / Spark Declarative Pipelines SQL, kept up to date incrementally, with
//! expectations and an event log.
//!
//! [`graph::load`] reads and resolves a pipeline's files; [`run::Runner`] validates every
//! flow against placeholders and then updates the datasets in dependency order.

pub mod auto_cdc;
pub mod declared;
pub mod dialect;
pub mod error;
pub mod event_log;
pub mod expectations;
pub mod graph;
pub mod managed;
pub mod run;

pub use error::{PipelineError, Pos, Result};
pub use graph::{Pipeline, load, select};
pub use run::{RunOptions, Runner, Status, UpdateReport};
