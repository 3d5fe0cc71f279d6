//! Errors of jobs.

/// What can go wrong with a job.
#[derive(Debug, thiserror::Error)]
pub enum JobError {
    /// The job's definition is wrong (found before anything runs).
    #[error("job `{job}`: {message}")]
    Invalid {
        /// The job.
        job: String,
        /// What is wrong, with a hint.
        message: String,
    },
    /// No such job or run.
    #[error("{0}")]
    NotFound(String),
    /// The metastore failed (boxed: it is large, and rare).
    #[error(transparent)]
    Lakehouse(Box<confluo_lakehouse::LakehouseError>),
}

impl From<confluo_lakehouse::LakehouseError> for JobError {
    fn from(e: confluo_lakehouse::LakehouseError) -> Self {
        JobError::Lakehouse(Box::new(e))
    }
}

/// Results of jobs.
pub type Result<T> = std::result::Result<T, JobError>;
