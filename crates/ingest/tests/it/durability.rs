//! Nothing lost, nothing twice: a stream of readings flows while the broker is restarted or
//! ingest is stopped (SIGTERM) or killed (SIGKILL) and started again on the same data
//! directory and session; the final sums are compared with what was published.
//!
//! QoS 2 readings must be counted exactly once in every case; QoS 1 readings at least once,
//! and exactly once when only ingest restarts gracefully. The window is 600 s, so nothing
//! expires during a test and the final aggregate holds every reading.

use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, Incoming, MqttOptions};
use serde_json::json;
use tempfile::TempDir;
use test_support::{Broker, Collector, Message, QoS, unique_client_id, wait_until};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::helpers::{TestIngest, WAIT, close, is_aggregate, latest, readings_topic};

/// Readings in the stream, spread over three scrap indices of one machine.
const READINGS: u64 = 1500;
const INDICES: u64 = 3;
const MACHINE: &str = "F1";

/// What happens in the middle of the stream.
#[derive(Debug, Clone, Copy)]
enum Fault {
    /// The broker is stopped with SIGTERM (it writes its database) and started again.
    BrokerRestart,
    /// Ingest gets SIGTERM and is started again.
    IngestTerminate,
    /// Ingest gets SIGKILL and is started again.
    IngestKill,
}

/// A publisher with a persistent session: across a broker restart it resends what the broker
/// has not acknowledged yet, so every reading is eventually acknowledged exactly once.
struct StreamPublisher {
    client: AsyncClient,
    acked: watch::Receiver<u64>,
    task: JoinHandle<()>,
}

impl StreamPublisher {
    async fn connect(port: u16) -> Self {
        let mut options = MqttOptions::new(unique_client_id("stream"), "127.0.0.1", port);
        options
            .set_keep_alive(Duration::from_secs(5))
            .set_clean_session(false)
            .set_inflight(100);
        let (client, event_loop) = AsyncClient::new(options, 20_000);
        let (acked_tx, acked) = watch::channel(0);
        let (connected_tx, mut connected) = watch::channel(false);
        let task = tokio::spawn(drive(event_loop, acked_tx, connected_tx));
        tokio::time::timeout(WAIT, connected.wait_for(|c| *c))
            .await
            .expect("stream publisher connected")
            .expect("stream publisher task alive");
        StreamPublisher {
            client,
            acked,
            task,
        }
    }

    fn acked(&self) -> u64 {
        *self.acked.borrow()
    }

    async fn wait_acked(&mut self, n: u64) -> Result<(), String> {
        let reached = matches!(
            tokio::time::timeout(WAIT, self.acked.wait_for(|a| *a >= n)).await,
            Ok(Ok(_))
        );
        match reached {
            true => Ok(()),
            false => Err(format!(
                "only {} of {n} readings acknowledged by the broker within {WAIT:?}",
                self.acked()
            )),
        }
    }
}

