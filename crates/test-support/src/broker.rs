//! A real Mosquitto broker per test, on 127.0.0.1 and a free port, in its own temp directory.

use std::fmt::Write as _;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, SystemTime};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use rumqttc::{AsyncClient, Event, Incoming, MqttOptions};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::MOSQUITTO_INSTALL_HINT;
use crate::tools::{free_port, require_tool, unique_client_id};

/// How long a (re)started broker may take to accept an MQTT connection.
const READY_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a broker may take to exit after SIGTERM (it writes its database first).
const STOP_TIMEOUT: Duration = Duration::from_secs(10);
/// Fresh ports tried by [`Broker::start`] when the chosen one was taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// How long [`Broker::restart`] keeps retrying the same port (e.g. still in TIME_WAIT).
const RESTART_RETRY_FOR: Duration = Duration::from_secs(5);

/// Options for [`Broker::start_with`].
#[derive(Debug, Clone)]
pub struct BrokerOptions {
    /// Lines appended verbatim to the generated `mosquitto.conf` (later lines win in Mosquitto).
    pub extra_config: String,
    /// Keep retained messages and persistent sessions on disk across [`Broker::restart`].
    /// The database is written on SIGTERM ([`Broker::stop`]) and every second (autosave), so
    /// after [`Broker::kill`] up to the last second of changes is lost, as with a real crash.
    pub persistence: bool,
    /// Raise Mosquitto's per-client queue limits (defaults: 1 000 queued, 20 in flight) so that
    /// tests can queue large backlogs for persistent sessions. Off keeps Mosquitto's own
    /// limits, as on a broker nobody tuned.
    pub large_queues: bool,
    /// Username and password the readiness probe logs in with, for brokers whose
    /// `extra_config` turns anonymous access off; `None` probes anonymously.
    pub probe_login: Option<(String, String)>,
}

impl Default for BrokerOptions {
    fn default() -> Self {
        Self {
            extra_config: String::new(),
            persistence: true,
            large_queues: true,
            probe_login: None,
        }
    }
}

/// A Mosquitto child process owned by a test. Killed when dropped; its directory is removed.
#[derive(Debug)]
pub struct Broker {
    binary: PathBuf,
    dir: TempDir,
    port: u16,
    child: Option<Child>,
    probe_login: Option<(String, String)>,
}

impl Broker {
    /// Starts a broker with [`BrokerOptions::default`] (persistence on) and waits until it
    /// accepts MQTT connections.
    ///
    /// # Panics
    /// When `mosquitto` is not installed or the broker does not come up (the message holds
    /// its log).
    pub async fn start() -> Self {
        Self::start_with(BrokerOptions::default()).await
    }

