//! `gateway`: settings, telemetry, build, run until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use gateway::{Application, Cli, Settings, shutdown_signal, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(telemetry::subscriber(
        "info",
        telemetry::json_requested(),
        std::io::stderr,
    ))?;
    let settings = Settings::load(&cli, |name| std::env::var(name).ok())?;
    let app = Application::build(settings).context("starting the gateway")?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        match shutdown_signal().await {
            Ok(signal) => tracing::info!(signal, "stopping"),
            Err(e) => tracing::error!(error = %e, "cannot listen for signals; stopping"),
        }
        on_signal.cancel();
    });
    app.run(shutdown).await.context("gateway failed")?;
    Ok(())
}
