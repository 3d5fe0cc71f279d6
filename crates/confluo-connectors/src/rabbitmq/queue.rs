//! A queue over AMQP 0-9-1, acknowledged after each commit.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{
    ArrayRef, BooleanBuilder, RecordBatch, StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use confluo_core::source::{
    Apply, ChangeSource, Guarantee, ReadLimits, SourceBatch, SourceError, TableRows,
};
use lapin::message::Delivery;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions, QueueDeclareOptions};
use lapin::types::FieldTable;
use lapin::{Channel, Connection, ConnectionProperties, Consumer};
use serde_json::Value;

use super::config::RabbitConnector;
use crate::streams::payload::PayloadDecoder;
use crate::streams::{StreamEntry, assemble, gather};

/// The envelope columns every row carries, before the payload's.
pub const ENVELOPE: &[&str] = &[
    "_queue",
    "_exchange",
    "_routing_key",
    "_message_id",
    "_timestamp",
    "_redelivered",
];

/// Connects over AMQP: a refused login is definite, an unreachable broker transient.
pub(super) async fn connect(c: &RabbitConnector) -> Result<Connection, SourceError> {
    let what = format!("connection `{}` ({}:{})", c.name, c.host, c.port);
    let uri = c.amqp_uri();
    let connect = Connection::connect(
        &uri,
        ConnectionProperties::default().with_connection_name("confluo".into()),
    );
    match tokio::time::timeout(c.connect_timeout, connect).await {
        Err(_) => Err(SourceError::transient(format!(
            "{what}: no answer within {:?}\n  hint: is the broker running and reachable?",
            c.connect_timeout
        ))),
        Ok(Ok(conn)) => Ok(conn),
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("ACCESS_REFUSED") || text.contains("auth") || text.contains("403") {
                Err(SourceError::definite(format!(
                    "{what}: the broker refused the login: {text}\n  hint: check `user`, `password` and `vhost` of the connection"
                )))
            } else {
                Err(SourceError::transient(format!(
                    "{what}: {text}\n  hint: is the broker running and reachable?"
                )))
            }
        }
    }
}

/// A queue read for one ingest entry.
pub struct QueueSource {
    conn: RabbitConnector,
    entry: StreamEntry,
    queue: String,
    prefetch: u16,
    tag: String,
    decoder: PayloadDecoder,
    connection: Option<Connection>,
    channel: Option<Channel>,
    consumer: Option<Consumer>,
    /// The delivery tag of the last message handed out, acknowledged (with every one
    /// before it) after the commit.
    to_ack: Option<u64>,
}

impl QueueSource {
    pub(super) fn new(
        conn: RabbitConnector,
        entry: StreamEntry,
        queue: String,
        prefetch: u16,
        tag: String,
    ) -> Self {
        let decoder = PayloadDecoder::new(entry.format.clone());
        QueueSource {
            conn,
            entry,
            queue,
            prefetch,
            tag,
            decoder,
            connection: None,
            channel: None,
            consumer: None,
            to_ack: None,
        }
    }

    fn what(&self) -> String {
        format!("connection `{}`, queue `{}`", self.conn.name, self.queue)
    }

    fn rows(
        &self,
        got: &[Delivery],
        payloads: &[&[u8]],
    ) -> Result<(RecordBatch, u64), SourceError> {
        let mut queue = StringBuilder::new();
        let mut exchange = StringBuilder::new();
        let mut routing = StringBuilder::new();
        let mut id = StringBuilder::new();
        let mut ts = TimestampMicrosecondBuilder::with_capacity(got.len()).with_timezone("UTC");
        let mut redelivered = BooleanBuilder::with_capacity(got.len());
        for d in got {
            queue.append_value(&self.queue);
            exchange.append_value(d.exchange.as_str());
            routing.append_value(d.routing_key.as_str());
            match d.properties.message_id() {
                Some(m) => id.append_value(m.as_str()),
                None => id.append_value(content_id(d.routing_key.as_str(), &d.data)),
            }
            match d.properties.timestamp() {
                Some(t) => ts.append_value((*t as i64).saturating_mul(1_000_000)),
                None => ts.append_null(),
            }
            redelivered.append_value(d.redelivered);
        }
        let locate = |i: usize, m: &mut serde_json::Map<String, Value>| {
            m.insert("_queue".into(), Value::String(self.queue.clone()));
            m.insert(
                "_routing_key".into(),
                Value::String(got[i].routing_key.to_string()),
            );
        };
        let decoded = self.decoder.decode(payloads, &locate).map_err(|e| {
            SourceError::definite(format!("{}: decoding payloads: {e}", self.what()))
        })?;
        let ts_type = DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into()));
        let envelope: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new("_queue", DataType::Utf8, false),
                Arc::new(queue.finish()),
            ),
            (
                Field::new("_exchange", DataType::Utf8, false),
                Arc::new(exchange.finish()),
            ),
            (
                Field::new("_routing_key", DataType::Utf8, false),
                Arc::new(routing.finish()),
            ),
            (
                Field::new("_message_id", DataType::Utf8, false),
                Arc::new(id.finish()),
            ),
            (
                Field::new("_timestamp", ts_type, true),
                Arc::new(ts.finish()),
            ),
            (
                Field::new("_redelivered", DataType::Boolean, false),
                Arc::new(redelivered.finish()),
            ),
        ];
        assemble(envelope, decoded, &self.what())
    }
}

