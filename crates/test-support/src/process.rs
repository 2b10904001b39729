//! A service binary run as a real child process, with its output kept for failure messages.

use std::ffi::{OsStr, OsString};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::broker::pid_i32;
use crate::procfs::{Rss, listening_addrs};

/// Default time a service gets to exit after SIGTERM in [`ServiceProcess::terminate`].
const TERMINATE_TIMEOUT: Duration = Duration::from_secs(10);

/// A running binary (e.g. `env!("CARGO_BIN_EXE_ingest")`) with stdout and stderr captured to
/// files in its own temp dir. Killed with SIGKILL when dropped.
#[derive(Debug)]
pub struct ServiceProcess {
    name: String,
    dir: TempDir,
    child: Child,
    status: Option<ExitStatus>,
}

impl ServiceProcess {
    /// Spawns `program` with `args` and the extra environment `env` (added to the inherited one).
    ///
    /// # Panics
    /// When the program cannot be started (message names it).
    pub fn spawn<I, S, E, K, V>(program: impl AsRef<Path>, args: I, env: E) -> Self
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let program = program.as_ref();
        let name = program.file_name().map_or_else(
            || program.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        // expect: failing to create temp files means the test machine is broken.
        let dir = tempfile::Builder::new()
            .prefix(&format!("scrap-pulse-{name}-"))
            .tempdir()
            .expect("create process temp dir");
        let stdout =
            std::fs::File::create(dir.path().join("stdout.log")).expect("create stdout.log");
        let stderr =
            std::fs::File::create(dir.path().join("stderr.log")).expect("create stderr.log");
        let child = Command::new(program)
            .args(args)
            .envs(env)
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {}: {e}", program.display()));
        Self {
            name,
            dir,
            child,
            status: None,
        }
    }

    /// Starts a scrap-pulse service binary (`ingest`, `gateway`) against the broker at
    /// `mqtt_host:mqtt_port` with HTTP on `127.0.0.1:0`, then the `extra` flags, and waits up
    /// to `timeout` until it listens. Returns the process and its bound HTTP address; whether
    /// the service is also ready is the caller's next wait.
    ///
    /// # Errors
    /// As [`ServiceProcess::wait_listening`].
    ///
    /// # Panics
    /// As [`ServiceProcess::spawn`].
    pub async fn start_service<I, S, E, K, V>(
        program: impl AsRef<Path>,
        mqtt_host: &str,
        mqtt_port: u16,
        extra: I,
        env: E,
        timeout: Duration,
    ) -> Result<(Self, SocketAddr), String>
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
        E: IntoIterator<Item = (K, V)>,
        K: AsRef<OsStr>,
        V: AsRef<OsStr>,
    {
        let port = mqtt_port.to_string();
        let mut args: Vec<OsString> = [
            "--mqtt-host",
            mqtt_host,
            "--mqtt-port",
            &port,
            "--listen",
            "127.0.0.1:0",
        ]
        .map(OsString::from)
        .into();
        args.extend(extra.into_iter().map(|a| a.as_ref().to_owned()));
        let mut process = Self::spawn(program, args, env);
        let addr = process.wait_listening(timeout).await?;
        Ok((process, addr))
    }

    /// The OS process id (None once it has been reaped).
    pub fn pid(&self) -> Option<u32> {
        self.child.id()
    }

    /// True while the process has not exited.
    pub fn is_running(&mut self) -> bool {
        if self.status.is_some() {
            return false;
        }
        match self.child.try_wait() {
            Ok(Some(status)) => {
                self.status = Some(status);
                false
            }
            Ok(None) => true,
            Err(_) => false,
        }
    }

    /// Sends `signal` (e.g. SIGINT) without waiting.
    ///
    /// # Errors
    /// When the process is gone or the signal cannot be sent.
    pub fn signal(&self, signal: Signal) -> Result<(), String> {
        let pid = self
            .child
            .id()
            .ok_or_else(|| format!("{} has already exited", self.name))?;
        kill(Pid::from_raw(pid_i32(pid)), signal)
            .map_err(|e| format!("sending {signal} to {}: {e}", self.name))
    }

