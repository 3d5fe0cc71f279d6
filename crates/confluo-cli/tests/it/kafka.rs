//! Kafka into the lakehouse through `confluo sync`, against a real Kafka-protocol broker
//! (tansu, built by `scripts/setup-services.sh`): records of every partition land exactly
//! once with their envelope, malformed ones rescued with topic/partition/offset; SIGKILL of
//! a continuous sync at random moments and a broker restart lose and duplicate nothing;
//! SIGTERM stops cleanly; starting offsets, patterns and limits do what Spark's options do;
//! and the errors a user can cause say what to fix. Each test starts a broker of its own on
//! a free port, with its storage in a temporary folder.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rskafka::client::partition::{Compression, UnknownTopicHandling};
use rskafka::client::{Client, ClientBuilder};
use rskafka::record::Record;

use crate::common::TestProject;

fn tansu() -> PathBuf {
    if let Some(p) = std::env::var_os("CONFLUO_TANSU") {
        return p.into();
    }
    let root = std::env::var_os("CONFLUO_TOOLS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            PathBuf::from(std::env::var("HOME").unwrap()).join(".cache/confluo-tools")
        });
    let bin = root.join("bin/tansu");
    assert!(
        bin.exists(),
        "{} is missing: run scripts/setup-services.sh (it builds the tansu Kafka broker)",
        bin.display()
    );
    bin
}

/// A broker of the test's own: tansu on a free port, SQLite storage in a temporary folder
/// (kept across a restart).
pub(crate) struct Broker {
    port: u16,
    dir: tempfile::TempDir,
    child: Option<Child>,
    rt: tokio::runtime::Runtime,
    /// Arguments the broker starts with besides storage and listener (`--authentication`).
    extra: Vec<String>,
    /// The port clients are told to connect to, when it is not the broker's own (a TLS
    /// proxy in front of it).
    advertised: Option<u16>,
}

impl Broker {
    pub(crate) fn start() -> Self {
        let port = crate::common::free_port();
        let mut b = Broker {
            port,
            dir: tempfile::tempdir().unwrap(),
            child: None,
            rt: tokio::runtime::Runtime::new().unwrap(),
            extra: Vec::new(),
            advertised: None,
        };
        b.up();
        b
    }

    pub(crate) fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    fn up(&mut self) {
        let url = format!("tcp://{}", self.addr());
        let advertised = format!("tcp://127.0.0.1:{}", self.advertised.unwrap_or(self.port));
        let child = Command::new(tansu())
            .current_dir(self.dir.path())
            .args(["broker", "--storage-engine"])
            // tansu opens a SQLite path relative to its working folder.
            .arg("sqlite://tansu.db")
            .args([
                "--listener-url",
                &url,
                "--advertised-listener-url",
                &advertised,
            ])
            .args(&self.extra)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start tansu");
        self.child = Some(child);
        crate::common::wait_for_port(self.port, Duration::from_secs(20), "tansu");
    }

