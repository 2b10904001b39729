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

/// Checks a service's example settings file (its settings reference): the committed file at
/// `path` must be the text `--example-config` prints now (`current`), and with every
/// `#key = value` line uncommented it must be a file the service accepts (`accepts` loads the
/// file whose path it is given).
///
/// # Panics
/// When the file is out of date (the message says how to regenerate it) or not accepted.
pub fn check_example_file(path: &str, current: &str, accepts: impl Fn(&str) -> Result<(), String>) {
    let committed = std::fs::read_to_string(path).unwrap_or_default();
    let binary = Path::new(path)
        .file_name()
        .and_then(|n| n.to_str())
        .and_then(|n| n.split('.').next())
        .unwrap_or("the service");
    assert!(
        committed == current,
        "{path} is out of date: cargo run -q -p {binary} -- --example-config > {path}"
    );
    // Doc lines start with `# `; an unset key (`#data_dir =`) has no value to uncomment.
    let uncommented: Vec<&str> = committed
        .lines()
        .map(|line| match line.strip_prefix('#') {
            Some(rest)
                if rest.starts_with(|c: char| c.is_ascii_lowercase())
                    && !rest.trim_end().ends_with('=') =>
            {
                rest
            }
            _ => line,
        })
        .collect();
    let file = settings_file(&uncommented.join("\n"));
    if let Err(e) = accepts(file.path().to_str().unwrap()) {
        panic!("{path} with every key uncommented is refused: {e}");
    }
}
