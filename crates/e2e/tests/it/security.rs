//! Broker security end to end: the secured Mosquitto setup (password file + the repository's
//! ACL, `mosquitto/config/secured/acl`) with ingest and gateway logging in as their users,
//! aggregates and alarms reaching the gateway, and a machine that cannot write outside its own
//! topic.

use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use test_support::{
    Broker, BrokerOptions, MOSQUITTO_INSTALL_HINT, require_tool, try_http_get, unique_client_id,
    wait_until,
};

use crate::helpers::{TestService, WAIT, reading};

const INGEST_PASSWORD: &str = "ingest-Pw-5f1e9a";
const GATEWAY_PASSWORD: &str = "gateway-Pw-77c2d0";
const A1_PASSWORD: &str = "a1-Pw-0b3d";

/// The repository's ACL for the secured broker.
fn repo_acl() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mosquitto/config/secured/acl")
}

/// Writes `user:password` lines and hashes them in place with `mosquitto_passwd -U`, as
/// `scripts/make-passwords.sh` does.
fn password_file(dir: &Path, users: &[(&str, &str)]) -> PathBuf {
    let tool = require_tool("mosquitto_passwd", MOSQUITTO_INSTALL_HINT);
    let path = dir.join("passwd");
    let lines: String = users.iter().map(|(u, p)| format!("{u}:{p}\n")).collect();
    std::fs::write(&path, lines).unwrap();
    let status = std::process::Command::new(tool)
        .arg("-U")
        .arg(&path)
        .status()
        .expect("run mosquitto_passwd");
    assert!(status.success(), "mosquitto_passwd -U failed: {status}");
    path
}

fn write_secret(dir: &Path, name: &str, secret: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, format!("{secret}\n")).unwrap();
    path
}

/// Connects once; `Ok(())` on an accepted CONNACK, else what went wrong.
async fn try_connect(
    mut options: MqttOptions,
) -> Result<(AsyncClient, rumqttc::EventLoop), String> {
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    let outcome = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(_))) => return Ok(()),
                Ok(_) => {}
                Err(ConnectionError::ConnectionRefused(code)) => {
                    return Err(format!("refused: {code:?}"));
                }
                Err(e) => return Err(format!("error: {e}")),
            }
        }
    })
    .await
    .unwrap_or_else(|_| Err("no CONNACK within 10 s".into()));
    outcome.map(|()| (client, event_loop))
}

