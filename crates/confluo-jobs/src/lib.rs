//! Jobs: tasks run in dependency order, each when its run condition holds, with retries,
//! timeouts and parameters, every run and attempt recorded in the metastore.
//!
//! A job is checked whole before anything runs ([`spec::Job::check`]): task names,
//! dependencies and cycles, durations, and every `{{...}}` reference. A run
//! ([`engine::run`]) starts each task as soon as its dependencies ended and its `run_if`
//! holds; a task runs as a child process of the `confluo` binary (or `sh -c`), so a timeout
//! or a cancel stops it for real and its output is kept as the attempt's log.

pub mod backfill;
pub mod definitions;
pub mod engine;
pub mod error;
mod exec;
pub mod notify;
mod run_if;
pub mod schedule;
pub mod scheduler;
pub mod spec;
mod template;
pub mod trigger;

pub use engine::{RunEvent, RunOptions, RunReport, TaskOutcome};
pub use error::{JobError, Result};
pub use exec::RUN_AS_ENV;
pub use spec::{Job, Task, TaskKind};
