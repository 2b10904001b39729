//! Broker login (username, password or password file) and TLS (CA file, optional client
//! certificate and key) of the `[mqtt]` section: their checks, the files read once at start-up
//! (so a bad CA or key fails there, naming its setting), and their application to rumqttc.

use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rumqttc::{MqttOptions, TlsConfiguration, Transport};
use rustls::client::WantsClientCert;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ClientConfig, ConfigBuilder, RootCertStore};

use crate::{MqttSettings, Secret, SettingsError};

/// Checked login and TLS, ready for [`MqttSecurity::apply_to`]. `Debug` and `Display` show
/// the username and file names, never the password or key.
#[derive(Clone, Default)]
pub struct MqttSecurity {
    username: Option<String>,
    password: Option<Secret>,
    tls: Option<Tls>,
}

#[derive(Clone)]
struct Tls {
    config: Arc<ClientConfig>,
    ca_file: PathBuf,
    client_cert_file: Option<PathBuf>,
}

/// The error for the `[mqtt]` key `field`.
fn invalid(field: &str, message: impl Into<String>) -> SettingsError {
    SettingsError::invalid(format!("mqtt.{field}"), message)
}

impl MqttSecurity {
    /// Checks the login and TLS keys of `mqtt` and reads their files.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] naming the first key that cannot work: a password without a
    /// username, both `password` and `password_file`, an unreadable or empty file, a CA file
    /// without certificates, a client certificate without its key, TLS asked for without a CA.
    pub fn load(mqtt: &MqttSettings) -> Result<Self, SettingsError> {
        let (username, password) = login(mqtt)?;
        let tls = tls(mqtt)?;
        Ok(Self {
            username,
            password,
            tls,
        })
    }
}

/// The username and password, each `None` when unset or empty.
fn login(mqtt: &MqttSettings) -> Result<(Option<String>, Option<Secret>), SettingsError> {
    let username = mqtt.username.clone().filter(|u| !u.is_empty());
    let password = match (&mqtt.password, &mqtt.password_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "password_file",
                "set either mqtt.password or mqtt.password_file, not both",
            ));
        }
        (Some(p), None) => Some(p.clone()).filter(|p| !p.is_empty()),
        (None, Some(path)) => {
            Some(read_password_file(path).map_err(|m| invalid("password_file", m))?)
        }
        (None, None) => None,
    };
    if password.is_some() && username.is_none() {
        return Err(invalid(
            "username",
            "must be set when a password is (MQTT 3.1.1 has no password-only login)",
        ));
    }
    if let Some(name) = &username
        && name.len() > usize::from(u16::MAX)
    {
        return Err(invalid("username", "is longer than 65535 bytes"));
    }
    Ok((username, password))
}

/// TLS when it is on (`tls`, or else a CA file set), with its CA file read and the client
/// certificate loaded; `None` for plain TCP, which allows no TLS file.
fn tls(mqtt: &MqttSettings) -> Result<Option<Tls>, SettingsError> {
    if !mqtt.tls.unwrap_or(mqtt.tls_ca_file.is_some()) {
        if mqtt.tls_ca_file.is_some() {
            return Err(invalid("tls", "is false but mqtt.tls_ca_file is set"));
        }
        if mqtt.tls_client_cert_file.is_some() || mqtt.tls_client_key_file.is_some() {
            return Err(invalid(
                "tls_client_cert_file",
                "a client certificate needs TLS: set mqtt.tls_ca_file",
            ));
        }
        return Ok(None);
    }
    let Some(ca_file) = &mqtt.tls_ca_file else {
        return Err(invalid(
            "tls_ca_file",
            "is required with TLS; for a publicly signed broker certificate use the system \
             bundle, e.g. /etc/ssl/certs/ca-certificates.crt",
        ));
    };
    let roots = read_roots(ca_file).map_err(|m| invalid("tls_ca_file", m))?;
    // The provider is named rather than taken from crate features, so another crate
    // enabling a second provider cannot make the builder panic.
    let builder =
        ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .map_err(|e| invalid("tls", e.to_string()))?
            .with_root_certificates(roots);
    Ok(Some(Tls {
        config: Arc::new(client_auth(mqtt, builder)?),
        ca_file: ca_file.clone(),
        client_cert_file: mqtt.tls_client_cert_file.clone(),
    }))
}

/// Finishes `builder` with the client certificate and key, which come as a pair or not
/// at all.
fn client_auth(
    mqtt: &MqttSettings,
    builder: ConfigBuilder<ClientConfig, WantsClientCert>,
) -> Result<ClientConfig, SettingsError> {
    match (&mqtt.tls_client_cert_file, &mqtt.tls_client_key_file) {
        (None, None) => Ok(builder.with_no_client_auth()),
        (Some(cert_file), Some(key_file)) => {
            let chain = read_certs(cert_file).map_err(|m| invalid("tls_client_cert_file", m))?;
            let key = PrivateKeyDer::from_pem_file(key_file).map_err(|e| {
                invalid(
                    "tls_client_key_file",
                    format!("{}: no PEM private key: {e}", key_file.display()),
                )
            })?;
            builder
                .with_client_auth_cert(chain, key)
                .map_err(|e| invalid("tls_client_key_file", e.to_string()))
        }
        (Some(_), None) => Err(invalid(
            "tls_client_key_file",
            "is required with mqtt.tls_client_cert_file",
        )),
        (None, Some(_)) => Err(invalid(
            "tls_client_cert_file",
            "is required with mqtt.tls_client_key_file",
        )),
    }
}

