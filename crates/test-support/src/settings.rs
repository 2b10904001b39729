//! Checks of a binary's settings errors, shared by the `cli` tests of every service: the rule
//! that a bad setting is one line on stderr with exit code 2 is the same for all of them.

use std::path::Path;
use std::time::Duration;

use crate::ServiceProcess;

/// How long a binary may take to refuse its settings.
const EXIT_WAIT: Duration = Duration::from_secs(30);

/// Runs `binary` with `args` and `RUST_BACKTRACE=1`; asserts exit code 2 and exactly one line
/// on stderr without a backtrace, and returns that line.
pub async fn settings_error(binary: impl AsRef<Path>, args: &[&str]) -> String {
    let mut process = ServiceProcess::spawn(binary, args, [("RUST_BACKTRACE", "1")]);
    let status = match process.wait_exit(EXIT_WAIT).await {
        Ok(status) => status,
        Err(e) => panic!("{e}\n{}", process.logs()),
    };
    let stderr = process.stderr();
    assert_eq!(status.code(), Some(2), "{}", process.logs());
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "one line expected:\n{stderr}");
    assert!(!stderr.to_lowercase().contains("backtrace"), "{stderr}");
    lines[0].to_owned()
}

/// A temporary `.toml` file holding `text`, removed when dropped.
pub fn settings_file(text: &str) -> tempfile::NamedTempFile {
    // unwrap: a test machine without a writable temp directory cannot run any test.
    let file = tempfile::NamedTempFile::with_suffix(".toml").unwrap();
    std::fs::write(file.path(), text).unwrap();
    file
}
