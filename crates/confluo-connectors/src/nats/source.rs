//! Reading a JetStream stream in batches through a durable pull consumer.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use arrow::array::{
    Array, ArrayRef, Int64Builder, MapBuilder, RecordBatch, StringBuilder,
    TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use async_nats::jetstream::consumer::{AckPolicy, DeliverPolicy, PullConsumer, pull};
use async_nats::jetstream::{self, Context, stream};
use confluo_core::source::{
    ChangeSource, Guarantee, Offset, ReadLimits, SourceBatch, SourceError, TableRows,
};
use futures::StreamExt;
use serde_json::Value;

use super::config::NatsConnector;
use crate::streams::payload::PayloadDecoder;
use crate::streams::{StreamEntry, assemble};

/// The envelope columns every row carries, before the payload's.
pub const ENVELOPE: &[&str] = &["_subject", "_sequence", "_published", "_headers"];

/// Where to start when the table holds nothing yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The stream's first message.
    Earliest,
    /// Only messages published from now on.
    Latest,
    /// This stream sequence.
    Sequence(u64),
}

/// A stream read for one ingest entry.
pub struct JetStreamSource {
    conn: NatsConnector,
    entry: StreamEntry,
    stream: String,
    subjects: Vec<String>,
    consumer_name: String,
    start: Start,
    fail_on_data_loss: bool,
    decoder: PayloadDecoder,
    js: Option<Context>,
    consumer: Option<PullConsumer>,
    /// The last stream sequence handed out (or committed, after a seek): redeliveries at or
    /// below it are dropped.
    last: u64,
    /// The stream's last sequence when it was positioned (see `caught_up`).
    end_at_seek: u64,
    /// Where `start` placed a table that held nothing yet, when it is not the beginning:
    /// kept by [`ChangeSource::starting_batch`].
    resolved: Option<u64>,
    /// The last message of the batches handed out, acknowledged (with everything before
    /// it) once they are committed.
    to_ack: Option<jetstream::Message>,
}

impl JetStreamSource {
    pub(super) fn new(
        conn: NatsConnector,
        entry: StreamEntry,
        stream: String,
        subjects: Vec<String>,
        consumer_name: String,
        start: Start,
        fail_on_data_loss: bool,
    ) -> Self {
        let decoder = PayloadDecoder::new(entry.format.clone());
        JetStreamSource {
            conn,
            entry,
            stream,
            subjects,
            consumer_name,
            start,
            fail_on_data_loss,
            decoder,
            js: None,
            consumer: None,
            last: 0,
            end_at_seek: 0,
            resolved: None,
            to_ack: None,
        }
    }

    /// The entry's settings.
    pub fn entry(&self) -> &StreamEntry {
        &self.entry
    }

    fn what(&self) -> String {
        format!("connection `{}`, stream `{}`", self.conn.name, self.stream)
    }

    fn transient(&self, doing: &str, e: impl std::fmt::Display) -> SourceError {
        SourceError::transient(format!("{}: {doing}: {e}", self.what()))
    }

    async fn stream_handle(&self) -> Result<stream::Stream, SourceError> {
        let js = self
            .js
            .as_ref()
            .ok_or_else(|| self.transient("reading", "not connected"))?;
        js.get_stream(&self.stream).await.map_err(|e| {
            let text = e.to_string();
            if text.contains("not found") || text.contains("10059") {
                SourceError::definite(format!(
                    "{}: no such stream on {}\n  hint: create it (`nats stream add {}`) or fix `stream:` of ingest entry `{}`",
                    self.what(),
                    self.conn.url,
                    self.stream,
                    self.entry.name
                ))
            } else {
                self.transient("looking up the stream", e)
            }
        })
    }
}

