//! The `jitgate` binary: parse the command line, run it, map errors to exit codes.

use clap::Parser as _;

fn main() {
    let cli = jitgate::cli::Cli::parse();
    // Logs go to stderr: with --stdio, stdout carries the MCP protocol.
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("JITGATE_LOG").unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info,rmcp=warn")),
        )
        .init();
    let runtime = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            std::process::exit(1);
        }
    };
    let result = runtime.block_on(jitgate::cli::run(cli));
    // Do not wait for blocked stdin reads of the stdio transport.
    runtime.shutdown_timeout(std::time::Duration::from_secs(2));
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
