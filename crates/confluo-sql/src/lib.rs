//! Confluo's SQL: the dialect parser, the DataFusion session over the lakehouse catalogs,
//! `read_files`, time travel, the lakehouse statements (DDL, SHOW, DESCRIBE, INSERT), views,
//! and federation (foreign catalogs over PostgreSQL, MySQL/MariaDB and SQLite).

pub mod catalog;
pub mod error;
pub mod federation;
pub mod metadata_column;
pub mod parser;
pub mod read_files;
pub mod rewrite;
pub mod session;
pub mod spark;
pub mod statements;
pub mod system;

pub use error::{Result, SqlError};
pub use session::{SqlOutput, SqlSession};
