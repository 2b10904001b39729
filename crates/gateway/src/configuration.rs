//! Gateway settings: built-in defaults < TOML file (`--config`) < environment < flags,
//! layered by [`service_kit::Layers`] and validated once into [`GatewayConfig`], which the
//! rest of the gateway takes (files such as the token are read there, and only there).
//!
//! File sections `[mqtt]` (the block ingest and simulator share, plus the gateway's own
//! broker knobs), `[http]` and `[ws]`; every key with its default and environment names is in
//! `gateway.example.toml`.

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;
use rumqttc::MqttOptions;
use serde::{Deserialize, Serialize};
use service_kit::{
    ClientId, CommonFlags, Flag, FlagValue, Layers, MqttConfig, Secret, SettingsError, at_least,
    in_range,
};

/// Command-line flags. Every flag overrides the file and the environment. Numbers are signed
/// so that a negative value reaches its setting's check.
#[derive(Debug, Default, Clone, Parser)]
#[command(
    name = "gateway",
    version,
    allow_negative_numbers = true,
    about = "scrap-pulse gateway: live aggregates from MQTT to browsers over WebSocket, plus the dashboard",
    after_help = "Every setting, with its environment variable and default: crates/gateway/gateway.example.toml"
)]
pub struct Cli {
    /// `--config` (sections [mqtt], [http], [ws]), broker address, client id (must differ
    /// between replicas; default scrap-pulse-gateway-<pid>-<random>), keep-alive, login, TLS.
    #[command(flatten)]
    pub common: CommonFlags,
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
    pub max_clients: Option<i64>,
    /// Seconds between pings to each client [env: GATEWAY_PING_INTERVAL_SECS] [default: 10].
    #[arg(long, value_name = "SECS")]
    pub ping_interval_secs: Option<i64>,
    /// A client silent (no pong, no frame) this long is closed [env: GATEWAY_CLIENT_TIMEOUT_SECS]
    /// [default: 30].
    #[arg(long, value_name = "SECS")]
    pub client_timeout_secs: Option<i64>,
    /// At most one update frame per this many ms; a change after a quiet interval goes out
    /// at once [env: GATEWAY_BATCH_INTERVAL_MS] [default: 20].
    #[arg(long, value_name = "MS")]
    pub batch_interval_ms: Option<i64>,
    /// Frames a client may fall behind before it is resynced with a snapshot
    /// [env: GATEWAY_CLIENT_QUEUE_FRAMES] [default: 256].
    #[arg(long, value_name = "N")]
    pub client_queue_frames: Option<i64>,
    /// Bearer token required on /ws and /api/aggregates; prefer --auth-token-file
    /// [env: GATEWAY_AUTH_TOKEN] [default: none, open].
    #[arg(long, value_name = "TOKEN")]
    pub auth_token: Option<String>,
    /// File holding the bearer token [env: GATEWAY_AUTH_TOKEN_FILE].
    #[arg(long, value_name = "FILE")]
    pub auth_token_file: Option<PathBuf>,
}

impl Cli {
    /// Every flag as an override of its key (`None`: not given).
    fn overrides(&self) -> Vec<Flag<'static>> {
        let int = |v: Option<i64>| v.map(FlagValue::from);
        let path = |p: &Option<PathBuf>| {
            p.as_ref()
                .map(|p| FlagValue::from(p.to_string_lossy().into_owned()))
        };
        let origins = self.allowed_origins.as_ref().map(|list| {
            FlagValue::from(
                list.iter()
                    .map(|s| s.trim().to_owned())
                    .filter(|s| !s.is_empty())
                    .collect::<Vec<_>>(),
            )
        });
        let mut flags = self.common.overrides();
        flags.extend([
            ("http.listen", self.listen.clone().map(FlagValue::from)),
            ("http.static_dir", path(&self.static_dir)),
            (
                "http.auth_token",
                self.auth_token.clone().map(FlagValue::from),
            ),
            ("http.auth_token_file", path(&self.auth_token_file)),
            ("ws.allowed_origins", origins),
            ("ws.max_clients", int(self.max_clients)),
            ("ws.ping_interval_secs", int(self.ping_interval_secs)),
            ("ws.client_timeout_secs", int(self.client_timeout_secs)),
            ("ws.batch_interval_ms", int(self.batch_interval_ms)),
            ("ws.client_queue_frames", int(self.client_queue_frames)),
        ]);
        flags
    }
}

