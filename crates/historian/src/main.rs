//! `historian` binary: flags and settings (a bad one is one line on stderr and exit code 2),
//! telemetry, signals, build, run. A start-up or run failure is one line too (exit code 1).

use std::process::ExitCode;

use anyhow::Context;
use historian::configuration::{BINARY, HistorianConfig, Settings};

#[tokio::main]
async fn main() -> ExitCode {
    let config = BINARY
        .settings::<Settings>()
        .validate()
        .unwrap_or_else(|e| e.exit(BINARY.name));
    match run(config).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            // `{:#}`: the causes on one line, and no backtrace for an operator's problem.
            eprintln!("historian: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: HistorianConfig) -> anyhow::Result<()> {
    service_kit::telemetry::init_stderr("info")?;
    let shutdown = service_kit::shutdown::shutdown_token().context("installing signal handlers")?;
    let app = historian::Application::build(config).context("starting historian")?;
    app.run(shutdown).await.context("running historian")
}
