use clap::Parser;

#[tokio::main]
async fn main() -> std::process::ExitCode {
    p2p_peer::memory::keep_large_buffers_mmapped();
    p2p_peer::app::run(p2p_peer::cli::Cli::parse()).await
}
