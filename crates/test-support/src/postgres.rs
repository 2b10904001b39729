//! A real PostgreSQL server per test, on 127.0.0.1 and a free port, its cluster in its own temp
//! directory, from Debian's server binaries (`/usr/lib/postgresql/<version>/bin`, or those on
//! `PATH`). It never touches the machine's own server (port 5432, `/var/lib/postgresql`).
//!
//! PostgreSQL refuses to run as root: under root the cluster's directory is handed to the
//! `postgres` user (the package creates it) and `initdb` and `postgres` run as that user.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use nix::unistd::{Gid, Uid, User, chown};
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::tools::free_port;

/// What to install when the server binaries are missing.
pub const POSTGRES_INSTALL_HINT: &str = "apt-get install postgresql (Debian/Ubuntu; the tests use \
     /usr/lib/postgresql/<version>/bin), brew install postgresql@15 with its bin on PATH (macOS)";

/// Where Debian puts each server version's binaries.
const VERSIONS_DIR: &str = "/usr/lib/postgresql";
/// The version looked for first.
const PREFERRED_VERSION: &str = "15";
/// How long a (re)started server may take to accept connections.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// Fresh ports tried by [`Postgres::start`] when the chosen one was taken meanwhile.
const START_ATTEMPTS: usize = 5;
/// What the server logs once it accepts connections.
const READY_LINE: &str = "database system is ready to accept connections";

/// A PostgreSQL server owned by a test, with trust authentication for the `postgres` user on
/// 127.0.0.1 only. Killed when dropped; its directory is removed.
#[derive(Debug)]
pub struct Postgres {
    bin: PathBuf,
    dir: TempDir,
    port: u16,
    owner: Option<(Uid, Gid)>,
    child: Option<Child>,
    /// Log lines of earlier runs, so that a restart waits for its own ready line.
    log_offset: usize,
}

impl Postgres {
    /// Creates a cluster and starts the server, waiting until it accepts connections.
    ///
    /// # Panics
    /// When the server binaries (or, under root, the `postgres` user) are missing, with
    /// [`POSTGRES_INSTALL_HINT`], or when the server does not come up (with its log).
    pub async fn start() -> Self {
        let bin = server_binaries();
        let owner = server_user();
        // expect: a temp dir that cannot be created means the test machine is broken.
        let dir = tempfile::Builder::new()
            .prefix("scrap-pulse-postgres-")
            .tempdir()
            .expect("create postgres temp dir");
        if let Some((uid, gid)) = owner {
            chown(dir.path(), Some(uid), Some(gid)).expect("hand the temp dir to postgres");
        }
        let mut server = Self {
            bin,
            dir,
            port: 0,
            owner,
            child: None,
            log_offset: 0,
        };
        server.init_cluster().await;
        let mut last_error = String::new();
        for _ in 0..START_ATTEMPTS {
            server.port = free_port();
            match server.launch().await {
                Ok(()) => return server,
                // The port may have been taken between free_port() and the server's bind.
                Err(e) => last_error = e,
            }
        }
        panic!("postgres did not start after {START_ATTEMPTS} attempts: {last_error}");
    }

