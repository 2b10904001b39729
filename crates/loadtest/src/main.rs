//! `loadtest`: parse the command line, run one measurement, print its table row.

use anyhow::Context;
use clap::Parser;
use loadtest::{Cli, report};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let stop = service_kit::shutdown::shutdown_signal().context("installing signal handlers")?;
    // On Ctrl-C or SIGTERM the run is dropped, which kills its broker and services.
    let row = tokio::select! {
        row = loadtest::run(&cli.command) => row?,
        signal = stop => anyhow::bail!("interrupted by {signal}"),
    };
    if cli.header {
        println!("{}", report::HEADER);
    }
    println!("{row}");
    Ok(())
}
