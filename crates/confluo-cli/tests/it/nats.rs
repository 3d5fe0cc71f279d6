//! NATS JetStream into the lakehouse through `confluo sync`: messages land exactly once, as
//! typed columns with their envelope, malformed ones rescued; SIGKILL of a continuous sync
//! at random moments and a restart of the server lose and duplicate nothing; SIGTERM stops
//! cleanly; and the errors a user can cause say what to fix. Each test works in a stream of
//! its own (the machine's server on 4222), or in a server of its own where it restarts it.

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use async_nats::jetstream;

use crate::common::TestProject;

const URL: &str = "nats://127.0.0.1:4222";

/// A stream of one test's own, deleted at the end.
struct TestStream {
    name: String,
    subject: String,
    url: String,
    rt: tokio::runtime::Runtime,
}

impl TestStream {
    fn new(url: &str) -> Self {
        let id = uuid::Uuid::new_v4().simple().to_string();
        let s = TestStream {
            name: format!("CONFLUO_T_{id}"),
            subject: format!("t{id}"),
            url: url.to_string(),
            rt: tokio::runtime::Runtime::new().unwrap(),
        };
        s.create();
        s
    }

    async fn js(&self) -> jetstream::Context {
        let client = async_nats::connect(self.url.as_str())
            .await
            .expect("connect to NATS");
        jetstream::new(client)
    }

    fn create(&self) {
        self.rt.block_on(async {
            self.js()
                .await
                .get_or_create_stream(jetstream::stream::Config {
                    name: self.name.clone(),
                    subjects: vec![format!("{}.>", self.subject)],
                    ..Default::default()
                })
                .await
                .expect("create stream");
        });
    }

    /// Publishes each payload to `<subject>.<suffix>` and waits for the server's acks.
    fn publish(&self, suffix: &str, payloads: &[Vec<u8>]) {
        self.rt.block_on(async {
            let js = self.js().await;
            let mut acks = Vec::new();
            for p in payloads {
                acks.push(
                    js.publish(format!("{}.{suffix}", self.subject), p.clone().into())
                        .await
                        .expect("publish"),
                );
            }
            for a in acks {
                a.await.expect("publish ack");
            }
        });
    }

    fn project(&self, entry_extra: &str) -> TestProject {
        TestProject::with_config(&format!(
            "connections:\n  bus: {{type: nats, url: \"{}\"}}\ningest:\n  ev:\n    connection: bus\n    stream: {}\n    schema: bronze\n    table: events\n{entry_extra}",
            self.url, self.name
        ))
    }
}

impl Drop for TestStream {
    fn drop(&mut self) {
        let (url, name) = (self.url.clone(), self.name.clone());
        self.rt.block_on(async move {
            if let Ok(client) = async_nats::connect(url.as_str()).await {
                let _ = jetstream::new(client).delete_stream(&name).await;
            }
        });
    }
}

fn order(id: u64) -> Vec<u8> {
    format!(
        "{{\"id\": {id}, \"amount\": {}.5, \"note\": \"n{id}\"}}",
        id % 100
    )
    .into_bytes()
}

