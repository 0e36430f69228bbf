//! `revguard demo`: the whole pipeline on a simulated clock.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Args;

#[derive(Args)]
pub struct DemoArgs {
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    #[arg(long, default_value_t = 400)]
    pub customers: usize,
    /// Keep the demo's database here (for `revguard detect --at` or the API).
    #[arg(long = "keep-db")]
    pub keep_db: Option<PathBuf>,
    /// Only build the database (with --keep-db): no detection, no timeline.
    #[arg(long)]
    pub replay_only: bool,
}

pub async fn run(args: DemoArgs) -> anyhow::Result<ExitCode> {
    let DemoArgs {
        seed,
        customers,
        keep_db,
        replay_only,
    } = args;
    let options = revguard_local::demo::DemoOptions {
        seed,
        customers,
        db: keep_db,
        replay_only,
    };
    let started = std::time::Instant::now();
    let report = revguard_local::demo::run(options.clone()).await?;
    if !replay_only {
        revguard_local::demo::print(&report, &options);
        println!(
            "
(ran in {:.1} s)",
            started.elapsed().as_secs_f64()
        );
    }
    Ok(ExitCode::SUCCESS)
}
