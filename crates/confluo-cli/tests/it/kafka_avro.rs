//! Avro values from Kafka: bare datums of a schema the entry gives, and Confluent's wire
//! format with writer schemas fetched from a schema registry (two versions of a schema in
//! one topic become one table with the new column). Payloads that are not Avro, a datum cut
//! short and a schema id the registry does not know are rescued with topic, partition and
//! offset while the rest land; a refused registry login stops the sync with what to fix.
//!
//! No Confluent-compatible registry installs from this machine's registries (Confluent's
//! and Apicurio need Maven Central, Karapace is not on PyPI), so the registry here is the
//! test's own: the two endpoints a consumer uses (`GET /schemas/ids/{id}`, basic auth).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpListener;

use crate::common::TestProject;
use crate::kafka::Broker;

/// Avro's zig-zag varint of `v`.
fn long(v: i64, out: &mut Vec<u8>) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8 & 0x7F) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

fn string(s: &str, out: &mut Vec<u8>) {
    long(s.len() as i64, out);
    out.extend_from_slice(s.as_bytes());
}

const V1: &str = r#"{"type":"record","name":"order","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"amount","type":"double"}]}"#;
const V2: &str = r#"{"type":"record","name":"order","fields":[{"name":"id","type":"long"},{"name":"item","type":"string"},{"name":"amount","type":"double"},{"name":"coupon","type":["null","string"],"default":null}]}"#;

/// An order datum of V1, or of V2 when `coupon` is given.
fn order(id: i64, coupon: Option<Option<&str>>) -> Vec<u8> {
    let mut out = Vec::new();
    long(id, &mut out);
    string(&format!("item{}", id % 7), &mut out);
    out.extend_from_slice(&(id as f64 / 4.0).to_le_bytes());
    match coupon {
        None => {}
        Some(None) => long(0, &mut out),
        Some(Some(c)) => {
            long(1, &mut out);
            string(c, &mut out);
        }
    }
    out
}

/// Confluent's wire format: byte 0, the schema id, the datum.
fn framed(id: u32, datum: &[u8]) -> Vec<u8> {
    let mut out = vec![0];
    out.extend_from_slice(&id.to_be_bytes());
    out.extend_from_slice(datum);
    out
}