/// All gateway settings as layered, before validation; `Default` is the built-in layer.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Settings {
    /// Broker connection.
    pub mqtt: MqttSettings,
    /// HTTP server and static files.
    pub http: HttpSettings,
    /// WebSocket fan-out.
    pub ws: WsSettings,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            mqtt: MqttSettings {
                keep_alive_secs: 10,
                ..MqttSettings::default()
            },
            http: HttpSettings::default(),
            ws: WsSettings::default(),
        }
    }
}

service_kit::mqtt_block! {
    /// Broker connection settings: the `[mqtt]` block all binaries share (an empty client id
    /// is generated per process: replicas must not share one, the broker disconnects the older
    /// of two clients with the same id), plus the gateway's own knobs.
    pub struct MqttSettings {
        /// Longest pause between reconnect attempts, in milliseconds.
        pub reconnect_backoff_max_ms: u64 = 5_000,
        /// Largest MQTT packet accepted, in bytes. A larger one would make the client drop the
        /// connection, so it is generous; oversized aggregates are rejected after that.
        pub max_packet_bytes: usize = 1024 * 1024,
        /// After a reconnect, keys not re-delivered as retained messages are forgotten once no
        /// retained message has arrived for this long (milliseconds).
        pub resync_quiet_ms: u64 = 1_000,
    }
}

/// HTTP server settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct HttpSettings {
    /// Listen address, `host:port`.
    pub listen: String,
    /// Directory served at `/` instead of the embedded dashboard; none serves the embedded one.
    pub static_dir: Option<PathBuf>,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// How long a graceful stop waits for open connections, in seconds.
    pub shutdown_timeout_secs: u64,
    /// Bearer token for `/ws`, `/api/aggregates` and `/api/alarms`; none leaves them open.
    pub auth_token: Option<Secret>,
    /// File holding the bearer token.
    pub auth_token_file: Option<PathBuf>,
}

/// WebSocket settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default)]
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

/// Environment names besides the generated `GATEWAY_<SECTION>_<KEY>` (`GATEWAY_HTTP_LISTEN`),
/// kept because they are documented and in use; a later one wins. `MQTT_BROKER` and
/// `MQTT_PORT` are the names the original service used.
pub const ENV_VARS: &[(&str, &str)] = &[
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

const LAYERS: Layers<'static> = Layers {
    env_prefix: "GATEWAY",
    file_aliases: &[],
    env_aliases: ENV_VARS,
};

/// The gateway's settings checked once, in working types.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Broker address, client id, keep-alive, login and TLS.
    pub mqtt: MqttConfig,
    /// Largest MQTT packet accepted.
    pub max_packet_bytes: usize,
    /// Pause ceiling between reconnect attempts.
    pub reconnect_backoff_max: Duration,
    /// Quiet time that ends the retained replay after a reconnect.
    pub resync_quiet: Duration,
    /// `http.listen` as written, for messages.
    pub listen_text: String,
    /// The address to bind.
    pub listen: SocketAddr,
    /// `http.static_dir`: serve the dashboard from this directory; `None`: the embedded one.
    pub static_dir: Option<PathBuf>,
    /// HTTP worker threads; 0 means one per CPU core.
    pub workers: usize,
    /// Graceful stop timeout of the HTTP server.
    pub shutdown_timeout: Duration,
    /// Bearer token of `/ws`, `/api/aggregates` and `/api/alarms`, read from its file if need be; `None`: open.
    pub auth_token: Option<Secret>,
    /// Origins allowed besides the gateway's own host.
    pub allowed_origins: Vec<String>,
    /// Most concurrent clients.
    pub max_clients: usize,
    /// Interval between pings.
    pub ping_interval: Duration,
    /// Silence after which a client is closed.
    pub client_timeout: Duration,
    /// Batching interval of update frames.
    pub batch_interval: Duration,
    /// Frames a client may fall behind before a fresh snapshot.
    pub client_queue_frames: usize,
    /// Largest frame accepted from a client.
    pub max_frame_bytes: usize,
}

