//! A RabbitMQ stream over the stream protocol, exactly once by offset.

use std::collections::BTreeMap;
use std::sync::Arc;

use arrow::array::{ArrayRef, Int64Builder, RecordBatch, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema};
use confluo_core::source::{
    ChangeSource, Guarantee, Offset, ReadLimits, SourceBatch, SourceError, TableRows,
};
use rabbitmq_stream_client::error::ConsumerCreateError;
use rabbitmq_stream_client::types::{Delivery, OffsetSpecification};
use rabbitmq_stream_client::{Consumer, Environment};
use serde_json::Value;

use super::config::RabbitConnector;
use crate::streams::payload::PayloadDecoder;
use crate::streams::{StreamEntry, assemble, gather};

/// The envelope columns every row carries, before the payload's.
pub const ENVELOPE: &[&str] = &["_stream", "_offset"];

/// Where to start when the table holds nothing yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// The stream's first message.
    First,
    /// The last chunk.
    Last,
    /// Only messages published from now on.
    Next,
    /// This offset.
    Offset(u64),
}

/// Opens the stream protocol's environment: a refused login is definite, an unreachable
/// broker (or a broker without the stream plugin) transient.
pub(super) async fn environment(c: &RabbitConnector) -> Result<Environment, SourceError> {
    let what = format!("connection `{}` ({}:{})", c.name, c.host, c.stream_port);
    let build = Environment::builder()
        .host(&c.host)
        .port(c.stream_port)
        .username(&c.user)
        .password(&c.password)
        .virtual_host(&c.vhost)
        .build();
    match tokio::time::timeout(c.connect_timeout, build).await {
        Err(_) => Err(SourceError::transient(format!(
            "{what}: no answer within {:?}\n  hint: is the stream plugin on (`rabbitmq-plugins enable rabbitmq_stream`)?",
            c.connect_timeout
        ))),
        Ok(Ok(env)) => Ok(env),
        Ok(Err(e)) => {
            let text = e.to_string();
            if text.contains("Authentication") || text.contains("SaslAuthenticationFailure") {
                Err(SourceError::definite(format!(
                    "{what}: the broker refused the login: {text}\n  hint: check `user`, `password` and `vhost` of the connection"
                )))
            } else {
                Err(SourceError::transient(format!(
                    "{what}: {text}\n  hint: is the broker running, with the stream plugin on (`rabbitmq-plugins enable rabbitmq_stream`)?"
                )))
            }
        }
    }
}

/// A stream read for one ingest entry.
pub struct RabbitStreamSource {
    conn: RabbitConnector,
    entry: StreamEntry,
    stream: String,
    start: Start,
    name: String,
    decoder: PayloadDecoder,
    env: Option<Environment>,
    consumer: Option<Consumer>,
    /// The offset of the last message handed out (or committed, after a seek).
    last: Option<u64>,
    /// Nothing was delivered since the subscription: the broker may take a moment to start,
    /// so "nothing new" is not believed before [`FIRST_DELIVERY`].
    fresh: bool,
    /// Where `start: last` / `next` placed a table that holds nothing yet, to be committed
    /// before any message arrives (see [`ChangeSource::starting_batch`]).
    pinned: Option<u64>,
}

/// How long the probe for the stream's end waits for the last chunk.
const PROBE_WAIT: std::time::Duration = std::time::Duration::from_secs(3);
/// Once the last chunk flows, a pause this long ends it.
const PROBE_QUIET: std::time::Duration = std::time::Duration::from_millis(300);

/// How long a new subscription may take to deliver its first message.
const FIRST_DELIVERY: std::time::Duration = std::time::Duration::from_secs(5);

impl RabbitStreamSource {
    pub(super) fn new(
        conn: RabbitConnector,
        entry: StreamEntry,
        stream: String,
        start: Start,
        name: String,
    ) -> Self {
        let decoder = PayloadDecoder::new(entry.format.clone());
        RabbitStreamSource {
            conn,
            entry,
            stream,
            start,
            name,
            decoder,
            env: None,
            consumer: None,
            last: None,
            fresh: true,
            pinned: None,
        }
    }

