//! Settings on the command line of the real binary: a bad one is one line on stderr and exit
//! code 2 (never a backtrace, never twice), an unknown file key or variable is named with a
//! suggestion, the `[mqtt]` section connects, and `--help` shows ingest's own names.

use test_support::{Broker, Collector, ServiceProcess, expect_settings_error, settings_file};

use crate::helpers::{WAIT, latest};

const INGEST: &str = env!("CARGO_BIN_EXE_ingest");

/// Runs the ingest binary with `args`: see [`test_support::expect_settings_error`].
async fn settings_error(args: &[&str]) -> String {
    expect_settings_error(INGEST, args).await
}

#[tokio::test]
async fn a_typo_in_the_file_is_named_and_exits_2() {
    let file = settings_file("[window]\nsecondz = 30\n");
    let path = file.path().to_str().unwrap();
    let line = settings_error(&["--config", path]).await;
    assert!(line.contains(path), "{line}");
    assert!(line.contains("`window.secondz`"), "{line}");
    assert!(line.contains("did you mean `window.seconds`?"), "{line}");

    let file = settings_file("[mqtt]\nhots = \"broker\"\n");
    let line = settings_error(&["--config", file.path().to_str().unwrap()]).await;
    assert!(line.contains("`mqtt.hots`"), "{line}");
}

#[tokio::test]
async fn a_typo_in_an_alarm_rule_reads_like_any_other_typo() {
    let file = settings_file("[[alarm]]\nmachine = \"A1\"\nsum_above = 3\nclear_belw = 1\n");
    let path = file.path().to_str().unwrap();
    let line = settings_error(&["--config", path]).await;
    assert!(line.contains(path), "{line}");
    assert!(
        line.contains(
            "unknown setting `alarm[1].clear_belw`; did you mean `alarm[1].clear_below`?"
        ),
        "{line}"
    );
}

#[tokio::test]
async fn a_variable_with_the_prefix_that_names_no_setting_exits_2() {
    let mut process = ServiceProcess::spawn(
        INGEST,
        ["--listen", "127.0.0.1:0"],
        [("INGEST_WINDOW_SECOND", "30")],
    );
    let status = process.wait_exit(WAIT).await.unwrap();
    assert_eq!(status.code(), Some(2), "{}", process.logs());
    let stderr = process.stderr();
    assert!(
        stderr
            .contains("INGEST_WINDOW_SECOND names no setting; did you mean INGEST_WINDOW_SECONDS?"),
        "{stderr}"
    );
}

#[tokio::test]
async fn an_invalid_alarm_rule_is_named_and_exits_2() {
    let file = settings_file(
        "[[alarm]]\nmachine = \"A1\"\nsum_above = 30\n\
         [[alarm]]\nmachine = \"B1\"\nindex = 2\navg_above = 3\nclear_below = 4\n",
    );
    let line = settings_error(&["--config", file.path().to_str().unwrap()]).await;
    assert!(
        line.contains("rule 2") && line.contains("machine = \"B1\", index = 2"),
        "{line}"
    );
    assert!(
        line.contains("clear_below 4 is above avg_above 3"),
        "{line}"
    );
}

#[tokio::test]
async fn a_missing_config_file_is_reported_once() {
    let line = settings_error(&["--config", "/nonexistent/ingest.toml"]).await;
    assert_eq!(
        line.matches("/nonexistent/ingest.toml").count(),
        1,
        "{line}"
    );
}

#[tokio::test]
async fn negative_and_out_of_range_numbers_name_the_setting() {
    let line = settings_error(&["--window-seconds", "-5"]).await;
    assert!(
        line.contains("`window.seconds`") && line.contains("-5"),
        "{line}"
    );
    let line = settings_error(&["--window-seconds", "0"]).await;
    assert!(
        line.contains("`window.seconds`: must be 1 to 86400, not 0"),
        "{line}"
    );
    let line = settings_error(&["--mqtt-port", "-1"]).await;
    assert!(line.contains("`mqtt.port`"), "{line}");
    let line = settings_error(&["--window-seconds", "soon"]).await;
    assert!(
        line.contains("`window.seconds`") && line.contains("soon"),
        "{line}"
    );
    let line = settings_error(&["--window-secs", "5"]).await;
    assert!(
        line.contains("--window-secs") && line.contains("--help"),
        "{line}"
    );
}

#[tokio::test]
async fn a_shard_index_not_below_the_count_or_a_foreign_subscription_exits_2() {
    let line = settings_error(&["--shard-count", "3", "--shard-index", "3"]).await;
    assert!(
        line.contains("`shard.index`") && line.contains("shard.count (3)"),
        "{line}"
    );
    let line = settings_error(&["--shard-count", "0"]).await;
    assert!(line.contains("`shard.count`"), "{line}");
    let file = settings_file("[shard]\ncount = 2\nindex = 5\n");
    let line = settings_error(&["--config", file.path().to_str().unwrap()]).await;
    assert!(line.contains("`shard.index`"), "{line}");
    let line = settings_error(&["--shard-subscribe-topic", "readings/#"]).await;
    assert!(line.contains("`shard.subscribe_topic`"), "{line}");
}

/// Waits until ingest, configured only by `file`, announces itself online on the broker.
async fn connects_with(collector: &Collector, file: &str) {
    let file = settings_file(file);
    let mut process = ServiceProcess::spawn(
        INGEST,
        ["--config", file.path().to_str().unwrap()],
        [("INGEST_LISTEN", "127.0.0.1:0")],
    );
    collector
        .wait_for(
            |m| {
                latest(m, "status/ingest")
                    .and_then(|m| m.json().ok())
                    .is_some_and(|j| j["online"] == true)
            },
            WAIT,
        )
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", process.logs()));
    let status = process.terminate().await;
    assert!(status.success(), "{}", process.logs());
    collector.clear();
}

#[tokio::test]
async fn the_mqtt_section_of_the_file_connects() {
    let broker = Broker::start().await;
    let collector = Collector::start(broker.port(), &["status/ingest"]).await;
    let port = broker.port();
    connects_with(
        &collector,
        &format!(
            "[mqtt]\nhost = \"127.0.0.1\"\nport = {port}\nclient_id = \"file-ingest\"\nkeep_alive_secs = 15\n"
        ),
    )
    .await;
}

#[tokio::test]
async fn help_names_ingests_own_variables() {
    let mut process = ServiceProcess::spawn(INGEST, ["--help"], std::iter::empty::<(&str, &str)>());
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{}", process.logs());
    let help = process.stdout();
    for name in [
        "INGEST_MQTT_PASSWORD_FILE",
        "MQTT_PORT",
        "--window-seconds",
        "[env: INGEST_WINDOW_SECONDS] [default: 60]",
        "[env: INGEST_MQTT_KEEP_ALIVE_SECS] [default: 30]",
        "--config",
        "INGEST_CONFIG",
    ] {
        assert!(help.contains(name), "{name} missing from:\n{help}");
    }
    assert!(
        !help.contains("gateway 10"),
        "another binary's defaults: {help}"
    );
}

/// `ingest --help | head -3`: the reader closing the pipe early is not an error.
#[tokio::test]
async fn help_into_a_closed_pipe_exits_0() {
    let command = format!("{INGEST} --help | head -1 >/dev/null");
    let status = tokio::process::Command::new("bash")
        .args(["-o", "pipefail", "-c", &command])
        .status()
        .await
        .unwrap();
    assert!(status.success(), "{status}");
}
