//! Confluo's connectors to external systems, one folder per system. The folder name is the
//! `type:` users write in `confluo.yaml`.

pub mod arrow_types;
pub mod changes;
pub mod connection_options;
pub mod files;
pub mod kafka;
pub mod mqtt;
pub mod mysql;
pub mod nats;
pub mod postgres;
pub mod rabbitmq;
pub mod registry;
pub mod snapshot;
pub mod streams;
pub mod table_patterns;
