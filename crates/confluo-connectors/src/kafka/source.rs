//! Reading a subscription's partitions: one fetch task per partition, batches gathered from
//! what they fetched.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use arrow::array::{
    Array, ArrayRef, BinaryBuilder, Int32Builder, Int64Builder, MapBuilder, RecordBatch,
    StringBuilder, TimestampMicrosecondBuilder,
};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use confluo_core::source::{
    ChangeSource, Guarantee, Offset, ReadLimits, SourceBatch, SourceError, TableRows,
};
use confluo_core::suggest;
use rskafka::client::Client;
use rskafka::client::error::{Error as KafkaError, ProtocolError};
use rskafka::client::partition::{OffsetAt, PartitionClient, UnknownTopicHandling};
use rskafka::record::RecordAndOffset;
use serde_json::Value;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::config::{KafkaConnector, Starting, Subscription, classify};
use crate::streams::payload::PayloadDecoder;
use crate::streams::{StreamEntry, assemble};

/// The envelope columns every row carries, before the payload's.
pub const ENVELOPE: &[&str] = &[
    "_topic",
    "_partition",
    "_offset",
    "_timestamp",
    "_key",
    "_headers",
];

/// Bytes the fetches of all partitions ask for together: each partition's fetch asks for
/// its share, between 1 and 4 MiB. Larger fetches amortise round trips (4 MiB read 35 %
/// faster than 1 MiB from tansu); the share keeps what waits in the channel (two fetches
/// per partition) near 64 MiB however many partitions there are.
const FETCH_BUDGET: usize = 32 << 20;

/// One partition's fetch size when `partitions` are read.
fn fetch_bytes(partitions: usize) -> i32 {
    (FETCH_BUDGET / partitions.max(1)).clamp(1 << 20, 4 << 20) as i32
}
/// How long a fetch waits at the broker for new records.
const FETCH_WAIT_MS: i32 = 250;
/// How often the topics are listed again for new partitions (and, for a pattern, topics),
/// unless the entry sets `topic_refresh_interval`.
const REDISCOVER: Duration = Duration::from_secs(30);

/// One partition read by the entry.
struct Part {
    topic: String,
    partition: i32,
    client: Arc<PartitionClient>,
}

impl Part {
    fn key(&self) -> String {
        format!("{}/{}", self.topic, self.partition)
    }
}

/// What a fetch task hands over: records of partition `part`, in offset order.
struct Chunk {
    part: usize,
    records: VecDeque<RecordAndOffset>,
}

/// A subscription read for one ingest entry.
pub struct KafkaSource {
    conn: KafkaConnector,
    entry: StreamEntry,
    subscription: Subscription,
    starting: Starting,
    fail_on_data_loss: bool,
    max_per_batch: Option<usize>,
    decoder: PayloadDecoder,
    client: Option<Arc<Client>>,
    parts: Vec<Part>,
    /// Per partition key, the offset of the last record handed out (or committed).
    last: BTreeMap<String, i64>,
    /// Per partition key, the offset of the next record to hand out.
    next: BTreeMap<String, i64>,
    /// Per partition key, the offset before the start a starting option chose, for keys
    /// the table held nothing of (see [`ChangeSource::starting_batch`]).
    resolved: BTreeMap<String, i64>,
    /// Per partition key, the end of the partition when it was positioned: "nothing new"
    /// is not believed before these are reached (a fetch may take a moment to answer).
    ends_at_seek: BTreeMap<String, i64>,
    tasks: Vec<JoinHandle<()>>,
    tx: Option<mpsc::Sender<Result<Chunk, SourceError>>>,
    rx: Option<mpsc::Receiver<Result<Chunk, SourceError>>>,
    /// Records received but not yet handed out (a batch was full).
    pending: VecDeque<Chunk>,
    discovered: Instant,
    /// How often to list topics and partitions again.
    refresh: Duration,
    /// Rows in the columns of Databricks' `read_kafka` (`key`, `value`, `topic`, ...) rather
    /// than an ingest entry's envelope and decoded payload.
    spark_columns: bool,
}

