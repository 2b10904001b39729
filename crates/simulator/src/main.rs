//! `simulator` binary: flags and settings (a bad one is one line on stderr and exit code 2),
//! telemetry, signals, run, summary, exit code (1 when a message was not delivered or the run
//! failed, with the failure on one line).

use std::process::ExitCode;

use anyhow::Context;
use simulator::configuration::{BINARY, Settings, SimConfig};

// One thread: the load figures are per core, and one writer needs no more.
#[tokio::main(flavor = "current_thread")]
async fn main() -> ExitCode {
    let config = BINARY
        .settings::<Settings>()
        .validate()
        .unwrap_or_else(|e| e.exit(BINARY.name));
    match run(config).await {
        Ok(code) => code,
        Err(e) => {
            // `{:#}`: the causes on one line, and no backtrace for an operator's problem.
            eprintln!("simulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: SimConfig) -> anyhow::Result<ExitCode> {
    service_kit::telemetry::init_stderr("info")?;
    let shutdown = service_kit::shutdown::shutdown_token().context("installing signal handlers")?;
    let print_expected = config.settings.print_expected;
    // One line, no backtrace: "the broker is not there" is an operator's error, not a bug.
    let summary = match simulator::run(config, shutdown).await {
        Ok(summary) => summary,
        Err(e) => {
            eprintln!("simulator: {e}");
            return Ok(ExitCode::FAILURE);
        }
    };
    if print_expected {
        println!(
            "{}",
            serde_json::to_string(&summary).context("encoding the summary")?
        );
    }
    // Not complete: some message did not reach the broker (or was not acknowledged).
    Ok(if summary.complete() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