    /// `postgres://postgres@127.0.0.1:<port>/postgres`.
    pub fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }

    /// The server's TCP port on 127.0.0.1.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Kills the server with SIGKILL and waits for it to exit: a crash. Its backends end once
    /// they see it gone; the next start recovers from the write-ahead log.
    pub async fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            // A kill error means the process is already gone, which is what we want.
            let _ = child.kill().await;
        }
    }

    /// Starts the server again on the same port and cluster (killing it first if it still
    /// runs) and waits until it accepts connections; retries while the port or the shared
    /// memory of the killed server's last backends are still held.
    ///
    /// # Panics
    /// When the server does not come back (the message holds its log).
    pub async fn restart(&mut self) {
        self.kill().await;
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            match self.launch().await {
                Ok(()) => return,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    panic!("postgres did not restart on port {}: {e}", self.port);
                }
                Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
            }
        }
    }

    /// The server's log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log_path()).unwrap_or_default()
    }

    fn log_path(&self) -> PathBuf {
        self.dir.path().join("postgres.log")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    /// A command for the server binary `name`, run as the server's user.
    fn command(&self, name: &str) -> Command {
        let mut command = Command::new(self.bin.join(name));
        command.current_dir(self.dir.path()).stdin(Stdio::null());
        if let Some((uid, gid)) = self.owner {
            command.uid(uid.as_raw()).gid(gid.as_raw());
        }
        command
    }

    /// `initdb`: a cluster with trust authentication and the C locale.
    async fn init_cluster(&self) {
        let output = self
            .command("initdb")
            .arg("-D")
            .arg(self.data_dir())
            .args([
                "-U",
                "postgres",
                "-A",
                "trust",
                "-E",
                "UTF8",
                "--locale=C",
                "--no-sync",
            ])
            .output()
            .await
            .unwrap_or_else(|e| panic!("cannot run initdb: {e}"));
        assert!(
            output.status.success(),
            "initdb failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }

    /// Starts `postgres` on `self.port` and waits for its ready line.
    async fn launch(&mut self) -> Result<(), String> {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.log_path())
            .map_err(|e| format!("open postgres.log: {e}"))?;
        self.log_offset = self.log().len();
        let port = self.port.to_string();
        let socket_dir = self.dir.path().to_string_lossy().into_owned();
        let child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data_dir())
            .args(["-p", &port, "-h", "127.0.0.1", "-k", &socket_dir])
            // A test cluster: the OS never crashes under it, only the server does.
            .args(["-c", "fsync=off", "-c", "max_connections=20"])
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| format!("cannot start postgres: {e}"))?;
        self.child = Some(child);
        self.wait_ready().await
    }

    /// Waits for this run's ready line; an early exit is an error with the log.
    async fn wait_ready(&mut self) -> Result<(), String> {
        let deadline = tokio::time::Instant::now() + READY_TIMEOUT;
        loop {
            let log = self.log();
            if log
                .get(self.log_offset..)
                .is_some_and(|l| l.contains(READY_LINE))
            {
                return Ok(());
            }
            let exited = match self.child.as_mut() {
                Some(child) => child.try_wait().ok().flatten(),
                None => return Err("not started".into()),
            };
            if let Some(status) = exited {
                self.child = None;
                return Err(format!("postgres exited ({status})\n{log}"));
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(format!(
                    "postgres not ready within {READY_TIMEOUT:?}\n{log}"
                ));
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The directory of the server binaries: Debian's version 15 when installed, else Debian's
/// newest, else the first directory on `PATH` that has them (Homebrew's, for one).
///
/// # Panics
/// When none is installed, with [`POSTGRES_INSTALL_HINT`].
fn server_binaries() -> PathBuf {
    let has_server = |dir: &Path| dir.join("initdb").is_file() && dir.join("postgres").is_file();
    let preferred = Path::new(VERSIONS_DIR).join(PREFERRED_VERSION).join("bin");
    if has_server(&preferred) {
        return preferred;
    }
    let mut debian: Vec<PathBuf> = std::fs::read_dir(VERSIONS_DIR)
        .into_iter()
        .flatten()
        .flatten()
        .map(|entry| entry.path().join("bin"))
        .filter(|bin| has_server(bin))
        .collect();
    debian.sort();
    let path = std::env::var_os("PATH").unwrap_or_default();
    let on_path = || std::env::split_paths(&path).find(|dir| has_server(dir));
    debian.pop().or_else(on_path).unwrap_or_else(|| {
        panic!(
            "PostgreSQL server binaries (initdb, postgres) not found in {VERSIONS_DIR}/*/bin \
             or on PATH; install them: {POSTGRES_INSTALL_HINT}"
        )
    })
}

/// Under root, the `postgres` user to run as (PostgreSQL refuses root); otherwise none.
///
/// # Panics
/// Under root without a `postgres` user.
fn server_user() -> Option<(Uid, Gid)> {
    if !Uid::effective().is_root() {
        return None;
    }
    match User::from_name("postgres") {
        Ok(Some(user)) => Some((user.uid, user.gid)),
        _ => panic!(
            "running as root, PostgreSQL needs the `postgres` user, which its package creates; \
             install it: {POSTGRES_INSTALL_HINT}"
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn accepts(port: u16) -> bool {
        tokio::net::TcpStream::connect(("127.0.0.1", port))
            .await
            .is_ok()
    }

    #[tokio::test]
    async fn a_killed_server_comes_back_on_its_port_with_its_cluster() {
        let mut server = Postgres::start().await;
        assert!(accepts(server.port()).await, "{}", server.log());
        assert!(
            server
                .url()
                .ends_with(&format!(":{}/postgres", server.port()))
        );
        server.kill().await;
        assert!(!accepts(server.port()).await, "killed, yet accepting");
        server.restart().await;
        assert!(accepts(server.port()).await, "{}", server.log());
        assert!(
            server.log().matches(READY_LINE).count() >= 2,
            "{}",
            server.log()
        );
    }
}
