//! Kafka (`type: kafka`): topics into a lakehouse table, exactly once.
//!
//! Every partition is read by its own fetch task, concurrently and ahead of the commits;
//! a batch gathers what the tasks fetched. The table's Delta log holds, per
//! `topic/partition`, the offset of the last record it committed (one application
//! transaction per partition, written in the commit that holds the rows), so a restart
//! resumes each partition right after it — no consumer group, no offsets on the broker to
//! disagree with the table. Records the broker deleted (retention) before they were read
//! are an error by default (`fail_on_data_loss`), as in Spark's Kafka source.

mod config;
mod source;

pub use config::{KafkaConnector, Starting, read_kafka};
pub use source::KafkaSource;