impl Drop for StreamPublisher {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Polls the publisher's event loop: counts completed publishes (PUBACK for QoS 1, PUBCOMP for
/// QoS 2), reports the CONNACK, and paces reconnection while the broker is away.
async fn drive(
    mut event_loop: EventLoop,
    acked: watch::Sender<u64>,
    connected: watch::Sender<bool>,
) {
    loop {
        match event_loop.poll().await {
            Ok(Event::Incoming(Incoming::ConnAck(_))) => {
                connected.send_replace(true);
            }
            Ok(Event::Incoming(Incoming::PubAck(_) | Incoming::PubComp(_))) => {
                acked.send_modify(|n| *n += 1);
            }
            Ok(_) => {}
            // Reconnect pacing, not a wait in the test: rumqttc retries at once otherwise.
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

fn index_of(i: u64) -> u64 {
    i % INDICES
}

/// Exact binary fractions, so sums do not depend on the order of addition.
fn value_of(i: u64) -> f64 {
    ((i * 7) % 11) as f64 * 0.5 + 0.25
}

/// Every payload is distinct (`seq`), as real readings with their own values and times are.
fn payload(i: u64) -> String {
    json!({"scrapIndex": index_of(i), "value": value_of(i), "seq": i}).to_string()
}

/// `(count, sum)` per scrap index of the whole stream.
fn expected() -> Vec<(u64, f64)> {
    let mut totals = vec![(0_u64, 0.0_f64); INDICES as usize];
    for i in 0..READINGS {
        let t = &mut totals[index_of(i) as usize];
        t.0 += 1;
        t.1 += value_of(i);
    }
    totals
}

fn topic(index: u64) -> String {
    format!("aggregates/{MACHINE}/{index}")
}

fn count_of(message: &Message) -> Option<u64> {
    message.json().ok()?["count"].as_u64()
}

/// The latest aggregate of each index, for failure messages.
fn describe(messages: &[Message]) -> String {
    (0..INDICES)
        .map(|i| {
            let text = latest(messages, &topic(i)).map_or_else(|| "none".into(), Message::text);
            format!("{}: {text}", topic(i))
        })
        .collect::<Vec<_>>()
        .join("\n")
}

async fn stream_through(fault: Fault, qos: QoS, exactly_once: bool) {
    let mut broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let flags = ["--data-dir", data_dir.as_str(), "--window-seconds", "600"];
    let client_id = unique_client_id("ingest");
    let mut ingest = TestIngest::start_with_id(&broker, &client_id, &flags).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = StreamPublisher::connect(broker.port()).await;

    let producer = tokio::spawn({
        let client = publisher.client.clone();
        async move {
            let mut pace = tokio::time::interval(Duration::from_millis(2));
            for i in 0..READINGS {
                pace.tick().await;
                // The request queue holds the whole stream, so this never waits on the broker.
                client
                    .publish(readings_topic(MACHINE), qos, false, payload(i))
                    .await
                    .expect("stream publish queued");
            }
        }
    });

    // The fault strikes once a third of the stream is at the broker.
    publisher
        .wait_acked(READINGS / 3)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let mut restarted_at = None;
    match fault {
        Fault::BrokerRestart => {
            broker.stop().await;
            broker.restart().await;
        }
        Fault::IngestTerminate | Fault::IngestKill => {
            if matches!(fault, Fault::IngestKill) {
                ingest.process.kill().await;
            } else {
                let status = ingest.process.terminate().await;
                assert!(status.success(), "{status:?}\n{}", ingest.process.logs());
            }
            restarted_at = Some(collector.messages().len());
            ingest = TestIngest::start_with_id(&broker, &client_id, &flags).await;
        }
    }
    producer.await.unwrap();
    publisher
        .wait_acked(READINGS)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}\n{}", ingest.process.logs(), broker.log()));

    // Barrier: the broker delivers one session's messages in order, so once this marker is
    // aggregated every reading of the stream has reached ingest.
    publisher
        .client
        .publish(readings_topic("Z9"), qos, false, payload(0))
        .await
        .unwrap();
    collector
        .wait_for(|m| latest(m, "aggregates/Z9/0").is_some(), WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));

    let totals = expected();
    let settled = collector
        .wait_for(
            |m| {
                totals.iter().enumerate().all(|(i, &(count, sum))| {
                    latest(m, &topic(i as u64)).is_some_and(|m| {
                        if exactly_once {
                            is_aggregate(m, count, sum)
                        } else {
                            count_of(m).is_some_and(|c| c >= count)
                        }
                    })
                })
            },
            WAIT,
        )
        .await;
    let messages = collector.messages();
    if let Err(e) = settled {
        panic!(
            "{fault:?} {qos:?}: final aggregates do not match the {READINGS} readings published \
             (expected per index {totals:?})\n{e}\n{}\n{}",
            describe(&messages),
            ingest.process.logs()
        );
    }
    if exactly_once {
        // Nothing more arrives after the barrier: still exact.
        for (i, &(count, sum)) in totals.iter().enumerate() {
            let m = latest(&messages, &topic(i as u64)).unwrap();
            let json = m.json().unwrap();
            assert_eq!(
                json["count"].as_u64(),
                Some(count),
                "{}",
                describe(&messages)
            );
            assert!(close(json["sumLast60s"].as_f64().unwrap(), sum));
        }
    }

    // The dashboard never dropped to zero: every aggregate the restarted ingest published
    // for the stream's keys holds readings.
    if let Some(from) = restarted_at {
        let after: Vec<&Message> = messages[from..]
            .iter()
            .filter(|m| m.topic.starts_with(&format!("aggregates/{MACHINE}/")))
            .collect();
        assert!(!after.is_empty());
        for m in after {
            assert!(
                count_of(m).is_some_and(|c| c > 0),
                "an aggregate after the restart dropped to zero: {}\n{}",
                m.text(),
                ingest.process.logs()
            );
        }
    }
}

#[tokio::test]
async fn qos2_exactly_once_through_a_broker_restart() {
    stream_through(Fault::BrokerRestart, QoS::ExactlyOnce, true).await;
}

#[tokio::test]
async fn qos2_exactly_once_through_an_ingest_sigterm_restart() {
    stream_through(Fault::IngestTerminate, QoS::ExactlyOnce, true).await;
}

#[tokio::test]
async fn qos2_exactly_once_through_an_ingest_sigkill_restart() {
    stream_through(Fault::IngestKill, QoS::ExactlyOnce, true).await;
}

#[tokio::test]
async fn qos1_at_least_once_through_a_broker_restart() {
    stream_through(Fault::BrokerRestart, QoS::AtLeastOnce, false).await;
}

#[tokio::test]
async fn qos1_exactly_once_through_an_ingest_sigterm_restart() {
    stream_through(Fault::IngestTerminate, QoS::AtLeastOnce, true).await;
}

#[tokio::test]
async fn qos1_at_least_once_through_an_ingest_sigkill_restart() {
    stream_through(Fault::IngestKill, QoS::AtLeastOnce, false).await;
}

/// The newest segment of the window log in `dir`.
fn newest_segment(dir: &std::path::Path) -> std::path::PathBuf {
    let mut segments: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "log"))
        .collect();
    segments.sort();
    segments.pop().expect("a window log segment")
}