impl KafkaSource {
    pub(super) fn new(
        conn: KafkaConnector,
        entry: StreamEntry,
        subscription: Subscription,
        starting: Starting,
        fail_on_data_loss: bool,
        max_per_batch: Option<usize>,
    ) -> Self {
        let decoder = PayloadDecoder::new(entry.format.clone());
        KafkaSource {
            conn,
            entry,
            subscription,
            starting,
            fail_on_data_loss,
            max_per_batch,
            decoder,
            client: None,
            parts: Vec::new(),
            last: BTreeMap::new(),
            next: BTreeMap::new(),
            resolved: BTreeMap::new(),
            ends_at_seek: BTreeMap::new(),
            tasks: Vec::new(),
            tx: None,
            rx: None,
            pending: VecDeque::new(),
            discovered: Instant::now(),
            refresh: REDISCOVER,
            spark_columns: false,
        }
    }

    /// Lists topics and partitions again every `refresh` (new partitions; for a pattern,
    /// new topics).
    pub(super) fn with_refresh(mut self, refresh: Duration) -> Self {
        self.refresh = refresh;
        self
    }

    /// Per partition key, the offset the next record produced will get.
    async fn ends(&self) -> Result<BTreeMap<String, i64>, SourceError> {
        let mut out = BTreeMap::new();
        for p in &self.parts {
            let end = p.client.get_offset(OffsetAt::Latest).await.map_err(|e| {
                classify(&self.what(), &format!("reading offsets of {}", p.key()), &e)
            })?;
            out.insert(p.key(), end);
        }
        Ok(out)
    }

    /// Rows in the columns of Databricks' `read_kafka`: `key`, `value` (binary), `topic`,
    /// `partition`, `offset`, `timestamp`, `timestampType`, `headers`.
    pub fn with_spark_columns(mut self) -> Self {
        self.spark_columns = true;
        self
    }

    /// The columns of Databricks' `read_kafka`.
    pub fn spark_schema() -> Schema {
        Schema::new(vec![
            Field::new("key", DataType::Binary, true),
            Field::new("value", DataType::Binary, true),
            Field::new("topic", DataType::Utf8, false),
            Field::new("partition", DataType::Int32, false),
            Field::new("offset", DataType::Int64, false),
            Field::new(
                "timestamp",
                DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                false,
            ),
            Field::new("timestampType", DataType::Int32, true),
            Field::new(
                "headers",
                DataType::List(Arc::new(Field::new_struct(
                    "element",
                    vec![
                        Field::new("key", DataType::Utf8, false),
                        Field::new("value", DataType::Binary, true),
                    ],
                    false,
                ))),
                true,
            ),
        ])
    }

