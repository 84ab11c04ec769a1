//! `p2p-sim`: one simulated swarm, one JSON object on stdout. Exit codes: 0 ran, 1 could not
//! write the trace, 2 usage error.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use p2p_sim::{Config, Scenario, SimError};

/// Simulates N downloaders fetching one file from a seed with p2pshare's own scheduling code
/// over a flow-level network (see the README, "Simulated swarms").
#[derive(Debug, Parser)]
#[command(name = "p2p-sim", version)]
struct Cli {
    /// Downloaders (the seed comes on top).
    #[arg(long)]
    hosts: usize,
    /// File size, MiB.
    #[arg(long)]
    file_mib: f64,
    /// Each downloader's upload, MiB/s (U).
    #[arg(long)]
    upload_mib: f64,
    #[arg(long, value_enum, default_value = "uniform")]
    scenario: Scenario,
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Print the summary as JSON (the only output format).
    #[arg(long)]
    json: bool,
    /// The seed's upload, MiB/s (default U).
    #[arg(long)]
    seed_upload_mib: Option<f64>,
    /// Each host's download, MiB/s (default: not limited).
    #[arg(long)]
    download_mib: Option<f64>,
    /// Round-trip times between hosts spread from this...
    #[arg(long, default_value_t = 20.0)]
    rtt_min_ms: f64,
    /// ...to this.
    #[arg(long, default_value_t = 120.0)]
    rtt_max_ms: f64,
    /// Simulated time per network step.
    #[arg(long, default_value_t = 5.0)]
    step_ms: f64,
    /// A downloader's plan runs at most this often (0: after every step with news).
    #[arg(long, default_value_t = 0.0)]
    schedule_ms: f64,
    /// `transfer.max_sources`.
    #[arg(long, default_value_t = 8)]
    max_sources: usize,
    /// `transfer.upload_slots`.
    #[arg(long, default_value_t = 4)]
    upload_slots: usize,
    /// Experiment: the tracker's answers in random order, not peer-id order.
    #[arg(long)]
    shuffle_answers: bool,
    /// Threads the downloaders' plans run on (0: one per core; the result is the same).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// Writes each host's completion time and the upload used per second here (JSON).
    #[arg(long)]
    trace: Option<PathBuf>,
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let mut cfg = Config::new(cli.hosts, cli.file_mib, cli.upload_mib);
    cfg.scenario = cli.scenario;
    cfg.seed = cli.seed;
    cfg.seed_upload_mib = cli.seed_upload_mib;
    cfg.download_mib = cli.download_mib;
    cfg.rtt_min_ms = cli.rtt_min_ms;
    cfg.rtt_max_ms = cli.rtt_max_ms;
    cfg.step_ms = cli.step_ms;
    cfg.schedule_ms = cli.schedule_ms;
    cfg.max_sources = cli.max_sources;
    cfg.upload_slots = cli.upload_slots;
    cfg.shuffle_answers = cli.shuffle_answers;
    cfg.threads = cli.threads;
    let _ = cli.json; // JSON is the only output; the flag is the interface's
    match run(&cfg, cli.trace.as_ref()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(SimError::Usage(m)) => {
            eprintln!("p2p-sim: {m}");
            eprintln!(
                "usage: p2p-sim --hosts N --file-mib F --upload-mib U [--scenario uniform|mixed|churn|late] [--seed S] --json"
            );
            ExitCode::from(2)
        }
        Err(e) => {
            eprintln!("p2p-sim: {e}");
            ExitCode::from(1)
        }
    }
}

fn run(cfg: &Config, trace: Option<&PathBuf>) -> Result<(), SimError> {
    let (summary, t) = p2p_sim::run(cfg)?;
    if let Some(path) = trace {
        let body = serde_json::to_vec(&t).map_err(|e| SimError::Write {
            path: path.display().to_string(),
            source: e.into(),
        })?;
        std::fs::write(path, body).map_err(|source| SimError::Write {
            path: path.display().to_string(),
            source,
        })?;
    }
    match serde_json::to_string(&summary) {
        Ok(s) => println!("{s}"),
        Err(e) => eprintln!("p2p-sim: {e}"),
    }
    Ok(())
}
