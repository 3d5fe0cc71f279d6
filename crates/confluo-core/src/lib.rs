//! Confluo's shared vocabulary: identifiers and three-part table names, the project file
//! (`confluo.yaml`, with its jobs and quality monitors) and how a project is found, name suggestions, the source contract every
//! connector implements (typed offsets, guarantees, error classes), and the error type every
//! other crate builds on.

pub mod error;
pub mod ident;
pub mod jobs;
pub mod project;
pub mod quality;
pub mod source;
pub mod suggest;

pub use error::{Error, Result};
pub use ident::{Ident, TableName};
pub use project::{Project, ProjectConfig};
