//! Gateway settings: built-in defaults < TOML file (`--config`) < environment < flags,
//! loaded once at start and validated once, naming the bad setting.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use config::{Config, File, FileFormat};
use rumqttc::MqttOptions;
use serde::{Deserialize, Serialize};
use service_kit::{MqttSecurity, Secret, SecuritySettings, SettingsError};

/// Command-line flags. Every flag overrides the file and the environment.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    about = "scrap-pulse gateway: live aggregates from MQTT to browsers over WebSocket, plus the dashboard",
    after_help = "Every setting, with its environment variable and default: crates/gateway/gateway.example.toml"
)]
pub struct Cli {
    /// TOML settings file (sections [mqtt], [http], [ws]).
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// MQTT broker host [env: MQTT_BROKER] [default: localhost].
    #[arg(long, value_name = "HOST")]
    pub mqtt_host: Option<String>,
    /// MQTT broker port [env: MQTT_PORT] [default: 1883].
    #[arg(long, value_name = "PORT")]
    pub mqtt_port: Option<u16>,
    /// MQTT client id; must differ between replicas [env: GATEWAY_CLIENT_ID]
    /// [default: scrap-pulse-gateway-<pid>-<random>].
    #[arg(long, value_name = "ID")]
    pub client_id: Option<String>,
    /// HTTP listen address [env: GATEWAY_LISTEN] [default: 0.0.0.0:8000].
    #[arg(long, value_name = "ADDR")]
    pub listen: Option<String>,
    /// Serve the dashboard from this directory instead of the copy built into the binary, for
    /// frontend work [env: GATEWAY_STATIC_DIR] [default: none, the built-in copy].
    #[arg(long, value_name = "DIR")]
    pub static_dir: Option<PathBuf>,
    /// Extra origins allowed to open /ws, comma separated, e.g. `https://wall.example:443`;
    /// `*` allows any [env: GATEWAY_ALLOWED_ORIGINS] [default: none, only the gateway's own host].
    #[arg(long, value_name = "ORIGINS", value_delimiter = ',')]
    pub allowed_origins: Option<Vec<String>>,
    /// Most concurrent WebSocket clients; more get 503 [env: GATEWAY_MAX_CLIENTS] [default: 10000].
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,
    /// Seconds between pings to each client [env: GATEWAY_PING_INTERVAL_SECS] [default: 10].
    #[arg(long, value_name = "SECS")]
    pub ping_interval_secs: Option<u64>,
    /// A client silent (no pong, no frame) this long is closed [env: GATEWAY_CLIENT_TIMEOUT_SECS]
    /// [default: 30].
    #[arg(long, value_name = "SECS")]
    pub client_timeout_secs: Option<u64>,
    /// At most one update frame per this many ms; a change after a quiet interval goes out
    /// at once [env: GATEWAY_BATCH_INTERVAL_MS] [default: 20].
    #[arg(long, value_name = "MS")]
    pub batch_interval_ms: Option<u64>,
    /// Frames a client may fall behind before it is resynced with a snapshot
    /// [env: GATEWAY_CLIENT_QUEUE_FRAMES] [default: 256].
    #[arg(long, value_name = "N")]
    pub client_queue_frames: Option<usize>,
    /// Broker login and TLS (`--mqtt-username` ... `--mqtt-tls-client-key-file`).
    #[command(flatten)]
    pub mqtt_security: service_kit::SecurityFlags,
    /// Bearer token required on /ws and /api/aggregates; prefer --auth-token-file
    /// [env: GATEWAY_AUTH_TOKEN] [default: none, open].
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// File holding the bearer token [env: GATEWAY_AUTH_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
}

/// All gateway settings.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Settings {
    /// Broker connection.
    pub mqtt: MqttSettings,
    /// HTTP server and static files.
    pub http: HttpSettings,
    /// WebSocket fan-out.
    pub ws: WsSettings,
}

