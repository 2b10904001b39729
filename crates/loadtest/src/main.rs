//! `loadtest`: parse the command line, run one measurement, print its table row.

use clap::Parser;
use loadtest::{Cli, report};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let row = loadtest::run(&cli.command).await?;
    if cli.header {
        println!("{}", report::HEADER);
    }
    println!("{row}");
    Ok(())
}
