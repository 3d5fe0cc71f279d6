//! The serving side of Confluo: what `confluo serve` listens with. The Postgres wire
//! endpoint (psql, psycopg, JDBC, BI tools run SQL over the lakehouse as one of the
//! project's users, authenticated with SCRAM-SHA-256) and the HTTP API (catalogs, queries
//! streamed as JSON, CSV or Arrow, pipelines, jobs, `/metrics`, with personal access
//! tokens), both optionally over TLS.

pub mod error;
pub mod http;
pub mod metrics;
pub mod pg;
pub mod tls;

pub use error::{Result, ServerError};
pub use http::{HttpEndpoint, HttpOptions};
pub use metrics::Metrics;
pub use pg::{PgEndpoint, PgOptions};

/// The row count in a lakehouse statement's message (`inserted 3 rows into ...`), which
/// the protocols report as their own counts.
pub(crate) fn rows_in(message: &str) -> Option<usize> {
    let words: Vec<&str> = message.split_whitespace().collect();
    words.windows(2).find_map(|w| {
        let n = w[0].trim_start_matches('(');
        (w[1].starts_with("row")).then(|| n.parse().ok()).flatten()
    })
}

#[cfg(test)]
mod tests {
    #[test]
    fn row_counts_come_from_messages() {
        assert_eq!(
            super::rows_in("inserted 3 rows into main.default.t (version 1)"),
            Some(3)
        );
        assert_eq!(
            super::rows_in("created table main.default.t (1 row)"),
            Some(1)
        );
        assert_eq!(super::rows_in("created schema main.s"), None);
    }
}