#[test]
fn jetstream_messages_land_exactly_once_as_typed_columns() {
    let s = TestStream::new(URL);
    let mut first: Vec<Vec<u8>> = (1..=1000).map(order).collect();
    first.push(b"{not json".to_vec());
    first.push(Vec::new());
    s.publish("orders", &first);
    let p = s.project("");
    let out = p.ok(&["sync", "ev"]);
    assert!(out.contains("1,002 messages"), "{out}");
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "1002");
    assert_eq!(
        p.scalar("SELECT count(DISTINCT _sequence) FROM bronze.events"),
        "1002"
    );
    assert_eq!(
        p.rows("SELECT id, amount, note, _subject FROM bronze.events WHERE id = 7"),
        [["7", "7.5", "n7", format!("{}.orders", s.subject).as_str()]]
    );
    // Malformed and empty messages are kept whole, with where they came from.
    let rescued = p.rows(
        "SELECT _rescued_data FROM bronze.events WHERE _rescued_data IS NOT NULL ORDER BY _sequence",
    );
    assert_eq!(rescued.len(), 2, "{rescued:?}");
    let bad: serde_json::Value = serde_json::from_str(&rescued[0][0]).unwrap();
    assert_eq!(bad["_raw"], "{not json");
    assert_eq!(bad["_stream"], s.name.as_str());
    assert_eq!(bad["_sequence"], 1001);

    // Nothing new: nothing written.
    let history = || p.ok(&["query", "DESCRIBE HISTORY bronze.events", "--format", "csv"]);
    let versions = history().lines().count();
    p.ok(&["sync", "ev"]);
    assert_eq!(history().lines().count(), versions);
    // New messages, one with a new field: exactly those are added, the column too.
    let more: Vec<Vec<u8>> = (1001..=1500)
        .map(|i| {
            if i == 1500 {
                br#"{"id": 1500, "amount": 1.5, "note": "x", "channel": "web"}"#.to_vec()
            } else {
                order(i)
            }
        })
        .collect();
    s.publish("orders", &more);
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "1502");
    assert_eq!(
        p.scalar("SELECT count(DISTINCT id) FROM bronze.events"),
        "1500"
    );
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "1502");
    // The metastore knows where the entry stands, as a typed offset.
    let status = p.ok(&["sync", "--status", "--json"]);
    assert!(status.contains("\"source\":\"jet_stream\""), "{status}");
    assert!(status.contains("\"sequence\":1502"), "{status}");
}

#[test]
fn a_latest_start_is_kept_by_a_run_that_reads_nothing() {
    let s = TestStream::new(URL);
    s.publish("a", &(1..=40).map(order).collect::<Vec<_>>());
    let p = s.project("    start: latest\n");
    // Nothing after `latest` yet: the position is committed all the same.
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "0");
    s.publish("a", &(41..=55).map(order).collect::<Vec<_>>());
    p.ok(&["sync", "ev"]);
    assert_eq!(
        p.rows("SELECT count(*), min(id), max(id) FROM bronze.events"),
        [["15", "41", "55"]]
    );
}

#[test]
fn at_least_once_keys_replace_redelivered_messages() {
    let s = TestStream::new(URL);
    s.publish("orders", &[order(1), order(2), order(2), order(3)]);
    let p = s.project("    key: [id]\n");
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "3");
    s.publish("orders", &[order(3), order(4)]);
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "4");
}

#[test]
fn stream_errors_say_what_to_fix() {
    let s = TestStream::new(URL);
    let p = TestProject::with_config(&format!(
        "connections:\n  bus: {{type: nats, url: \"{URL}\"}}\n  down: {{type: nats, url: \"nats://127.0.0.1:1\", connect_timeout: 1s}}\n  typo: {{type: natz}}\ningest:\n  nostream:\n    connection: bus\n    stream: NO_SUCH_STREAM_{}\n    schema: bronze\n  badkey:\n    connection: bus\n    stream: {}\n    schema: bronze\n    subjcts: [a]\n  badformat:\n    connection: bus\n    stream: {}\n    schema: bronze\n    format: xml\n  unreachable:\n    connection: down\n    stream: X\n    schema: bronze\n  dbkey:\n    connection: bus\n    stream: {}\n    schema: bronze\n    tables: [a]\n",
        s.subject, s.name, s.name, s.name
    ));
    let e = p.fail(&["sync", "nostream"]);
    assert!(e.contains("no such stream") && e.contains("hint"), "{e}");
    let e = p.fail(&["sync", "badkey"]);
    assert!(
        e.contains("unknown key `subjcts`") && e.contains("did you mean `subjects`"),
        "{e}"
    );
    let e = p.fail(&["sync", "badformat"]);
    assert!(e.contains("`xml` is not a payload format"), "{e}");
    let started = Instant::now();
    let e = p.fail(&["sync", "unreachable"]);
    assert!(e.contains("nats://127.0.0.1:1"), "{e}");
    assert!(started.elapsed() < Duration::from_secs(60));
    let e = p.fail(&["sync", "dbkey"]);
    assert!(e.contains("`tables` is for database connections"), "{e}");
    let e = p.fail(&["connections", "test", "typo"]);
    assert!(
        e.contains("unknown type `natz`") && e.contains("did you mean `nats`"),
        "{e}"
    );
    let out = p.ok(&["connections", "test", "bus"]);
    assert!(out.contains("jetstream: true"), "{out}");
}

