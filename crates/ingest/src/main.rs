//! `ingest` binary: settings, telemetry, signals, build, run.

use anyhow::Context;
use clap::Parser;
use ingest::configuration::{Cli, Settings};
use tokio_util::sync::CancellationToken;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    ingest::telemetry::init();
    let config = Settings::load(&cli)
        .and_then(|s| s.validate())
        .context("ingest settings")?;
    let shutdown = CancellationToken::new();
    ingest::signals::cancel_on_signal(shutdown.clone()).context("installing signal handlers")?;
    let app = ingest::Application::build(config).context("starting ingest")?;
    app.run(shutdown).await.context("running ingest")?;
    Ok(())
}
