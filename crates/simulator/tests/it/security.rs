//! The simulator against a secured broker: the raw QoS 0 writer and the rumqttc client log in
//! with username and password (the repository's ACL lets user `simulator` write every
//! machine's topic), and with TLS QoS 0 goes through rumqttc (the raw writer is plain TCP).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rumqttc::{AsyncClient, Event, Incoming, MqttOptions, QoS};
use test_support::{
    Broker, BrokerOptions, Collector, MOSQUITTO_INSTALL_HINT, free_port, require_tool,
    unique_client_id,
};

use crate::helpers::{WAIT, run};

const SIMULATOR_PASSWORD: &str = "sim-Pw-41aa0c";
const READER_PASSWORD: &str = "reader-Pw-9d1e";

/// Subscribes to `machines/+/scrap` as user `ingest` (the ACL lets it read them) and counts
/// arrivals in the background.
async fn logged_in_counter(port: u16) -> tokio::sync::watch::Receiver<u64> {
    let mut options = MqttOptions::new(unique_client_id("reader"), "127.0.0.1", port);
    options.set_credentials("ingest", READER_PASSWORD);
    options.set_keep_alive(Duration::from_secs(5));
    let (client, mut event_loop) = AsyncClient::new(options, 64);
    let (count_tx, count) = tokio::sync::watch::channel(0_u64);
    let (subscribed_tx, mut subscribed) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        let _client = client.clone();
        client
            .subscribe("machines/+/scrap", QoS::AtLeastOnce)
            .await
            .unwrap();
        while let Ok(event) = event_loop.poll().await {
            match event {
                Event::Incoming(Incoming::SubAck(_)) => {
                    subscribed_tx.send_replace(true);
                }
                Event::Incoming(Incoming::Publish(_)) => count_tx.send_modify(|n| *n += 1),
                _ => {}
            }
        }
    });
    tokio::time::timeout(WAIT, subscribed.wait_for(|s| *s))
        .await
        .expect("reader subscribed")
        .unwrap();
    count
}

fn password_file(dir: &Path) -> PathBuf {
    let tool = require_tool("mosquitto_passwd", MOSQUITTO_INSTALL_HINT);
    let path = dir.join("passwd");
    std::fs::write(
        &path,
        format!("simulator:{SIMULATOR_PASSWORD}\ningest:{READER_PASSWORD}\n"),
    )
    .unwrap();
    let status = std::process::Command::new(tool)
        .arg("-U")
        .arg(&path)
        .status()
        .unwrap();
    assert!(status.success());
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn raw_writer_and_client_log_in_to_a_secured_broker() {
    let dir = tempfile::tempdir().unwrap();
    let acl = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../mosquitto/config/secured/acl");
    let broker = Broker::start_with(BrokerOptions {
        extra_config: format!(
            "allow_anonymous false\npassword_file {}\nacl_file {}\n",
            password_file(dir.path()).display(),
            acl.display()
        ),
        probe_login: Some(("ingest".into(), READER_PASSWORD.into())),
        ..BrokerOptions::default()
    })
    .await;
    let received = logged_in_counter(broker.port()).await;
    let pw_file = dir.path().join("sim.pw");
    std::fs::write(&pw_file, format!("{SIMULATOR_PASSWORD}\n")).unwrap();

    let mut expected = 0;
    for qos in ["0", "1"] {
        let finished = run(
            broker.port(),
            &[
                "--mqtt-username",
                "simulator",
                "--mqtt-password-file",
                pw_file.to_str().unwrap(),
                "--qos",
                qos,
                "--count",
                "50",
                "--rate",
                "2000",
            ],
        )
        .await;
        assert!(finished.status.success(), "qos {qos}\n{}", finished.stderr);
        assert!(
            finished.stderr.contains("user simulator with password"),
            "{}",
            finished.stderr
        );
        assert!(!finished.stderr.contains(SIMULATOR_PASSWORD));
        expected += 50;
        let mut waiter = received.clone();
        let arrived = tokio::time::timeout(WAIT, waiter.wait_for(|n| *n >= expected)).await;
        assert!(
            matches!(arrived, Ok(Ok(_))),
            "qos {qos}: only {} of {expected} arrived",
            *received.borrow()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn qos0_over_tls_goes_through_the_client() {
    let dir = tempfile::tempdir().unwrap();
    let ca_key = rcgen::KeyPair::generate().unwrap();
    let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let issuer = rcgen::Issuer::new(ca_params, ca_key);
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_owned()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
    let cert = params.signed_by(&key, &issuer).unwrap();
    let write = |name: &str, text: String| {
        let path = dir.path().join(name);
        std::fs::write(&path, text).unwrap();
        path
    };
    let ca_file = write("ca.pem", ca.pem());
    let cert_file = write("server.pem", cert.pem());
    let key_file = write("server.key", key.serialize_pem());
    let tls_port = free_port();
    let broker = Broker::start_with(BrokerOptions {
        extra_config: format!(
            "listener {tls_port} 127.0.0.1\ncafile {}\ncertfile {}\nkeyfile {}\n",
            ca_file.display(),
            cert_file.display(),
            key_file.display()
        ),
        ..BrokerOptions::default()
    })
    .await;
    let collector = Collector::start(broker.port(), &["machines/+/scrap"]).await;

    let finished = run(
        tls_port,
        &[
            "--mqtt-tls-ca-file",
            ca_file.to_str().unwrap(),
            "--qos",
            "0",
            "--count",
            "40",
            "--rate",
            "2000",
        ],
    )
    .await;
    assert!(finished.status.success(), "{}", finished.stderr);
    assert!(finished.stderr.contains("TLS (CA"), "{}", finished.stderr);
    collector
        .wait_for(|m| m.len() >= 40, WAIT)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", finished.stderr));
}
