//! Settings on the command line of the real binary: a bad one is one line on stderr and exit
//! code 2 (never a backtrace, never twice), an unknown file key is named, and the `[mqtt]`
//! block the gateway shares with ingest and simulator connects.

use std::net::SocketAddr;
use std::time::Duration;

use serde_json::Value;
use test_support::{
    Broker, ServiceProcess, expect_settings_error, settings_file, try_http_get, wait_until,
};

const GATEWAY: &str = env!("CARGO_BIN_EXE_gateway");
const WAIT: Duration = Duration::from_secs(30);

/// Runs the gateway binary with `args`: see [`test_support::expect_settings_error`].
async fn settings_error(args: &[&str]) -> String {
    expect_settings_error(GATEWAY, args).await
}

#[tokio::test]
async fn a_typo_in_the_file_is_named_and_exits_2() {
    let file = settings_file("[ws]\nmax_clientz = 7\n");
    let line = settings_error(&["--config", file.path().to_str().unwrap()]).await;
    assert!(line.contains("`ws.max_clientz`"), "{line}");
    assert!(line.contains("did you mean `ws.max_clients`?"), "{line}");
}

#[tokio::test]
async fn a_missing_config_file_is_reported_once() {
    let line = settings_error(&["--config", "/nonexistent/gateway.toml"]).await;
    assert_eq!(
        line.matches("/nonexistent/gateway.toml").count(),
        1,
        "{line}"
    );
}

#[tokio::test]
async fn negative_numbers_and_bad_values_name_the_setting() {
    let line = settings_error(&["--ws-max-clients", "-5"]).await;
    assert!(
        line.contains("`ws.max_clients`") && line.contains("-5"),
        "{line}"
    );
    let line = settings_error(&["--ws-ping-interval-secs", "30"]).await;
    assert!(line.contains("`ws.client_timeout_secs`"), "{line}");
    let file = settings_file("[http]\nauth_token_file = \"/nonexistent/token\"\n");
    let line = settings_error(&["--config", file.path().to_str().unwrap()]).await;
    assert!(line.contains("`http.auth_token_file`"), "{line}");
}

#[tokio::test]
async fn the_shared_mqtt_block_connects() {
    let broker = Broker::start().await;
    let file = settings_file(&format!(
        "[mqtt]\nhost = \"127.0.0.1\"\nport = {}\nclient_id = \"shared-block-gateway\"\nkeep_alive_secs = 15\n",
        broker.port()
    ));
    let process = ServiceProcess::spawn(
        GATEWAY,
        [
            "--config",
            file.path().to_str().unwrap(),
            "--listen",
            "127.0.0.1:0",
        ],
        [("LOG_FORMAT", "json")],
    );
    process
        .wait_for_output("gateway listening", WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}"));
    let addr: SocketAddr = process
        .stderr()
        .lines()
        .filter_map(|line| serde_json::from_str::<Value>(line).ok())
        .find(|v| v["fields"]["message"] == "gateway listening")
        .and_then(|v| v["fields"]["address"].as_str().and_then(|a| a.parse().ok()))
        .unwrap_or_else(|| panic!("no listen address in the log\n{}", process.logs()));
    let url = format!("http://{addr}/api/health");
    wait_until(WAIT, "the gateway reports the broker connected", || {
        let url = url.clone();
        async move {
            try_http_get(&url)
                .await
                .is_ok_and(|(status, _)| status == 200)
        }
    })
    .await
    .unwrap_or_else(|e| panic!("{e}\n{}", process.logs()));
}

#[tokio::test]
async fn help_names_the_gateways_own_variables() {
    let mut process =
        ServiceProcess::spawn(GATEWAY, ["--help"], std::iter::empty::<(&str, &str)>());
    let status = process.wait_exit(WAIT).await.unwrap();
    assert!(status.success(), "{}", process.logs());
    let help = process.stdout();
    for name in [
        "GATEWAY_MQTT_USERNAME",
        "GATEWAY_MQTT_CLIENT_ID",
        "MQTT_BROKER",
        "--mqtt-keep-alive-secs",
    ] {
        assert!(help.contains(name), "{name} missing from:\n{help}");
    }
    assert!(!help.contains("<PREFIX>"), "{help}");
}

#[tokio::test]
async fn a_taken_listen_address_is_one_line_without_a_backtrace() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap().to_string();
    let mut process = ServiceProcess::spawn(
        GATEWAY,
        ["--listen", addr.as_str()],
        [("RUST_BACKTRACE", "1")],
    );
    let status = process
        .wait_exit(WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", process.logs()));
    let stderr = process.stderr();
    assert_eq!(status.code(), Some(1), "{stderr}");
    let line = stderr
        .lines()
        .find(|l| l.starts_with("gateway: "))
        .unwrap_or_else(|| panic!("no error line:\n{stderr}"));
    assert!(
        line.contains("cannot listen on") && line.contains(&addr),
        "{line}"
    );
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
}