    /// The batch's rows in `read_kafka`'s columns. `timestampType` is NULL: the client
    /// does not report whether a timestamp is the producer's or the broker's.
    fn spark_rows(&self, got: &[(usize, RecordAndOffset)]) -> Result<RecordBatch, SourceError> {
        use arrow::array::{ListBuilder, StructBuilder};
        let n = got.len();
        let schema = Arc::new(Self::spark_schema());
        let DataType::List(item) = schema.field(7).data_type() else {
            unreachable!("headers is a list")
        };
        let DataType::Struct(header_fields) = item.data_type() else {
            unreachable!("a header is a struct")
        };
        let mut key = BinaryBuilder::new();
        let mut value = BinaryBuilder::new();
        let mut topic = StringBuilder::with_capacity(n, n * 8);
        let mut partition = Int32Builder::with_capacity(n);
        let mut offset = Int64Builder::with_capacity(n);
        let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut kind = Int32Builder::with_capacity(n);
        let mut headers = ListBuilder::new(StructBuilder::new(
            header_fields.clone(),
            vec![
                Box::new(StringBuilder::new()),
                Box::new(BinaryBuilder::new()),
            ],
        ))
        .with_field(item.clone());
        for (i, r) in got {
            let p = &self.parts[*i];
            key.append_option(r.record.key.as_deref());
            value.append_option(r.record.value.as_deref());
            topic.append_value(&p.topic);
            partition.append_value(p.partition);
            offset.append_value(r.offset);
            timestamp.append_value(r.record.timestamp.timestamp_micros());
            kind.append_null();
            let s = headers.values();
            for (k, v) in &r.record.headers {
                s.field_builder::<StringBuilder>(0)
                    .expect("key")
                    .append_value(k);
                s.field_builder::<BinaryBuilder>(1)
                    .expect("value")
                    .append_value(v);
                s.append(true);
            }
            headers.append(true);
        }
        let columns: Vec<ArrayRef> = vec![
            Arc::new(key.finish()),
            Arc::new(value.finish()),
            Arc::new(topic.finish()),
            Arc::new(partition.finish()),
            Arc::new(offset.finish()),
            Arc::new(timestamp.finish()),
            Arc::new(kind.finish()),
            Arc::new(headers.finish()),
        ];
        RecordBatch::try_new(schema, columns)
            .map_err(|e| SourceError::definite(format!("{}: {e}", self.what())))
    }

    /// The entry's settings.
    pub fn entry(&self) -> &StreamEntry {
        &self.entry
    }

    fn what(&self) -> String {
        self.conn.what()
    }

    fn stop_tasks(&mut self) {
        for t in self.tasks.drain(..) {
            t.abort();
        }
        self.tx = None;
        self.rx = None;
        self.pending.clear();
    }

