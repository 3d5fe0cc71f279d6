//! Reading subscribed topics in batches, acknowledging each message after its commit.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use arrow::array::{ArrayRef, RecordBatch, StringBuilder, TimestampMicrosecondBuilder};
use arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use confluo_core::source::{
    Apply, ChangeSource, Guarantee, ReadLimits, SourceBatch, SourceError, TableRows,
};
use rumqttc::{
    AsyncClient, ConnectReturnCode, Event, EventLoop, MqttOptions, Packet, Publish, QoS,
};
use serde_json::Value;
use tokio::sync::mpsc;

use super::config::MqttConnector;
use crate::streams::payload::PayloadDecoder;
use crate::streams::{StreamEntry, assemble, gather};

/// The envelope columns every row carries (then the topic levels, then the payload's).
pub const ENVELOPE: &[&str] = &["_topic", "_received"];

/// Connects with a session of id `client_id` (persistent unless `clean`) and waits for the
/// broker's CONNACK: a refused login is definite, an unreachable broker transient.
pub(super) async fn connect(
    c: &MqttConnector,
    client_id: &str,
    clean: bool,
) -> Result<(AsyncClient, EventLoop), SourceError> {
    let mut o = MqttOptions::new(client_id, c.host.clone(), c.port);
    o.set_keep_alive(c.keep_alive)
        .set_clean_session(clean)
        .set_manual_acks(true)
        .set_max_packet_size(16 << 20, 16 << 20);
    if let Some((u, p)) = &c.credentials {
        o.set_credentials(u.clone(), p.clone());
    }
    let (client, mut events) = AsyncClient::new(o, 10_000);
    let what = format!("connection `{}` ({}:{})", c.name, c.host, c.port);
    let deadline = Instant::now() + c.connect_timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.poll()).await {
            Err(_) => {
                return Err(SourceError::transient(format!(
                    "{what}: no answer within {:?}\n  hint: is the broker running and reachable?",
                    c.connect_timeout
                )));
            }
            Ok(Ok(Event::Incoming(Packet::ConnAck(ack)))) => {
                return match ack.code {
                    ConnectReturnCode::Success => Ok((client, events)),
                    ConnectReturnCode::BadUserNamePassword | ConnectReturnCode::NotAuthorized => {
                        Err(SourceError::definite(format!(
                            "{what}: the broker refused the login ({:?})\n  hint: check `user` and `password` of the connection",
                            ack.code
                        )))
                    }
                    code => Err(SourceError::definite(format!(
                        "{what}: the broker refused the connection ({code:?})"
                    ))),
                };
            }
            Ok(Ok(_)) => {}
            Ok(Err(e)) => {
                return Err(SourceError::transient(format!(
                    "{what}: {e}\n  hint: is the broker running and reachable?"
                )));
            }
        }
    }
}

/// Subscribed topics read for one ingest entry.
pub struct MqttSource {
    conn: MqttConnector,
    entry: StreamEntry,
    topics: Vec<String>,
    levels: Vec<String>,
    client_id: String,
    decoder: PayloadDecoder,
    client: Option<AsyncClient>,
    rx: Option<mpsc::Receiver<Result<(Publish, i64), String>>>,
    poller: Option<tokio::task::JoinHandle<()>>,
    /// Messages handed out and not yet acknowledged.
    pending: Vec<Publish>,
}

impl MqttSource {
    pub(super) fn new(
        conn: MqttConnector,
        entry: StreamEntry,
        topics: Vec<String>,
        levels: Vec<String>,
        client_id: String,
    ) -> Self {
        let decoder = PayloadDecoder::new(entry.format.clone());
        MqttSource {
            conn,
            entry,
            topics,
            levels,
            client_id,
            decoder,
            client: None,
            rx: None,
            poller: None,
            pending: Vec::new(),
        }
    }

    /// The entry's settings.
    pub fn entry(&self) -> &StreamEntry {
        &self.entry
    }

    fn what(&self) -> String {
        format!("connection `{}`", self.conn.name)
    }

    fn envelope(&self) -> Vec<&str> {
        let mut e: Vec<&str> = ENVELOPE.to_vec();
        e.extend(self.levels.iter().map(String::as_str));
        e
    }

    fn rows(
        &self,
        got: &[(Publish, i64)],
        payloads: &[&[u8]],
    ) -> Result<(RecordBatch, u64), SourceError> {
        let mut topic = StringBuilder::new();
        let mut received =
            TimestampMicrosecondBuilder::with_capacity(got.len()).with_timezone("UTC");
        let mut levels: Vec<StringBuilder> =
            self.levels.iter().map(|_| StringBuilder::new()).collect();
        for (p, at) in got {
            topic.append_value(&p.topic);
            received.append_value(*at);
            let mut parts = p.topic.split('/');
            for b in levels.iter_mut() {
                match parts.next() {
                    Some(v) => b.append_value(v),
                    None => b.append_null(),
                }
            }
        }
        let locate = |i: usize, m: &mut serde_json::Map<String, Value>| {
            m.insert("_topic".into(), Value::String(got[i].0.topic.clone()));
        };
        let decoded = self.decoder.decode(payloads, &locate).map_err(|e| {
            SourceError::definite(format!("{}: decoding payloads: {e}", self.what()))
        })?;
        let mut envelope: Vec<(Field, ArrayRef)> = vec![
            (
                Field::new("_topic", DataType::Utf8, false),
                Arc::new(topic.finish()),
            ),
            (
                Field::new(
                    "_received",
                    DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
                    false,
                ),
                Arc::new(received.finish()),
            ),
        ];
        for (name, mut b) in self.levels.iter().zip(levels) {
            envelope.push((Field::new(name, DataType::Utf8, true), Arc::new(b.finish())));
        }
        assemble(envelope, decoded, &self.what())
    }
}

