//! The `jitgate` binary: parse the command line, run it, map errors to exit codes.

use clap::Parser as _;

fn main() {
    let cli = jitgate::cli::Cli::parse();
    let telemetry = jitgate::telemetry::init(cli.default_log_level());
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
    drop(telemetry);
    if let Err(e) = result {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