/// A registry holding `schemas` by id, asking for user `sr`, password `pw`; its port.
fn registry(schemas: Vec<(u32, &'static str)>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut reader = BufReader::new(stream.try_clone().unwrap());
            let mut first = String::new();
            let _ = reader.read_line(&mut first);
            let mut authorized = false;
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                    break;
                }
                // base64("sr:pw")
                if line
                    .to_ascii_lowercase()
                    .starts_with("authorization: basic c3i6chc=")
                {
                    authorized = true;
                }
            }
            let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
            let id: Option<u32> = path
                .strip_prefix("/schemas/ids/")
                .and_then(|i| i.parse().ok());
            let (status, body) = if !authorized {
                (
                    "401 Unauthorized",
                    r#"{"error_code":401,"message":"Unauthorized"}"#.to_string(),
                )
            } else {
                match id.and_then(|id| schemas.iter().find(|s| s.0 == id)) {
                    Some((_, schema)) => (
                        "200 OK",
                        serde_json::json!({ "schema": schema }).to_string(),
                    ),
                    None => (
                        "404 Not Found",
                        r#"{"error_code":40403,"message":"Schema not found"}"#.to_string(),
                    ),
                }
            };
            let _ = write!(
                stream,
                "HTTP/1.1 {status}\r\nContent-Type: application/vnd.schemaregistry.v1+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn kafka_avro_with_a_given_schema_lands_as_columns_and_rescues_what_is_not_avro() {
    let b = Broker::start();
    b.create_topic("plain", 1);
    let mut values: Vec<Vec<u8>> = (1..=200).map(|i| order(i, None)).collect();
    values.insert(100, b"{\"id\": 1}".to_vec());
    b.produce("plain", 0, &values);
    let p = TestProject::with_config(&format!(
        "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\"}}\ningest:\n  ev:\n    connection: bus\n    topics: plain\n    schema: bronze\n    table: orders\n    format: avro\n    avro_schema: '{V1}'\n",
        b.addr()
    ));
    p.ok(&["sync", "ev"]);
    assert_eq!(
        p.rows("SELECT count(*), count(id), sum(id), sum(amount) FROM bronze.orders"),
        [["201", "200", "20100", "5025.0"]]
    );
    assert_eq!(
        p.rows("SELECT item, amount FROM bronze.orders WHERE id = 9"),
        [["item2", "2.25"]]
    );
    let rescued =
        p.scalar("SELECT _rescued_data FROM bronze.orders WHERE _rescued_data IS NOT NULL");
    let bad: serde_json::Value = serde_json::from_str(&rescued).unwrap();
    assert_eq!(bad["_raw"], "{\"id\": 1}");
    assert_eq!(bad["_offset"], 100);
    assert_eq!(bad["_topic"], "plain");
    assert!(
        bad["_error"]
            .as_str()
            .unwrap()
            .contains("given Avro schema"),
        "{bad}"
    );

    // A schema that is not Avro, and Avro settings without `format: avro`.
    let p = TestProject::with_config(&format!(
        "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\"}}\ningest:\n  bad:\n    connection: bus\n    topics: plain\n    schema: bronze\n    format: avro\n    avro_schema: '{{\"type\": \"recrod\"}}'\n  noformat:\n    connection: bus\n    topics: plain\n    schema: bronze\n    avro_schema: '{V1}'\n  noschema:\n    connection: bus\n    topics: plain\n    schema: bronze\n    format: avro\n",
        b.addr()
    ));
    let e = p.fail(&["sync", "bad"]);
    assert!(
        e.contains("ingest entry `bad`") && e.contains("avro_schema"),
        "{e}"
    );
    let e = p.fail(&["sync", "noformat"]);
    assert!(e.contains("are for `format: avro`"), "{e}");
    let e = p.fail(&["sync", "noschema"]);
    assert!(e.contains("`avro` needs `avro_schema`"), "{e}");
}

