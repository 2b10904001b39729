//! The command line: help, bad settings, an unreachable broker (announced, warned about on
//! every attempt, given up by `--duration` or the connect timeout), signals.

use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::{
    Broker, Collector, ServiceProcess, expect_settings_error, free_port, settings_file,
};

use crate::helpers::{SIMULATOR, WAIT, run, spawn};

#[tokio::test]
async fn help_lists_the_contract_flags() {
    let mut process =
        ServiceProcess::spawn(SIMULATOR, ["--help"], std::iter::empty::<(&str, &str)>());
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(status.success());
    let help = process.stdout();
    for flag in [
        "--mqtt-host",
        "--mqtt-port",
        "--config",
        "--rate",
        "--machines",
        "--indices",
        "--count",
        "--duration",
        "--qos",
        "--seed",
        "--values",
        "--invalid-ratio",
        "MQTT_BROKER",
    ] {
        assert!(help.contains(flag), "{flag} missing from:\n{help}");
    }
}

#[tokio::test]
async fn bad_setting_is_named_and_fails() {
    let finished = run(free_port(), &["--qos", "7"]).await;
    assert!(!finished.status.success());
    assert!(finished.stderr.contains("`qos`"), "{}", finished.stderr);
}

#[tokio::test]
async fn unreachable_broker_fails_with_a_message() {
    let port = free_port();
    let mut process = ServiceProcess::spawn(
        SIMULATOR,
        [
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            &port.to_string(),
            "--count",
            "1",
        ],
        [("SIMULATOR_CONNECT_TIMEOUT_SECS", "1")],
    );
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(!status.success());
    assert!(
        process.stderr().contains("not reachable"),
        "{}",
        process.logs()
    );
}

/// Runs the simulator against `host:port` where no broker answers, with a connect timeout far
/// beyond the test's wait, so only `--duration` can end it in time; returns its stderr.
async fn gives_up_by_the_duration(host: &str, port: u16, extra: &[&str]) -> String {
    let port = port.to_string();
    let mut args = vec![
        "--mqtt-host",
        host,
        "--mqtt-port",
        &port,
        "--duration",
        "2s",
    ];
    args.extend_from_slice(extra);
    let mut process = ServiceProcess::spawn(
        SIMULATOR,
        args,
        [
            ("SIMULATOR_CONNECT_TIMEOUT_SECS", "600"),
            ("RUST_LOG", "info"),
            ("LOG_FORMAT", "text"),
        ],
    );
    let status = match process.wait_exit(WAIT).await {
        Ok(status) => status,
        Err(e) => {
            process.kill().await;
            panic!("still trying after --duration 2s: {e}");
        }
    };
    let stderr = process.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let addr = format!("{host}:{port}");
    let announced = stderr
        .lines()
        .any(|l| l.contains("connecting to the MQTT broker") && l.contains(&addr));
    assert!(announced, "the broker address is not announced:\n{stderr}");
    let warnings = stderr
        .lines()
        .filter(|l| l.contains("WARN") && l.contains("cannot connect to the MQTT broker"))
        .count();
    assert!(warnings >= 2, "{warnings} warnings:\n{stderr}");
    let last = stderr.lines().last().unwrap_or_default();
    assert!(
        last.starts_with(&format!("simulator: broker {addr} not reachable within 2s")),
        "last line: {last}\n{stderr}"
    );
    stderr
}

#[tokio::test]
async fn a_closed_port_is_reported_and_given_up_by_the_duration() {
    let stderr = gives_up_by_the_duration("127.0.0.1", free_port(), &[]).await;
    assert!(stderr.contains("refused"), "{stderr}");
}

#[tokio::test]
async fn a_closed_port_is_given_up_by_the_duration_at_qos_1_too() {
    gives_up_by_the_duration("127.0.0.1", free_port(), &["--qos", "1"]).await;
}

#[tokio::test]
async fn an_unresolvable_host_is_reported_and_given_up_by_the_duration() {
    // `.invalid` never resolves (RFC 2606).
    gives_up_by_the_duration("no-such-broker.invalid", 1883, &[]).await;
}