#[tokio::test]
async fn a_restart_republishes_the_restored_windows_and_survives_a_torn_log_tail() {
    let broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    let flags = ["--data-dir", data_dir.as_str(), "--window-seconds", "600"];
    let mut first = TestIngest::start(&broker, &flags).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = test_support::Publisher::connect(broker.port()).await;
    let n = 20_u64;
    let readings = (0..n).map(|i| (readings_topic("R1"), payload(i * INDICES)));
    publisher
        .publish_all(QoS::ExactlyOnce, readings, WAIT)
        .await
        .unwrap();
    let sum: f64 = (0..n).map(|i| value_of(i * INDICES)).sum();
    collector
        .wait_for(
            |m| latest(m, "aggregates/R1/0").is_some_and(|m| is_aggregate(m, n, sum)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", first.process.logs()));
    let status = first.process.terminate().await;
    assert!(status.success(), "{status:?}\n{}", first.process.logs());

    // A crash in the middle of a write left half a frame behind.
    let segment = newest_segment(data.path());
    let mut bytes = std::fs::read(&segment).unwrap();
    bytes.extend_from_slice(&[40, 0, 0, 0, 1, 2, 3, 4, 1, 9, 9]);
    std::fs::write(&segment, bytes).unwrap();
    let before = collector.messages().len();

    // A new session (other client id): nothing is redelivered, the windows come from the log.
    let second = TestIngest::start(&broker, &flags).await;
    crate::helpers::wait_metric(&second, &format!("ingest_readings_restored_total {n}")).await;
    collector
        .wait_for(
            |m| {
                m[before..]
                    .iter()
                    .any(|m| m.topic == "aggregates/R1/0" && is_aggregate(m, n, sum))
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", second.process.logs()));
    let logs = second.process.stderr();
    assert!(
        logs.contains("recovered up to the last good record"),
        "{logs}"
    );
    // Readiness and the rest of the service are unaffected.
    wait_until(WAIT, "ingest ready", || async {
        second.health().await.0 == 200
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn expired_readings_leave_the_log_too() {
    let broker = Broker::start().await;
    let data = TempDir::new().unwrap();
    let data_dir = data.path().to_str().unwrap().to_owned();
    // Without history the log keeps readings for the window only (with it, a minute longer).
    let flags = [
        "--data-dir",
        data_dir.as_str(),
        "--window-seconds",
        "2",
        "--history-enabled",
        "false",
    ];
    let ingest = TestIngest::start(&broker, &flags).await;
    let collector = Collector::start(broker.port(), &["aggregates/#"]).await;
    let mut publisher = test_support::Publisher::connect(broker.port()).await;
    let readings = (0..50).map(|i| (readings_topic("C1"), payload(i * INDICES)));
    publisher
        .publish_all(QoS::AtLeastOnce, readings, WAIT)
        .await
        .unwrap();
    crate::helpers::wait_metric(&ingest, "ingest_readings_accepted_total 50").await;
    let logged: u64 = std::fs::metadata(newest_segment(data.path()))
        .unwrap()
        .len();
    assert!(
        logged > 50 * 41,
        "the readings are in the log: {logged} bytes"
    );

    // Once they have expired, the segment holding them is deleted; only a fresh one is left.
    collector
        .wait_for(
            |m| latest(m, "aggregates/C1/0").is_some_and(|m| is_aggregate(m, 0, 0.0)),
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    crate::helpers::wait_metric(&ingest, "ingest_log_segments 1\n").await;
    wait_until(WAIT, "one empty segment left on disk", || async {
        let files: Vec<_> = std::fs::read_dir(data.path())
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.len() == 1 && std::fs::metadata(&files[0]).is_ok_and(|m| m.len() == 8)
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
}