#[test]
fn kafka_avro_from_a_schema_registry_follows_schema_versions_and_rescues_bad_ids() {
    let b = Broker::start();
    b.create_topic("framed", 2);
    let port = registry(vec![(1, V1), (2, V2)]);
    let mut p0: Vec<Vec<u8>> = (1..=300).map(|i| framed(1, &order(i, None))).collect();
    p0.push(b"{\"id\": 301}".to_vec()); // not in the wire format
    p0.push(framed(3, &order(302, None))); // an id the registry does not have
    let mut p1: Vec<Vec<u8>> = (1000..1300)
        .map(|i| {
            let coupon = (i % 3 == 0).then_some("SPRING");
            framed(2, &order(i, Some(coupon)))
        })
        .collect();
    p1.push(framed(2, &order(1300, Some(Some("X")))[..5])); // cut short
    b.produce("framed", 0, &p0);
    b.produce("framed", 1, &p1);
    let config = |url: &str| {
        format!(
            "connections:\n  bus: {{type: kafka, bootstrap_servers: \"{}\"}}\ningest:\n  ev:\n    connection: bus\n    topics: framed\n    schema: bronze\n    table: orders\n    format: avro\n    schema_registry: \"{url}\"\n",
            b.addr()
        )
    };
    // A wrong password stops the sync, and says where.
    let p = TestProject::with_config(&config(&format!("http://sr:nope@127.0.0.1:{port}")));
    let e = p.fail(&["sync", "ev"]);
    assert!(e.contains("access denied") && !e.contains("nope"), "{e}");
    assert!(
        p.fail(&["query", "SELECT count(*) FROM bronze.orders"])
            .contains("orders")
    );

    let p = TestProject::with_config(&config(&format!("http://sr:pw@127.0.0.1:{port}")));
    p.ok(&["sync", "ev"]);
    assert_eq!(
        p.rows(
            "SELECT count(*), count(id), count(coupon), count(_rescued_data) FROM bronze.orders"
        ),
        [["603", "600", "100", "3"]]
    );
    assert_eq!(
        p.rows("SELECT item, amount, coupon FROM bronze.orders WHERE id = 1002"),
        [["item1", "250.5", "SPRING"]]
    );
    let errors: Vec<serde_json::Value> = p
        .rows(
            "SELECT _rescued_data FROM bronze.orders WHERE _rescued_data IS NOT NULL ORDER BY _partition, _offset",
        )
        .into_iter()
        .map(|r| serde_json::from_str(&r[0]).unwrap())
        .collect();
    assert_eq!(errors.len(), 3, "{errors:?}");
    let why = |i: usize| errors[i]["_error"].as_str().unwrap().to_string();
    assert_eq!(
        (&errors[0]["_partition"], &errors[0]["_offset"]),
        (&0.into(), &300.into())
    );
    assert!(why(0).contains("wire format"), "{errors:?}");
    assert!(
        why(1).contains("schema id 3 is not in the registry"),
        "{errors:?}"
    );
    assert_eq!(
        (&errors[2]["_partition"], &errors[2]["_offset"]),
        (&1.into(), &300.into())
    );
    assert!(why(2).contains("schema id 2"), "{errors:?}");

    // The registry gone: the sync waits and says so rather than rescuing good records.
    let p = TestProject::with_config(&config("http://sr:pw@127.0.0.1:1"));
    let e = p.fail(&["sync", "ev"]);
    assert!(
        e.contains("schema registry") && e.contains("cannot reach"),
        "{e}"
    );
}

/// Databricks' way in pipelines: `read_kafka` gives the raw value, `from_avro` decodes it.
/// A value that is not a datum fails the update by default (nothing lands, the offsets stay),
/// or is NULL with `map('mode', 'PERMISSIVE')` while its row keeps the raw value.
#[test]
fn from_avro_decodes_kafka_values_in_a_pipeline() {
    let b = Broker::start();
    b.create_topic("orders", 1);
    let mut values: Vec<Vec<u8>> = (1..=50).map(|i| order(i, None)).collect();
    values.insert(20, b"not avro".to_vec());
    b.produce("orders", 0, &values);
    let p = TestProject::with_config(
        "pipelines:\n  k:\n    libraries: [\"pipelines/*.sql\"]\n    schema: bronze\n",
    );
    let pipeline = |mode: &str| {
        format!(
            "CREATE OR REFRESH STREAMING TABLE orders AS\n\
             SELECT offset, value, o.id AS id, o.item AS item, o.amount AS amount FROM (\n\
               SELECT offset, value, from_avro(value, '{V1}'{mode}) AS o\n\
               FROM STREAM read_kafka(bootstrapServers => '{}', subscribe => 'orders', startingOffsets => 'earliest'));\n",
            b.addr()
        )
    };
    p.write("pipelines/k.sql", pipeline(""));
    let e = p.fail(&["run"]);
    assert!(
        e.contains("from_avro: row") && e.contains("PERMISSIVE"),
        "{e}"
    );
    p.write("pipelines/k.sql", pipeline(", map('mode', 'PERMISSIVE')"));
    p.ok(&["run"]);
    assert_eq!(
        p.rows("SELECT count(*), count(id), sum(id), sum(amount) FROM bronze.orders"),
        [["51", "50", "1275", "318.75"]]
    );
    assert_eq!(
        p.rows("SELECT offset, CAST(value AS STRING) FROM bronze.orders WHERE id IS NULL"),
        [["20", "not avro"]]
    );
    assert_eq!(
        p.rows("SELECT item, amount FROM bronze.orders WHERE id = 9"),
        [["item2", "2.25"]]
    );
}
