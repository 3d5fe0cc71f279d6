//! MQTT into the lakehouse through `confluo sync`: QoS 1 in a persistent session,
//! acknowledged after each commit, rows upserted by the entry's key so a redelivery replaces
//! its copy; topic levels as columns; SIGKILL at random moments leaves no duplicate and
//! loses nothing the broker kept; the errors a user can cause say what to fix. Each test
//! publishes under a topic prefix of its own on the machine's Mosquitto (127.0.0.1:1883).

use std::time::Duration;

use rumqttc::{AsyncClient, Event, MqttOptions, Packet, QoS};

use crate::common::TestProject;

/// A topic prefix of the test's own, and a publisher.
struct Topics {
    prefix: String,
    rt: tokio::runtime::Runtime,
}

impl Topics {
    fn new() -> Self {
        Topics {
            prefix: format!("confluo-t/{}", uuid::Uuid::new_v4().simple()),
            rt: tokio::runtime::Runtime::new().unwrap(),
        }
    }

    /// Publishes `(topic suffix, payload)` pairs with QoS 1 and waits for every PUBACK.
    fn publish(&self, messages: &[(String, Vec<u8>)]) {
        self.rt.block_on(async {
            let id = format!("confluo-test-pub-{}", uuid::Uuid::new_v4().simple());
            let (client, mut events) =
                AsyncClient::new(MqttOptions::new(id, "127.0.0.1", 1883), 100_000);
            for (t, p) in messages {
                client
                    .publish(
                        format!("{}/{t}", self.prefix),
                        QoS::AtLeastOnce,
                        false,
                        p.clone(),
                    )
                    .await
                    .unwrap();
            }
            let mut acked = 0;
            while acked < messages.len() {
                match tokio::time::timeout(Duration::from_secs(20), events.poll()).await {
                    Ok(Ok(Event::Incoming(Packet::PubAck(_)))) => acked += 1,
                    Ok(Ok(_)) => {}
                    other => panic!("publishing: {other:?}"),
                }
            }
            let _ = client.disconnect().await;
        });
    }

    fn project(&self, entry_extra: &str) -> TestProject {
        TestProject::with_config(&format!(
            "connections:\n  iot: {{type: mqtt, host: 127.0.0.1, port: 1883}}\ningest:\n  sensors:\n    connection: iot\n    topics: [\"{}/+/+\"]\n    topic_levels: [root, run, site, device]\n    client_id: confluo-t-{}\n    schema: bronze\n    key: [device, n]\n{entry_extra}",
            self.prefix,
            uuid::Uuid::new_v4().simple()
        ))
    }
}

fn reading(site: &str, device: &str, n: u64) -> (String, Vec<u8>) {
    (
        format!("{site}/{device}"),
        format!("{{\"n\": {n}, \"celsius\": {}.25}}", n % 40).into_bytes(),
    )
}

#[test]
fn readings_land_with_topic_levels_and_redeliveries_replace_their_copy() {
    let t = Topics::new();
    let p = t.project("");
    // The first sync subscribes: the persistent session keeps what comes after it.
    p.ok(&["sync", "sensors"]);
    let mut m: Vec<_> = (1..=300).map(|n| reading("lyon", "d1", n)).collect();
    m.extend((1..=200).map(|n| reading("oslo", "d2", n)));
    m.push(("lyon/d1".into(), b"not json".to_vec()));
    t.publish(&m);
    std::thread::sleep(Duration::from_millis(300));
    p.ok(&["sync", "sensors"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.sensors"), "501");
    assert_eq!(
        p.rows("SELECT site, device, celsius FROM bronze.sensors WHERE device = 'd2' AND n = 7"),
        [["oslo", "d2", "7.25"]]
    );
    // The same readings again (a publisher's retry, a redelivery): they replace, not add.
    t.publish(&m[..100]);
    std::thread::sleep(Duration::from_millis(300));
    p.ok(&["sync", "sensors"]);
    assert_eq!(p.scalar("SELECT count(*) FROM bronze.sensors"), "501");
    let bad = p.scalar("SELECT _rescued_data FROM bronze.sensors WHERE _rescued_data IS NOT NULL");
    assert!(bad.contains("not json") && bad.contains("lyon/d1"), "{bad}");
}

#[test]
fn sigkill_leaves_no_duplicate_and_loses_nothing() {
    let t = Topics::new();
    let p = t.project("");
    p.ok(&["sync", "sensors"]);
    let mut sync = p.spawn_sync("sensors");
    let total = 3_000u64;
    let mut kills = 0;
    for chunk in 0..30 {
        let from = chunk * 100 + 1;
        let batch: Vec<_> = (from..from + 100)
            .map(|n| reading("lyon", &format!("d{}", n % 7), n))
            .collect();
        t.publish(&batch);
        std::thread::sleep(Duration::from_millis(30 * (chunk % 5)));
        if chunk % 6 == 5 {
            unsafe { libc::kill(sync.id() as i32, libc::SIGKILL) };
            let _ = sync.wait();
            kills += 1;
            sync = p.spawn_sync("sensors");
        }
    }
    std::thread::sleep(Duration::from_secs(2));
    unsafe { libc::kill(sync.id() as i32, libc::SIGTERM) };
    assert!(sync.wait().unwrap().success());
    p.ok(&["sync", "sensors"]);
    assert!(kills >= 4);
    assert_eq!(
        p.scalar("SELECT count(*) FROM bronze.sensors"),
        total.to_string()
    );
    assert_eq!(
        p.scalar("SELECT count(DISTINCT n) FROM bronze.sensors"),
        total.to_string()
    );
}

#[test]
fn mqtt_errors_say_what_to_fix() {
    let p = TestProject::with_config(
        "connections:\n  iot: {type: mqtt, host: 127.0.0.1, port: 1883}\n  down: {type: mqtt, host: 127.0.0.1, port: 1, connect_timeout: 1s}\ningest:\n  nokey:\n    connection: iot\n    topics: [\"a/#\"]\n    schema: bronze\n  notopics:\n    connection: iot\n    schema: bronze\n    key: [id]\n  unreachable:\n    connection: down\n    topics: [\"a/#\"]\n    schema: bronze\n    key: [id]\n",
    );
    let e = p.fail(&["sync", "nokey"]);
    assert!(e.contains("needs a `key`"), "{e}");
    let e = p.fail(&["sync", "notopics"]);
    assert!(e.contains("`topics` is required"), "{e}");
    let e = p.fail(&["sync", "unreachable"]);
    assert!(e.contains("127.0.0.1:1"), "{e}");
    let out = p.ok(&["connections", "test", "iot"]);
    assert!(out.contains("ok"), "{out}");
}
