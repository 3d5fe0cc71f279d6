//! NATS JetStream (`type: nats`): a stream's messages into a lakehouse table, exactly once.
//!
//! The table's Delta log holds the stream sequence of the last message it committed (an
//! application transaction), so where to resume is read from the table itself. Each run
//! (re)creates a durable pull consumer that starts right after it, acknowledges everything
//! up to a batch's last message once that batch is committed (`AckPolicy::All`), and skips
//! any redelivered message at or below the last sequence it handed out. A consumer left
//! behind by a crash is recreated from the table's position, so nothing it delivered but
//! never acknowledged is lost or read twice.

mod config;
mod source;

pub use config::{NatsConnector, read_nats};
pub use source::JetStreamSource;