fn login(port: u16, user: &str, password: &str) -> MqttOptions {
    let mut options = MqttOptions::new(unique_client_id(user), "127.0.0.1", port);
    options.set_credentials(user, password);
    options
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secured_broker_carries_readings_of_logged_in_services_and_keeps_machines_in_their_topic() {
    let dir = tempfile::tempdir().unwrap();
    let passwd = password_file(
        dir.path(),
        &[
            ("ingest", INGEST_PASSWORD),
            ("gateway", GATEWAY_PASSWORD),
            ("A1", A1_PASSWORD),
        ],
    );
    let broker = Broker::start_with(BrokerOptions {
        extra_config: format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            passwd.display(),
            repo_acl().display()
        ),
        probe_login: Some(("gateway".into(), GATEWAY_PASSWORD.into())),
        ..BrokerOptions::default()
    })
    .await;
    let port = broker.port();

    // Nobody gets in without the right password.
    let anonymous = MqttOptions::new(unique_client_id("anon"), "127.0.0.1", port);
    assert!(
        try_connect(anonymous).await.is_err(),
        "anonymous login accepted"
    );
    assert!(
        try_connect(login(port, "A1", "wrong")).await.is_err(),
        "wrong password accepted"
    );

    let ingest_pw = write_secret(dir.path(), "ingest.pw", INGEST_PASSWORD);
    // An alarm rule A1's reading raises: alarms travel the secured broker too.
    let rules = write_secret(
        dir.path(),
        "ingest.toml",
        "[[alarm]]\nmachine = \"A1\"\nsum_above = 1.0",
    );
    let ingest = TestService::ingest(
        port,
        &[
            "--mqtt-username",
            "ingest",
            "--mqtt-password-file",
            ingest_pw.to_str().unwrap(),
            "--config",
            rules.to_str().unwrap(),
        ],
    )
    .await;

    let gateway_pw = write_secret(dir.path(), "gw.pw", GATEWAY_PASSWORD);
    let gateway = TestService::gateway(
        port,
        &[
            "--mqtt-username",
            "gateway",
            "--mqtt-password-file",
            gateway_pw.to_str().unwrap(),
        ],
    )
    .await;
    let aggregates_url = gateway.url("/api/aggregates");

    // Machine A1 tries another machine's topic and the aggregates, then its own topic. The
    // broker handles one connection's publishes in order, so once the last one has gone all
    // the way to the gateway, the first two would have arrived too had the ACL let them by.
    let (a1, mut a1_loop) = try_connect(login(port, "A1", A1_PASSWORD)).await.unwrap();
    let forged = r#"{"maschinenId":"A1","scrapIndex":9,"sumLast60s":1e9,"avgLast60s":1e9,"count":1,"windowSeconds":60,"timestamp":"2026-01-01T00:00:00Z"}"#;
    a1.publish(
        "machines/B1/scrap",
        QoS::AtLeastOnce,
        false,
        reading(1, 100.0),
    )
    .await
    .unwrap();
    a1.publish("aggregates/A1/9", QoS::AtLeastOnce, true, forged)
        .await
        .unwrap();
    a1.publish(
        "machines/A1/scrap",
        QoS::AtLeastOnce,
        false,
        reading(1, 4.5),
    )
    .await
    .unwrap();
    let mut acks = 0;
    tokio::time::timeout(WAIT, async {
        while acks < 3 {
            if let Event::Incoming(Incoming::PubAck(_)) = a1_loop.poll().await.unwrap() {
                acks += 1;
            }
        }
    })
    .await
    .expect("the broker acknowledges all three publishes (MQTT 3.1.1 acks denied ones too)");

    let has_a1 = |body: &str| {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| v.as_array().cloned())
            .is_some_and(|all| {
                all.iter().any(|a| {
                    a["maschinenId"] == "A1" && a["scrapIndex"] == 1 && a["sumLast60s"] == 4.5
                })
            })
    };
    let arrived = wait_until(WAIT, "A1's reading as an aggregate at the gateway", || {
        let url = aggregates_url.clone();
        async move { matches!(try_http_get(&url).await, Ok((200, body)) if has_a1(&body)) }
    })
    .await;
    arrived.unwrap_or_else(|e| panic!("{e}\n{}", ingest.process.logs()));
    let (_, body) = test_support::http_get(&aggregates_url).await;
    let last: Value = serde_json::from_str(&body).unwrap();
    let all = last.as_array().unwrap();
    assert_eq!(all.len(), 1, "only A1/1 may exist: {last}");
    assert!(
        ingest
            .metrics()
            .await
            .contains("ingest_readings_received_total 1"),
        "ingest saw a reading A1 was not allowed to send\n{}",
        ingest.metrics().await
    );

    let alarms_url = gateway.url("/api/alarms");
    let raised = wait_until(WAIT, "A1's alarm at the gateway", || {
        let url = alarms_url.clone();
        async move {
            matches!(try_http_get(&url).await, Ok((200, body)) if body.contains(r#""state":"raised""#))
        }
    })
    .await;
    raised.unwrap_or_else(|e| panic!("{e}\n{}\n{}", ingest.process.logs(), gateway.process.logs()));

    let logs = ingest.process.logs();
    assert!(logs.contains("user ingest with password"), "{logs}");
    assert!(
        !logs.contains(INGEST_PASSWORD),
        "password in the log\n{logs}"
    );
    let logs = gateway.process.logs();
    assert!(
        !logs.contains(GATEWAY_PASSWORD),
        "password in the log\n{logs}"
    );
}
