//! `simulator` binary: settings, telemetry, signals, run, summary, exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use simulator::configuration::{Cli, Settings};
use tokio_util::sync::CancellationToken;

// One thread: the load figures are per core, and one writer needs no more.
#[tokio::main(flavor = "current_thread")]
async fn main() -> anyhow::Result<ExitCode> {
    let cli = Cli::parse();
    simulator::telemetry::init();
    let config = Settings::load(&cli)
        .and_then(|s| s.validate())
        .context("simulator settings")?;
    let shutdown = CancellationToken::new();
    simulator::signals::cancel_on_signal(shutdown.clone()).context("installing signal handlers")?;
    let print_expected = config.print_expected;
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
