//! `gateway`: flags and settings (a bad one is one line on stderr and exit code 2),
//! telemetry (with actix-http's line per malformed request rate-limited), signals, build, run
//! until SIGINT/SIGTERM. A start-up or run failure is one line too (exit code 1).

use std::process::ExitCode;

use anyhow::Context;
use gateway::configuration::BINARY;
use gateway::http::request_errors::RequestErrorLog;
use gateway::{Application, GatewayConfig, Settings};
use service_kit::link::LOG_EVERY;
use service_kit::telemetry;
use tracing_subscriber::layer::SubscriberExt;

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
            eprintln!("gateway: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(config: GatewayConfig) -> anyhow::Result<()> {
    let logs = telemetry::subscriber(
        telemetry::env_filter("info"),
        telemetry::json_requested(),
        std::io::stderr,
    );
    telemetry::init(Box::new(logs.with(RequestErrorLog::new(LOG_EVERY))))?;
    let shutdown = service_kit::shutdown::shutdown_token().context("installing signal handlers")?;
    let app = Application::from_config(config).context("starting the gateway")?;
    app.run(shutdown).await.context("gateway failed")
}
