//! Retained aggregates a previous run left behind: the start-up snapshot and their clean-up.

use std::time::Duration;

use test_support::{Broker, Collector, Publisher, QoS, ServiceProcess, publish_retained};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestIngest, WAIT, reading, readings_topic};

/// The warning of a snapshot that ran into its overall time limit.
const INCOMPLETE: &str = "retained-aggregate snapshot incomplete";

/// Leaves on `broker` the retained, long-idle aggregate of `machine`'s index 1 that a previous
/// run would have, and returns a collector on its topic that has seen it.
async fn stale_key_on(broker: &Broker, machine: &str) -> Collector {
    let topic = format!("aggregates/{machine}/1");
    let stale = format!(
        r#"{{"maschinenId":"{machine}","scrapIndex":1,"sumLast60s":0.0,"avgLast60s":null,"count":0,"windowSeconds":60,"timestamp":"2020-01-01T00:00:00.000Z"}}"#
    );
    publish_retained(broker.port(), &topic, stale)
        .await
        .unwrap();
    let collector = Collector::start(broker.port(), &[topic.as_str()]).await;
    collector
        .wait_for(|m| m.iter().any(|m| m.retain), WAIT)
        .await
        .unwrap();
    collector
}

/// Ingest restarted while readings flow sees its own live aggregates on the snapshot's
/// subscription. They are not retained copies, so they must not keep the snapshot open: it
/// completes once the retained ones are in, and the stale key of the previous run is cleared
/// before the snapshot's time limit would have ended it with a warning.
#[tokio::test]
async fn live_aggregates_do_not_hold_the_start_up_snapshot_open() {
    let broker = Broker::start().await;
    // A key of a previous run, idle for long: cleared as soon as it is adopted.
    let collector = stale_key_on(&broker, "OLD").await;

    // Readings keep flowing through the restart, so ingest republishes an aggregate about
    // every publish interval, well inside the snapshot's quiet time.
    let stop = CancellationToken::new();
    let mut publisher = Publisher::connect(broker.port()).await;
    let flow = tokio::spawn({
        let stop = stop.clone();
        async move {
            let topic = readings_topic("LIVE");
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            while !stop.is_cancelled() {
                tick.tick().await;
                let _ = publisher
                    .publish(&topic, QoS::AtMostOnce, false, reading(1, 1.0))
                    .await;
            }
        }
    });

    let ingest = TestIngest::start(&broker, &[]).await;
    let seen = collector
        .wait_for(
            |m| m.iter().any(|m| !m.retain && m.payload.is_empty()),
            WAIT,
        )
        .await;
    // A round trip to the process, so that a warning logged before the clear is captured.
    let metrics = ingest.metrics().await;
    stop.cancel();
    flow.await.unwrap();
    seen.unwrap_or_else(|e| {
        panic!(
            "the stale key was not cleared: {e}\n{}",
            ingest.process.logs()
        )
    });
    assert!(
        metrics.contains("ingest_readings_accepted_total"),
        "{metrics}"
    );
    let logs = ingest.process.logs();
    assert!(
        !logs.contains(INCOMPLETE),
        "live aggregates kept the snapshot open until its time limit:\n{logs}"
    );
}

/// With a broker list whose first entry is down, the start-up snapshot is read from the next
/// broker of the list (the one the main connection fails over to): the stale key a previous
/// run left there is found and cleared.
#[tokio::test]
async fn the_snapshot_comes_from_the_first_broker_of_the_list_that_answers() {
    let broker = Broker::start().await;
    let collector = stale_key_on(&broker, "GONE").await;

    // Nothing listens on the first entry's port.
    let down = test_support::free_port();
    let hosts = format!("127.0.0.1:{down},127.0.0.1:{}", broker.port());
    let client_id = test_support::unique_client_id("ingest-list");
    let (ingest, _) = ServiceProcess::start_service(
        env!("CARGO_BIN_EXE_ingest"),
        &hosts,
        down,
        [
            "--mqtt-client-id",
            client_id.as_str(),
            "--mqtt-reconnect-max-ms",
            "500",
        ],
        [("RUST_LOG", "debug"), ("NO_COLOR", "1")],
        WAIT,
    )
    .await
    .unwrap_or_else(|e| panic!("{e}"));
    let cleared = collector
        .wait_for(
            |m| m.iter().any(|m| !m.retain && m.payload.is_empty()),
            WAIT,
        )
        .await;
    cleared.unwrap_or_else(|e| {
        panic!(
            "the stale key on the second broker was not cleared: {e}\n{}",
            ingest.logs()
        )
    });
}

/// With no broker to read from at start, the log says that no retained state was read, and
/// alarms and trends say they start without it instead of claiming a read-back.
#[tokio::test]
async fn without_a_broker_the_log_says_no_retained_state_was_read() {
    // Nothing listens on this port.
    let ingest = TestIngest::spawn(test_support::free_port(), &[]).await;
    wait_for_lines(
        &ingest,
        &[
            "no retained state read: no broker of mqtt.host reachable",
            "alarms: no retained state was read",
            "trends: no retained trends were read",
        ],
    )
    .await;
    let logs = ingest.process.logs();
    assert!(
        !logs.contains("read back"),
        "a read-back is claimed that did not happen:\n{logs}"
    );
}

/// The counterpart: with the broker there, the read-back is said.
#[tokio::test]
async fn with_a_broker_the_log_says_the_retained_state_was_read_back() {
    let broker = Broker::start().await;
    let ingest = TestIngest::start(&broker, &[]).await;
    wait_for_lines(
        &ingest,
        &[
            "retained state read back",
            "alarms: retained state read back",
            "trends: retained trends read back",
        ],
    )
    .await;
    assert!(
        !ingest.process.logs().contains("no retained state"),
        "{}",
        ingest.process.logs()
    );
}

/// Waits until the log of `ingest` holds every one of `lines`.
async fn wait_for_lines(ingest: &TestIngest, lines: &[&str]) {
    for line in lines {
        ingest
            .process
            .wait_for_output(line, WAIT)
            .await
            .unwrap_or_else(|e| panic!("{e}"));
    }
}
