//! `scripts/dev.sh`, the README's first command, run as a newcomer runs it: the stack comes up
//! on the ports it is given, takes ingest's settings file from `INGEST_CONFIG`, and stops on
//! Ctrl-C.

use std::path::Path;
use std::time::Duration;

use nix::sys::signal::Signal;
use test_support::{ServiceProcess, free_port, settings_file, try_http_get, wait_until};

use crate::helpers::WAIT;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dev_sh_runs_the_stack_with_ingests_settings_file_and_stops_on_ctrl_c() {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../scripts/dev.sh");
    // Every reading the simulator sends (values 1 to 5) raises this alarm.
    let rules = settings_file("[[alarm]]\nmachine = \"*\"\nsum_above = 0.5\n");
    let gateway_port = free_port().to_string();
    let mut dev = ServiceProcess::spawn(
        "bash",
        [script.to_str().unwrap(), "--rate", "20"],
        [
            ("MQTT_PORT", free_port().to_string()),
            ("MQTT_WS_PORT", free_port().to_string()),
            ("DEV_GATEWAY_PORT", gateway_port.clone()),
            ("DEV_INGEST_PORT", free_port().to_string()),
            ("INGEST_CONFIG", rules.path().display().to_string()),
            // The test run built the binaries; building again here would race the other tests.
            ("DEV_BUILD", "0".to_owned()),
        ],
    );
    let alarms = format!("http://127.0.0.1:{gateway_port}/api/alarms");
    let raised = wait_until(Duration::from_secs(90), "an alarm from INGEST_CONFIG's rule", || {
        let url = alarms.clone();
        async move {
            matches!(try_http_get(&url).await, Ok((200, body)) if body.contains(r#""state":"raised""#))
        }
    })
    .await;
    raised.unwrap_or_else(|e| panic!("{e}\n{}", dev.logs()));
    let status = dev.terminate_with(Signal::SIGINT, WAIT).await;
    assert_eq!(status.code(), Some(130), "{}", dev.logs());
    assert!(
        try_http_get(&alarms).await.is_err(),
        "the gateway is stopped"
    );
}
