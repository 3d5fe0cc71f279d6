//! RabbitMQ into the lakehouse through `confluo sync`: a queue at least once (acknowledged
//! after each commit, redeliveries replacing their copy by message id), a stream exactly
//! once by offset, through SIGKILLs at random moments and a broker restart; and the errors a
//! user can cause. Each test declares a queue or stream of its own on the machine's broker
//! (127.0.0.1:5672, streams on 5552) and deletes it.

use std::process::Stdio;
use std::time::Duration;

use lapin::options::{BasicPublishOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ConnectionProperties};

use crate::common::TestProject;

const AMQP: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

struct Queue {
    name: String,
    rt: tokio::runtime::Runtime,
}

impl Queue {
    /// A durable queue (`stream: true`: a RabbitMQ stream) of the test's own.
    fn new(stream: bool) -> Self {
        let q = Queue {
            name: format!("confluo_t_{}", uuid::Uuid::new_v4().simple()),
            rt: tokio::runtime::Runtime::new().unwrap(),
        };
        q.rt.block_on(async {
            let conn = Connection::connect(AMQP, ConnectionProperties::default())
                .await
                .expect("connect to RabbitMQ");
            let ch = conn.create_channel().await.unwrap();
            let mut args = FieldTable::default();
            if stream {
                args.insert(
                    "x-queue-type".into(),
                    AMQPValue::LongString("stream".into()),
                );
            }
            ch.queue_declare(
                q.name.as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                args,
            )
            .await
            .expect("declare");
            let _ = conn.close(200, "ok".into()).await;
        });
        q
    }

    /// Publishes persistent messages `(message id, body)` through the default exchange and
    /// waits for the broker's confirms.
    fn publish(&self, messages: &[(Option<String>, Vec<u8>)]) {
        self.rt.block_on(async {
            let conn = Connection::connect(AMQP, ConnectionProperties::default())
                .await
                .unwrap();
            let ch = conn.create_channel().await.unwrap();
            ch.confirm_select(Default::default()).await.unwrap();
            let mut confirms = Vec::new();
            for (id, body) in messages {
                let mut props = BasicProperties::default().with_delivery_mode(2);
                if let Some(id) = id {
                    props = props.with_message_id(id.as_str().into());
                }
                confirms.push(
                    ch.basic_publish(
                        "".into(),
                        self.name.as_str().into(),
                        BasicPublishOptions::default(),
                        body,
                        props,
                    )
                    .await
                    .expect("publish"),
                );
            }
            for c in confirms {
                c.await.expect("confirm");
            }
            let _ = conn.close(200, "ok".into()).await;
        });
    }

    fn project(&self, what: &str, extra: &str) -> TestProject {
        TestProject::with_config(&format!(
            "connections:\n  mq: {{type: rabbitmq, host: 127.0.0.1}}\ningest:\n  ev:\n    connection: mq\n    {what}: {}\n    schema: bronze\n    table: events\n{extra}",
            self.name
        ))
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        let name = self.name.clone();
        self.rt.block_on(async move {
            if let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await
                && let Ok(ch) = conn.create_channel().await
            {
                let _ = ch
                    .queue_delete(name.as_str().into(), QueueDeleteOptions::default())
                    .await;
            }
        });
    }
}

fn order(id: u64) -> Vec<u8> {
    format!("{{\"id\": {id}, \"amount\": {}.5}}", id % 100).into_bytes()
}

#[test]
fn queue_messages_land_and_redeliveries_replace_their_copy() {
    let q = Queue::new(false);
    let mut m: Vec<(Option<String>, Vec<u8>)> = (1..=500)
        .map(|i| (Some(format!("m{i}")), order(i)))
        .collect();
    m.extend((501..=550).map(|i| (None, order(i))));
    m.push((Some("bad".into()), b"{broken".to_vec()));
    q.publish(&m);
    let p = q.project("queue", "");
    let out = p.ok(&["sync", "ev"]);
    assert!(out.contains("551 messages"), "{out}");
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "551");
    assert_eq!(
        p.rows("SELECT _message_id, amount FROM bronze.events WHERE id = 7"),
        [["m7", "7.5"]]
    );
    // Published again (a producer's retry): the same message ids, or the same content.
    q.publish(&m[..100]);
    q.publish(&m[500..520]);
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "551");
    let bad = p.scalar("SELECT _rescued_data FROM bronze.events WHERE _message_id = 'bad'");
    assert!(bad.contains("{broken") && bad.contains(&q.name), "{bad}");
}