    /// The partitions the subscription names now, `(topic, partition)` in order.
    async fn list(&self) -> Result<Vec<(String, i32)>, SourceError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| SourceError::transient(format!("{}: not connected", self.what())))?;
        let topics = client
            .list_topics()
            .await
            .map_err(|e| classify(&self.what(), "listing topics", &e))?;
        let mut out = Vec::new();
        match &self.subscription {
            Subscription::Topics(names) => {
                for name in names {
                    let Some(t) = topics.iter().find(|t| &t.name == name) else {
                        let near = suggest::nearest(name, topics.iter().map(|t| t.name.as_str()));
                        return Err(SourceError::definite(format!(
                            "{}: no topic `{name}` (ingest entry `{}`){}",
                            self.what(),
                            self.entry.name,
                            if near.is_empty() {
                                "\n  hint: create it, or fix `topics:` of the entry".to_string()
                            } else {
                                suggest::hint(&near)
                            }
                        )));
                    };
                    out.extend(t.partitions.iter().map(|p| (t.name.clone(), *p)));
                }
            }
            Subscription::Pattern(re) => {
                for t in topics.iter().filter(|t| re.is_match(&t.name)) {
                    out.extend(t.partitions.iter().map(|p| (t.name.clone(), *p)));
                }
            }
        }
        out.sort();
        out.dedup();
        Ok(out)
    }

    async fn part(&self, topic: &str, partition: i32) -> Result<Part, SourceError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| SourceError::transient(format!("{}: not connected", self.what())))?;
        let pc = client
            .partition_client(topic, partition, UnknownTopicHandling::Retry)
            .await
            .map_err(|e| classify(&self.what(), &format!("opening {topic}/{partition}"), &e))?;
        Ok(Part {
            topic: topic.to_string(),
            partition,
            client: Arc::new(pc),
        })
    }

    /// Where partition `i` starts when the table holds nothing of it.
    async fn start_of(&self, i: usize, new_partition: bool) -> Result<i64, SourceError> {
        let p = &self.parts[i];
        let at = |a: OffsetAt| async move {
            p.client
                .get_offset(a)
                .await
                .map_err(|e| classify(&self.what(), &format!("reading offsets of {}", p.key()), &e))
        };
        // A partition that appears while running starts at its beginning, as in Spark.
        if new_partition {
            return at(OffsetAt::Earliest).await;
        }
        match &self.starting {
            Starting::Earliest => at(OffsetAt::Earliest).await,
            Starting::Latest => at(OffsetAt::Latest).await,
            Starting::Offsets(map) => match map.get(&p.topic).and_then(|m| m.get(&p.partition)) {
                None | Some(-2) => at(OffsetAt::Earliest).await,
                Some(-1) => at(OffsetAt::Latest).await,
                Some(n) => Ok(*n),
            },
            Starting::Timestamp(ms) => {
                let t = chrono::DateTime::from_timestamp_millis(*ms).unwrap_or_default();
                let o = at(OffsetAt::Timestamp(t)).await?;
                // No record at or after the time: start after the last one.
                if o < 0 {
                    at(OffsetAt::Latest).await
                } else {
                    Ok(o)
                }
            }
        }
    }

    /// Starts partition `i`'s fetch task at `from`.
    fn spawn(&mut self, i: usize, from: i64) {
        let Some(tx) = self.tx.clone() else { return };
        let p = &self.parts[i];
        let ctx = FetchTask {
            part: i,
            key: p.key(),
            client: p.client.clone(),
            what: self.what(),
            entry: self.entry.name.clone(),
            fail_on_data_loss: self.fail_on_data_loss,
            fetch_bytes: fetch_bytes(self.parts.len()),
            tx,
        };
        self.tasks.push(tokio::spawn(ctx.run(from)));
    }

    /// Picks up partitions (and, for a pattern, topics) created since the last look.
    async fn rediscover(&mut self) -> Result<(), SourceError> {
        self.discovered = Instant::now();
        let now = self.list().await?;
        for (topic, partition) in now {
            if self
                .parts
                .iter()
                .any(|p| p.topic == topic && p.partition == partition)
            {
                continue;
            }
            let part = self.part(&topic, partition).await?;
            tracing::info!("{}: reading new partition {}", self.what(), part.key());
            self.parts.push(part);
            let i = self.parts.len() - 1;
            let from = self.start_of(i, true).await?;
            self.next.insert(self.parts[i].key(), from);
            self.spawn(i, from);
        }
        Ok(())
    }

    /// A batch of `rows` at the offsets handed out so far (counts left for the caller).
    fn batch_of(&self, rows: RecordBatch) -> SourceBatch {
        SourceBatch {
            tables: vec![TableRows {
                table: self.entry.table.clone(),
                rows,
                apply: self.entry.apply(),
            }],
            offset: Some(Offset::Kafka {
                partitions: self.last.clone(),
            }),
            messages: 0,
            bytes: 0,
            newest_micros: None,
            rescued: 0,
        }
    }

    /// The batch's rows: the envelope, then the payload's columns.
    fn rows(
        &self,
        got: &[(usize, RecordAndOffset)],
        payloads: &[&[u8]],
    ) -> Result<(RecordBatch, u64), SourceError> {
        let n = got.len();
        let mut topic = StringBuilder::with_capacity(n, n * 8);
        let mut partition = Int32Builder::with_capacity(n);
        let mut offset = Int64Builder::with_capacity(n);
        let mut timestamp = TimestampMicrosecondBuilder::with_capacity(n).with_timezone("UTC");
        let mut key = BinaryBuilder::new();
        let mut headers = MapBuilder::new(None, StringBuilder::new(), BinaryBuilder::new());
        for (i, r) in got {
            let p = &self.parts[*i];
            topic.append_value(&p.topic);
            partition.append_value(p.partition);
            offset.append_value(r.offset);
            timestamp.append_value(r.record.timestamp.timestamp_micros());
            key.append_option(r.record.key.as_deref());
            if r.record.headers.is_empty() {
                headers
                    .append(false)
                    .map_err(|e| SourceError::definite(e.to_string()))?;
            } else {
                for (k, v) in &r.record.headers {
                    headers.keys().append_value(k);
                    headers.values().append_value(v);
                }
                headers
                    .append(true)
                    .map_err(|e| SourceError::definite(e.to_string()))?;
            }
        }
        let locate = |i: usize, m: &mut serde_json::Map<String, Value>| {
            let (p, r) = &got[i];
            m.insert("_topic".into(), Value::String(self.parts[*p].topic.clone()));
            m.insert("_partition".into(), Value::from(self.parts[*p].partition));
            m.insert("_offset".into(), Value::from(r.offset));
        };
        let decoded = self.decoder.decode(payloads, &locate).map_err(|e| {
            SourceError::definite(format!("{}: decoding payloads: {e}", self.what()))
        })?;
        let headers = headers.finish();
        let envelope: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new("_topic", DataType::Utf8, false),
                Arc::new(topic.finish()),
            ),
            (
                Field::new("_partition", DataType::Int32, false),
                Arc::new(partition.finish()),
            ),
            (
                Field::new("_offset", DataType::Int64, false),
                Arc::new(offset.finish()),
            ),
            (
                Field::new(
                    "_timestamp",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Arc::new(timestamp.finish()),
            ),
            (
                Field::new("_key", DataType::Binary, true),
                Arc::new(key.finish()),
            ),
            (
                Field::new("_headers", headers.data_type().clone(), true),
                Arc::new(headers),
            ),
        ];
        assemble(envelope, decoded, &self.what())
    }
}