/// Broker connection settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct MqttSettings {
    /// Broker host.
    pub host: String,
    /// Broker port.
    pub port: u16,
    /// Client id; empty means generated per process (replicas must not share one: the broker
    /// disconnects the older of two clients with the same id).
    pub client_id: String,
    /// MQTT keep-alive in seconds.
    pub keep_alive_secs: u64,
    /// Longest pause between reconnect attempts, in milliseconds.
    pub reconnect_backoff_max_ms: u64,
    /// Largest MQTT packet accepted, in bytes. A larger one would make the client drop the
    /// connection, so it is generous; oversized aggregates are rejected after that.
    pub max_packet_bytes: usize,
    /// After a reconnect, keys not re-delivered as retained messages are forgotten once no
    /// retained message has arrived for this long (milliseconds).
    pub resync_quiet_ms: u64,
    /// Broker username; none connects anonymously.
    pub username: Option<String>,
    /// Broker password (shown as `<redacted>`).
    pub password: Option<Secret>,
    /// File holding the broker password.
    pub password_file: Option<PathBuf>,
    /// TLS on/off; unset means on when `tls_ca_file` is set.
    pub tls: Option<bool>,
    /// PEM CA certificates for the broker's certificate.
    pub tls_ca_file: Option<PathBuf>,
    /// PEM client certificate.
    pub tls_client_cert_file: Option<PathBuf>,
    /// PEM key of the client certificate.
    pub tls_client_key_file: Option<PathBuf>,
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Listen address, `host:port`.
    pub listen: String,
    /// Directory served at `/` instead of the embedded dashboard; none serves the embedded one.
    pub static_dir: Option<PathBuf>,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long a graceful stop waits for open connections, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Bearer token for `/ws` and `/api/aggregates`; none leaves them open.
    pub auth_token: Option<Secret>,
    /// File holding the bearer token.
    pub auth_token_file: Option<PathBuf>,
}

/// WebSocket settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WsSettings {
    /// Origins allowed besides the gateway's own host (`scheme://host[:port]`, or `*`).
    pub allowed_origins: Vec<String>,
    /// Most concurrent clients.
    pub max_clients: usize,
    /// Seconds between pings.
    pub ping_interval_secs: u64,
    /// Seconds without any sign of life after which a client is closed; also how long one
    /// send may stall before the client is dropped as too slow.
    pub client_timeout_secs: u64,
    /// At most one update frame per this many ms (a change after a quiet interval is sent at
    /// once); 0 sends every change at once.
    pub batch_interval_ms: u64,
    /// Frames a client may fall behind before it gets a fresh snapshot instead.
    pub client_queue_frames: usize,
    /// Largest frame accepted from a client, in bytes (clients have nothing to say).
    pub max_frame_bytes: usize,
}

impl Default for MqttSettings {
    fn default() -> Self {
        Self {
            host: "localhost".into(),
            port: 1883,
            client_id: String::new(),
            keep_alive_secs: 10,
            reconnect_backoff_max_ms: 5_000,
            max_packet_bytes: 1024 * 1024,
            resync_quiet_ms: 1_000,
            username: None,
            password: None,
            password_file: None,
            tls: None,
            tls_ca_file: None,
            tls_client_cert_file: None,
            tls_client_key_file: None,
        }
    }
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            listen: "0.0.0.0:8000".into(),
            static_dir: None,
            workers: 0,
            shutdown_timeout_secs: 5,
            auth_token: None,
            auth_token_file: None,
        }
    }
}

impl Default for WsSettings {
    fn default() -> Self {
        Self {
            allowed_origins: Vec::new(),
            max_clients: 10_000,
            ping_interval_secs: 10,
            client_timeout_secs: 30,
            batch_interval_ms: 20,
            client_queue_frames: 256,
            max_frame_bytes: 4096,
        }
    }
}

