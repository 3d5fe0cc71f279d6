//! MQTT (`type: mqtt`): IoT topics into a lakehouse table, at least once, de-duplicated by key.
//!
//! MQTT cannot replay from an offset, so this source is at least once: it subscribes with
//! QoS 1 in a persistent session (a stable client id, `clean session` off), acknowledges
//! each message only after the batch holding it is committed, and the broker redelivers
//! what was not acknowledged (after a crash, or on reconnect). The runner upserts rows by the
//! entry's `key`, so a redelivered message replaces its earlier copy instead of adding one.
//! Topic levels can become columns (`sensors/+/+` with `topic_levels: [site, device]`).

mod config;
mod source;

pub use config::MqttConnector;
pub use source::MqttSource;