    /// Sends SIGTERM and waits up to 10 s for the exit status.
    ///
    /// # Panics
    /// When the process does not exit in time (it is then killed; the message holds its logs).
    pub async fn terminate(&mut self) -> ExitStatus {
        self.terminate_with(Signal::SIGTERM, TERMINATE_TIMEOUT)
            .await
    }

    /// Sends `signal` and waits up to `timeout` for the exit status.
    ///
    /// # Panics
    /// As [`ServiceProcess::terminate`].
    pub async fn terminate_with(&mut self, signal: Signal, timeout: Duration) -> ExitStatus {
        if let Some(status) = self.status {
            return status;
        }
        let _ = self.signal(signal);
        match self.wait_exit(timeout).await {
            Ok(status) => status,
            Err(e) => {
                let _ = self.child.kill().await;
                panic!("{e}\n{}", self.logs());
            }
        }
    }

    /// Waits up to `timeout` for the process to exit by itself.
    ///
    /// # Errors
    /// When it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Result<ExitStatus, String> {
        if let Some(status) = self.status {
            return Ok(status);
        }
        match tokio::time::timeout(timeout, self.child.wait()).await {
            Ok(Ok(status)) => {
                self.status = Some(status);
                Ok(status)
            }
            Ok(Err(e)) => Err(format!("waiting for {}: {e}", self.name)),
            Err(_) => Err(format!("{} did not exit within {timeout:?}", self.name)),
        }
    }

    /// Kills the process with SIGKILL and reaps it.
    pub async fn kill(&mut self) {
        if self.status.is_none() {
            let _ = self.child.kill().await;
            self.status = self.child.try_wait().ok().flatten();
        }
    }

    /// What the process wrote to stdout so far.
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stdout.log")).unwrap_or_default()
    }

    /// What the process wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("stderr.log")).unwrap_or_default()
    }

    /// Both outputs, labelled, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- {} stdout ---\n{}--- {} stderr ---\n{}",
            self.name,
            self.stdout(),
            self.name,
            self.stderr()
        )
    }

    /// Waits until stderr or stdout contains `needle`.
    ///
    /// # Errors
    /// After `timeout`, with the logs.
    pub async fn wait_for_output(&self, needle: &str, timeout: Duration) -> Result<(), String> {
        crate::wait_until(
            timeout,
            &format!("{} output contains {needle:?}", self.name),
            || async { self.stderr().contains(needle) || self.stdout().contains(needle) },
        )
        .await
        .map_err(|e| format!("{e}\n{}", self.logs()))
    }

    /// Waits until the process listens on a TCP socket and returns its address: the one way
    /// to learn the port of a service started with `--listen 127.0.0.1:0` (read from the
    /// kernel, so it works with any log format and level). With several listeners, the first
    /// in `/proc/net/tcp` order.
    ///
    /// # Errors
    /// When the process exits or does not listen within `timeout`, with its logs.
    pub async fn wait_listening(&mut self, timeout: Duration) -> Result<SocketAddr, String> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if !self.is_running() {
                return Err(format!(
                    "{} exited ({:?}) before listening\n{}",
                    self.name,
                    self.status,
                    self.logs()
                ));
            }
            if let Some(pid) = self.pid()
                && let Some(addr) = listening_addrs(pid).ok().and_then(|a| a.first().copied())
            {
                return Ok(addr);
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "{} did not listen within {timeout:?}\n{}",
                    self.name,
                    self.logs()
                ));
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Resident memory of the process now and at its peak.
    ///
    /// # Errors
    /// When it has exited or `/proc` cannot be read.
    pub fn rss(&self) -> Result<Rss, String> {
        let pid = self
            .pid()
            .ok_or_else(|| format!("{} has exited", self.name))?;
        Rss::of(pid)
    }

    /// The directory holding the captured output; also a private scratch dir for the test.
    pub fn dir(&self) -> PathBuf {
        self.dir.path().to_path_buf()
    }
}
