//! `gateway`: settings, telemetry, build, run until SIGINT/SIGTERM.

use anyhow::Context;
use clap::Parser;
use gateway::{Application, Cli, Settings, shutdown_signal, telemetry};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    telemetry::init(telemetry::subscriber(
        telemetry::env_filter("info"),
        telemetry::json_requested(),
        std::io::stderr,
    ))?;
    let signal = shutdown_signal().context("installing signal handlers")?;
    let settings = Settings::load(&cli, |name| std::env::var(name).ok())?;
    let app = Application::build(settings).context("starting the gateway")?;
    let shutdown = CancellationToken::new();
    let on_signal = shutdown.clone();
    tokio::spawn(async move {
        let signal = signal.await;
        tracing::info!(signal, "stopping");
        on_signal.cancel();
    });
    app.run(shutdown).await.context("gateway failed")?;
    Ok(())
}