    /// The stream's last chunk: (its first offset, the last offset), or `None` for an empty
    /// stream. A subscription at `last` delivers that chunk; the probe reads it and leaves.
    async fn probe_end(&self, env: &Environment) -> Result<Option<(u64, u64)>, SourceError> {
        use futures::StreamExt;
        let mut probe = env
            .consumer()
            .offset(OffsetSpecification::Last)
            .build(&self.stream)
            .await
            .map_err(|e| {
                SourceError::transient(format!("{}: finding its end: {e}", self.what()))
            })?;
        let deadline = tokio::time::Instant::now() + PROBE_WAIT;
        let mut seen: Option<(u64, u64)> = None;
        loop {
            let until = match seen {
                Some(_) => (tokio::time::Instant::now() + PROBE_QUIET).min(deadline),
                None => deadline,
            };
            match tokio::time::timeout_at(until, probe.next()).await {
                Ok(Some(Ok(d))) => {
                    let o = d.offset();
                    seen = Some(seen.map_or((o, o), |(f, l)| (f.min(o), l.max(o))));
                }
                Ok(Some(Err(e))) => {
                    let _ = probe.handle().close().await;
                    return Err(SourceError::transient(format!(
                        "{}: finding its end: {e}",
                        self.what()
                    )));
                }
                Ok(None) | Err(_) => break,
            }
        }
        let _ = probe.handle().close().await;
        Ok(seen)
    }

    fn what(&self) -> String {
        format!("connection `{}`, stream `{}`", self.conn.name, self.stream)
    }

    /// A batch of `rows` that leaves the table at stream offset `offset`.
    fn batch(
        &self,
        rows: RecordBatch,
        rescued: u64,
        offset: u64,
        messages: u64,
        bytes: u64,
    ) -> SourceBatch {
        SourceBatch {
            tables: vec![TableRows {
                table: self.entry.table.clone(),
                rows,
                apply: self.entry.apply(),
            }],
            offset: Some(Offset::RabbitStream {
                stream: self.stream.clone(),
                offset,
            }),
            messages,
            bytes,
            newest_micros: None,
            rescued,
        }
    }

    fn rows(
        &self,
        got: &[(u64, Vec<u8>)],
        payloads: &[&[u8]],
    ) -> Result<(RecordBatch, u64), SourceError> {
        let mut stream = StringBuilder::new();
        let mut offset = Int64Builder::with_capacity(got.len());
        for (o, _) in got {
            stream.append_value(&self.stream);
            offset.append_value(*o as i64);
        }
        let locate = |i: usize, m: &mut serde_json::Map<String, Value>| {
            m.insert("_stream".into(), Value::String(self.stream.clone()));
            m.insert("_offset".into(), Value::from(got[i].0));
        };
        let decoded = self.decoder.decode(payloads, &locate).map_err(|e| {
            SourceError::definite(format!("{}: decoding payloads: {e}", self.what()))
        })?;
        let envelope: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new("_stream", DataType::Utf8, false),
                Arc::new(stream.finish()),
            ),
            (
                Field::new("_offset", DataType::Int64, false),
                Arc::new(offset.finish()),
            ),
        ];
        assemble(envelope, decoded, &self.what())
    }
}

