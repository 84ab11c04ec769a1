use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    p2p_tracker::cli::run(p2p_tracker::cli::Cli::parse()).await
}