impl Settings {
    /// Layers defaults, `cli`'s `--config` file, the environment as seen through `env`, and
    /// the flags. `env` is a parameter so tests need not touch the process environment.
    ///
    /// # Errors
    /// A file that cannot be read, an unknown key in it, or a value of the wrong type.
    pub fn load(
        cli: &Cli,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Settings, SettingsError> {
        LAYERS.load(
            &Settings::default(),
            cli.common.config.as_deref(),
            &env,
            cli.overrides(),
        )
    }

    /// Checks every value once, reads the token and TLS files, and returns the working config.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] for the first setting that cannot work.
    pub fn validate(&self) -> Result<GatewayConfig, SettingsError> {
        let mqtt = self
            .mqtt
            .shared()
            .validate(ClientId::Generated("scrap-pulse-gateway"))?;
        at_least(
            "mqtt.reconnect_backoff_max_ms",
            self.mqtt.reconnect_backoff_max_ms,
            1,
        )?;
        at_least("mqtt.max_packet_bytes", self.mqtt.max_packet_bytes, 1024)?;
        let listen = self.listen_addr()?;
        let auth_token = self.auth_token()?;
        at_least("ws.max_clients", self.ws.max_clients, 1)?;
        at_least("ws.ping_interval_secs", self.ws.ping_interval_secs, 1)?;
        if self.ws.client_timeout_secs <= self.ws.ping_interval_secs {
            return Err(SettingsError::invalid(
                "ws.client_timeout_secs",
                "must be longer than ws.ping_interval_secs, or live clients would be closed",
            ));
        }
        in_range(
            "ws.batch_interval_ms",
            self.ws.batch_interval_ms,
            0..=10_000,
        )?;
        at_least("ws.client_queue_frames", self.ws.client_queue_frames, 1)?;
        // 125 bytes: the largest control frame, which a client must always be able to send.
        at_least("ws.max_frame_bytes", self.ws.max_frame_bytes, 125)?;
        for origin in &self.ws.allowed_origins {
            if origin != "*" && crate::http::origin::normalize_origin(origin).is_none() {
                return Err(SettingsError::invalid(
                    "ws.allowed_origins",
                    format!("{origin:?} is not `scheme://host[:port]` or `*`"),
                ));
            }
        }
        Ok(GatewayConfig {
            mqtt,
            max_packet_bytes: self.mqtt.max_packet_bytes,
            reconnect_backoff_max: Duration::from_millis(self.mqtt.reconnect_backoff_max_ms),
            resync_quiet: Duration::from_millis(self.mqtt.resync_quiet_ms),
            listen_text: self.http.listen.clone(),
            listen,
            static_dir: self.http.static_dir.clone(),
            workers: self.http.workers,
            shutdown_timeout: Duration::from_secs(self.http.shutdown_timeout_secs),
            auth_token,
            allowed_origins: self.ws.allowed_origins.clone(),
            max_clients: self.ws.max_clients,
            ping_interval: Duration::from_secs(self.ws.ping_interval_secs),
            client_timeout: Duration::from_secs(self.ws.client_timeout_secs),
            batch_interval: Duration::from_millis(self.ws.batch_interval_ms),
            client_queue_frames: self.ws.client_queue_frames,
            max_frame_bytes: self.ws.max_frame_bytes,
        })
    }

    fn listen_addr(&self) -> Result<SocketAddr, SettingsError> {
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

    /// The bearer token from `http.auth_token` or the file `http.auth_token_file` (a trailing
    /// newline is ignored); `None` when neither is set.
    fn auth_token(&self) -> Result<Option<Secret>, SettingsError> {
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
}

impl GatewayConfig {
    /// The MQTT options: clean session, so every (re)connect gets the retained state anew;
    /// login and TLS from `mqtt.*`.
    pub fn mqtt_options(&self) -> MqttOptions {
        self.mqtt_options_at(&self.mqtt.brokers[0])
    }

    /// [`mqtt_options`](Self::mqtt_options) pointed at one broker of the `mqtt.host` list.
    pub fn mqtt_options_at(&self, broker: &service_kit::BrokerAddr) -> MqttOptions {
        let mut options = self.mqtt.options_at(broker);
        options.set_clean_session(true);
        options.set_max_packet_size(self.max_packet_bytes, self.max_packet_bytes);
        options
    }

    /// The broker list with this gateway's options, starting at the first broker.
    pub fn failover(&self) -> service_kit::Failover {
        let config = self.clone();
        service_kit::Failover::new(
            self.mqtt.brokers.clone(),
            Box::new(move |broker| config.mqtt_options_at(broker)),
        )
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::io::Write;

    use super::*;

    /// Layers and validates, as the binary does: what used to be `Settings::load` alone.
    fn load(
        cli: &Cli,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<(Settings, GatewayConfig), SettingsError> {
        let settings = Settings::load(cli, env)?;
        let config = settings.validate()?;
        Ok((settings, config))
    }

    fn env_of(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn login_and_token_come_from_env_and_never_show() {
        let (s, c) = load(
            &Cli::default(),
            env_of(&[
                ("GATEWAY_MQTT_USERNAME", "gateway"),
                ("GATEWAY_MQTT_PASSWORD", "gw-pass-5521"),
                ("GATEWAY_AUTH_TOKEN", "tok-9913"),
            ]),
        )
        .unwrap();
        let login = c.mqtt_options().credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("gateway", "gw-pass-5521")
        );
        assert!(c.auth_token.clone().unwrap().matches(b"tok-9913"));
        let shown = format!("{s:?} {c:?} {}", c.mqtt.security);
        assert!(
            !shown.contains("gw-pass-5521") && !shown.contains("tok-9913"),
            "{shown}"
        );

        let both = env_of(&[
            ("GATEWAY_AUTH_TOKEN", "a"),
            ("GATEWAY_AUTH_TOKEN_FILE", "/nonexistent"),
        ]);
        let err = load(&Cli::default(), both).unwrap_err();
        assert!(err.to_string().contains("http.auth_token_file"), "{err}");
        let err = load(&Cli::default(), env_of(&[("GATEWAY_MQTT_TLS", "true")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.tls_ca_file"), "{err}");
    }

    #[test]
    fn defaults_match_the_contract() {
        let (s, c) = load(&Cli::default(), env_of(&[])).unwrap();
        assert_eq!(s.mqtt.host, "localhost");
        assert_eq!(s.mqtt.port, 1883);
        assert_eq!(s.http.listen, "0.0.0.0:8000");
        assert_eq!(c.static_dir, None);
        assert_eq!(s.ws.max_clients, 10_000);
        assert_eq!(s.ws.ping_interval_secs, 10);
        assert_eq!(s.ws.client_timeout_secs, 30);
        assert_eq!(s.ws.batch_interval_ms, 20);
        assert_eq!(s, Settings::default());
    }

    #[test]
    fn the_example_file_lists_the_defaults() {
        let cli = Cli {
            common: CommonFlags {
                config: Some(PathBuf::from(concat!(
                    env!("CARGO_MANIFEST_DIR"),
                    "/gateway.example.toml"
                ))),
                ..CommonFlags::default()
            },
            ..Cli::default()
        };
        let (s, _) = load(&cli, env_of(&[])).unwrap();
        assert_eq!(s, Settings::default());
        let text = std::fs::read_to_string(cli.common.config.unwrap()).unwrap();
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
            common: CommonFlags {
                config: Some(file.path().to_path_buf()),
                mqtt_port: Some(3000),
                ..CommonFlags::default()
            },
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
        let (s, _) = load(&cli, env).unwrap();
        assert_eq!(s.mqtt.host, "env-host", "env beats file");
        assert_eq!(s.mqtt.port, 3000, "flag beats env");
        assert_eq!(s.ws.max_clients, 7, "file beats default");
        assert_eq!(s.ws.ping_interval_secs, 3);
        assert_eq!(s.http.listen, "127.0.0.1:9");
        assert_eq!(s.ws.allowed_origins, vec!["http://a.example".to_owned()]);
    }

    #[test]
    fn every_key_has_a_generated_env_name_and_the_documented_one_wins() {
        let env = env_of(&[
            ("GATEWAY_HTTP_LISTEN", "127.0.0.1:7"),
            ("GATEWAY_WS__MAX_CLIENTS", "9"),
        ]);
        let (s, c) = load(&Cli::default(), env).unwrap();
        assert_eq!(s.http.listen, "127.0.0.1:7");
        assert_eq!(c.max_clients, 9);
        let env = env_of(&[
            ("GATEWAY_HTTP_LISTEN", "127.0.0.1:7"),
            ("GATEWAY_LISTEN", "127.0.0.1:8"),
            ("GATEWAY_MQTT_CLIENT_ID", "generated-name"),
            ("GATEWAY_CLIENT_ID", "documented-name"),
        ]);
        let (_, c) = load(&Cli::default(), env).unwrap();
        assert_eq!(c.listen.port(), 8);
        assert_eq!(c.mqtt.client_id, "documented-name");
    }

    #[test]
    fn env_lists_are_comma_separated() {
        let env = env_of(&[(
            "GATEWAY_ALLOWED_ORIGINS",
            "http://x.example, https://y:8443,",
        )]);
        let (s, _) = load(&Cli::default(), env).unwrap();
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
            let err = load(&Cli::default(), env_of(env)).unwrap_err();
            assert!(err.to_string().contains(name), "{env:?}: {err}");
        }
        let err = load(&Cli::default(), env_of(&[("MQTT_PORT", "abc")])).unwrap_err();
        assert!(err.to_string().contains("mqtt.port"), "{err}");
    }

    #[test]
    fn unknown_file_keys_are_refused() {
        let mut file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        writeln!(file, "[ws]\nmax_clientz = 7").unwrap();
        let cli = Cli {
            common: CommonFlags {
                config: Some(file.path().to_path_buf()),
                ..CommonFlags::default()
            },
            ..Cli::default()
        };
        let err = load(&cli, env_of(&[])).unwrap_err();
        assert!(err.to_string().contains("max_clientz"), "{err}");
    }

    #[test]
    fn mqtt_options_use_a_clean_session_and_unique_ids() {
        let s = Settings::default();
        let a = s.validate().unwrap().mqtt_options();
        assert!(a.clean_session());
        assert!(a.client_id().starts_with("scrap-pulse-gateway-"));
        let mut named = Settings::default();
        named.mqtt.client_id = "gw-1".into();
        assert_eq!(named.validate().unwrap().mqtt_options().client_id(), "gw-1");
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
        let (s, c) = load(&cli, env_of(&[])).unwrap();
        assert_eq!(s.mqtt.host, "h");
        assert_eq!(s.ws.allowed_origins, vec!["http://a", "http://b"]);
        assert_eq!(s.ws.max_clients, 5);
        assert_eq!(c.static_dir, Some(PathBuf::from("/tmp")));
    }
}