/// The password in `path`. Secret files are usually written with a final newline that is not
/// part of the password: one `\n` or `\r\n` at the end is dropped, nothing else.
fn read_password_file(path: &Path) -> Result<Secret, String> {
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let password = text.strip_suffix('\n').unwrap_or(&text);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(format!("{} is empty", path.display()));
    }
    Ok(Secret::new(password))
}

/// The CA certificates of a PEM file as trust roots; an error when none is usable.
fn read_roots(path: &Path) -> Result<RootCertStore, String> {
    let mut roots = RootCertStore::empty();
    let (added, _unparsable) = roots.add_parsable_certificates(read_certs(path)?);
    if added == 0 {
        return Err(format!("{} holds no usable CA certificate", path.display()));
    }
    Ok(roots)
}

/// Every certificate of a PEM file; an error when there is none.
fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let certs = CertificateDer::pem_slice_iter(&bytes)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("{}: {e}", path.display()))?;
    if certs.is_empty() {
        return Err(format!("{} holds no PEM certificate", path.display()));
    }
    Ok(certs)
}

impl MqttSecurity {
    /// Sets the login and, with TLS, the transport on `options`. The broker host in `options`
    /// is the name the server certificate must carry (a DNS name or an IP address).
    pub fn apply_to(&self, options: &mut MqttOptions) {
        if let Some(username) = &self.username {
            let password = self.password.as_ref().map_or("", Secret::expose);
            options.set_credentials(username.clone(), password);
        }
        if let Some(tls) = &self.tls {
            options.set_transport(Transport::tls_with_config(TlsConfiguration::Rustls(
                tls.config.clone(),
            )));
        }
    }

    /// The username, if any.
    pub fn username(&self) -> Option<&str> {
        self.username.as_deref()
    }

    /// The password, if any, for a writer that encodes its own CONNECT.
    pub fn password(&self) -> Option<&Secret> {
        self.password.as_ref()
    }

    /// Whether the connection is TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }
}

impl fmt::Debug for MqttSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("MqttSecurity")
            .field("username", &self.username)
            .field("password", &self.password)
            .field("tls_ca_file", &self.tls.as_ref().map(|t| &t.ca_file))
            .field(
                "tls_client_cert_file",
                &self.tls.as_ref().and_then(|t| t.client_cert_file.as_ref()),
            )
            .finish()
    }
}

