//! The Kafka side of `bench/run.sh kafka`, on rskafka — the client Confluo's Kafka source
//! uses — so the floor is the same library's raw consume rate.
//!
//! ```text
//! kafka_bench BROKER create TOPIC PARTITIONS
//! kafka_bench BROKER produce TOPIC COUNT [RATE]   # RATE messages/s (0: as fast as it can)
//! kafka_bench BROKER consume TOPIC                # every record to the end, dropped (the floor)
//! ```
//!
//! Produced values are ~200-byte JSON orders: `{"id":…,"ts":<produce time, µs>,…}`, ids
//! 1..=COUNT spread round-robin over the partitions. Each command prints one JSON line.

use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, OffsetAt, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

fn value(id: u64) -> Vec<u8> {
    let ts = chrono::Utc::now().timestamp_micros();
    let mut v = format!(
        "{{\"id\":{id},\"ts\":{ts},\"customer\":\"C{:07}\",\"amount\":{}.{:02},\"currency\":\"EUR\",\"status\":\"{}\",\"note\":\"",
        id % 100_000,
        id % 1000,
        id % 100,
        ["new", "paid", "shipped", "returned"][(id % 4) as usize]
    );
    while v.len() < 196 {
        v.push((b'a' + (v.len() % 26) as u8) as char);
    }
    v.push_str("\"}");
    v.into_bytes()
}

async fn partitions(client: &Client, topic: &str) -> Vec<i32> {
    let topics = client.list_topics().await.expect("list topics");
    let t = topics
        .into_iter()
        .find(|t| t.name == topic)
        .unwrap_or_else(|| panic!("no topic {topic}"));
    t.partitions.into_iter().collect()
}

async fn produce(client: &Client, topic: &str, count: u64, rate: u64) {
    let parts = partitions(client, topic).await;
    let mut pcs = Vec::new();
    for p in &parts {
        pcs.push(
            client
                .partition_client(topic, *p, UnknownTopicHandling::Retry)
                .await
                .expect("partition client"),
        );
    }
    let started = Instant::now();
    // Paced runs send a slice every 10 ms; unpaced ones 2,000 records per request.
    let per_tick = if rate == 0 {
        2_000
    } else {
        (rate / 100).max(1)
    };
    let mut next = 1u64;
    let mut tick = 0u64;
    while next <= count {
        if rate > 0 {
            let due = started + Duration::from_millis(10 * tick);
            tokio::time::sleep_until(due.into()).await;
            tick += 1;
        }
        let end = (next + per_tick).min(count + 1);
        let mut by_part: Vec<Vec<Record>> = (0..pcs.len()).map(|_| Vec::new()).collect();
        for id in next..end {
            by_part[(id % pcs.len() as u64) as usize].push(Record {
                key: Some(id.to_string().into_bytes()),
                value: Some(value(id)),
                headers: Default::default(),
                timestamp: chrono::Utc::now(),
            });
        }
        let sends = pcs
            .iter()
            .zip(by_part)
            .filter(|(_, r)| !r.is_empty())
            .map(|(pc, r)| pc.produce(r, Compression::NoCompression));
        for r in futures::future::join_all(sends).await {
            r.expect("produce");
        }
        next = end;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{{\"produced\": {count}, \"seconds\": {secs:.3}}}");
}

async fn consume(client: &Client, topic: &str) {
    let started = Instant::now();
    let mut tasks = Vec::new();
    let parts = partitions(client, topic).await;
    // The fetch size Confluo uses for this many partitions (32 MiB shared, 1 to 4 MiB
    // each); FETCH_BYTES tries another.
    let fetch: i32 = std::env::var("FETCH_BYTES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(((32usize << 20) / parts.len().max(1)).clamp(1 << 20, 4 << 20) as i32);
    for p in parts {
        let pc = client
            .partition_client(topic, p, UnknownTopicHandling::Error)
            .await
            .expect("partition client");
        tasks.push(tokio::spawn(async move {
            let end = pc.get_offset(OffsetAt::Latest).await.expect("end");
            let mut at = pc.get_offset(OffsetAt::Earliest).await.expect("start");
            let (mut n, mut bytes) = (0u64, 0u64);
            // The same wait as Confluo's fetch tasks.
            while at < end {
                let (records, _) = pc.fetch_records(at, 1..fetch, 250).await.expect("fetch");
                for r in records {
                    n += 1;
                    bytes += r.record.value.as_ref().map_or(0, Vec::len) as u64;
                    at = r.offset + 1;
                }
            }
            (n, bytes)
        }));
    }
    let (mut n, mut bytes) = (0u64, 0u64);
    for t in tasks {
        let (a, b) = t.await.expect("fetch task");
        n += a;
        bytes += b;
    }
    let secs = started.elapsed().as_secs_f64();
    println!("{{\"messages\": {n}, \"bytes\": {bytes}, \"seconds\": {secs:.3}}}");
}

#[tokio::main]
async fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| -> &str {
        args.get(i)
            .map(String::as_str)
            .unwrap_or_else(|| panic!("usage: kafka_bench BROKER create|produce|consume TOPIC ..."))
    };
    let client = ClientBuilder::new(vec![arg(0).to_string()])
        .build()
        .await
        .expect("connect to the broker");
    match arg(1) {
        "create" => {
            client
                .controller_client()
                .expect("controller")
                .create_topic(arg(2), arg(3).parse().expect("partitions"), 1, 5_000)
                .await
                .expect("create topic");
            println!("{{\"created\": \"{}\"}}", arg(2));
        }
        "produce" => {
            let rate = args.get(4).map_or(0, |r| r.parse().expect("rate"));
            produce(&client, arg(2), arg(3).parse().expect("count"), rate).await
        }
        "consume" => consume(&client, arg(2)).await,
        other => panic!("unknown command {other}"),
    }
}