#[tokio::test]
async fn a_signal_while_connecting_stops_at_once() {
    let mut process = ServiceProcess::spawn(
        SIMULATOR,
        [
            "--mqtt-host",
            "127.0.0.1",
            "--mqtt-port",
            &free_port().to_string(),
        ],
        [("SIMULATOR_CONNECT_TIMEOUT_SECS", "600")],
    );
    process
        .wait_for_output("cannot connect to the MQTT broker", WAIT)
        .await
        .unwrap();
    let status = process
        .terminate_with(Signal::SIGTERM, Duration::from_secs(20))
        .await;
    assert!(!status.success());
    assert!(
        process
            .stderr()
            .contains("stopped by a signal before the broker"),
        "{}",
        process.logs()
    );
}

#[tokio::test]
async fn env_names_of_the_original_service_work() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let mut process = ServiceProcess::spawn(
        SIMULATOR,
        ["--count", "5", "--rate", "100"],
        [
            ("MQTT_BROKER", "127.0.0.1".to_owned()),
            ("MQTT_PORT", broker.port().to_string()),
        ],
    );
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{}", process.logs());
    collector.wait_for(|m| m.len() == 5, WAIT).await.unwrap();
}

async fn stops_cleanly_on(signal: Signal) {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let mut process = spawn(
        broker.port(),
        &["--rate", "2000", "--qos", "1", "--print-expected"],
    );
    collector.wait_for(|m| m.len() >= 500, WAIT).await.unwrap();
    let status = process
        .terminate_with(signal, Duration::from_secs(30))
        .await;
    assert!(status.success(), "{status:?}\n{}", process.logs());
    let summary: serde_json::Value = serde_json::from_str(process.stdout().trim()).unwrap();
    assert_eq!(summary["stopped_by"], "signal");
    let sent = summary["sent"].as_u64().unwrap();
    assert_eq!(summary["acknowledged"].as_u64().unwrap(), sent);
    let sent = usize::try_from(sent).unwrap();
    let messages = collector.wait_for(|m| m.len() >= sent, WAIT).await.unwrap();
    assert_eq!(messages.len(), sent);
    assert!(process.stderr().contains("summary"));
}

#[tokio::test]
async fn sigterm_stops_cleanly_with_a_summary() {
    stops_cleanly_on(Signal::SIGTERM).await;
}

#[tokio::test]
async fn sigint_stops_cleanly_with_a_summary() {
    stops_cleanly_on(Signal::SIGINT).await;
}

#[tokio::test]
async fn progress_line_every_second() {
    let broker = Broker::start().await;
    let finished = run(broker.port(), &["--rate", "1000", "--duration", "2200ms"]).await;
    assert!(finished.status.success(), "{}", finished.stderr);
    let lines = finished
        .stderr
        .lines()
        .filter(|l| l.contains("progress"))
        .count();
    assert_eq!(lines, 2, "{}", finished.stderr);
    assert!(finished.stderr.contains("rate="));
}

/// Runs the simulator binary with `args`: see [`test_support::expect_settings_error`].
async fn settings_error(args: &[&str]) -> String {
    expect_settings_error(SIMULATOR, args).await
}

#[tokio::test]
async fn a_negative_rate_reaches_the_range_check() {
    let line = settings_error(&["--rate", "-5"]).await;
    assert!(line.contains("`rate`") && line.contains("-5"), "{line}");
    let line = settings_error(&["--count", "-1"]).await;
    assert!(line.contains("`count`"), "{line}");
}

#[tokio::test]
async fn a_typo_in_the_file_is_named_and_exits_2() {
    let file = settings_file("rat = 5.0\n");
    let line = settings_error(&["--config", file.path().to_str().unwrap()]).await;
    assert!(
        line.contains("`rat`") && line.contains("did you mean `rate`?"),
        "{line}"
    );
}

#[tokio::test]
async fn a_missing_config_file_is_reported_once() {
    let line = settings_error(&["--config", "/nonexistent/simulator.toml"]).await;
    assert_eq!(
        line.matches("/nonexistent/simulator.toml").count(),
        1,
        "{line}"
    );
}

#[tokio::test]
async fn the_shared_mqtt_block_connects() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;
    let file = settings_file(&format!(
        "count = 5\nrate = 100.0\n[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"shared-block-simulator\"\nkeep_alive_secs = 15\n",
        broker.port()
    ));
    let mut process = ServiceProcess::spawn(
        SIMULATOR,
        ["--config", file.path().to_str().unwrap()],
        std::iter::empty::<(&str, &str)>(),
    );
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{}", process.logs());
    collector.wait_for(|m| m.len() == 5, WAIT).await.unwrap();
}
