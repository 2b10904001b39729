//! Alarms and trends through the real binary and a real broker: raise, hysteresis, clear by
//! expiry without input, rule precedence, a restart that neither clears nor raises again,
//! retained clears of a forgotten key, and trends continued across a restart.

use std::time::Duration;

use serde_json::{Value, json};
use tempfile::TempDir;
use test_support::{Broker, Collector, Message, Publisher, QoS, unique_client_id};

use crate::helpers::{TestIngest, WAIT, is_aggregate, latest, now, readings_topic, wait_metric};

/// An ingest settings file holding `text`, and the `--config` flag pointing at it.
struct ConfigFile {
    dir: TempDir,
}

impl ConfigFile {
    fn new(text: &str) -> Self {
        let dir = TempDir::new().unwrap();
        std::fs::write(dir.path().join("ingest.toml"), text).unwrap();
        ConfigFile { dir }
    }

    fn path(&self) -> String {
        self.dir
            .path()
            .join("ingest.toml")
            .to_str()
            .unwrap()
            .to_owned()
    }
}

/// The alarm messages (JSON) on `topic`, in arrival order; empty payloads as `null`.
fn alarms_on(messages: &[Message], topic: &str) -> Vec<Value> {
    messages
        .iter()
        .filter(|m| m.topic == topic)
        .map(|m| {
            if m.payload.is_empty() {
                Value::Null
            } else {
                m.json().unwrap()
            }
        })
        .collect()
}

fn state_of(alarm: &Value) -> &str {
    alarm["state"].as_str().unwrap_or("")
}