    fn down(&mut self) {
        if let Some(mut c) = self.child.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            let _ = c.wait();
        }
    }

    async fn client(&self) -> Client {
        ClientBuilder::new(vec![self.addr()])
            .build()
            .await
            .expect("connect to the broker")
    }

    pub(crate) fn create_topic(&self, name: &str, partitions: i32) {
        self.rt.block_on(async {
            let c = self.client().await;
            c.controller_client()
                .unwrap()
                .create_topic(name, partitions, 1, 5_000)
                .await
                .expect("create topic");
        });
    }

    /// Produces `values` to `topic`/`partition` (with a key and a header each) and waits
    /// for the broker's acknowledgement.
    pub(crate) fn produce(&self, topic: &str, partition: i32, values: &[Vec<u8>]) {
        self.rt.block_on(async {
            let c = self.client().await;
            let pc = c
                .partition_client(topic, partition, UnknownTopicHandling::Retry)
                .await
                .expect("partition client");
            for chunk in values.chunks(500) {
                let records = chunk
                    .iter()
                    .enumerate()
                    .map(|(i, v)| Record {
                        key: Some(format!("k{i}").into_bytes()),
                        value: Some(v.clone()),
                        headers: BTreeMap::from([("source".to_string(), b"test".to_vec())]),
                        timestamp: chrono::Utc::now(),
                    })
                    .collect();
                pc.produce(records, Compression::NoCompression)
                    .await
                    .expect("produce");
            }
        });
    }

    fn project(&self, topic: &str, entry_extra: &str) -> TestProject {
        TestProject::with_config(&format!(
            "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\"}}\ningest:\n  ev:\n    connection: bus\n    topics: {topic}\n    schema: bronze\n    table: events\n{entry_extra}",
            self.addr()
        ))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        self.down();
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
fn kafka_records_land_exactly_once_with_their_envelope() {
    let b = Broker::start();
    b.create_topic("orders", 3);
    for p in 0..3 {
        let ids: Vec<Vec<u8>> = (1..=1000).map(|i| order(p * 1000 + i)).collect();
        b.produce("orders", p as i32, &ids);
    }
    b.produce("orders", 1, &[b"{not json".to_vec()]);
    let p = b.project("orders", "");
    let out = p.ok(&["sync", "ev"]);
    assert!(out.contains("3,001 messages"), "{out}");
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "3001");
    assert_eq!(
        p.scalar("SELECT count(DISTINCT _partition || '/' || _offset) FROM bronze.events"),
        "3001"
    );
    assert_eq!(
        p.rows(
            "SELECT id, amount, note, _topic, _partition, CAST(_key AS STRING), CAST(_headers['source'] AS STRING) FROM bronze.events WHERE id = 1007"
        ),
        [["1007", "7.5", "n1007", "orders", "1", "k6", "test"]]
    );
    let rescued =
        p.scalar("SELECT _rescued_data FROM bronze.events WHERE _rescued_data IS NOT NULL");
    let bad: serde_json::Value = serde_json::from_str(&rescued).unwrap();
    assert_eq!(bad["_raw"], "{not json");
    assert_eq!(bad["_topic"], "orders");
    assert_eq!(bad["_partition"], 1);
    assert_eq!(bad["_offset"], 1000);

    // Nothing new: nothing written; new records on one partition: exactly those.
    let history = || p.ok(&["query", "DESCRIBE HISTORY bronze.events", "--format", "csv"]);
    let versions = history().lines().count();
    p.ok(&["sync", "ev"]);
    assert_eq!(history().lines().count(), versions);
    b.produce("orders", 2, &(5001..=5500).map(order).collect::<Vec<_>>());
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "3501");
    assert_eq!(
        p.scalar("SELECT count(DISTINCT id) FROM bronze.events"),
        "3500"
    );
    // The metastore knows where each partition stands.
    let status = p.ok(&["sync", "--status", "--json"]);
    assert!(status.contains("\"source\":\"kafka\""), "{status}");
    assert!(status.contains("\"orders/2\":1499"), "{status}");
}

#[test]
fn kafka_starting_offsets_patterns_and_limits_work_as_in_spark() {
    let b = Broker::start();
    b.create_topic("clicks_a", 2);
    b.create_topic("clicks_b", 1);
    b.create_topic("other", 1);
    for (t, part) in [
        ("clicks_a", 0),
        ("clicks_a", 1),
        ("clicks_b", 0),
        ("other", 0),
    ] {
        b.produce(t, part, &(1..=100).map(order).collect::<Vec<_>>());
    }
    // A pattern over whole topic names, starting at given offsets, 70 records per batch.
    let p = TestProject::with_config(&format!(
        "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\"}}\ningest:\n  ev:\n    connection: bus\n    pattern: \"clicks_.*\"\n    schema: bronze\n    table: events\n    starting_offsets: '{{\"clicks_a\": {{\"0\": 90, \"1\": -1}}}}'\n    max_offsets_per_trigger: 70\n",
        b.addr()
    ));
    p.ok(&["sync", "ev"]);
    // clicks_a/0 from 90 (10), clicks_a/1 from the end (0), clicks_b/0 not named: earliest.
    assert_eq!(
        p.rows(
            "SELECT _topic, _partition, count(*) FROM bronze.events GROUP BY 1, 2 ORDER BY 1, 2"
        ),
        [["clicks_a", "0", "10"], ["clicks_b", "0", "100"]]
    );
    // 110 records at most 70 a batch: two commits (a header line, then one per version).
    let history = p.ok(&["query", "DESCRIBE HISTORY bronze.events", "--format", "csv"]);
    assert!(history.lines().count() >= 3, "{history}");
    // Upserted by the record key: a compacted topic's latest value per key (the test's
    // records are keyed k0, k1, ... within each produce call).
    let p = b.project("other", "    key: [_key]\n    format: text\n");
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "100");
    assert_eq!(
        p.scalar("SELECT value FROM bronze.events WHERE CAST(_key AS STRING) = 'k2'"),
        String::from_utf8(order(3)).unwrap()
    );
}

