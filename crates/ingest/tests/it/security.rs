//! Broker TLS: ingest connects with a CA generated at test time, with and without a client
//! certificate, and is refused (and says why) when the broker's certificate is not trusted.
//! The secured broker with logins and the repository's ACL, which needs the gateway as well,
//! is an end-to-end test (`crates/e2e/tests/it/security.rs`).

use std::net::{IpAddr, Ipv4Addr};
use std::path::{Path, PathBuf};

use test_support::{Broker, BrokerOptions, free_port};

use crate::helpers::{TestIngest, WAIT};

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