#[async_trait::async_trait]
impl ChangeSource for MqttSource {
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
        if let Some(p) = self.poller.take() {
            p.abort();
        }
        self.pending.clear();
        let (client, mut events) = connect(&self.conn, &self.client_id, false).await?;
        let filters: Vec<rumqttc::SubscribeFilter> = self
            .topics
            .iter()
            .map(|t| rumqttc::SubscribeFilter::new(t.clone(), QoS::AtLeastOnce))
            .collect();
        client
            .subscribe_many(filters)
            .await
            .map_err(|e| SourceError::transient(format!("{}: subscribing: {e}", self.what())))?;
        let (tx, rx) = mpsc::channel(50_000);
        // Connected means subscribed: the first read's wait starts only then, so a one-shot
        // run does not stop before the broker has redelivered the session's messages.
        let (ready_tx, ready_rx) = tokio::sync::oneshot::channel::<Result<(), String>>();
        let mut ready_tx = Some(ready_tx);
        self.poller = Some(tokio::spawn(async move {
            loop {
                match events.poll().await {
                    Ok(Event::Incoming(Packet::Publish(p))) => {
                        let at = chrono::Utc::now().timestamp_micros();
                        if tx.send(Ok((p, at))).await.is_err() {
                            break;
                        }
                    }
                    Ok(Event::Incoming(Packet::SubAck(ack))) => {
                        if ack
                            .return_codes
                            .iter()
                            .any(|c| matches!(c, rumqttc::SubscribeReasonCode::Failure))
                        {
                            let refused = "the broker refused a subscription (check the topic filters and the user's access)".to_string();
                            if let Some(r) = ready_tx.take() {
                                let _ = r.send(Err(refused.clone()));
                            }
                            let _ = tx.send(Err(refused)).await;
                            break;
                        }
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(Ok(()));
                        }
                    }
                    Ok(_) => {}
                    Err(e) => {
                        if let Some(r) = ready_tx.take() {
                            let _ = r.send(Err(e.to_string()));
                        }
                        let _ = tx.send(Err(e.to_string())).await;
                        break;
                    }
                }
            }
        }));
        self.client = Some(client);
        self.rx = Some(rx);
        let what = self.what();
        match tokio::time::timeout(self.conn.connect_timeout, ready_rx).await {
            Ok(Ok(Ok(()))) => Ok(()),
            Ok(Ok(Err(e))) => Err(SourceError::transient(format!("{what}: {e}"))),
            Ok(Err(_)) => Err(SourceError::transient(format!(
                "{what}: the connection closed while subscribing"
            ))),
            Err(_) => Err(SourceError::transient(format!(
                "{what}: no answer to the subscription within {:?}\n  hint: is the broker running and reachable?",
                self.conn.connect_timeout
            ))),
        }
    }

    async fn seek(&mut self, _committed: &BTreeMap<String, i64>) -> Result<(), SourceError> {
        // No offsets: the persistent session redelivers what was not acknowledged.
        Ok(())
    }

    async fn next_batch(
        &mut self,
        limits: &ReadLimits,
    ) -> Result<Option<SourceBatch>, SourceError> {
        let what = self.what();
        let rx = self
            .rx
            .as_mut()
            .ok_or_else(|| SourceError::transient(format!("{what}: not connected")))?;
        let mut messages = futures::stream::poll_fn(|cx| rx.poll_recv(cx));
        let got = gather(
            &mut messages,
            limits,
            limits.wait,
            |m: &(Publish, i64)| m.0.payload.len(),
            |_| true,
            "the connection closed",
        )
        .await
        .map_err(|e| SourceError::transient(format!("{what}: {e}")))?;
        if got.is_empty() {
            return Ok(None);
        }
        let bytes: usize = got.iter().map(|m| m.0.payload.len()).sum();
        let payloads: Vec<&[u8]> = got.iter().map(|(p, _)| p.payload.as_ref()).collect();
        self.decoder.prepare(&payloads).await?;
        let (rows, rescued) = self.rows(&got, &payloads)?;
        let newest = got.iter().map(|g| g.1).max();
        let n = got.len() as u64;
        self.pending.extend(got.into_iter().map(|(p, _)| p));
        Ok(Some(SourceBatch {
            tables: vec![TableRows {
                table: self.entry.table.clone(),
                rows,
                apply: Apply::Upsert {
                    keys: self.entry.key.clone(),
                },
            }],
            offset: None,
            messages: n,
            bytes: bytes as u64,
            newest_micros: newest,
            rescued,
        }))
    }

    async fn ack(&mut self) -> Result<(), SourceError> {
        let client = self
            .client
            .as_ref()
            .ok_or_else(|| SourceError::transient(format!("{}: not connected", self.what())))?;
        for p in self.pending.drain(..) {
            client.ack(&p).await.map_err(|e| {
                SourceError::transient(format!("{}: acknowledging: {e}", self.conn.name))
            })?;
        }
        Ok(())
    }

    fn set_table_schema(&mut self, _table: &str, schema: &Schema) {
        let envelope: Vec<String> = self.envelope().into_iter().map(str::to_string).collect();
        let envelope: Vec<&str> = envelope.iter().map(String::as_str).collect();
        self.decoder.set_table_schema(schema, &envelope);
    }
}

impl Drop for MqttSource {
    fn drop(&mut self) {
        if let Some(p) = self.poller.take() {
            p.abort();
        }
    }
}