/// Publishes `(machine, index, value, seconds after t0)` readings with explicit times.
async fn publish_at(
    broker: &Broker,
    t0: aggregator_core::Timestamp,
    readings: &[(&str, u32, f64, u64)],
) {
    let mut publisher = Publisher::connect(broker.port()).await;
    let messages = readings.iter().map(|&(machine, index, value, after)| {
        let t = t0.saturating_add(Duration::from_secs(after));
        (
            readings_topic(machine),
            json!({"scrapIndex": index, "value": value, "timestamp": t.to_rfc3339_millis()})
                .to_string(),
        )
    });
    publisher
        .publish_all(QoS::AtLeastOnce, messages.collect::<Vec<_>>(), WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn an_alarm_raises_holds_in_the_band_and_clears_by_expiry_without_input() {
    let broker = Broker::start().await;
    let config = ConfigFile::new(
        "[[alarm]]\nmachine = \"A1\"\nindex = 1\nsum_above = 10.0\nclear_below = 5.0\n",
    );
    let ingest = TestIngest::start(
        &broker,
        &["--config", &config.path(), "--window-seconds", "3"],
    )
    .await;
    let collector = Collector::start(broker.port(), &["alarms/#", "aggregates/#"]).await;
    // 6 then 12 (raised); the first leaves at +3 s: 6 is inside the band (held); the second
    // leaves at +4 s: 0 clears, with no reading after the second.
    let t0 = now();
    publish_at(&broker, t0, &[("A1", 1, 6.0, 0), ("A1", 1, 6.0, 1)]).await;
    let topic = "alarms/A1/1";
    let messages = collector
        .wait_for(|m| alarms_on(m, topic).len() >= 2, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let alarms = alarms_on(&messages, topic);
    let raised = &alarms[0];
    assert_eq!(state_of(raised), "raised", "{alarms:?}");
    assert_eq!(raised["maschinenId"], "A1");
    assert_eq!(raised["scrapIndex"], 1);
    assert_eq!(raised["metric"], "sum");
    assert_eq!(raised["value"], 12.0);
    assert_eq!(raised["threshold"], 10.0);
    assert_eq!(raised["since"], raised["timestamp"]);
    let cleared = &alarms[1];
    assert_eq!(state_of(cleared), "cleared", "{alarms:?}");
    assert_eq!(cleared["value"], 0.0, "not cleared at 6, inside the band");
    assert_eq!(cleared["threshold"], 5.0);
    assert!(
        messages
            .iter()
            .any(|m| m.topic == "aggregates/A1/1" && is_aggregate(m, 1, 6.0)),
        "the window did pass through 6"
    );
    // Nothing else was published for the key, and the figures say one raise, one clear.
    wait_metric(&ingest, "ingest_alarms_raised 0").await;
    let metrics = ingest.metrics().await;
    assert!(metrics.contains("ingest_alarm_raises_total 1"), "{metrics}");
    assert!(metrics.contains("ingest_alarm_clears_total 1"), "{metrics}");
    assert_eq!(alarms_on(&collector.messages(), topic).len(), 2);
    // The state is retained for late subscribers.
    let late = Collector::start(broker.port(), &["alarms/#"]).await;
    let retained = late
        .wait_for(|m| latest(m, topic).is_some(), WAIT)
        .await
        .unwrap();
    let last = latest(&retained, topic).unwrap();
    assert!(last.retain);
    assert_eq!(state_of(&last.json().unwrap()), "cleared");
}

#[tokio::test]
async fn the_most_specific_rule_wins() {
    let broker = Broker::start().await;
    let config = ConfigFile::new(
        "[[alarm]]\nmachine = \"*\"\nsum_above = 100\n\
         [[alarm]]\nmachine = \"A1\"\nsum_above = 10\n\
         [[alarm]]\nmachine = \"A1\"\nindex = 2\navg_above = 3\n",
    );
    let ingest = TestIngest::start(&broker, &["--config", &config.path()]).await;
    let collector = Collector::start(broker.port(), &["alarms/#", "aggregates/#"]).await;
    let t0 = now();
    publish_at(
        &broker,
        t0,
        &[
            ("A1", 2, 4.0, 0), // avg 4 > 3 (machine + index); sum 4 is below A1's 10
            ("A1", 1, 6.0, 0),
            ("A1", 1, 6.0, 0), // sum 12 > 10 (machine)
            ("B1", 1, 50.0, 0),
            ("B1", 1, 60.0, 0), // sum 110 > 100 (every machine)
            ("C1", 3, 20.0, 0), // 20 < 100: no alarm, though above A1's 10
        ],
    )
    .await;
    wait_metric(&ingest, "ingest_readings_accepted_total 6").await;
    let messages = collector
        .wait_for(
            |m| {
                ["alarms/A1/2", "alarms/A1/1", "alarms/B1/1"]
                    .iter()
                    .all(|t| latest(m, t).is_some())
                    && latest(m, "aggregates/C1/3").is_some()
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let got = |topic: &str| {
        let alarms = alarms_on(&messages, topic);
        assert_eq!(alarms.len(), 1, "{topic}: {alarms:?}");
        let a = &alarms[0];
        (
            state_of(a).to_owned(),
            a["metric"].as_str().unwrap().to_owned(),
            a["threshold"].as_f64().unwrap(),
        )
    };
    assert_eq!(got("alarms/A1/2"), ("raised".into(), "avg".into(), 3.0));
    assert_eq!(got("alarms/A1/1"), ("raised".into(), "sum".into(), 10.0));
    assert_eq!(got("alarms/B1/1"), ("raised".into(), "sum".into(), 100.0));
    wait_metric(&ingest, "ingest_alarms_raised 3").await;
    assert!(
        alarms_on(&collector.messages(), "alarms/C1/3").is_empty(),
        "C1/3 is under the * rule only"
    );
}

#[tokio::test]
async fn a_restart_neither_clears_nor_raises_again() {
    let broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let config = ConfigFile::new("[[alarm]]\nmachine = \"A1\"\nsum_above = 10\n");
    let config_path = config.path();
    let flags = [
        "--config",
        config_path.as_str(),
        "--data-dir",
        data.path().to_str().unwrap(),
        "--window-seconds",
        "600",
    ];
    let client_id = unique_client_id("ingest");
    let mut first = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    let collector = Collector::start(broker.port(), &["alarms/#", "aggregates/#"]).await;
    publish_at(&broker, now(), &[("A1", 1, 6.0, 0), ("A1", 1, 6.0, 0)]).await;
    let topic = "alarms/A1/1";
    collector
        .wait_for(|m| !alarms_on(m, topic).is_empty(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.process.logs()));
    let status = first.process.terminate().await;
    assert!(status.success(), "{status:?}\n{}", first.process.logs());

    let second = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    // The restarted process has the alarm raised without having published anything...
    wait_metric(&second, "ingest_alarms_raised 1").await;
    // ...and keeps it raised through a new reading (13 > 10).
    publish_at(&broker, now(), &[("A1", 1, 1.0, 0)]).await;
    let messages = collector
        .wait_for(
            |m| latest(m, "aggregates/A1/1").is_some_and(|m| is_aggregate(m, 3, 13.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.process.logs()));
    let alarms = alarms_on(&messages, topic);
    assert_eq!(
        alarms.len(),
        1,
        "no flapping across the restart: {alarms:?}"
    );
    assert_eq!(state_of(&alarms[0]), "raised");
    let metrics = second.metrics().await;
    assert!(metrics.contains("ingest_alarm_raises_total 0"), "{metrics}");
    assert!(metrics.contains("ingest_alarm_clears_total 0"), "{metrics}");
    assert!(metrics.contains("ingest_alarms_raised 1"), "{metrics}");
}

#[tokio::test]
async fn a_forgotten_key_clears_its_retained_alarm_and_trend() {
    let broker = Broker::start().await;
    let config = ConfigFile::new("[[alarm]]\nmachine = \"F1\"\nsum_above = 1\n");
    let ingest = TestIngest::start(
        &broker,
        &[
            "--config",
            &config.path(),
            "--window-seconds",
            "1",
            "--window-key-idle-ttl-seconds",
            "2",
            "--trend-interval-seconds",
            "1",
        ],
    )
    .await;
    let collector = Collector::start(broker.port(), &["alarms/#", "trends/#"]).await;
    publish_at(&broker, now(), &[("F1", 1, 5.0, 0)]).await;
    let (alarm, trend) = ("alarms/F1/1", "trends/F1/1");
    let messages = collector
        .wait_for(
            |m| {
                [alarm, trend]
                    .iter()
                    .all(|t| latest(m, t).is_some_and(|m| m.payload.is_empty()))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let alarms = alarms_on(&messages, alarm);
    let states: Vec<&str> = alarms.iter().map(state_of).collect();
    assert_eq!(states, ["raised", "cleared", ""], "{alarms:?}");
    assert!(
        messages
            .iter()
            .any(|m| m.topic == trend && !m.payload.is_empty()),
        "a trend was published before the key was forgotten"
    );
    // The broker keeps nothing for the key.
    let mut publisher = Publisher::connect(broker.port()).await;
    publisher
        .publish("alarms/MARK/1", QoS::AtLeastOnce, true, "{}")
        .await
        .unwrap();
    publisher.flush(WAIT).await.unwrap();
    let late = Collector::start(broker.port(), &["alarms/#", "trends/#"]).await;
    let retained = late
        .wait_for(|m| latest(m, "alarms/MARK/1").is_some(), WAIT)
        .await
        .unwrap();
    assert!(
        retained.iter().all(|m| m.topic == "alarms/MARK/1"),
        "{retained:?}"
    );
}

/// The sample times and sums of a trend message.
fn points(message: &Message) -> Vec<(String, f64)> {
    let json = message.json().unwrap();
    json["points"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            (
                p["t"].as_str().unwrap().to_owned(),
                p["sum"].as_f64().unwrap(),
            )
        })
        .collect()
}

#[tokio::test]
async fn trends_continue_across_a_restart() {
    let broker = Broker::start().await;
    // No data_dir: the window starts empty after the restart, the trend comes from the broker.
    let flags = ["--trend-interval-seconds", "1", "--trend-points", "60"];
    let mut first = TestIngest::start(&broker, &flags).await;
    let collector = Collector::start(broker.port(), &["trends/#"]).await;
    publish_at(&broker, now(), &[("T1", 1, 2.0, 0)]).await;
    let topic = "trends/T1/1";
    let messages = collector
        .wait_for(
            |m| latest(m, topic).is_some_and(|m| points(m).len() >= 3),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.process.logs()));
    let last = latest(&messages, topic).unwrap();
    let json = last.json().unwrap();
    assert_eq!(json["maschinenId"], "T1");
    assert_eq!(json["intervalSeconds"], 1);
    let before = points(last);
    assert!(before.iter().all(|(_, sum)| *sum == 2.0), "{before:?}");
    let status = first.process.terminate().await;
    assert!(status.success(), "{status:?}\n{}", first.process.logs());
    collector.clear();

    let second = TestIngest::start(&broker, &flags).await;
    publish_at(&broker, now(), &[("T1", 1, 3.0, 0)]).await;
    let messages = collector
        .wait_for(
            |m| latest(m, topic).is_some_and(|m| points(m).iter().any(|(_, s)| *s == 3.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.process.logs()));
    let after = points(latest(&messages, topic).unwrap());
    // Every point of the first run is still there, in order, followed by the new samples.
    assert_eq!(after[..before.len()], before[..], "{after:?}");
    assert!(after.len() > before.len());
    assert!(
        after.windows(2).all(|w| w[0].0 < w[1].0),
        "strictly increasing times: {after:?}"
    );
}

/// A raised alarm of a previous run whose key has nothing in the new window (no `data_dir`,
/// or its readings expired meanwhile) is cleared at start: nothing else would clear it.
#[tokio::test]
async fn a_retained_raised_alarm_of_an_empty_key_is_cleared_at_start() {
    let broker = Broker::start().await;
    let since = now().to_rfc3339_millis();
    let raised = json!({"maschinenId":"X1","scrapIndex":1,"state":"raised","metric":"sum",
        "value":12.0,"threshold":10.0,"since":since,"timestamp":since});
    test_support::publish_retained(broker.port(), "alarms/X1/1", raised.to_string())
        .await
        .unwrap();
    let collector = Collector::start(broker.port(), &["alarms/#"]).await;
    let config = ConfigFile::new("[[alarm]]\nmachine = \"X1\"\nsum_above = 10\n");
    let ingest = TestIngest::start(&broker, &["--config", &config.path()]).await;
    let messages = collector
        .wait_for(
            |m| latest(m, "alarms/X1/1").is_some_and(|m| !m.retain),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let cleared = latest(&messages, "alarms/X1/1").unwrap().json().unwrap();
    assert_eq!(state_of(&cleared), "cleared", "{cleared}");
    assert_eq!(cleared["value"], 0.0);
    assert_eq!(cleared["metric"], "sum");
    wait_metric(&ingest, "ingest_alarms_raised 0").await;
}
