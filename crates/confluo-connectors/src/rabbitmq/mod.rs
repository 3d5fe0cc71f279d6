//! RabbitMQ (`type: rabbitmq`): a queue or a stream into a lakehouse table.
//!
//! - **Queues** (AMQP 0-9-1, `queue:`): consumed with manual acknowledgements, every message
//!   of a batch acknowledged (`multiple`) only after its commit. A queue cannot replay, so
//!   delivery is at least once and rows are upserted by `key` — by default `_message_id`,
//!   the message's `message_id` property (messages published without one are identified
//!   by a hash of their routing key and body).
//! - **Streams** (the stream protocol on port 5552, `stream:`): replayable, so exactly once:
//!   the table records the offset of the last message it committed, and a restart subscribes
//!   from the next one. The offset is also stored on the server under the consumer's name,
//!   as a courtesy for tools that look there.

mod config;
mod queue;
mod stream;

pub use config::{RabbitConnector, read_rabbitmq};
pub use queue::QueueSource;
pub use stream::RabbitStreamSource;