/// A NATS server of the test's own on a free port, with its store in a temporary folder,
/// so it can be stopped and started without touching other tests.
struct OwnServer {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
}

impl OwnServer {
    fn start() -> Self {
        let port = crate::common::free_port();
        let mut s = OwnServer {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
        };
        s.up();
        s
    }

    fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let child = Command::new("nats-server")
            .args([
                "-a",
                "127.0.0.1",
                "-p",
                &self.port.to_string(),
                "-js",
                "-sd",
            ])
            .arg(self.dir.path())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .or_else(|_| {
                Command::new("/usr/sbin/nats-server")
                    .args([
                        "-a",
                        "127.0.0.1",
                        "-p",
                        &self.port.to_string(),
                        "-js",
                        "-sd",
                    ])
                    .arg(self.dir.path())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
            })
            .expect("start nats-server");
        self.child = Some(child);
        crate::common::wait_for_port(self.port, Duration::from_secs(10), "nats-server");
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }
}

impl Drop for OwnServer {
    fn drop(&mut self) {
        self.down();
    }
}

#[test]
fn sigkill_and_a_server_restart_lose_and_duplicate_nothing() {
    let mut server = OwnServer::start();
    let s = TestStream::new(&server.url());
    let p = s.project("");
    crate::common::exactly_once_through_kills(
        &p,
        &mut server,
        20_000,
        order,
        |_, batch, _| s.publish("orders", batch),
        |server| {
            server.down();
            std::thread::sleep(Duration::from_millis(500));
            server.up();
        },
    );
}

#[test]
fn read_nats_feeds_a_pipeline_exactly_once() {
    let s = TestStream::new(URL);
    s.publish("a", &(1..=300).map(order).collect::<Vec<_>>());
    let p = TestProject::with_config(
        "pipelines:\n  ingest:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    p.write(
        "pipelines/nats.sql",
        format!(
            "CREATE OR REFRESH STREAMING TABLE raw AS
SELECT subject, sequence, published, CAST(value AS STRING) AS v
FROM STREAM read_nats(servers => '{URL}', stream => '{}');

CREATE OR REFRESH MATERIALIZED VIEW per_subject AS
SELECT subject, count(*) AS n FROM raw GROUP BY subject;
",
            s.name
        ),
    );
    p.ok(&["validate"]);
    p.ok(&["run"]);
    assert_eq!(
        p.rows("SELECT count(*), count(DISTINCT sequence), min(sequence), max(sequence) FROM bronze.raw"),
        [["300", "300", "1", "300"]]
    );
    assert_eq!(
        p.scalar("SELECT v FROM bronze.raw WHERE sequence = 7"),
        String::from_utf8(order(7)).unwrap()
    );
    // Nothing new: nothing read twice; new messages: exactly those.
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.raw"), "300");
    s.publish("b", &(301..=450).map(order).collect::<Vec<_>>());
    p.ok(&["run"]);
    assert_eq!(
        p.rows("SELECT subject, n FROM bronze.per_subject ORDER BY subject"),
        [
            [format!("{}.a", s.subject), "300".to_string()],
            [format!("{}.b", s.subject), "150".to_string()]
        ]
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT sequence) FROM bronze.raw"),
        "450"
    );
    // What a user can get wrong, said at its place.
    p.write(
        "pipelines/nats.sql",
        "CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM STREAM read_nats(servers => 'nats://127.0.0.1:4222', steam => 'X');",
    );
    let e = p.fail(&["validate"]);
    assert!(
        e.contains("unknown option `steam`") && e.contains("`stream`"),
        "{e}"
    );
    assert!(e.contains("nats.sql:1"), "{e}");
    p.write(
        "pipelines/nats.sql",
        "CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM STREAM read_mqtt(topics => 'a/#');",
    );
    let e = p.fail(&["validate"]);
    assert!(e.contains("read_mqtt") && e.contains("ingest entry"), "{e}");
}
