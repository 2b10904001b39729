//! `historian-demo`: fills a store with synthetic history (machines `demo-001` ..., revision
//! 0) for demos and the query benchmark. Creates the tables when missing; never changes a
//! stored row, so it is safe on a store a historian is writing.

use std::process::ExitCode;
use std::time::Instant;

use anyhow::Context;
use clap::Parser;
use historian::configuration::StoreKind;
use historian::demo::{self, Plan};
use historian::store::Store;

/// Fills a historian store with N days x K keys of synthetic minute buckets and hourly rollups.
#[derive(Debug, Parser)]
#[command(name = "historian-demo", version)]
struct Args {
    /// The store, as the historian's store.url: sqlite://FILE or postgres://USER:PASS@HOST/DB.
    #[arg(long, env = "HISTORIAN_STORE_URL")]
    store_url: String,
    /// Days of history, up to the current hour.
    #[arg(long, default_value_t = 7, value_parser = clap::value_parser!(u32).range(1..=400))]
    days: u32,
    /// Machines: demo-001, demo-002, ...
    #[arg(long, default_value_t = 20, value_parser = clap::value_parser!(u32).range(1..=999))]
    machines: u32,
    /// Scrap indexes per machine, from 1.
    #[arg(long, default_value_t = 5, value_parser = clap::value_parser!(u32).range(1..=100))]
    indexes: u32,
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("historian-demo: {e:#}");
            ExitCode::FAILURE
        }
    }
}

async fn run(args: &Args) -> anyhow::Result<()> {
    let kind = StoreKind::of(&args.store_url)
        .context("--store-url must start with sqlite:// or postgres://")?;
    let store = Store::open(&args.store_url, kind)?;
    store.migrate().await.context("preparing the store")?;
    let end = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)?
        .as_secs() as i64;
    let plan = Plan {
        days: args.days,
        machines: args.machines,
        indexes: args.indexes,
        end,
    };
    let started = Instant::now();
    let mut last_report = Instant::now();
    let filled = demo::fill(&store, plan, |so_far| {
        if last_report.elapsed().as_secs() >= 10 {
            eprintln!("historian-demo: {} minute rows so far", so_far.minutes);
            last_report = Instant::now();
        }
    })
    .await?;
    store.close().await;
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{} minute rows and {} hour rows for {} keys over {} days in {secs:.1} s ({:.0} rows/s)",
        filled.minutes,
        filled.hours,
        args.machines * args.indexes,
        args.days,
        (filled.minutes + filled.hours) as f64 / secs
    );
    Ok(())
}