#[test]
fn kafka_latest_start_is_kept_by_a_run_that_reads_nothing() {
    let b = Broker::start();
    b.create_topic("late", 2);
    b.produce("late", 0, &(1..=50).map(order).collect::<Vec<_>>());
    let p = b.project("late", "    starting_offsets: latest\n");
    // Nothing after `latest` yet: the start is committed all the same.
    p.ok(&["sync", "ev"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "0");
    b.produce("late", 0, &(101..=110).map(order).collect::<Vec<_>>());
    b.produce("late", 1, &(111..=120).map(order).collect::<Vec<_>>());
    p.ok(&["sync", "ev"]);
    assert_eq!(
        p.rows("SELECT count(*), min(id), max(id), count(note) FROM bronze.events"),
        [["20", "101", "120", "20"]]
    );
    let history = || p.ok(&["query", "DESCRIBE HISTORY bronze.events", "--format", "csv"]);
    let versions = history().lines().count();
    p.ok(&["sync", "ev"]);
    assert_eq!(history().lines().count(), versions);
}

#[test]
fn kafka_sasl_scram_logs_in_and_a_refused_login_says_what_to_check() {
    let mut b = Broker::start();
    b.create_topic("secure", 1);
    b.produce("secure", 0, &(1..=20).map(order).collect::<Vec<_>>());
    // The user is made while the broker is open, then it is restarted asking for logins.
    let out = Command::new(tansu())
        .args(["user", "create", "--broker", &format!("tcp://{}", b.addr())])
        .args(["alice", "s3cret", "--mechanism", "scram512"])
        .output()
        .expect("tansu user create");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    b.down();
    b.extra = vec!["--authentication".into()];
    b.up();
    let project = |password: &str| {
        TestProject::with_config(&format!(
            "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\", security_protocol: sasl_plaintext, sasl_mechanism: SCRAM-SHA-512, user: alice, password: {password}, connect_timeout: 5s}}\ningest:\n  ev:\n    connection: bus\n    topics: secure\n    schema: bronze\n    table: events\n",
            b.addr()
        ))
    };
    let p = project("s3cret");
    p.ok(&["sync", "ev"]);
    assert_eq!(
        p.rows("SELECT count(*), sum(id) FROM bronze.events"),
        [["20", "210"]]
    );
    let p = project("wrong");
    let e = p.fail(&["sync", "ev"]);
    assert!(e.contains("127.0.0.1") && !e.contains("wrong"), "{e}");
    assert!(
        e.contains("Sasl handshake failed") && e.contains("`user` and `password`"),
        "{e}"
    );
}

#[test]
fn kafka_over_tls_trusts_the_given_ca_and_refuses_an_unknown_one() {
    let mut b = Broker::start();
    b.create_topic("sealed", 1);
    b.produce("sealed", 0, &(1..=15).map(order).collect::<Vec<_>>());
    // tansu 0.6 cannot be given both --cert and --key (one exclusive argument group), so
    // TLS is OpenSSL's, through socat in front of the broker, which advertises socat's port.
    let certs = tempfile::tempdir().unwrap();
    let at = |f: &str| certs.path().join(f).display().to_string();
    let (ca, cert, key) = (at("ca.pem"), at("cert.pem"), at("key.pem"));
    std::fs::write(
        at("ext.cnf"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n",
    )
    .unwrap();
    // A CA of the test's own, and the broker's certificate for 127.0.0.1 signed by it.
    for args in [
        vec![
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-days",
            "1",
            "-subj",
            "/CN=confluo-test-ca",
            "-keyout",
            &at("ca.key"),
            "-out",
            &ca,
        ],
        vec![
            "req",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-subj",
            "/CN=127.0.0.1",
            "-keyout",
            &key,
            "-out",
            &at("cert.csr"),
        ],
        vec![
            "x509",
            "-req",
            "-in",
            &at("cert.csr"),
            "-CA",
            &ca,
            "-CAkey",
            &at("ca.key"),
            "-CAcreateserial",
            "-days",
            "1",
            "-extfile",
            &at("ext.cnf"),
            "-out",
            &cert,
        ],
    ] {
        let out = Command::new("openssl")
            .args(&args)
            .output()
            .expect("openssl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
    let tls_port = crate::common::free_port();
    b.down();
    b.advertised = Some(tls_port);
    b.up();
    let mut proxy = Command::new("socat")
        .arg(format!(
            "OPENSSL-LISTEN:{tls_port},bind=127.0.0.1,reuseaddr,fork,cert={cert},key={key},verify=0"
        ))
        .arg(format!("TCP:127.0.0.1:{}", b.port))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("socat (scripts/setup-services.sh installs it)");
    crate::common::wait_for_port(tls_port, Duration::from_secs(10), "socat");
    let project = |ca: &str| {
        TestProject::with_config(&format!(
            "connections:\n  bus: {{type: kafka, bootstrap_servers: \"127.0.0.1:{tls_port}\", security_protocol: ssl, {ca} connect_timeout: 5s}}\ningest:\n  ev:\n    connection: bus\n    topics: sealed\n    schema: bronze\n    table: events\n"
        ))
    };
    let p = project(&format!("ca_file: \"{ca}\","));
    let ok = p.run(&["sync", "ev"]);
    let without_ca = project("").run(&["sync", "ev"]);
    let _ = proxy.kill();
    let _ = proxy.wait();
    crate::common::succeeded(&["sync", "ev"], ok);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), "15");
    // Without the CA, the Mozilla roots do not vouch for the broker: refused, and said.
    assert!(!without_ca.status.success());
    let e = String::from_utf8_lossy(&without_ca.stderr);
    assert!(
        e.contains("127.0.0.1") && e.to_ascii_lowercase().contains("certificate"),
        "{e}"
    );
}

#[test]
fn kafka_pattern_picks_up_topics_created_while_running() {
    let b = Broker::start();
    b.create_topic("feed_a", 1);
    b.produce("feed_a", 0, &(1..=10).map(order).collect::<Vec<_>>());
    let p = TestProject::with_config(&format!(
        "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\"}}\ningest:\n  ev:\n    connection: bus\n    pattern: \"feed_.*\"\n    schema: bronze\n    table: events\n    topic_refresh_interval: 2s\n",
        b.addr()
    ));
    let mut sync = p.spawn_sync("ev");
    std::thread::sleep(Duration::from_secs(2));
    b.create_topic("feed_b", 2);
    b.produce("feed_b", 1, &(11..=30).map(order).collect::<Vec<_>>());
    // Rediscovery runs every 2 s here (`topic_refresh_interval`; 30 s by default).
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let n = p.run(&[
            "query",
            "SELECT count(*) FROM bronze.events",
            "--format",
            "csv",
        ]);
        if String::from_utf8_lossy(&n.stdout).contains("30") {
            break;
        }
        assert!(Instant::now() < deadline, "feed_b was not picked up");
        std::thread::sleep(Duration::from_millis(500));
    }
    unsafe { libc::kill(sync.id() as i32, libc::SIGTERM) };
    assert!(sync.wait().unwrap().success());
    assert_eq!(
        p.rows("SELECT _topic, count(*) FROM bronze.events GROUP BY 1 ORDER BY 1"),
        [["feed_a", "10"], ["feed_b", "20"]]
    );
}

fn num_files(p: &TestProject) -> u64 {
    p.rows("DESCRIBE DETAIL bronze.events")[0][8]
        .parse()
        .unwrap()
}

#[test]
fn kafka_targets_compact_themselves_and_optimize_runs_beside_appends() {
    let b = Broker::start();
    b.create_topic("small", 2);
    b.produce("small", 0, &(1..=10).map(order).collect::<Vec<_>>());
    let p = b.project("small", "    max_offsets_per_trigger: 10\n");
    p.ok(&["sync", "ev"]);
    p.ok(&[
        "query",
        "ALTER TABLE bronze.events SET TBLPROPERTIES ('confluo.autoCompact.minNumFiles' = '5')",
    ]);
    b.produce("small", 0, &(11..=160).map(order).collect::<Vec<_>>());
    b.produce("small", 1, &(161..=310).map(order).collect::<Vec<_>>());
    // 30 batches of 10 records: the runner compacts every 10 batches.
    p.ok(&["sync", "ev"]);
    let check = |n: &str| {
        assert_eq!(p.scalar("SELECT count(*) FROM bronze.events"), n);
        assert_eq!(
            p.scalar("SELECT count(DISTINCT _partition || '/' || _offset) FROM bronze.events"),
            n
        );
    };
    check("310");
    let history = p.ok(&["query", "DESCRIBE HISTORY bronze.events", "--format", "csv"]);
    assert!(history.contains("OPTIMIZE"), "{history}");
    assert!(num_files(&p) <= 2, "{} files", num_files(&p));

    // OPTIMIZE from another process while a continuous sync appends (auto-compaction off, so
    // the two compactions do not race): nothing lost, nothing twice.
    p.ok(&[
        "query",
        "ALTER TABLE bronze.events SET TBLPROPERTIES ('delta.autoOptimize.autoCompact' = 'false')",
    ]);
    let mut sync = p.spawn_sync("ev");
    for round in 0..6u64 {
        let ids: Vec<Vec<u8>> = (1000 + round * 100..1100 + round * 100)
            .map(order)
            .collect();
        b.produce("small", (round % 2) as i32, &ids);
        std::thread::sleep(Duration::from_millis(400));
        p.ok(&["query", "OPTIMIZE bronze.events"]);
    }
    let deadline = Instant::now() + Duration::from_secs(60);
    while p.scalar("SELECT count(*) FROM bronze.events") != "910" {
        assert!(Instant::now() < deadline, "the sync did not catch up");
        std::thread::sleep(Duration::from_millis(300));
    }
    unsafe { libc::kill(sync.id() as i32, libc::SIGTERM) };
    assert!(sync.wait().unwrap().success());
    check("910");
}

#[test]
fn kafka_errors_say_what_to_fix() {
    let b = Broker::start();
    b.create_topic("orders", 1);
    let p = TestProject::with_config(&format!(
        "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{a}\"}}\n  down: {{type: kafka, bootstrap_servers: \"127.0.0.1:1\", connect_timeout: 1s}}\n  nobrokers: {{type: kafka}}\n  badproto: {{type: kafka, bootstrap_servers: \"{a}\", security_protocol: tls}}\ningest:\n  notopic:\n    connection: bus\n    topics: ordres\n    schema: bronze\n  badkey:\n    connection: bus\n    topics: orders\n    schema: bronze\n    startingOffsets: earliest\n  badstart:\n    connection: bus\n    topics: orders\n    schema: bronze\n    starting_offsets: soonest\n  badpattern:\n    connection: bus\n    pattern: \"(\"\n    schema: bronze\n  both:\n    connection: bus\n    topics: orders\n    pattern: o.*\n    schema: bronze\n  badrefresh:\n    connection: bus\n    topics: orders\n    schema: bronze\n    topic_refresh_interval: 10ms\n  unreachable:\n    connection: down\n    topics: x\n    schema: bronze\n",
        a = b.addr()
    ));
    let e = p.fail(&["sync", "notopic"]);
    assert!(
        e.contains("no topic `ordres`") && e.contains("did you mean `orders`"),
        "{e}"
    );
    let e = p.fail(&["sync", "badkey"]);
    assert!(
        e.contains("unknown key `startingOffsets`") && e.contains("starting_offsets"),
        "{e}"
    );
    let e = p.fail(&["sync", "badstart"]);
    assert!(
        e.contains("`soonest` is not earliest, latest or JSON"),
        "{e}"
    );
    let e = p.fail(&["sync", "badpattern"]);
    assert!(e.contains("`pattern` is not a regular expression"), "{e}");
    let e = p.fail(&["sync", "both"]);
    assert!(e.contains("set `topics` or `pattern`, not both"), "{e}");
    let e = p.fail(&["sync", "badrefresh"]);
    assert!(
        e.contains("`topic_refresh_interval` must be at least 100ms"),
        "{e}"
    );
    let started = Instant::now();
    let e = p.fail(&["sync", "unreachable"]);
    assert!(e.contains("127.0.0.1:1"), "{e}");
    assert!(
        started.elapsed() < Duration::from_secs(60),
        "{:?}",
        started.elapsed()
    );
    let e = p.fail(&["connections", "test", "nobrokers"]);
    assert!(e.contains("`bootstrap_servers` is required"), "{e}");
    let e = p.fail(&["connections", "test", "badproto"]);
    assert!(e.contains("`security_protocol` `tls`"), "{e}");
    let out = p.ok(&["connections", "test", "bus"]);
    assert!(out.contains("orders"), "{out}");
}

#[test]
fn kafka_sigkill_and_a_broker_restart_lose_and_duplicate_nothing() {
    let mut b = Broker::start();
    b.create_topic("orders", 4);
    let p = b.project("orders", "");
    crate::common::exactly_once_through_kills(
        &p,
        &mut b,
        20_000,
        order,
        |b, batch, r| b.produce("orders", (r % 4) as i32, batch),
        |b| {
            b.down();
            std::thread::sleep(Duration::from_millis(500));
            b.up();
        },
    );
}

/// Databricks' `STREAM read_kafka(...)` in a pipeline: its columns, each update reads what
/// was produced since the last one (offsets kept with the flow's commits), an expectation
/// and a downstream view over it, and option errors at their place.
#[test]
fn read_kafka_feeds_a_pipeline_as_in_databricks() {
    let b = Broker::start();
    b.create_topic("orders", 2);
    b.produce("orders", 0, &(1..=300).map(order).collect::<Vec<_>>());
    b.produce("orders", 1, &(301..=500).map(order).collect::<Vec<_>>());
    b.produce("orders", 1, &[b"{broken".to_vec()]);
    let p = TestProject::with_config(
        "pipelines:\n  ingest:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    p.write(
        "pipelines/kafka.sql",
        format!(
            "CREATE OR REFRESH STREAMING TABLE raw (
  CONSTRAINT json_object EXPECT (v LIKE '{{%')
) AS SELECT CAST(key AS STRING) AS k, CAST(value AS STRING) AS v, topic, partition, offset,
  timestamp, headers
FROM STREAM read_kafka(bootstrapServers => '{}', subscribe => 'orders',
  startingOffsets => 'earliest');

CREATE OR REFRESH MATERIALIZED VIEW per_partition AS
SELECT partition, count(*) AS n FROM raw GROUP BY partition;
",
            b.addr()
        ),
    );
    p.ok(&["validate"]);
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.raw"), "501");
    assert_eq!(
        p.rows("SELECT partition, n FROM bronze.per_partition ORDER BY partition"),
        [["0", "300"], ["1", "201"]]
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT partition || '/' || offset) FROM bronze.raw"),
        "501"
    );
    assert_eq!(
        p.scalar("SELECT k || ' ' || headers[1]['key'] FROM bronze.raw WHERE partition = 0 AND offset = 5"),
        "k5 source"
    );
    // Nothing new: nothing read twice; new records: exactly those.
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.raw"), "501");
    b.produce("orders", 0, &(501..=600).map(order).collect::<Vec<_>>());
    p.ok(&["run"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.raw"), "601");
    assert_eq!(
        p.scalar("SELECT count(*) FROM bronze.raw WHERE v LIKE '%\"id\": 550,%'"),
        "1"
    );
    // Options as the user wrote them, at their place.
    p.write(
        "pipelines/kafka.sql",
        "CREATE OR REFRESH STREAMING TABLE raw AS SELECT * FROM STREAM read_kafka(bootstrapServers => '127.0.0.1:9', subscribe => 'orders', startingOffset => 'earliest');",
    );
    let e = p.fail(&["run"]);
    assert!(
        e.contains("unknown option `startingOffset`") && e.contains("startingOffsets"),
        "{e}"
    );
    assert!(e.contains("kafka.sql:1"), "{e}");
    p.write(
        "pipelines/kafka.sql",
        "CREATE MATERIALIZED VIEW raw AS SELECT * FROM read_kafka(bootstrapServers => '127.0.0.1:9', subscribe => 'orders');",
    );
    let e = p.fail(&["validate"]);
    assert!(e.contains("write STREAM read_kafka"), "{e}");
}