/// Environment variables and the setting each one sets. `MQTT_BROKER` and `MQTT_PORT` are the
/// names the original service used; the rest carry the `GATEWAY_` prefix.
const ENV_VARS: &[(&str, &str)] = &[
    ("MQTT_BROKER", "mqtt.host"),
    ("MQTT_PORT", "mqtt.port"),
    ("GATEWAY_CLIENT_ID", "mqtt.client_id"),
    ("GATEWAY_MQTT_KEEP_ALIVE_SECS", "mqtt.keep_alive_secs"),
    (
        "GATEWAY_MQTT_RECONNECT_BACKOFF_MAX_MS",
        "mqtt.reconnect_backoff_max_ms",
    ),
    ("GATEWAY_MQTT_MAX_PACKET_BYTES", "mqtt.max_packet_bytes"),
    ("GATEWAY_MQTT_RESYNC_QUIET_MS", "mqtt.resync_quiet_ms"),
    ("GATEWAY_MQTT_USERNAME", "mqtt.username"),
    ("GATEWAY_MQTT_PASSWORD", "mqtt.password"),
    ("GATEWAY_MQTT_PASSWORD_FILE", "mqtt.password_file"),
    ("GATEWAY_MQTT_TLS", "mqtt.tls"),
    ("GATEWAY_MQTT_TLS_CA_FILE", "mqtt.tls_ca_file"),
    (
        "GATEWAY_MQTT_TLS_CLIENT_CERT_FILE",
        "mqtt.tls_client_cert_file",
    ),
    (
        "GATEWAY_MQTT_TLS_CLIENT_KEY_FILE",
        "mqtt.tls_client_key_file",
    ),
    ("GATEWAY_AUTH_TOKEN", "http.auth_token"),
    ("GATEWAY_AUTH_TOKEN_FILE", "http.auth_token_file"),
    ("GATEWAY_LISTEN", "http.listen"),
    ("GATEWAY_STATIC_DIR", "http.static_dir"),
    ("GATEWAY_WORKERS", "http.workers"),
    (
        "GATEWAY_SHUTDOWN_TIMEOUT_SECS",
        "http.shutdown_timeout_secs",
    ),
    ("GATEWAY_ALLOWED_ORIGINS", "ws.allowed_origins"),
    ("GATEWAY_MAX_CLIENTS", "ws.max_clients"),
    ("GATEWAY_PING_INTERVAL_SECS", "ws.ping_interval_secs"),
    ("GATEWAY_CLIENT_TIMEOUT_SECS", "ws.client_timeout_secs"),
    ("GATEWAY_BATCH_INTERVAL_MS", "ws.batch_interval_ms"),
    ("GATEWAY_CLIENT_QUEUE_FRAMES", "ws.client_queue_frames"),
    ("GATEWAY_MAX_FRAME_BYTES", "ws.max_frame_bytes"),
];