#[async_trait::async_trait]
impl ChangeSource for JetStreamSource {
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }

    fn offset_keys(&self) -> Vec<String> {
        vec![String::new()]
    }

    fn columns(&self) -> Result<Schema, SourceError> {
        Ok(self.rows(&[], &[])?.0.schema().as_ref().clone())
    }

    fn starting_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        let Some(sequence) = self.resolved.take() else {
            return Ok(None);
        };
        Ok(Some(SourceBatch {
            tables: vec![TableRows {
                table: self.entry.table.clone(),
                rows: self.rows(&[], &[])?.0,
                apply: self.entry.apply(),
            }],
            offset: Some(Offset::JetStream {
                stream: self.stream.clone(),
                sequence,
            }),
            messages: 0,
            bytes: 0,
            newest_micros: None,
            rescued: 0,
        }))
    }

    /// The stream's last message as it was positioned has been handed out (with subject
    /// filters it may be another subject's: the read then ends at a wait for nothing).
    fn caught_up(&self) -> bool {
        self.last >= self.end_at_seek
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        let client = self.conn.connect().await?;
        self.js = Some(jetstream::new(client));
        self.consumer = None;
        self.to_ack = None;
        self.stream_handle().await.map(|_| ())
    }

    async fn seek(&mut self, committed: &BTreeMap<String, i64>) -> Result<(), SourceError> {
        let mut handle = self.stream_handle().await?;
        let state = handle
            .info()
            .await
            .map_err(|e| self.transient("reading the stream's state", e))?
            .state
            .clone();
        let committed = committed.get("").map(|v| *v as u64);
        self.end_at_seek = state.last_sequence;
        self.resolved = None;
        let deliver = match committed {
            Some(v) => {
                if self.fail_on_data_loss && state.messages > 0 && v + 1 < state.first_sequence {
                    return Err(SourceError::definite(format!(
                        "{}: messages {}..{} were removed by the stream's limits before they were read (the table holds up to {v})\n  hint: set `fail_on_data_loss: false` on ingest entry `{}` to go on from message {}",
                        self.what(),
                        v + 1,
                        state.first_sequence - 1,
                        self.entry.name,
                        state.first_sequence
                    )));
                }
                self.last = v;
                DeliverPolicy::ByStartSequence {
                    start_sequence: v + 1,
                }
            }
            None => {
                // The table's position is the sequence before the first one to read: a
                // start other than the beginning is recorded as that (deliveries at or
                // below it are dropped), so a run that reads nothing keeps it.
                self.last = match self.start {
                    Start::Earliest => 0,
                    Start::Latest => state.last_sequence,
                    Start::Sequence(n) => n.max(1) - 1,
                };
                self.resolved = (!matches!(self.start, Start::Earliest)).then_some(self.last);
                match self.start {
                    Start::Earliest => DeliverPolicy::All,
                    Start::Latest => DeliverPolicy::ByStartSequence {
                        start_sequence: state.last_sequence + 1,
                    },
                    Start::Sequence(n) => DeliverPolicy::ByStartSequence {
                        start_sequence: n.max(1),
                    },
                }
            }
        };
        // The table is where the position lives: a consumer left by an earlier run may
        // hold messages it delivered but never saw acknowledged, which it would redeliver
        // only after their ack wait, out of order. Start it afresh from the table.
        let _ = handle.delete_consumer(&self.consumer_name).await;
        let config = pull::Config {
            durable_name: Some(self.consumer_name.clone()),
            description: Some(format!(
                "confluo ingest entry `{}`: acknowledged after each Delta commit",
                self.entry.name
            )),
            deliver_policy: deliver,
            ack_policy: AckPolicy::All,
            ack_wait: Duration::from_secs(600),
            max_deliver: -1,
            max_ack_pending: -1,
            filter_subjects: self.subjects.clone(),
            ..Default::default()
        };
        let consumer = handle
            .create_consumer(config)
            .await
            .map_err(|e| match e.kind() {
                jetstream::stream::ConsumerErrorKind::JetStream(j) => {
                    SourceError::definite(format!(
                        "{}: the server refused consumer `{}`: {j}",
                        self.what(),
                        self.consumer_name
                    ))
                }
                _ => self.transient("creating the consumer", e),
            })?;
        self.consumer = Some(consumer);
        self.to_ack = None;
        Ok(())
    }

    async fn next_batch(
        &mut self,
        limits: &ReadLimits,
    ) -> Result<Option<SourceBatch>, SourceError> {
        let consumer = self
            .consumer
            .as_ref()
            .ok_or_else(|| self.transient("reading", "no consumer"))?;
        let mut messages = consumer
            .batch()
            .max_messages(limits.max_messages)
            .max_bytes(limits.max_bytes)
            .expires(limits.wait.max(Duration::from_millis(100)))
            .messages()
            .await
            .map_err(|e| self.transient("requesting messages", e))?;
        let mut got: Vec<(u64, i64, jetstream::Message)> = Vec::new();
        while let Some(m) = messages.next().await {
            let m = m.map_err(|e| self.transient("receiving messages", e))?;
            let info = m
                .info()
                .map_err(|e| self.transient("reading a message's metadata", e))?;
            let (seq, published) = (info.stream_sequence, info.published.timestamp_micros());
            if seq <= self.last {
                continue;
            }
            self.last = seq;
            got.push((seq, published, m));
        }
        let Some(last) = got.last() else {
            return Ok(None);
        };
        let offset = Offset::JetStream {
            stream: self.stream.clone(),
            sequence: last.0,
        };
        let newest = got.iter().map(|g| g.1).max();
        let payloads: Vec<&[u8]> = got.iter().map(|g| g.2.message.payload.as_ref()).collect();
        self.decoder.prepare(&payloads).await?;
        let rows = self.rows(&got, &payloads)?;
        let bytes = got.iter().map(|g| g.2.message.payload.len() as u64).sum();
        let n = got.len() as u64;
        let rescued = rows.1;
        self.to_ack = got.pop().map(|g| g.2);
        Ok(Some(SourceBatch {
            tables: vec![TableRows {
                table: self.entry.table.clone(),
                rows: rows.0,
                apply: self.entry.apply(),
            }],
            offset: Some(offset),
            messages: n,
            bytes,
            newest_micros: newest,
            rescued,
        }))
    }

    async fn ack(&mut self) -> Result<(), SourceError> {
        if let Some(m) = self.to_ack.take() {
            // A courtesy (the table holds the position): a lost ack costs a redelivery the
            // next run skips, so it is not worth failing for.
            if let Err(e) = m.ack().await {
                tracing::debug!("{}: acknowledging: {e}", self.what());
            }
        }
        Ok(())
    }

    fn set_table_schema(&mut self, _table: &str, schema: &Schema) {
        self.decoder.set_table_schema(schema, ENVELOPE);
    }
}