impl Drop for KafkaSource {
    fn drop(&mut self) {
        self.stop_tasks();
    }
}

/// Whether `next` (per partition, the offset of the next record to hand out) is at or past
/// `ends` everywhere.
fn ends_reached(next: &BTreeMap<String, i64>, ends: &BTreeMap<String, i64>) -> bool {
    ends.iter()
        .all(|(k, end)| next.get(k).is_some_and(|n| n >= end))
}

fn data_loss(what: &str, entry: &str, key: &str, from: i64, earliest: i64) -> SourceError {
    SourceError::definite(format!(
        "{what}: {key}: offsets {from}..{} were deleted (retention) before they were read; the table holds up to {}\n  hint: set `fail_on_data_loss: false` on ingest entry `{entry}` to go on from offset {earliest}",
        earliest - 1,
        from - 1
    ))
}

/// One partition's reader: fetches from its position on, hands the records over and waits
/// while the channel is full (the batches being committed set the pace).
struct FetchTask {
    part: usize,
    key: String,
    client: Arc<PartitionClient>,
    what: String,
    entry: String,
    fail_on_data_loss: bool,
    /// Bytes one fetch asks for.
    fetch_bytes: i32,
    tx: mpsc::Sender<Result<Chunk, SourceError>>,
}

impl FetchTask {
    async fn run(self, mut at: i64) {
        loop {
            match self
                .client
                .fetch_records(at, 1..self.fetch_bytes, FETCH_WAIT_MS)
                .await
            {
                Ok((records, _high_watermark)) => {
                    let records: VecDeque<RecordAndOffset> =
                        records.into_iter().filter(|r| r.offset >= at).collect();
                    let Some(last) = records.back() else { continue };
                    at = last.offset + 1;
                    let chunk = Chunk {
                        part: self.part,
                        records,
                    };
                    if self.tx.send(Ok(chunk)).await.is_err() {
                        return;
                    }
                }
                Err(KafkaError::ServerError {
                    protocol_error: ProtocolError::OffsetOutOfRange,
                    ..
                }) => match self.out_of_range(at).await {
                    Ok(next) => at = next,
                    Err(e) => {
                        let _ = self.tx.send(Err(e)).await;
                        return;
                    }
                },
                Err(e) => {
                    let doing = format!("fetching {} from offset {at}", self.key);
                    let _ = self.tx.send(Err(classify(&self.what, &doing, &e))).await;
                    return;
                }
            }
        }
    }