impl Settings {
    /// Loads the layers (defaults, `cli.config`, the environment as seen through `env`, the
    /// flags) and validates the result.
    ///
    /// `env` is a parameter so tests need not touch the process environment.
    ///
    /// # Errors
    /// A file or value that cannot be read, or the first invalid setting.
    pub fn load(
        cli: &Cli,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        let mut builder = Config::builder().add_source(Config::try_from(&Settings::default())?);
        if let Some(path) = &cli.config {
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Toml));
        }
        for (var, key) in ENV_VARS {
            let Some(value) = env(var) else { continue };
            builder = if *key == "ws.allowed_origins" {
                builder.set_override(*key, split_list(&value))?
            } else {
                builder.set_override(*key, value)?
            };
        }
        builder = apply_flags(builder, cli)?;
        let settings: Settings = builder.build()?.try_deserialize()?;
        settings.validate()?;
        Ok(settings)
    }

    /// Checks every value once, naming the first bad one.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] for the first setting that cannot work.
    pub fn validate(&self) -> Result<(), SettingsError> {
        if self.mqtt.host.trim().is_empty() {
            return Err(SettingsError::invalid("mqtt.host", "must not be empty"));
        }
        if self.mqtt.port == 0 {
            return Err(SettingsError::invalid("mqtt.port", "must be 1..=65535"));
        }
        if self.mqtt.keep_alive_secs == 0 {
            return Err(SettingsError::invalid(
                "mqtt.keep_alive_secs",
                "must be at least 1",
            ));
        }
        if self.mqtt.reconnect_backoff_max_ms == 0 {
            return Err(SettingsError::invalid(
                "mqtt.reconnect_backoff_max_ms",
                "must be at least 1",
            ));
        }
        if self.mqtt.max_packet_bytes < 1024 {
            return Err(SettingsError::invalid(
                "mqtt.max_packet_bytes",
                "must be at least 1024",
            ));
        }
        self.mqtt_security()?;
        self.auth_token()?;
        self.listen_addr()?;
        if self.ws.max_clients == 0 {
            return Err(SettingsError::invalid(
                "ws.max_clients",
                "must be at least 1",
            ));
        }
        if self.ws.ping_interval_secs == 0 {
            return Err(SettingsError::invalid(
                "ws.ping_interval_secs",
                "must be at least 1",
            ));
        }
        if self.ws.client_timeout_secs <= self.ws.ping_interval_secs {
            return Err(SettingsError::invalid(
                "ws.client_timeout_secs",
                "must be longer than ws.ping_interval_secs, or live clients would be closed",
            ));
        }
        if self.ws.batch_interval_ms > 10_000 {
            return Err(SettingsError::invalid(
                "ws.batch_interval_ms",
                "must be at most 10000",
            ));
        }
        if self.ws.client_queue_frames == 0 {
            return Err(SettingsError::invalid(
                "ws.client_queue_frames",
                "must be at least 1",
            ));
        }
        if self.ws.max_frame_bytes < 125 {
            return Err(SettingsError::invalid(
                "ws.max_frame_bytes",
                "must be at least 125 (a control frame)",
            ));
        }
        for origin in &self.ws.allowed_origins {
            if origin != "*" && crate::origin::normalize_origin(origin).is_none() {
                return Err(SettingsError::invalid(
                    "ws.allowed_origins",
                    format!("{origin:?} is not `scheme://host[:port]` or `*`"),
                ));
            }
        }
        Ok(())
    }

    /// The address to bind.
    ///
    /// # Errors
    /// When `http.listen` does not resolve to a socket address.
    pub fn listen_addr(&self) -> Result<SocketAddr, SettingsError> {
        self.http
            .listen
            .to_socket_addrs()
            .ok()
            .and_then(|mut addrs| addrs.next())
            .ok_or_else(|| {
                SettingsError::invalid(
                    "http.listen",
                    format!("{:?} is not a `host:port` address", self.http.listen),
                )
            })
    }

    /// Broker login and TLS, with their files read.
    ///
    /// # Errors
    /// [`SettingsError::Security`] naming the bad `mqtt.*` setting.
    pub fn mqtt_security(&self) -> Result<MqttSecurity, SettingsError> {
        Ok(SecuritySettings {
            username: self.mqtt.username.clone(),
            password: self.mqtt.password.clone(),
            password_file: self.mqtt.password_file.clone(),
            tls: self.mqtt.tls,
            tls_ca_file: self.mqtt.tls_ca_file.clone(),
            tls_client_cert_file: self.mqtt.tls_client_cert_file.clone(),
            tls_client_key_file: self.mqtt.tls_client_key_file.clone(),
        }
        .load("mqtt.")?)
    }

    /// The bearer token for `/ws` and `/api/aggregates`, from `http.auth_token` or the file
    /// `http.auth_token_file` (a trailing newline is ignored); `None` when neither is set.
    ///
    /// # Errors
    /// Both set, an unreadable file, or an empty token.
    pub fn auth_token(&self) -> Result<Option<Secret>, SettingsError> {
        let token = match (&self.http.auth_token, &self.http.auth_token_file) {
            (Some(_), Some(_)) => {
                return Err(SettingsError::invalid(
                    "http.auth_token_file",
                    "set either http.auth_token or http.auth_token_file, not both",
                ));
            }
            (Some(token), None) => token.clone(),
            (None, Some(path)) => {
                let text = std::fs::read_to_string(path).map_err(|e| {
                    SettingsError::invalid(
                        "http.auth_token_file",
                        format!("{}: {e}", path.display()),
                    )
                })?;
                Secret::new(text.trim_end_matches(['\r', '\n']))
            }
            (None, None) => return Ok(None),
        };
        if token.is_empty() {
            return Err(SettingsError::invalid(
                "http.auth_token",
                "must not be empty",
            ));
        }
        // Tokens travel in headers and query strings: visible ASCII only keeps both simple.
        if !token.expose().bytes().all(|b| b.is_ascii_graphic()) {
            return Err(SettingsError::invalid(
                "http.auth_token",
                "must be printable ASCII without spaces",
            ));
        }
        Ok(Some(token))
    }

    /// The MQTT options: clean session, so every (re)connect gets the retained state anew;
    /// login and TLS from `mqtt.*`.
    ///
    /// # Errors
    /// As [`Settings::mqtt_security`].
    pub fn mqtt_options(&self) -> Result<MqttOptions, SettingsError> {
        let client_id = if self.mqtt.client_id.is_empty() {
            generated_client_id()
        } else {
            self.mqtt.client_id.clone()
        };
        let mut options = MqttOptions::new(client_id, self.mqtt.host.clone(), self.mqtt.port);
        options.set_clean_session(true);
        options.set_keep_alive(Duration::from_secs(self.mqtt.keep_alive_secs));
        options.set_max_packet_size(self.mqtt.max_packet_bytes, self.mqtt.max_packet_bytes);
        self.mqtt_security()?.apply_to(&mut options);
        Ok(options)
    }

    /// Pause ceiling between reconnect attempts.
    pub fn reconnect_backoff_max(&self) -> Duration {
        Duration::from_millis(self.mqtt.reconnect_backoff_max_ms)
    }

    /// Quiet time that ends the retained replay after a reconnect.
    pub fn resync_quiet(&self) -> Duration {
        Duration::from_millis(self.mqtt.resync_quiet_ms)
    }

    /// Interval between pings.
    pub fn ping_interval(&self) -> Duration {
        Duration::from_secs(self.ws.ping_interval_secs)
    }

    /// Silence after which a client is closed.
    pub fn client_timeout(&self) -> Duration {
        Duration::from_secs(self.ws.client_timeout_secs)
    }

    /// Batching interval of update frames.
    pub fn batch_interval(&self) -> Duration {
        Duration::from_millis(self.ws.batch_interval_ms)
    }

    /// Graceful stop timeout of the HTTP server.
    pub fn shutdown_timeout(&self) -> Duration {
        Duration::from_secs(self.http.shutdown_timeout_secs)
    }
}