fn restart_broker() {
    for args in [["stop_app"], ["start_app"]] {
        let ok = std::process::Command::new("rabbitmqctl")
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "rabbitmqctl {args:?}");
    }
    // The stream listener comes up last.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while std::net::TcpStream::connect("127.0.0.1:5552").is_err() {
        assert!(std::time::Instant::now() < deadline, "no stream listener");
        std::thread::sleep(Duration::from_millis(200));
    }
}

impl Queue {
    /// Waits until the broker has the queue back after a restart: until then a publish to it
    /// is unroutable, which the broker confirms all the same — the test would lose it.
    fn wait_available(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        loop {
            let ok = self.rt.block_on(async {
                let Ok(conn) = Connection::connect(AMQP, ConnectionProperties::default()).await
                else {
                    return false;
                };
                let Ok(ch) = conn.create_channel().await else {
                    return false;
                };
                let declared = ch
                    .queue_declare(
                        self.name.as_str().into(),
                        QueueDeclareOptions {
                            passive: true,
                            ..Default::default()
                        },
                        FieldTable::default(),
                    )
                    .await
                    .is_ok();
                let _ = conn.close(200, "ok".into()).await;
                declared
            });
            if ok {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "{} did not come back",
                self.name
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

/// A stream (exactly once) and a queue (at least once, de-duplicated) fed at once, through
/// SIGKILLs of their continuous syncs and a broker restart: every message lands once.
#[test]
fn rabbitmq_restart_and_sigkill_lose_and_duplicate_nothing() {
    let s = Queue::new(true);
    let q = Queue::new(false);
    let ps = s.project("stream", "");
    let pq = q.project("queue", "");
    let (mut ss, mut sq) = (ps.spawn_sync("ev"), pq.spawn_sync("ev"));
    let total = 8_000u64;
    let mut kills = 0;
    let mut restarted = false;
    for chunk in 0..16 {
        let from = chunk * 500 + 1;
        let batch: Vec<_> = (from..from + 500)
            .map(|i| (Some(format!("m{i}")), order(i)))
            .collect();
        s.publish(&batch);
        q.publish(&batch);
        std::thread::sleep(Duration::from_millis(100 * (chunk % 4)));
        if chunk == 8 && !restarted {
            restart_broker();
            s.wait_available();
            q.wait_available();
            restarted = true;
        } else if chunk % 3 == 1 {
            for c in [&mut ss, &mut sq] {
                unsafe { libc::kill(c.id() as i32, libc::SIGKILL) };
                let _ = c.wait();
            }
            kills += 1;
            ss = ps.spawn_sync("ev");
            sq = pq.spawn_sync("ev");
        }
    }
    std::thread::sleep(Duration::from_secs(3));
    for c in [&mut ss, &mut sq] {
        unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
        assert!(c.wait().unwrap().success());
    }
    assert!(kills >= 4 && restarted);
    for (what, p) in [("stream", &ps), ("queue", &pq)] {
        p.ok(&["sync", "ev"]);
        assert_eq!(
            p.scalar("SELECT count(*) FROM bronze.events"),
            total.to_string(),
            "{what}: {:?} {:?}",
            p.rows("SELECT (id - 1) / 500 AS chunk, count(*), min(_offset), max(_offset) FROM bronze.events GROUP BY 1 ORDER BY 1"),
            p.ok(&["query", "DESCRIBE HISTORY bronze.events", "--format", "csv"])
        );
        assert_eq!(
            p.scalar("SELECT count(DISTINCT id) FROM bronze.events"),
            total.to_string()
        );
    }
}

#[test]
fn read_rabbitmq_feeds_a_pipeline_from_a_stream_exactly_once() {
    let q = Queue::new(true);
    q.publish(&(1..=200).map(|i| (None, order(i))).collect::<Vec<_>>());
    let p = TestProject::with_config(
        "pipelines:\n  ingest:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    p.write(
        "pipelines/mq.sql",
        format!(
            "CREATE OR REFRESH STREAMING TABLE raw AS
SELECT stream, offset, CAST(value AS STRING) AS v
FROM STREAM read_rabbitmq(host => '127.0.0.1', stream => '{}');
",
            q.name
        ),
    );
    p.ok(&["run"]);
    assert_eq!(
        p.rows("SELECT count(*), count(DISTINCT offset), min(offset), max(offset) FROM bronze.raw"),
        [["200", "200", "0", "199"]]
    );
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.raw"), "200");
    q.publish(&(201..=260).map(|i| (None, order(i))).collect::<Vec<_>>());
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(DISTINCT v) FROM bronze.raw"), "260");
    // A queue cannot be replayed: refused with what to do instead.
    p.write(
        "pipelines/mq.sql",
        "CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM STREAM read_rabbitmq(host => '127.0.0.1', queue => 'q');",
    );
    let e = p.fail(&["validate"]);
    assert!(
        e.contains("at least once") && e.contains("ingest entry"),
        "{e}"
    );
}

#[test]
fn rabbitmq_errors_say_what_to_fix() {
    let p = TestProject::with_config(
        "connections:\n  mq: {type: rabbitmq, host: 127.0.0.1}\n  wrong: {type: rabbitmq, host: 127.0.0.1, user: nobody, password: nope}\ningest:\n  noqueue:\n    connection: mq\n    queue: confluo_no_such_queue\n    schema: bronze\n  nostream:\n    connection: mq\n    stream: confluo_no_such_stream\n    schema: bronze\n  both:\n    connection: mq\n    queue: a\n    stream: b\n    schema: bronze\n  neither:\n    connection: mq\n    schema: bronze\n  login:\n    connection: wrong\n    queue: a\n    schema: bronze\n",
    );
    let e = p.fail(&["sync", "noqueue"]);
    assert!(e.contains("no such queue"), "{e}");
    let e = p.fail(&["sync", "nostream"]);
    assert!(e.contains("no such stream"), "{e}");
    let e = p.fail(&["sync", "both"]);
    assert!(e.contains("not both"), "{e}");
    let e = p.fail(&["sync", "neither"]);
    assert!(e.contains("`queue: <name>`"), "{e}");
    let e = p.fail(&["sync", "login"]);
    assert!(e.contains("refused the login"), "{e}");
    let out = p.ok(&["connections", "test", "mq"]);
    assert!(out.contains("streams: true"), "{out}");
}

#[test]
fn stream_start_next_is_kept_by_a_run_that_reads_nothing() {
    let q = Queue::new(true);
    q.publish(&(1..=50).map(|i| (None, order(i))).collect::<Vec<_>>());
    let p = q.project("stream", "    start: next\n");
    // Nothing arrives during the first sync: it still keeps where "next" stood.
    p.ok(&["sync", "ev"]);
    q.publish(&(51..=60).map(|i| (None, order(i))).collect::<Vec<_>>());
    // The second sync starts there, not at a later "next": the ten published in between land.
    p.ok(&["sync", "ev"]);
    let got =
        p.rows("SELECT count(*), max(_offset) - min(_offset), max(_offset) FROM bronze.events");
    assert_eq!(
        (got[0][0].as_str(), got[0][1].as_str()),
        ("10", "9"),
        "{got:?}"
    );
    let end = got[0][2].clone();
    // `last` on a fresh table starts at the stream's last chunk and keeps that too.
    let p = q.project("stream", "    start: last\n");
    p.ok(&["sync", "ev"]);
    let n: u64 = p
        .scalar("SELECT count(*) FROM bronze.events")
        .parse()
        .unwrap();
    assert!((1..=60).contains(&n), "{n}");
    assert_eq!(p.scalar("SELECT max(_offset) FROM bronze.events"), end);
}
