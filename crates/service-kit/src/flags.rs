//! The broker login and TLS flags every binary offers (`--mqtt-username` ...
//! `--mqtt-tls-client-key-file`), flattened into each binary's `Cli`, and their application as
//! `config` overrides under the binary's own key prefix.

use std::path::PathBuf;

use config::ConfigBuilder;
use config::builder::DefaultState;

/// Broker login and TLS flags, for `#[command(flatten)]` in a binary's `Cli`. Each one overrides
/// the file and the environment; the environment variable is the binary's prefix (`INGEST`,
/// `GATEWAY` or `SIMULATOR`) plus `_MQTT_USERNAME` etc.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SecurityFlags {
    /// Broker username [env: <PREFIX>_MQTT_USERNAME]
    /// [default: none, anonymous].
    #[arg(long, value_name = "USER")]
    pub mqtt_username: Option<String>,
    /// Broker password; other local users can see flags, prefer --mqtt-password-file
    /// [env: <PREFIX>_MQTT_PASSWORD].
    #[arg(long, value_name = "PASSWORD")]
    pub mqtt_password: Option<String>,
    /// File holding the broker password; a trailing newline is ignored
    /// [env: <PREFIX>_MQTT_PASSWORD_FILE].
    #[arg(long, value_name = "FILE")]
    pub mqtt_password_file: Option<PathBuf>,
    /// TLS to the broker [env: <PREFIX>_MQTT_TLS] [default: on when a CA file is set].
    #[arg(long, value_name = "BOOL")]
    pub mqtt_tls: Option<bool>,
    /// PEM CA certificates the broker's certificate must chain to; implies TLS
    /// [env: <PREFIX>_MQTT_TLS_CA_FILE].
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_ca_file: Option<PathBuf>,
    /// PEM client certificate, for brokers that require one
    /// [env: <PREFIX>_MQTT_TLS_CLIENT_CERT_FILE].
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_client_cert_file: Option<PathBuf>,
    /// PEM private key of the client certificate [env: <PREFIX>_MQTT_TLS_CLIENT_KEY_FILE].
    #[arg(long, value_name = "FILE")]
    pub mqtt_tls_client_key_file: Option<PathBuf>,
}

impl SecurityFlags {
    /// The given flags as overrides of the `[mqtt]` block's `mqtt.*` keys, for
    /// [`Layers::load`](crate::Layers::load). Flags not given are `None` and leave the lower
    /// layers alone.
    pub fn overrides(&self) -> Vec<crate::layers::Flag<'static>> {
        let text = |v: &Option<String>| v.clone().map(config::Value::from);
        let path = |p: &Option<PathBuf>| path_text(p).map(config::Value::from);
        vec![
            ("mqtt.username", text(&self.mqtt_username)),
            ("mqtt.password", text(&self.mqtt_password)),
            ("mqtt.password_file", path(&self.mqtt_password_file)),
            ("mqtt.tls", self.mqtt_tls.map(config::Value::from)),
            ("mqtt.tls_ca_file", path(&self.mqtt_tls_ca_file)),
            (
                "mqtt.tls_client_cert_file",
                path(&self.mqtt_tls_client_cert_file),
            ),
            (
                "mqtt.tls_client_key_file",
                path(&self.mqtt_tls_client_key_file),
            ),
        ]
    }

    /// Sets the same overrides on a `config` builder under `prefix` plus the
    /// [`SecuritySettings`](crate::SecuritySettings) field name (`"mqtt."` gives
    /// `mqtt.username`, `"mqtt_"` the flat `mqtt_username` of older layouts), for a caller that
    /// layers by hand.
    ///
    /// # Errors
    /// When `prefix` does not make a valid `config` key.
    pub fn set_overrides(
        &self,
        mut builder: ConfigBuilder<DefaultState>,
        prefix: &str,
    ) -> Result<ConfigBuilder<DefaultState>, config::ConfigError> {
        for (key, value) in self.overrides() {
            let field = key.strip_prefix("mqtt.").unwrap_or(key);
            builder = builder.set_override_option(format!("{prefix}{field}"), value)?;
        }
        Ok(builder)
    }
}

fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Parser)]
    struct TestCli {
        #[command(flatten)]
        security: SecurityFlags,
    }

    fn flags() -> SecurityFlags {
        TestCli::parse_from([
            "test",
            "--mqtt-username",
            "user",
            "--mqtt-password-file",
            "/run/secrets/pw",
            "--mqtt-tls",
            "true",
            "--mqtt-tls-ca-file",
            "/etc/ca.pem",
            "--mqtt-tls-client-cert-file",
            "/etc/client.pem",
            "--mqtt-tls-client-key-file",
            "/etc/client.key",
        ])
        .security
    }

    fn build(flags: &SecurityFlags, prefix: &str) -> config::Config {
        let builder = config::Config::builder()
            .set_default(format!("{prefix}username"), "from-lower-layer")
            .unwrap();
        flags
            .set_overrides(builder, prefix)
            .unwrap()
            .build()
            .unwrap()
    }

    #[test]
    fn overrides_land_under_a_section() {
        let config = build(&flags(), "mqtt.");
        assert_eq!(config.get_string("mqtt.username").unwrap(), "user");
        assert!(config.get_bool("mqtt.tls").unwrap());
        assert_eq!(
            config.get_string("mqtt.tls_ca_file").unwrap(),
            "/etc/ca.pem"
        );
        assert_eq!(
            config.get_string("mqtt.password_file").unwrap(),
            "/run/secrets/pw"
        );
        assert_eq!(
            config.get_string("mqtt.tls_client_cert_file").unwrap(),
            "/etc/client.pem"
        );
        assert_eq!(
            config.get_string("mqtt.tls_client_key_file").unwrap(),
            "/etc/client.key"
        );
        assert!(config.get_string("mqtt.password").is_err(), "not given");
        assert!(config.get_string("mqtt_username").is_err());
    }

    #[test]
    fn overrides_land_under_flat_keys() {
        let config = build(&flags(), "mqtt_");
        assert_eq!(config.get_string("mqtt_username").unwrap(), "user");
        assert!(config.get_bool("mqtt_tls").unwrap());
        assert_eq!(
            config.get_string("mqtt_tls_ca_file").unwrap(),
            "/etc/ca.pem"
        );
        assert!(config.get_string("mqtt.username").is_err());
    }

    #[test]
    fn flags_not_given_leave_lower_layers_alone() {
        let config = build(&SecurityFlags::default(), "mqtt.");
        assert_eq!(
            config.get_string("mqtt.username").unwrap(),
            "from-lower-layer"
        );
        assert!(config.get_bool("mqtt.tls").is_err());
    }

    #[test]
    fn password_flag_is_read() {
        let cli = TestCli::parse_from(["test", "--mqtt-password", "pw", "--mqtt-tls", "false"]);
        let config = build(&cli.security, "mqtt.");
        assert_eq!(config.get_string("mqtt.password").unwrap(), "pw");
        assert!(!config.get_bool("mqtt.tls").unwrap());
    }
}