fn apply_flags(
    mut builder: config::ConfigBuilder<config::builder::DefaultState>,
    cli: &Cli,
) -> Result<config::ConfigBuilder<config::builder::DefaultState>, config::ConfigError> {
    if let Some(v) = &cli.mqtt_host {
        builder = builder.set_override("mqtt.host", v.as_str())?;
    }
    if let Some(v) = cli.mqtt_port {
        builder = builder.set_override("mqtt.port", u64::from(v))?;
    }
    if let Some(v) = &cli.client_id {
        builder = builder.set_override("mqtt.client_id", v.as_str())?;
    }
    if let Some(v) = &cli.listen {
        builder = builder.set_override("http.listen", v.as_str())?;
    }
    builder = cli.mqtt_security.set_overrides(builder, "mqtt.")?;
    let texts = [
        ("http.auth_token", cli.auth_token.clone()),
        ("http.auth_token_file", path_text(&cli.auth_token_file)),
    ];
    for (key, value) in texts {
        if let Some(v) = value {
            builder = builder.set_override(key, v)?;
        }
    }
    if let Some(v) = &cli.static_dir {
        builder = builder.set_override("http.static_dir", v.to_string_lossy().into_owned())?;
    }
    if let Some(v) = &cli.allowed_origins {
        let list: Vec<String> = v
            .iter()
            .map(|s| s.trim().to_owned())
            .filter(|s| !s.is_empty())
            .collect();
        builder = builder.set_override("ws.allowed_origins", list)?;
    }
    let numbers = [
        ("ws.max_clients", cli.max_clients.map(|v| v as u64)),
        ("ws.ping_interval_secs", cli.ping_interval_secs),
        ("ws.client_timeout_secs", cli.client_timeout_secs),
        ("ws.batch_interval_ms", cli.batch_interval_ms),
        (
            "ws.client_queue_frames",
            cli.client_queue_frames.map(|v| v as u64),
        ),
    ];
    for (key, value) in numbers {
        if let Some(v) = value {
            builder = builder.set_override(key, v)?;
        }
    }
    Ok(builder)
}