    /// The broker has no offset `at`: deleted by retention (data loss, an error unless the
    /// entry allows it), or past the end (the topic was deleted and created again).
    async fn out_of_range(&self, at: i64) -> Result<i64, SourceError> {
        let offsets = |a| async move {
            self.client
                .get_offset(a)
                .await
                .map_err(|e| classify(&self.what, &format!("reading offsets of {}", self.key), &e))
        };
        let earliest = offsets(OffsetAt::Earliest).await?;
        if at < earliest {
            if self.fail_on_data_loss {
                return Err(data_loss(&self.what, &self.entry, &self.key, at, earliest));
            }
            tracing::warn!(
                "{}: {}: offsets {at}..{} were deleted before they were read; going on from {earliest}",
                self.what,
                self.key,
                earliest - 1
            );
            return Ok(earliest);
        }
        let latest = offsets(OffsetAt::Latest).await?;
        if at > latest {
            return Err(SourceError::definite(format!(
                "{}: {}: the table holds records up to offset {}, but the partition ends at {}: was the topic deleted and created again?\n  hint: to read the new topic from its start, drop the table (or set `starting_offsets` on a new entry)",
                self.what,
                self.key,
                at - 1,
                latest
            )));
        }
        // In range after all (a leader moved): fetch again.
        tokio::time::sleep(Duration::from_millis(100)).await;
        Ok(at)
    }
}

#[async_trait::async_trait]
impl ChangeSource for KafkaSource {
    fn guarantee(&self) -> Guarantee {
        Guarantee::ExactlyOnce
    }

    fn offset_keys(&self) -> Vec<String> {
        self.parts.iter().map(Part::key).collect()
    }

    fn columns(&self) -> Result<Schema, SourceError> {
        if self.spark_columns {
            return Ok(Self::spark_schema());
        }
        Ok(self.rows(&[], &[])?.0.schema().as_ref().clone())
    }

    /// Every record produced before the last seek has been handed out: reading until then
    /// is Spark's "available now".
    fn caught_up(&self) -> bool {
        ends_reached(&self.next, &self.ends_at_seek)
    }

    async fn connect(&mut self) -> Result<(), SourceError> {
        self.stop_tasks();
        self.parts.clear();
        self.client = Some(Arc::new(self.conn.client().await?));
        for (topic, partition) in self.list().await? {
            let part = self.part(&topic, partition).await?;
            self.parts.push(part);
        }
        self.discovered = Instant::now();
        Ok(())
    }

    async fn seek(&mut self, committed: &BTreeMap<String, i64>) -> Result<(), SourceError> {
        self.stop_tasks();
        self.last.clear();
        self.next.clear();
        self.resolved.clear();
        let mut starts = Vec::with_capacity(self.parts.len());
        for i in 0..self.parts.len() {
            let key = self.parts[i].key();
            let from = match committed.get(&key) {
                // Records deleted since are found by the fetch task (OffsetOutOfRange),
                // the one place data loss is judged.
                Some(v) => {
                    self.last.insert(key, *v);
                    v + 1
                }
                None => {
                    let from = self.start_of(i, false).await?;
                    if !matches!(self.starting, Starting::Earliest) {
                        self.resolved.insert(key, from - 1);
                    }
                    from
                }
            };
            self.next.insert(self.parts[i].key(), from);
            starts.push(from);
        }
        self.ends_at_seek = self.ends().await?;
        // Two chunks per partition in flight at most: fetching stays ahead of the commits
        // without holding more than a few MiB per partition.
        let (tx, rx) = mpsc::channel(2 * self.parts.len().max(2));
        self.tx = Some(tx);
        self.rx = Some(rx);
        for (i, from) in starts.into_iter().enumerate() {
            self.spawn(i, from);
        }
        Ok(())
    }