/// One line for the start-up log, e.g. `user ingest with password, TLS (CA /etc/ca.pem)`.
impl fmt::Display for MqttSecurity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (&self.username, &self.password) {
            (Some(user), Some(_)) => write!(f, "user {user} with password")?,
            (Some(user), None) => write!(f, "user {user} without password")?,
            _ => f.write_str("anonymous")?,
        }
        match &self.tls {
            Some(tls) => {
                write!(f, ", TLS (CA {}", tls.ca_file.display())?;
                if let Some(cert) = &tls.client_cert_file {
                    write!(f, ", client certificate {}", cert.display())?;
                }
                f.write_str(")")
            }
            None => f.write_str(", plain TCP"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWORD: &str = "s3cr3t-pass-word";

    fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
        let path = dir.join(name);
        // unwrap: a temp dir of our own.
        std::fs::write(&path, text).unwrap();
        path
    }

    struct Pki {
        ca: String,
        client_cert: String,
        client_key: String,
    }

    fn pki() -> Pki {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca_params = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca_params, ca_key);
        let client_key = rcgen::KeyPair::generate().unwrap();
        let client = rcgen::CertificateParams::new(vec!["client".to_owned()])
            .unwrap()
            .signed_by(&client_key, &issuer)
            .unwrap();
        Pki {
            ca: ca.pem(),
            client_cert: client.pem(),
            client_key: client_key.serialize_pem(),
        }
    }

    #[test]
    fn nothing_set_is_anonymous_plain_tcp() {
        let security = MqttSecurity::load(&MqttSettings::default()).unwrap();
        assert_eq!(security.username(), None);
        assert!(!security.tls());
        assert_eq!(security.to_string(), "anonymous, plain TCP");
    }

    #[test]
    fn password_comes_from_the_file_without_its_newline_and_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let file = write(dir.path(), "pw", &format!("{PASSWORD}\n"));
        let settings = MqttSettings {
            username: Some("ingest".into()),
            password_file: Some(file),
            ..MqttSettings::default()
        };
        let security = MqttSecurity::load(&settings).unwrap();
        assert_eq!(security.password().map(Secret::expose), Some(PASSWORD));
        for shown in [
            format!("{security:?}"),
            security.to_string(),
            format!("{settings:?}"),
        ] {
            assert!(!shown.contains(PASSWORD), "{shown}");
        }
        assert!(security.to_string().contains("ingest"));

        let inline = MqttSettings {
            username: Some("ingest".into()),
            password: Some(Secret::new(PASSWORD)),
            ..MqttSettings::default()
        };
        assert!(!format!("{inline:?}").contains(PASSWORD));
        let security = MqttSecurity::load(&inline).unwrap();
        assert!(!format!("{security:?} {security}").contains(PASSWORD));
        let mut options = MqttOptions::new("id", "localhost", 1883);
        security.apply_to(&mut options);
        let login = options.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("ingest", PASSWORD)
        );
    }

    #[test]
    fn a_password_file_loses_one_final_line_ending_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        for (text, password) in [
            ("pw", "pw"),
            ("pw\n", "pw"),
            ("pw\r\n", "pw"),
            (" pw \n\n", " pw \n"),
            ("p\r\nw\n", "p\r\nw"),
        ] {
            let file = write(dir.path(), "pw", text);
            let read = read_password_file(&file).unwrap();
            assert_eq!(read.expose(), password, "from {text:?}");
        }
        let blank = write(dir.path(), "blank", "\r\n");
        let err = read_password_file(&blank).unwrap_err();
        assert!(err.ends_with("is empty"), "{err}");
    }

    #[test]
    fn tls_loads_ca_and_client_certificate() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki();
        let settings = MqttSettings {
            tls_ca_file: Some(write(dir.path(), "ca.pem", &pki.ca)),
            tls_client_cert_file: Some(write(dir.path(), "client.pem", &pki.client_cert)),
            tls_client_key_file: Some(write(dir.path(), "client.key", &pki.client_key)),
            ..MqttSettings::default()
        };
        let security = MqttSecurity::load(&settings).unwrap();
        assert!(security.tls(), "a CA file implies TLS");
        let shown = format!("{security:?} {security}");
        assert!(
            shown.contains("ca.pem") && shown.contains("client.pem"),
            "{shown}"
        );
        assert!(!shown.contains("PRIVATE KEY"), "{shown}");
        let mut options = MqttOptions::new("id", "localhost", 8883);
        security.apply_to(&mut options);
        assert!(matches!(options.transport(), Transport::Tls(_)));
    }

    #[test]
    fn bad_settings_are_named_with_the_prefix() {
        let dir = tempfile::tempdir().unwrap();
        let pki = pki();
        let ca = write(dir.path(), "ca.pem", &pki.ca);
        let not_pem = write(dir.path(), "junk.pem", "not a certificate\n");
        let empty = write(dir.path(), "empty", "\n");
        let cases: Vec<(MqttSettings, &str)> = vec![
            (
                MqttSettings {
                    password: Some(Secret::new("x")),
                    ..MqttSettings::default()
                },
                "mqtt.username",
            ),
            (
                MqttSettings {
                    username: Some("u".into()),
                    password: Some(Secret::new("x")),
                    password_file: Some(empty.clone()),
                    ..MqttSettings::default()
                },
                "mqtt.password_file",
            ),
            (
                MqttSettings {
                    username: Some("u".into()),
                    password_file: Some(empty),
                    ..MqttSettings::default()
                },
                "mqtt.password_file",
            ),
            (
                MqttSettings {
                    username: Some("u".into()),
                    password_file: Some(dir.path().join("missing")),
                    ..MqttSettings::default()
                },
                "mqtt.password_file",
            ),
            (
                MqttSettings {
                    tls: Some(true),
                    ..MqttSettings::default()
                },
                "mqtt.tls_ca_file",
            ),
            (
                MqttSettings {
                    tls_ca_file: Some(not_pem.clone()),
                    ..MqttSettings::default()
                },
                "mqtt.tls_ca_file",
            ),
            (
                MqttSettings {
                    tls: Some(false),
                    tls_ca_file: Some(ca.clone()),
                    ..MqttSettings::default()
                },
                "mqtt.tls",
            ),
            (
                MqttSettings {
                    tls_ca_file: Some(ca.clone()),
                    tls_client_cert_file: Some(ca.clone()),
                    ..MqttSettings::default()
                },
                "mqtt.tls_client_key_file",
            ),
            (
                MqttSettings {
                    tls_ca_file: Some(ca.clone()),
                    tls_client_cert_file: Some(ca.clone()),
                    tls_client_key_file: Some(not_pem),
                    ..MqttSettings::default()
                },
                "mqtt.tls_client_key_file",
            ),
            (
                MqttSettings {
                    tls_client_key_file: Some(ca),
                    ..MqttSettings::default()
                },
                "mqtt.tls_client_cert_file",
            ),
        ];
        for (settings, setting) in cases {
            let err = MqttSecurity::load(&settings).unwrap_err();
            assert!(
                err.to_string()
                    .starts_with(&format!("invalid setting `{setting}`: ")),
                "{err}"
            );
        }
    }
}
