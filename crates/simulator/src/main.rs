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
        Ok(summary) if summary.complete() => ExitCode::SUCCESS,
        // Some message did not reach the broker (or was not acknowledged).
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            // `{:#}`: the causes on one line, and no backtrace for an operator's problem (the
            // broker is not there).
            eprintln!("simulator: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: SimConfig) -> anyhow::Result<simulator::Summary> {
    service_kit::telemetry::init_stderr("info")?;
    let shutdown = service_kit::shutdown::shutdown_token().context("installing signal handlers")?;
    let print_expected = config.settings.print_expected;
    let summary = simulator::run(config, shutdown).await?;
    if print_expected {
        let json = serde_json::to_string(&summary).context("encoding the summary")?;
        println!("{json}");
    }
    Ok(summary)
}