    fn starting_batch(&mut self) -> Result<Option<SourceBatch>, SourceError> {
        if self.resolved.is_empty() {
            return Ok(None);
        }
        // Kept from now on like any committed offset.
        self.last.extend(std::mem::take(&mut self.resolved));
        let rows = if self.spark_columns {
            self.spark_rows(&[])?
        } else {
            self.rows(&[], &[])?.0
        };
        Ok(Some(self.batch_of(rows)))
    }

    async fn next_batch(
        &mut self,
        limits: &ReadLimits,
    ) -> Result<Option<SourceBatch>, SourceError> {
        if self.discovered.elapsed() > self.refresh {
            self.rediscover().await?;
        }
        let max = self
            .max_per_batch
            .map_or(limits.max_messages, |m| m.min(limits.max_messages))
            .max(1);
        let mut got: Vec<(usize, RecordAndOffset)> = Vec::new();
        let mut bytes = 0usize;
        let mut until: Option<Instant> = None;
        let patience = Instant::now() + self.conn.connect_timeout;
        while got.len() < max && bytes < limits.max_bytes {
            let chunk = match self.pending.pop_front() {
                Some(c) => c,
                None => {
                    let left = match until {
                        Some(u) => u.saturating_duration_since(Instant::now()),
                        None => limits.wait,
                    };
                    let rx = self.rx.as_mut().ok_or_else(|| {
                        SourceError::transient(format!("{}: not connected", self.conn.what()))
                    })?;
                    match tokio::time::timeout(left, rx.recv()).await {
                        // Records known to exist when positioned are still on their way.
                        Err(_)
                            if until.is_none()
                                && !self.ends_at_seek.is_empty()
                                && Instant::now() < patience
                                && !ends_reached(&self.next, &self.ends_at_seek) =>
                        {
                            continue;
                        }
                        Err(_) => break,
                        Ok(None) => {
                            // No partitions (a pattern matching nothing yet): nothing new.
                            if self.parts.is_empty() {
                                break;
                            }
                            return Err(SourceError::transient(format!(
                                "{}: the fetch tasks stopped",
                                self.conn.what()
                            )));
                        }
                        Ok(Some(r)) => r?,
                    }
                }
            };
            let mut chunk = chunk;
            while let Some(r) = chunk.records.pop_front() {
                bytes += r.record.approximate_size();
                got.push((chunk.part, r));
                if got.len() >= max || bytes >= limits.max_bytes {
                    break;
                }
            }
            if !chunk.records.is_empty() {
                self.pending.push_front(chunk);
            }
            until.get_or_insert_with(|| Instant::now() + limits.linger);
        }
        if got.is_empty() {
            return Ok(None);
        }
        for (i, r) in &got {
            let key = self.parts[*i].key();
            self.next.insert(key.clone(), r.offset + 1);
            self.last.insert(key, r.offset);
        }
        let newest = got
            .iter()
            .map(|(_, r)| r.record.timestamp.timestamp_micros())
            .max();
        let (rows, rescued) = if self.spark_columns {
            (self.spark_rows(&got)?, 0)
        } else {
            let payloads: Vec<&[u8]> = got
                .iter()
                .map(|(_, r)| r.record.value.as_deref().unwrap_or_default())
                .collect();
            self.decoder.prepare(&payloads).await?;
            self.rows(&got, &payloads)?
        };
        let payload_bytes: u64 = got
            .iter()
            .map(|(_, r)| r.record.value.as_ref().map_or(0, Vec::len) as u64)
            .sum();
        Ok(Some(SourceBatch {
            messages: got.len() as u64,
            bytes: payload_bytes,
            newest_micros: newest,
            rescued,
            ..self.batch_of(rows)
        }))
    }

    async fn ack(&mut self) -> Result<(), SourceError> {
        // The table holds the offsets; Kafka's consumer-group offsets are not used.
        Ok(())
    }

    fn set_table_schema(&mut self, _table: &str, schema: &Schema) {
        self.decoder.set_table_schema(schema, ENVELOPE);
    }
}
