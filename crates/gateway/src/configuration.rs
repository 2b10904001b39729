//! The gateway's settings, each declared once with its default and limits
//! (`service_kit::settings!`), and the checks that relate two of them; [`Settings::validate`]
//! reads the token and TLS files (there, and only there) into the [`GatewayConfig`] the
//! gateway runs on. The reference of every key is `gateway.example.toml`
//! (`gateway --example-config`).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;

use service_kit::{Binary, MqttConfig, MqttSettings, Secret, SettingsError, ensure};

/// How the binary names itself and its settings.
pub const BINARY: Binary = Binary {
    name: "gateway",
    env_prefix: "GATEWAY",
    about: "scrap-pulse gateway: live aggregates from MQTT to browsers over WebSocket, plus the \
            dashboard and /api.",
};

service_kit::settings! {
    /// Every setting of the gateway.
    pub struct Settings {
        /// After a reconnect to the broker, keys whose retained messages were not replayed are
        /// forgotten once no retained message has arrived for this many ms.
        resync_quiet_ms: u64 = 1_000, in 1..=600_000;
        /// The broker. An empty client id is made up per process: replicas must not share one
        /// (the broker disconnects the older of two clients with the same id).
        mqtt: MqttSettings = MqttSettings {
            keep_alive_secs: 10,
            ..MqttSettings::default()
        };
        /// The HTTP server.
        http: HttpSettings = HttpSettings::default();
        /// The WebSocket clients.
        ws: WsSettings = WsSettings::default();
        /// Shift and history totals, answered by the historian.
        history: HistorySettings = HistorySettings::default();
    }

    /// Shift and history totals, answered by the historian.
    pub struct HistorySettings {
        /// The historian's base URL (http://historian:9102): /api/history, /api/history.csv and
        /// /api/shifts/current are passed to it, on the dashboard's origin and behind the
        /// bearer token; empty: those paths answer 404.
        url: String = String::new();
        /// How long the historian may take to start answering, in ms; then 504.
        timeout_ms: u64 = 10_000, in 100..=600_000;
    }

    /// The HTTP server.
    pub struct HttpSettings {
        /// HTTP and WebSocket address, host:port.
        listen: String = "0.0.0.0:8000".into(), flag "listen", env "GATEWAY_LISTEN";
        /// Serve the dashboard from this directory instead of the copy built into the binary
        /// (frontend work: edit, reload); Chart.js then comes from its vendor/.
        static_dir: Option<PathBuf> = None;
        /// HTTP worker threads; 0: one per CPU core.
        workers: usize = 0, in 0..=1_024;
        /// How long a graceful stop waits for open connections, in seconds.
        shutdown_timeout_secs: u64 = 5, in 0..=3_600;
        /// Bearer token required on /ws and every /api path but /api/health (`Authorization:
        /// Bearer ...`, or `?token=` on /ws); /, /api/health and /metrics stay open. Prefer
        /// auth_token_file.
        auth_token: Option<Secret> = None;
        /// File holding the bearer token (a trailing newline is ignored).
        auth_token_file: Option<PathBuf> = None;
    }

    /// The WebSocket clients.
    pub struct WsSettings {
        /// Origins (scheme://host[:port]) whose pages may open /ws, comma separated; `*` allows
        /// any. List the dashboard's public origin here when browsers reach it by a name or
        /// through a proxy: without it only pages on the gateway's own IP address or on
        /// localhost may (a Host name proves nothing against DNS rebinding).
        allowed_origins: Vec<String> = Vec::new();
        /// Most concurrent clients; more get 503.
        max_clients: usize = 10_000, in 1..=1_000_000;
        /// Seconds between pings to each client.
        ping_interval_secs: u64 = 10, in 1..=3_600;
        /// A client silent this many seconds (no pong, no frame), or whose send stalls this
        /// long, is closed; longer than ping_interval_secs.
        client_timeout_secs: u64 = 30, in 2..=86_400;
        /// At most one update frame per this many ms (a change after a quiet interval goes out
        /// at once); 0 sends every change at once.
        batch_interval_ms: u64 = 20, in 0..=10_000;
        /// Frames a client may fall behind before it gets a fresh snapshot instead.
        client_queue_frames: usize = 256, in 1..=1_000_000;
        /// Most bytes queued for one client that its socket has not taken yet; the next
        /// message waits for room, and a client that makes none within client_timeout_secs is
        /// dropped. A client costs at most this plus 512 KiB, whatever the number of keys.
        client_buffer_bytes: usize = 524_288, in 65_536..=1_073_741_824;
        /// Largest frame accepted from a client, in bytes (at least a control frame's 125).
        max_frame_bytes: usize = 4_096, in 125..=16_777_216;
    }
}