/// The identity of a message published without a `message_id`: a hash of its routing key
/// and body (FNV-1a, 64 bits), so a redelivery of it replaces its copy.
fn content_id(routing_key: &str, body: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in routing_key
        .as_bytes()
        .iter()
        .chain([0u8].iter())
        .chain(body)
    {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("fnv:{h:016x}")
}

#[async_trait::async_trait]
impl ChangeSource for QueueSource {
    fn guarantee(&self) -> Guarantee {
        Guarantee::AtLeastOnce
    }

    fn offset_keys(&self) -> Vec<String> {
        Vec::new()
    }

    fn columns(&self) -> Result<Schema, SourceError> {
        Ok(self.rows(&[], &[])?.0.schema().as_ref().clone())
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        self.consumer = None;
        self.channel = None;
        if let Some(c) = self.connection.take() {
            let _ = c.close(200, "reconnecting".into()).await;
        }
        self.to_ack = None;
        let conn = connect(&self.conn).await?;
        let t = |doing: &str, e: lapin::Error| {
            SourceError::transient(format!("{}: {doing}: {e}", self.what()))
        };
        let channel = conn
            .create_channel()
            .await
            .map_err(|e| t("opening a channel", e))?;
        if let Err(e) = channel
            .queue_declare(
                self.queue.as_str().into(),
                QueueDeclareOptions {
                    passive: true,
                    ..Default::default()
                },
                FieldTable::default(),
            )
            .await
        {
            return Err(if e.to_string().contains("NOT_FOUND") {
                SourceError::definite(format!(
                    "{}: no such queue on {}:{} (vhost `{}`)\n  hint: declare it, or fix `queue:` of ingest entry `{}`",
                    self.what(),
                    self.conn.host,
                    self.conn.port,
                    self.conn.vhost,
                    self.entry.name
                ))
            } else {
                t("checking the queue", e)
            });
        }
        channel
            .basic_qos(self.prefetch, BasicQosOptions::default())
            .await
            .map_err(|e| t("setting the prefetch", e))?;
        let consumer = channel
            .basic_consume(
                self.queue.as_str().into(),
                self.tag.as_str().into(),
                BasicConsumeOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(|e| t("consuming", e))?;
        self.connection = Some(conn);
        self.channel = Some(channel);
        self.consumer = Some(consumer);
        Ok(())
    }

    async fn seek(&mut self, _committed: &BTreeMap<String, i64>) -> Result<(), SourceError> {
        // No offsets: the queue redelivers what was not acknowledged.
        Ok(())
    }

    async fn next_batch(
        &mut self,
        limits: &ReadLimits,
    ) -> Result<Option<SourceBatch>, SourceError> {
        let what = self.what();
        let consumer = self
            .consumer
            .as_mut()
            .ok_or_else(|| SourceError::transient(format!("{what}: not connected")))?;
        let got = gather(
            consumer,
            limits,
            limits.wait,
            |d: &Delivery| d.data.len(),
            |_| true,
            "the broker cancelled the consumer",
        )
        .await
        .map_err(|e| SourceError::transient(format!("{what}: {e}")))?;
        if got.is_empty() {
            return Ok(None);
        }
        let bytes: usize = got.iter().map(|d| d.data.len()).sum();
        let payloads: Vec<&[u8]> = got.iter().map(|d| d.data.as_slice()).collect();
        self.decoder.prepare(&payloads).await?;
        let (rows, rescued) = self.rows(&got, &payloads)?;
        let newest = got
            .iter()
            .filter_map(|d| d.properties.timestamp().map(|t| t as i64 * 1_000_000))
            .max();
        self.to_ack = got.last().map(|d| d.delivery_tag);
        Ok(Some(SourceBatch {
            tables: vec![TableRows {
                table: self.entry.table.clone(),
                rows,
                apply: Apply::Upsert {
                    keys: self.entry.key.clone(),
                },
            }],
            offset: None,
            messages: got.len() as u64,
            bytes: bytes as u64,
            newest_micros: newest,
            rescued,
        }))
    }

    async fn ack(&mut self) -> Result<(), SourceError> {
        let (Some(tag), Some(channel)) = (self.to_ack.take(), &self.channel) else {
            return Ok(());
        };
        channel
            .basic_ack(tag, BasicAckOptions { multiple: true })
            .await
            .map_err(|e| SourceError::transient(format!("{}: acknowledging: {e}", self.what())))
    }

    fn set_table_schema(&mut self, _table: &str, schema: &Schema) {
        self.decoder.set_table_schema(schema, ENVELOPE);
    }
}
