//! Finding external tools and free ports.

use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};

/// Directories searched after `PATH`: Debian installs the `mosquitto` broker in `/usr/sbin`,
/// which is not on a normal user's `PATH`.
const EXTRA_DIRS: &[&str] = &[
    "/usr/sbin",
    "/usr/local/sbin",
    "/sbin",
    "/opt/homebrew/sbin",
];

/// Returns the full path of the executable `name`, searched on `PATH` and then in the sbin
/// directories.
///
/// # Panics
/// When the tool cannot be found, with a message naming it and how to install it
/// (`install_hint`). Tests must fail, never skip, when a tool is missing.
pub fn require_tool(name: &str, install_hint: &str) -> PathBuf {
    let path_var = std::env::var_os("PATH").unwrap_or_default();
    let candidates = std::env::split_paths(&path_var).chain(EXTRA_DIRS.iter().map(PathBuf::from));
    for dir in candidates {
        let candidate = dir.join(name);
        if is_executable(&candidate) {
            return candidate;
        }
    }
    panic!(
        "required tool `{name}` was not found on PATH or in {EXTRA_DIRS:?}; install it: {install_hint}"
    );
}

fn is_executable(path: &std::path::Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .is_ok_and(|meta| meta.is_file() && meta.permissions().mode() & 0o111 != 0)
}

/// Returns a TCP port on 127.0.0.1 that was free a moment ago (bound with port 0, then released).
///
/// Another process may take it before the caller binds it; [`crate::Broker::start`] retries
/// with a new port when that happens.
pub fn free_port() -> u16 {
    // expect: binding port 0 on loopback only fails when the machine is out of sockets.
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0 for a free port");
    listener
        .local_addr()
        .expect("local address of a bound listener")
        .port()
}

/// Returns an MQTT client id unique within this machine and process run: `prefix-<pid>-<n>`.
///
/// Mosquitto disconnects the older of two clients with the same id, so every helper client
/// needs its own.
pub fn unique_client_id(prefix: &str) -> String {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}

/// The path of the service binary `name` (`ingest`, `gateway`, `simulator`) in the target
/// directory this test was built into (`target/debug` for `cargo test`).
///
/// Cargo hands a test only the binaries of its own crate (`CARGO_BIN_EXE_*`); a test that runs
/// another crate's service (the end-to-end tests, the load runs) finds it here. The binary is
/// not built on demand: `scripts/test.sh` builds the services before running the tests.
///
/// # Panics
/// When the binary is missing, with the command that builds it.
pub fn service_binary(name: &str) -> PathBuf {
    // expect: a running test always has an executable path.
    let exe = std::env::current_exe().expect("path of the running test");
    // Test executables live in `target/<profile>/deps`, binaries (and the loadtest tool)
    // directly in `target/<profile>`.
    let mut dir = exe.parent().unwrap_or(&exe);
    if dir.ends_with("deps") {
        dir = dir.parent().unwrap_or(dir);
    }
    let path = dir.join(name);
    assert!(
        is_executable(&path),
        "service binary {} is missing: build it first with `cargo build -p {name}` \
         (scripts/test.sh does)",
        path.display()
    );
    path
}
