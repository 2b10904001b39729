//! `loadtest`: parse the command line, run one measurement, print its table row.

use clap::Parser;
use loadtest::{Cli, report};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    // On Ctrl-C or SIGTERM the run is dropped, which kills its broker and services.
    let row = tokio::select! {
        row = loadtest::run(&cli.command) => row?,
        () = loadtest::stop_signal() => anyhow::bail!("interrupted"),
    };
    if cli.header {
        println!("{}", report::HEADER);
    }
    println!("{row}");
    Ok(())
}
