//! The serving side of Confluo: what `confluo serve` listens with. Today the Postgres wire
//! endpoint: every client (psql, psycopg, JDBC, BI tools) runs SQL over the lakehouse as
//! one of the project's users, authenticated with SCRAM-SHA-256, optionally over TLS.

pub mod error;
pub mod pg;
pub mod tls;

pub use error::{Result, ServerError};
pub use pg::{PgEndpoint, PgOptions};