/// `a, b,,c` -> `["a", "b", "c"]`.
fn path_text(path: &Option<PathBuf>) -> Option<String> {
    path.as_ref().map(|p| p.to_string_lossy().into_owned())
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
        .collect()
}

/// `scrap-pulse-gateway-<pid>-<nanos>`: unique per process, so replicas never share an id.
fn generated_client_id() -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!("scrap-pulse-gateway-{}-{nanos:x}", std::process::id())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn login_and_token_come_from_env_and_never_show() {
        let s = Settings::load(
            &Cli::default(),
            env_of(&[
                ("GATEWAY_MQTT_USERNAME", "gateway"),
                ("GATEWAY_MQTT_PASSWORD", "gw-pass-5521"),
                ("GATEWAY_AUTH_TOKEN", "tok-9913"),
            ]),
        )
        .unwrap();
        let login = s.mqtt_options().unwrap().credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("gateway", "gw-pass-5521")
        );
        assert!(s.auth_token().unwrap().unwrap().matches(b"tok-9913"));
        let shown = format!("{s:?} {}", s.mqtt_security().unwrap());
        assert!(
            !shown.contains("gw-pass-5521") && !shown.contains("tok-9913"),
            "{shown}"
        );

        let both = env_of(&[
            ("GATEWAY_AUTH_TOKEN", "a"),
            ("GATEWAY_AUTH_TOKEN_FILE", "/nonexistent"),
        ]);
        let err = Settings::load(&Cli::default(), both).unwrap_err();
        assert!(err.to_string().contains("http.auth_token_file"), "{err}");
        let err =
            Settings::load(&Cli::default(), env_of(&[("GATEWAY_MQTT_TLS", "true")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.tls_ca_file"), "{err}");
    }

    #[test]
    fn defaults_match_the_contract() {
        let s = Settings::load(&Cli::default(), env_of(&[])).unwrap();
        assert_eq!(s.mqtt.host, "localhost");
        assert_eq!(s.mqtt.port, 1883);
        assert_eq!(s.http.listen, "0.0.0.0:8000");
        assert_eq!(s.http.static_dir, None);
        assert_eq!(s.ws.max_clients, 10_000);
        assert_eq!(s.ws.ping_interval_secs, 10);
        assert_eq!(s.ws.client_timeout_secs, 30);
        assert_eq!(s.ws.batch_interval_ms, 20);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn the_example_file_lists_the_defaults() {
        let cli = Cli {
            config: Some(PathBuf::from(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/gateway.example.toml"
            ))),
            ..Cli::default()
        };
        let s = Settings::load(&cli, env_of(&[])).unwrap();
        assert_eq!(s, Settings::default());
        let text = std::fs::read_to_string(cli.config.unwrap()).unwrap();
        for (var, _) in ENV_VARS {
            assert!(text.contains(var), "{var} is not documented in the example");
        }
    }

    #[test]
    fn layers_apply_file_then_env_then_flags() {
        let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        writeln!(
            file,
            "[mqtt]\nhost = \"file-host\"\nport = 1000\n[ws]\nmax_clients = 7\nping_interval_secs = 3\n[http]\nlisten = \"127.0.0.1:1\""
        )
        .unwrap();
        let cli = Cli {
            config: Some(file.path().to_path_buf()),
            mqtt_port: Some(3000),
            allowed_origins: Some(vec!["http://a.example".into()]),
            ..Cli::default()
        };
        let env = env_of(&[
            ("MQTT_BROKER", "env-host"),
            ("MQTT_PORT", "2000"),
            ("GATEWAY_LISTEN", "127.0.0.1:9"),
            (
                "GATEWAY_ALLOWED_ORIGINS",
                "http://x.example, http://y.example",
            ),
        ]);
        let s = Settings::load(&cli, env).unwrap();
        assert_eq!(s.mqtt.host, "env-host", "env beats file");
        assert_eq!(s.mqtt.port, 3000, "flag beats env");
        assert_eq!(s.ws.max_clients, 7, "file beats default");
        assert_eq!(s.ws.ping_interval_secs, 3);
        assert_eq!(s.http.listen, "127.0.0.1:9");
        assert_eq!(s.ws.allowed_origins, vec!["http://a.example".to_owned()]);
    }

    #[test]
    fn env_lists_are_comma_separated() {
        let env = env_of(&[(
            "GATEWAY_ALLOWED_ORIGINS",
            "http://x.example, https://y:8443,",
        )]);
        let s = Settings::load(&Cli::default(), env).unwrap();
        assert_eq!(
            s.ws.allowed_origins,
            vec!["http://x.example", "https://y:8443"]
        );
    }

    #[test]
    fn bad_settings_are_named() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("MQTT_PORT", "0")], "mqtt.port"),
            (&[("MQTT_BROKER", " ")], "mqtt.host"),
            (&[("GATEWAY_LISTEN", "nonsense")], "http.listen"),
            (&[("GATEWAY_MAX_CLIENTS", "0")], "ws.max_clients"),
            (
                &[("GATEWAY_PING_INTERVAL_SECS", "30")],
                "ws.client_timeout_secs",
            ),
            (
                &[("GATEWAY_ALLOWED_ORIGINS", "not an origin")],
                "ws.allowed_origins",
            ),
        ];
        for (env, name) in cases {
            let err = Settings::load(&Cli::default(), env_of(env)).unwrap_err();
            assert!(err.to_string().contains(name), "{env:?}: {err}");
        }
        let err = Settings::load(&Cli::default(), env_of(&[("MQTT_PORT", "abc")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.port"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        writeln!(file, "[ws]\nmax_clientz = 7").unwrap();
        let cli = Cli {
            config: Some(file.path().to_path_buf()),
            ..Cli::default()
        };
        let err = Settings::load(&cli, env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("max_clientz"), "{err}");
    }

    #[test]
    fn mqtt_options_use_a_clean_session_and_unique_ids() {
        let s = Settings::default();
        let a = s.mqtt_options().unwrap();
        assert!(a.clean_session());
        assert!(a.client_id().starts_with("scrap-pulse-gateway-"));
        let mut named = Settings::default();
        named.mqtt.client_id = "gw-1".into();
        assert_eq!(named.mqtt_options().unwrap().client_id(), "gw-1");
    }

    #[test]
    fn flags_parse() {
        let cli = Cli::try_parse_from([
            "gateway",
            "--mqtt-host",
            "h",
            "--mqtt-port",
            "1",
            "--listen",
            "127.0.0.1:0",
            "--allowed-origins",
            "http://a,http://b",
            "--max-clients",
            "5",
            "--static-dir",
            "/tmp",
        ])
        .unwrap();
        let s = Settings::load(&cli, env_of(&[])).unwrap();
        assert_eq!(s.mqtt.host, "h");
        assert_eq!(s.ws.allowed_origins, vec!["http://a", "http://b"]);
        assert_eq!(s.ws.max_clients, 5);
        assert_eq!(s.http.static_dir, Some(PathBuf::from("/tmp")));
    }
}