    /// Starts a broker with `options` and waits until it accepts MQTT connections.
    ///
    /// # Panics
    /// As [`Broker::start`].
    pub async fn start_with(options: BrokerOptions) -> Self {
        let binary = require_tool("mosquitto", MOSQUITTO_INSTALL_HINT);
        // expect: a temp dir that cannot be created means the test machine is broken.
        let dir = tempfile::Builder::new()
            .prefix("scrap-pulse-mosquitto-")
            .tempdir()
            .expect("create broker temp dir");
        let mut broker = Self {
            binary,
            dir,
            port: 0,
            child: None,
            probe_login: options.probe_login.clone(),
        };
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            broker.port = free_port();
            broker.write_config(&options);
            match broker.launch().await {
                Ok(()) => return broker,
                // The port may have been taken between free_port() and mosquitto's bind.
                Err(e) => last_error = e,
            }
        }
        panic!(
            "mosquitto did not start after {START_ATTEMPTS} attempts: {last_error}\n{}",
            broker.log()
        );
    }

    /// The broker's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The broker's host, always `"127.0.0.1"`.
    pub fn host(&self) -> &'static str {
        "127.0.0.1"
    }

    /// `mqtt://127.0.0.1:<port>`, for tools and logs.
    pub fn url(&self) -> String {
        format!("mqtt://{}:{}", self.host(), self.port)
    }

    /// The broker's temp directory (config, log, persistence database).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// Process id of the running broker, if it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().and_then(Child::id)
    }

    /// Kills the broker with SIGKILL and waits for it to exit: a crash, no database write.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A kill error means the process is already gone, which is what we want.
            let _ = child.kill().await;
        }
    }

    /// Freezes the broker with SIGSTOP: its connections stay open, but it reads, acknowledges
    /// and delivers nothing more. [`Broker::kill`] ends it from there.
    pub fn freeze(&self) {
        if let Some(pid) = self.pid() {
            let _ = kill(Pid::from_raw(pid_i32(pid)), Signal::SIGSTOP);
        }
    }

    /// Stops the broker with SIGTERM and waits for it to exit; Mosquitto writes its
    /// persistence database on the way out.
    ///
    /// # Panics
    /// When the broker does not exit within 10 s (it is then killed).
    pub async fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        if let Some(pid) = child.id() {
            let _ = kill(Pid::from_raw(pid_i32(pid)), Signal::SIGTERM);
        }
        if tokio::time::timeout(STOP_TIMEOUT, child.wait())
            .await
            .is_err()
        {
            let _ = child.kill().await;
            panic!(
                "mosquitto did not exit within {STOP_TIMEOUT:?} of SIGTERM\n{}",
                self.log()
            );
        }
    }

    /// Starts the broker again on the same port with the same config and persistence
    /// directory (stopping it with SIGKILL first if it still runs), and waits until it accepts
    /// connections. Retries for a few seconds while the port cannot be bound yet.
    ///
    /// # Panics
    /// When the broker does not come back (the message holds its log).
    pub async fn restart(&mut self) {
        self.kill().await;
        let deadline = tokio::time::Instant::now() + RESTART_RETRY_FOR;
        loop {
            match self.launch().await {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!(
                        "mosquitto did not restart on port {}: {e}\n{}",
                        self.port,
                        self.log()
                    );
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
            }
        }
    }

    /// Waits until Mosquitto has written its persistence database after this call, so that a
    /// following [`Broker::kill`] keeps everything the broker had accepted before the call.
    ///
    /// # Errors
    /// When no save happened within `timeout` (persistence off, or broker not running).
    pub async fn wait_for_autosave(&self, timeout: Duration) -> Result<(), String> {
        let db = self.dir().join("mosquitto.db");
        let since = SystemTime::now();
        crate::wait_until(timeout, "mosquitto autosave of its database", || {
            let db = db.clone();
            async move {
                std::fs::metadata(&db)
                    .and_then(|m| m.modified())
                    .is_ok_and(|modified| modified > since)
            }
        })
        .await
    }

    /// The broker's log file and its stderr, for failure messages.
    pub fn log(&self) -> String {
        let log = std::fs::read_to_string(self.dir().join("mosquitto.log")).unwrap_or_default();
        let stderr =
            std::fs::read_to_string(self.dir().join("mosquitto.stderr")).unwrap_or_default();
        format!(
            "--- mosquitto log ({}) ---\n{log}--- mosquitto stderr ---\n{stderr}",
            self.dir().display()
        )
    }

    fn write_config(&self, options: &BrokerOptions) {
        let dir = self.dir();
        let mut config = String::new();
        // Each of these lines exists because a test depends on it; see the field docs.
        let _ = writeln!(config, "listener {} 127.0.0.1", self.port);
        let _ = writeln!(config, "allow_anonymous true");
        // Running as root makes Mosquitto switch to user `mosquitto`, which cannot write the
        // root-owned temp dir: stay the user who owns the directory.
        if std::fs::metadata(dir).is_ok_and(|m| m.uid() == 0) {
            let _ = writeln!(config, "user root");
        }
        let _ = writeln!(config, "persistence {}", options.persistence);
        let _ = writeln!(config, "persistence_location {}/", dir.display());
        let _ = writeln!(config, "persistence_file mosquitto.db");
        // Time-based autosave every second: cheap under load, and a SIGKILL loses at most 1 s.
        let _ = writeln!(config, "autosave_on_changes false");
        let _ = writeln!(config, "autosave_interval 1");
        if options.large_queues {
            let _ = writeln!(config, "max_queued_messages 1000000");
            let _ = writeln!(config, "max_queued_bytes 0");
            let _ = writeln!(config, "max_inflight_messages 1000");
        }
        // Payloads above 64 KiB must reach ingest so it can reject them as too_large: the
        // Mosquitto defaults for max_packet_size and message_size_limit are "no limit", so
        // neither is set here.
        let _ = writeln!(config, "log_dest file {}/mosquitto.log", dir.display());
        let _ = writeln!(config, "log_type error");
        let _ = writeln!(config, "log_type warning");
        let _ = writeln!(config, "log_type notice");
        let _ = writeln!(config, "log_type information");
        let _ = writeln!(config, "connection_messages true");
        let _ = writeln!(config, "log_timestamp_format %Y-%m-%dT%H:%M:%S");
        config.push_str(&options.extra_config);
        config.push('\n');
        // expect: the temp dir was just created by us.
        std::fs::write(dir.join("mosquitto.conf"), config).expect("write mosquitto.conf");
    }

    /// Spawns the process and waits for an MQTT CONNACK; on failure the process is gone.
    async fn launch(&mut self) -> Result<(), String> {
        let dir = self.dir();
        let stderr = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join("mosquitto.stderr"))
            .map_err(|e| format!("open mosquitto.stderr: {e}"))?;
        let stdout = stderr
            .try_clone()
            .map_err(|e| format!("clone stderr file: {e}"))?;
        let child = Command::new(&self.binary)
            .arg("-c")
            .arg(dir.join("mosquitto.conf"))
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("spawn {}: {e}", self.binary.display()))?;
        self.child = Some(child);
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            if let Some(child) = self.child.as_mut()
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("mosquitto exited during start-up with {status}"));
            }
            if mqtt_connack(self.port, self.probe_login.as_ref()).await {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill().await;
                return Err(format!(
                    "no CONNACK on port {} within {READY_TIMEOUT:?}",
                    self.port
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One MQTT connect attempt; true when the broker answered with a successful CONNACK.
async fn mqtt_connack(port: u16, login: Option<&(String, String)>) -> bool {
    let mut options = MqttOptions::new(unique_client_id("ready-probe"), "127.0.0.1", port);
    options.set_keep_alive(Duration::from_secs(5));
    if let Some((username, password)) = login {
        options.set_credentials(username.clone(), password.clone());
    }
    let (client, mut event_loop) = AsyncClient::new(options, 1);
    let probe = async {
        loop {
            match event_loop.poll().await {
                Ok(Event::Incoming(Incoming::ConnAck(ack))) => {
                    return ack.code == rumqttc::ConnectReturnCode::Success;
                }
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    };
    let ok = tokio::time::timeout(Duration::from_secs(1), probe)
        .await
        .unwrap_or(false);
    let _ = client.try_disconnect();
    if ok {
        // Let the DISCONNECT go out so the broker logs a clean disconnect, not a socket error.
        let _ = tokio::time::timeout(Duration::from_millis(100), event_loop.poll()).await;
    }
    ok
}

/// Process ids fit in i32 on every Unix; the conversion only guards the type.
pub(crate) fn pid_i32(pid: u32) -> i32 {
    i32::try_from(pid).unwrap_or(i32::MAX)
}