impl JetStreamSource {
    /// The batch's rows: the envelope, then the payload's columns.
    fn rows(
        &self,
        got: &[(u64, i64, jetstream::Message)],
        payloads: &[&[u8]],
    ) -> Result<(RecordBatch, u64), SourceError> {
        let mut subject = StringBuilder::new();
        let mut sequence = Int64Builder::with_capacity(got.len());
        let mut published =
            TimestampMicrosecondBuilder::with_capacity(got.len()).with_timezone("UTC");
        let mut headers = MapBuilder::new(None, StringBuilder::new(), StringBuilder::new());
        for (seq, at, m) in got {
            subject.append_value(m.message.subject.as_str());
            sequence.append_value(*seq as i64);
            published.append_value(*at);
            match &m.message.headers {
                Some(h) if !h.is_empty() => {
                    for (k, vs) in h.iter() {
                        headers.keys().append_value(AsRef::<str>::as_ref(k));
                        let joined: Vec<&str> = vs.iter().map(|v| v.as_str()).collect();
                        headers.values().append_value(joined.join(","));
                    }
                    headers
                        .append(true)
                        .map_err(|e| SourceError::definite(e.to_string()))?;
                }
                _ => headers
                    .append(false)
                    .map_err(|e| SourceError::definite(e.to_string()))?,
            }
        }
        let locate = |i: usize, m: &mut serde_json::Map<String, Value>| {
            m.insert("_stream".into(), Value::String(self.stream.clone()));
            m.insert("_sequence".into(), Value::from(got[i].0));
        };
        let decoded = self.decoder.decode(payloads, &locate).map_err(|e| {
            SourceError::definite(format!("{}: decoding payloads: {e}", self.what()))
        })?;
        let headers = headers.finish();
        let envelope: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new("_subject", DataType::Utf8, false),
                Arc::new(subject.finish()),
            ),
            (
                Field::new("_sequence", DataType::Int64, false),
                Arc::new(sequence.finish()),
            ),
            (
                Field::new(
                    "_published",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Arc::new(published.finish()),
            ),
            (
                Field::new("_headers", headers.data_type().clone(), true),
                Arc::new(headers),
            ),
        ];
        assemble(envelope, decoded, &self.what())
    }
}