#[async_trait::async_trait]
impl ChangeSource for RabbitStreamSource {
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }

    fn offset_keys(&self) -> Vec<String> {
        vec![String::new()]
    }

    fn columns(&self) -> Result<Schema, SourceError> {
        Ok(self.rows(&[], &[])?.0.schema().as_ref().clone())
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        if let Some(c) = self.consumer.take() {
            let _ = c.handle().close().await;
        }
        self.env = Some(environment(&self.conn).await?);
        Ok(())
    }

    async fn seek(&mut self, committed: &BTreeMap<String, i64>) -> Result<(), SourceError> {
        let env = self
            .env
            .as_ref()
            .ok_or_else(|| SourceError::transient(format!("{}: not connected", self.what())))?;
        self.last = committed.get("").map(|v| *v as u64);
        self.pinned = None;
        // `last` and `next` move while nothing is committed: where they stand now is kept
        // (by `starting_batch`), so a run that reads nothing does not let the next one start
        // further on and skip what was published in between.
        let mut start = self.start;
        if self.last.is_none() && matches!(start, Start::Last | Start::Next) {
            start = match (self.probe_end(env).await?, start) {
                // An empty stream: everything from now on is new.
                (None, _) => Start::First,
                (Some((_, last)), Start::Next) => {
                    self.pinned = Some(last);
                    Start::Offset(last + 1)
                }
                (Some((0, _)), _) => Start::First,
                (Some((first, _)), _) => {
                    self.pinned = Some(first - 1);
                    Start::Offset(first)
                }
            };
        }
        let spec = match (self.last, start) {
            (Some(v), _) => OffsetSpecification::Offset(v + 1),
            (None, Start::First) => OffsetSpecification::First,
            (None, Start::Last) => OffsetSpecification::Last,
            (None, Start::Next) => OffsetSpecification::Next,
            (None, Start::Offset(n)) => OffsetSpecification::Offset(n),
        };
        let consumer = env
            .consumer()
            .name(&self.name)
            .offset(spec)
            .build(&self.stream)
            .await
            .map_err(|e| match e {
                ConsumerCreateError::StreamDoesNotExist { .. } => SourceError::definite(format!(
                    "{}: no such stream on {}:{}\n  hint: declare it (x-queue-type: stream), or fix `stream:` of ingest entry `{}`",
                    self.what(),
                    self.conn.host,
                    self.conn.stream_port,
                    self.entry.name
                )),
                other => SourceError::transient(format!("{}: subscribing: {other}", self.what())),
            })?;
        self.consumer = Some(consumer);
        self.fresh = true;
        Ok(())
    }

    fn starting_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        let Some(pin) = self.pinned.take() else {
            return Ok(None);
        };
        self.last = Some(pin);
        let (rows, rescued) = self.rows(&[], &[])?;
        Ok(Some(self.batch(rows, rescued, pin, 0, 0)))
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
        let wait = if self.fresh {
            limits.wait.max(FIRST_DELIVERY)
        } else {
            limits.wait
        };
        // A subscription starts at a chunk boundary: skip what the table holds.
        let committed = self.last;
        let deliveries = gather(
            consumer,
            limits,
            wait,
            |d: &Delivery| d.message().data().map_or(0, <[u8]>::len),
            |d| committed.is_none_or(|l| d.offset() > l),
            "the broker closed the subscription",
        )
        .await
        .map_err(|e| SourceError::transient(format!("{what}: {e}")))?;
        let got: Vec<(u64, Vec<u8>)> = deliveries
            .iter()
            .map(|d| (d.offset(), d.message().data().unwrap_or_default().to_vec()))
            .collect();
        let bytes: usize = got.iter().map(|g| g.1.len()).sum();
        if let Some(g) = got.last() {
            self.fresh = false;
            self.last = Some(g.0);
        }
        let Some(last) = got.last().map(|g| g.0) else {
            return Ok(None);
        };
        let payloads: Vec<&[u8]> = got.iter().map(|(_, p)| p.as_slice()).collect();
        self.decoder.prepare(&payloads).await?;
        let (rows, rescued) = self.rows(&got, &payloads)?;
        Ok(Some(self.batch(
            rows,
            rescued,
            last,
            got.len() as u64,
            bytes as u64,
        )))
    }

    async fn ack(&mut self) -> Result<(), SourceError> {
        // A courtesy (the table holds the position): tools that read stored offsets see it.
        if let (Some(c), Some(last)) = (&self.consumer, self.last)
            && let Err(e) = c.store_offset(last).await
        {
            tracing::debug!("{}: storing the offset: {e}", self.what());
        }
        Ok(())
    }

    fn set_table_schema(&mut self, _table: &str, schema: &Schema) {
        self.decoder.set_table_schema(schema, ENVELOPE);
    }
}
