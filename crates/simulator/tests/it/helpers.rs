//! Running the real simulator binary against a test broker.

use std::collections::BTreeMap;
use std::process::ExitStatus;
use std::time::Duration;

use aggregator_core::{ParseLimits, Timestamp, parse_reading};
use test_support::{Message, ServiceProcess};

/// The binary under test.
pub const SIMULATOR: &str = env!("CARGO_BIN_EXE_simulator");

/// Generous: a debug build on a shared 2-core machine.
pub const WAIT: Duration = Duration::from_secs(30);

/// A finished simulator run.
pub struct Finished {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl Finished {
    /// The `--print-expected` summary.
    pub fn summary(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "summary is not JSON ({e}):\n{}\n{}",
                self.stdout, self.stderr
            )
        })
    }
}

/// Starts the simulator against `port` with `args` (the broker flags are added).
pub fn spawn(port: u16, args: &[&str]) -> ServiceProcess {
    let port = port.to_string();
    let mut all = vec!["--mqtt-host", "127.0.0.1", "--mqtt-port", port.as_str()];
    all.extend_from_slice(args);
    ServiceProcess::spawn(
        SIMULATOR,
        all,
        [("RUST_LOG", "info"), ("LOG_FORMAT", "text")],
    )
}

/// Runs the simulator to its end and returns its status and output.
pub async fn run(port: u16, args: &[&str]) -> Finished {
    let mut process = spawn(port, args);
    let status = match process.wait_exit(WAIT).await {
        Ok(status) => status,
        Err(e) => {
            process.kill().await;
            panic!("{e}\n{}", process.logs());
        }
    };
    Finished {
        status,
        stdout: process.stdout(),
        stderr: process.stderr(),
    }
}

/// Sums and counts per `(machine, index)` of the valid readings among `messages`, parsed by
/// the same core ingest uses.
pub fn sums(messages: &[Message]) -> BTreeMap<(String, u32), (f64, u64)> {
    let now = Timestamp::from_system_time(std::time::SystemTime::now());
    let mut sums = BTreeMap::new();
    for message in messages {
        if let Ok(reading) = parse_reading(
            &message.topic,
            &message.payload,
            now,
            &ParseLimits::default(),
        ) {
            let entry = sums
                .entry((reading.machine.to_owned(), reading.scrap_index))
                .or_insert((0.0, 0));
            entry.0 += reading.value;
            entry.1 += 1;
        }
    }
    sums
}

/// The `keys` of a `--print-expected` summary in the shape of [`sums`].
pub fn expected_sums(summary: &serde_json::Value) -> BTreeMap<(String, u32), (f64, u64)> {
    summary["keys"]
        .as_array()
        .expect("keys array")
        .iter()
        .map(|k| {
            let machine = k["maschinenId"].as_str().expect("maschinenId").to_owned();
            let index = u32::try_from(k["scrapIndex"].as_u64().expect("scrapIndex"))
                .expect("index fits u32");
            (
                (machine, index),
                (
                    k["sum"].as_f64().expect("sum"),
                    k["count"].as_u64().expect("count"),
                ),
            )
        })
        .collect()
}