/// The settings checked, with what the checks built.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Every setting as given.
    pub settings: Settings,
    /// The broker connection in working types.
    pub mqtt: MqttConfig,
    /// The address to bind.
    pub listen: SocketAddr,
    /// The bearer token, read from its file if need be; `None`: open.
    pub auth_token: Option<Secret>,
}

impl Settings {
    /// Checks what the limits cannot and reads the token and TLS files.
    ///
    /// # Errors
    /// [`SettingsError::Invalid`] for the first setting that cannot work.
    pub fn validate(self) -> Result<GatewayConfig, SettingsError> {
        let mqtt = self.mqtt.connection("scrap-pulse-gateway")?;
        let listen = &self.http.listen;
        let message = format!("{listen:?} is not a `host:port` address");
        let addr = listen.to_socket_addrs().ok().and_then(|mut a| a.next());
        let listen = addr.ok_or_else(|| SettingsError::invalid("http.listen", message))?;
        let auth_token = crate::http::auth::token(&self.http)?;
        let ws = &self.ws;
        let longer = ws.client_timeout_secs > ws.ping_interval_secs;
        let message = "must be longer than ws.ping_interval_secs, or live clients would be closed";
        ensure(longer, "ws.client_timeout_secs", message)?;
        for origin in &ws.allowed_origins {
            let valid = origin == "*" || crate::http::origin::normalize_origin(origin).is_some();
            let message = format!("{origin:?} is not `scheme://host[:port]` or `*`");
            ensure(valid, "ws.allowed_origins", message)?;
        }
        let url = self.history.url.trim();
        let plain_http = url.is_empty() || url.starts_with("http://");
        let message = format!(
            "{url:?} is not an http:// URL (the historian speaks plain HTTP inside the stack)"
        );
        ensure(plain_http, "history.url", message)?;
        Ok(GatewayConfig {
            settings: self,
            mqtt,
            listen,
            auth_token,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(args: &[&str], env: &[(&str, &str)]) -> Result<GatewayConfig, SettingsError> {
        let args = std::iter::once("gateway").chain(args.iter().copied());
        let env = env.iter().map(|(k, v)| ((*k).to_owned(), (*v).to_owned()));
        BINARY.load::<Settings>(args, env)?.validate()
    }

    #[test]
    fn login_and_token_come_from_env_and_never_show() {
        let env = [
            ("GATEWAY_MQTT_USERNAME", "gateway"),
            ("GATEWAY_MQTT_PASSWORD", "gw-pass-5521"),
            ("GATEWAY_HTTP_AUTH_TOKEN", "tok-9913"),
        ];
        let c = load(&[], &env).unwrap();
        let options = c.mqtt.options_at(&c.mqtt.brokers[0]);
        let login = options.credentials().unwrap();
        assert_eq!(
            (login.username.as_str(), login.password.as_str()),
            ("gateway", "gw-pass-5521")
        );
        assert!(c.auth_token.clone().unwrap().matches(b"tok-9913"));
        let shown = format!("{c:?} {}", c.mqtt.security);
        assert!(
            !shown.contains("gw-pass-5521") && !shown.contains("tok-9913"),
            "{shown}"
        );

        let both = [
            ("GATEWAY_HTTP_AUTH_TOKEN", "a"),
            ("GATEWAY_HTTP_AUTH_TOKEN_FILE", "/nonexistent"),
        ];
        let err = load(&[], &both).unwrap_err();
        assert!(err.to_string().contains("`http.auth_token_file`"), "{err}");
    }

    #[test]
    fn defaults_match_the_contract() {
        let c = load(&[], &[]).unwrap();
        let s = &c.settings;
        assert_eq!(c.mqtt.brokers[0].to_string(), "localhost:1883");
        assert_eq!(c.listen, "0.0.0.0:8000".parse().unwrap());
        assert_eq!(s.ws.max_clients, 10_000);
        assert_eq!(
            (s.ws.ping_interval_secs, s.ws.client_timeout_secs),
            (10, 30)
        );
        assert_eq!(s.ws.batch_interval_ms, 20);
        assert!(s.http.static_dir.is_none() && c.auth_token.is_none());
        let options = c.mqtt.options_at(&c.mqtt.brokers[0]);
        assert!(options.clean_session());
        assert!(options.client_id().starts_with("scrap-pulse-gateway-"));
    }

    #[test]
    fn layers_apply_file_then_env_then_flags() {
        let file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
        std::fs::write(
            file.path(),
            "[mqtt]\nhost = \"file-host\"\nport = 1000\n[ws]\nmax_clients = 7\n\
             ping_interval_secs = 3\n[http]\nlisten = \"127.0.0.1:1\"\n",
        )
        .unwrap();
        let env = [
            ("GATEWAY_CONFIG", file.path().to_str().unwrap()),
            ("MQTT_BROKER", "env-host"),
            ("MQTT_PORT", "2000"),
            ("GATEWAY_LISTEN", "127.0.0.1:9"),
            (
                "GATEWAY_WS_ALLOWED_ORIGINS",
                "http://x.example, https://y:8443,",
            ),
        ];
        let c = load(&["--mqtt-port", "3000"], &env).unwrap();
        let s = &c.settings;
        assert_eq!(
            c.mqtt.brokers[0].to_string(),
            "env-host:3000",
            "env, then flag"
        );
        assert_eq!((s.ws.max_clients, s.ws.ping_interval_secs), (7, 3), "file");
        assert_eq!(c.listen.port(), 9, "GATEWAY_LISTEN");
        assert_eq!(s.ws.allowed_origins, ["http://x.example", "https://y:8443"]);
        let c = load(
            &[
                "--listen",
                "127.0.0.1:4",
                "--ws-allowed-origins",
                "http://a,http://b",
            ],
            &env,
        )
        .unwrap();
        assert_eq!(c.listen.port(), 4);
        assert_eq!(c.settings.ws.allowed_origins, ["http://a", "http://b"]);
    }

    #[test]
    fn bad_settings_are_named() {
        for (env, name) in [
            (("MQTT_PORT", "0"), "`mqtt.port`"),
            (("MQTT_PORT", "abc"), "`mqtt.port`"),
            (("MQTT_BROKER", " "), "`mqtt.host`"),
            (("GATEWAY_LISTEN", "nonsense"), "`http.listen`"),
            (("GATEWAY_WS_MAX_CLIENTS", "0"), "`ws.max_clients`"),
            (
                ("GATEWAY_WS_PING_INTERVAL_SECS", "30"),
                "`ws.client_timeout_secs`",
            ),
            (
                ("GATEWAY_WS_ALLOWED_ORIGINS", "not an origin"),
                "`ws.allowed_origins`",
            ),
            (("GATEWAY_MAX_CLIENTS", "5"), "GATEWAY_WS_MAX_CLIENTS?"),
        ] {
            let err = load(&[], &[env]).unwrap_err();
            assert!(err.to_string().contains(name), "{env:?}: {err}");
        }
    }

    /// The example file is the settings reference: it must say what the code does.
    #[test]
    fn the_example_file_is_current() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/gateway.example.toml");
        test_support::check_example_file(path, &BINARY.example::<Settings>(), |file| {
            load(&["--config", file], &[])
                .map(drop)
                .map_err(|e| e.to_string())
        });
    }
}
