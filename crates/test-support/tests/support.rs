//! Tests of the test helpers themselves, against a real Mosquitto and real processes.

use std::time::Duration;

use test_support::{
    Broker, Collector, Publisher, QoS, ServiceProcess, publish_retained, require_tool, wait_until,
};

const WAIT: Duration = Duration::from_secs(10);

#[test]
#[should_panic(expected = "install it: apt-get install nothing-here")]
fn require_tool_panics_with_the_install_hint() {
    require_tool("scrap-pulse-no-such-tool", "apt-get install nothing-here");
}

#[test]
fn require_tool_finds_mosquitto_in_sbin() {
    let path = require_tool("mosquitto", test_support::MOSQUITTO_INSTALL_HINT);
    assert!(path.ends_with("mosquitto"), "{path:?}");
}

#[tokio::test]
async fn published_messages_are_collected_in_order() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let messages: Vec<(String, String)> = (0..500)
        .map(|i| {
            (
                format!("machines/M{}/scrap", i % 3),
                format!("{{\"n\":{i}}}"),
            )
        })
        .collect();
    publisher
        .publish_all(QoS::AtLeastOnce, messages, WAIT)
        .await
        .unwrap();
    assert_eq!(publisher.acknowledged(), 500);
    let got = collector.wait_for(|m| m.len() >= 500, WAIT).await.unwrap();
    let numbers: Vec<i64> = got
        .iter()
        .map(|m| m.json().unwrap()["n"].as_i64().unwrap())
        .collect();
    assert_eq!(
        numbers,
        (0..500).collect::<Vec<i64>>(),
        "QoS 1 from one client keeps order"
    );
    assert_eq!(collector.count("machines/M0/"), 167);
    assert!(!got[0].retain);
    collector.clear();
    assert!(collector.messages().is_empty());
}

#[tokio::test]
async fn every_qos_is_acknowledged_and_large_payloads_pass() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["big/#"]).await;
    let mut publisher = Publisher::connect(broker.port()).await;
    let big = vec![b'x'; 100 * 1024];
    for qos in [QoS::AtMostOnce, QoS::AtLeastOnce, QoS::ExactlyOnce] {
        publisher
            .publish(&format!("big/{qos:?}"), qos, false, big.clone())
            .await
            .unwrap();
    }
    publisher.flush(WAIT).await.unwrap();
    let got = collector.wait_for(|m| m.len() == 3, WAIT).await.unwrap();
    assert!(got.iter().all(|m| m.payload.len() == 100 * 1024));
}

#[tokio::test]
async fn wait_for_reports_what_it_saw_on_timeout() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["t/#"]).await;
    publish_retained(broker.port(), "t/one", "hello")
        .await
        .unwrap();
    let err = collector
        .wait_for(|m| m.len() >= 2, Duration::from_millis(300))
        .await
        .unwrap_err();
    assert!(
        err.contains("1 messages received") && err.contains("t/one hello"),
        "{err}"
    );
}

#[tokio::test]
async fn late_subscriber_gets_retained_message() {
    let broker = Broker::start().await;
    publish_retained(broker.port(), "aggregates/A1/1", r#"{"sum":1}"#)
        .await
        .unwrap();
    let collector = Collector::start(broker.port(), &["aggregates/+/+"]).await;
    let got = collector.wait_for(|m| !m.is_empty(), WAIT).await.unwrap();
    assert!(got[0].retain);
    assert_eq!(
        collector.latest("aggregates/A1/1").unwrap().text(),
        r#"{"sum":1}"#
    );
}

#[tokio::test]
async fn retained_message_survives_kill_and_restart_on_the_same_port() {
    let mut broker = Broker::start().await;
    let port = broker.port();
    publish_retained(port, "keep/me", "v1").await.unwrap();
    broker.wait_for_autosave(WAIT).await.unwrap();
    broker.kill().await;
    broker.restart().await;
    assert_eq!(broker.port(), port);
    let collector = Collector::start(port, &["keep/#"]).await;
    collector
        .wait_for(|m| m.iter().any(|m| m.retain && m.text() == "v1"), WAIT)
        .await
        .map_err(|e| format!("{e}\n{}", broker.log()))
        .unwrap();
}

#[tokio::test]
async fn retained_message_survives_stop_and_restart() {
    let mut broker = Broker::start().await;
    publish_retained(broker.port(), "keep/me", "v2")
        .await
        .unwrap();
    broker.stop().await;
    broker.restart().await;
    let collector = Collector::start(broker.port(), &["keep/#"]).await;
    collector
        .wait_for(|m| m.iter().any(|m| m.retain && m.text() == "v2"), WAIT)
        .await
        .unwrap();
}

#[tokio::test]
async fn collector_resubscribes_after_broker_restart() {
    let mut broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["after/#"]).await;
    broker.kill().await;
    broker.restart().await;
    // The collector needs a moment to reconnect; keep publishing until one arrives.
    let port = broker.port();
    wait_until(WAIT, "collector receives after restart", || async {
        let _ = publish_retained(port, "after/x", "y").await;
        collector.count("after/") > 0
    })
    .await
    .unwrap();
}

#[tokio::test]
async fn broker_log_is_available() {
    let broker = Broker::start().await;
    let _collector = Collector::start(broker.port(), &["#"]).await;
    wait_until(WAIT, "log mentions a client connection", || async {
        broker.log().contains("New client connected")
    })
    .await
    .unwrap();
    assert!(broker.url().ends_with(&format!(":{}", broker.port())));
}

#[tokio::test]
async fn service_process_terminates_on_sigterm_and_keeps_output() {
    let sh = require_tool("sh", "apt-get install dash");
    let mut process = ServiceProcess::spawn(
        &sh,
        ["-c", "echo started >&2; echo out; exec sleep 60"],
        [("X", "1")],
    );
    process.wait_for_output("started", WAIT).await.unwrap();
    assert!(process.is_running());
    let status = process.terminate().await;
    assert!(!status.success());
    assert!(!process.is_running());
    assert!(process.stdout().contains("out"));
    assert!(process.logs().contains("started"));
}

#[tokio::test]
async fn service_process_reports_exit_code() {
    let sh = require_tool("sh", "apt-get install dash");
    let mut process =
        ServiceProcess::spawn(&sh, ["-c", "exit 3"], std::iter::empty::<(&str, &str)>());
    let status = process.wait_exit(WAIT).await.unwrap();
    assert_eq!(status.code(), Some(3));
}

#[tokio::test]
async fn wait_listening_finds_the_port_of_a_child_process() {
    let mosquitto = require_tool("mosquitto", test_support::MOSQUITTO_INSTALL_HINT);
    let port = test_support::free_port();
    let mut process = ServiceProcess::spawn(
        &mosquitto,
        ["-p", &port.to_string()],
        std::iter::empty::<(&str, &str)>(),
    );
    let addr = process.wait_listening(WAIT).await.unwrap();
    assert_eq!(addr.port(), port, "{}", process.logs());
    assert!(addr.ip().is_loopback(), "{addr}");
    assert!(process.rss().unwrap().current > 0);
}

#[tokio::test]
async fn wait_listening_reports_a_process_that_exits_first() {
    let sh = require_tool("sh", "apt-get install dash");
    let mut process = ServiceProcess::spawn(
        &sh,
        ["-c", "echo no-socket-for-you >&2; exit 3"],
        std::iter::empty::<(&str, &str)>(),
    );
    let error = process.wait_listening(WAIT).await.unwrap_err();
    assert!(error.contains("exited"), "{error}");
    assert!(error.contains("no-socket-for-you"), "{error}");
}
