//! End-to-end tests of the `confluo` binary: real files, real Delta tables, real servers.

mod auto_cdc;
mod common;
mod customer360;
mod errors;
mod ingest;
mod interop;
mod jobs;
mod kafka;
mod kafka_avro;
mod kill;
mod lakeflow;
mod mqtt;
mod mysql;
mod mysql_cdc;
mod mysql_types_cdc;
mod mysql_verify;
mod nats;
mod pg;
mod pipeline;
mod postgres;
mod postgres_cdc;
mod postgres_types_cdc;
mod rabbitmq;
mod rescue;
mod slt;
mod sql;
