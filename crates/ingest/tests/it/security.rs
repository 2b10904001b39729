//! Broker security end to end: the secured Mosquitto setup (password file + the repository's
//! ACL, `mosquitto/config/secured/acl`) with ingest and gateway logging in as their users, a
//! machine that cannot write outside its own topic; and TLS with a CA generated at test time.
//!
//! Ingest runs as the real binary; the gateway runs in-process through its library
//! (`gateway::Application`), since one test binary can only start its own crate's executables.

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, ConnectionError, Event, Incoming, MqttOptions, QoS};
use serde_json::Value;
use test_support::{
    Broker, BrokerOptions, MOSQUITTO_INSTALL_HINT, free_port, require_tool, try_http_get,
    unique_client_id, wait_until,
};
use tokio_util::sync::CancellationToken;

use crate::helpers::{TestIngest, WAIT, reading};

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
    let ingest = TestIngest::start(
        &broker,
        &[
            "--mqtt-username",
            "ingest",
            "--mqtt-password-file",
            ingest_pw.to_str().unwrap(),
        ],
    )
    .await;

    let mut settings = gateway::Settings::default();
    settings.mqtt.host = "127.0.0.1".into();
    settings.mqtt.port = port;
    settings.mqtt.username = Some("gateway".into());
    settings.mqtt.password_file = Some(write_secret(dir.path(), "gw.pw", GATEWAY_PASSWORD));
    settings.http.listen = "127.0.0.1:0".into();
    let gateway = gateway::Application::build(settings).unwrap();
    let aggregates_url = format!("http://127.0.0.1:{}/api/aggregates", gateway.port());
    let hub = gateway.hub();
    let shutdown = CancellationToken::new();
    let running = tokio::spawn(gateway.run(shutdown.clone()));
    wait_until(WAIT, "gateway logged in and subscribed", || async {
        hub.health().is_ok()
    })
    .await
    .unwrap();

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

    let logs = ingest.process.logs();
    assert!(logs.contains("user ingest with password"), "{logs}");
    assert!(
        !logs.contains(INGEST_PASSWORD),
        "password in the log\n{logs}"
    );
    shutdown.cancel();
    running.await.unwrap().unwrap();
}

/// A CA and a server certificate for 127.0.0.1 and localhost, as PEM files in `dir`.
struct Pki {
    ca: PathBuf,
    cert: PathBuf,
    key: PathBuf,
    client_cert: PathBuf,
    client_key: PathBuf,
}

fn make_pki(dir: &Path, name: &str) -> Pki {
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("scrap-pulse test CA {name}"),
    );
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let server_key = rcgen::KeyPair::generate().unwrap();
    let mut server_params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    server_params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let server = server_params.signed_by(&server_key, &issuer).unwrap();
    let client_key = rcgen::KeyPair::generate().unwrap();
    let client = rcgen::CertificateParams::new(vec!["ingest".to_owned()])
        .unwrap()
        .signed_by(&client_key, &issuer)
        .unwrap();
    let write = |file: &str, text: String| {
        let path = dir.join(format!("{name}-{file}"));
        std::fs::write(&path, text).unwrap();
        path
    };
    Pki {
        ca: write("ca.pem", ca.pem()),
        cert: write("server.pem", server.pem()),
        key: write("server.key", server_key.serialize_pem()),
        client_cert: write("client.pem", client.pem()),
        client_key: write("client.key", client_key.serialize_pem()),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ingest_connects_over_tls_with_the_ca_file_and_client_certificate_and_is_refused_without() {
    let dir = tempfile::tempdir().unwrap();
    let pki = make_pki(dir.path(), "good");
    let other = make_pki(dir.path(), "other");
    let tls_port = free_port();
    let mutual_port = free_port();
    // The plain listener stays for the readiness probe; the TLS ones are what ingest uses, the
    // second one only for clients with a certificate from the CA.
    let listener = |port: u16| {
        format!(
            "listener {port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            pki.ca.display(),
            pki.cert.display(),
            pki.key.display()
        )
    };
    let broker = Broker::start_with(BrokerOptions {
        extra_config: format!(
            "{}{}require_certificate true\n",
            listener(tls_port),
            listener(mutual_port)
        ),
        ..BrokerOptions::default()
    })
    .await;
    let _ = &broker;

    let trusted =
        TestIngest::spawn(tls_port, &["--mqtt-tls-ca-file", pki.ca.to_str().unwrap()]).await;
    trusted.wait_ready().await;
    assert!(
        trusted.process.stderr().contains("TLS (CA"),
        "{}",
        trusted.process.logs()
    );

    // Plain MQTT to the TLS port, and TLS with a CA that did not sign the broker's certificate:
    // both keep failing to connect, and /health says so.
    for (extra, what) in [
        (vec![], "no TLS"),
        (
            vec!["--mqtt-tls-ca-file", other.ca.to_str().unwrap()],
            "untrusted CA",
        ),
    ] {
        let refused = TestIngest::spawn(tls_port, &extra).await;
        refused
            .process
            .wait_for_output("cannot reach the MQTT broker", WAIT)
            .await
            .unwrap_or_else(|e| panic!("{what}: {e}"));
        let (status, _) = refused.health().await;
        assert_eq!(status, 503, "{what}\n{}", refused.process.logs());
        if what == "untrusted CA" {
            // The first failure can be logged before the reason is known; wait for the reason.
            refused
                .process
                .wait_for_output("certificate", WAIT)
                .await
                .unwrap_or_else(|e| panic!("{e}"));
            let logs = refused.process.stderr();
            assert!(
                logs.to_lowercase().contains("certificate"),
                "the log should say the certificate is not trusted\n{logs}"
            );
        }
    }

    // A listener that requires a client certificate: refused without one, in with one.
    let ca = pki.ca.to_str().unwrap();
    let anonymous_cert = TestIngest::spawn(mutual_port, &["--mqtt-tls-ca-file", ca]).await;
    anonymous_cert
        .process
        .wait_for_output("cannot reach the MQTT broker", WAIT)
        .await
        .unwrap_or_else(|e| panic!("without a client certificate: {e}"));
    assert_eq!(anonymous_cert.health().await.0, 503);
    let with_cert = TestIngest::spawn(
        mutual_port,
        &[
            "--mqtt-tls-ca-file",
            ca,
            "--mqtt-tls-client-cert-file",
            pki.client_cert.to_str().unwrap(),
            "--mqtt-tls-client-key-file",
            pki.client_key.to_str().unwrap(),
        ],
    )
    .await;
    with_cert.wait_ready().await;
    assert!(
        with_cert.process.stderr().contains("client certificate"),
        "{}",
        with_cert.process.logs()
    );
}
