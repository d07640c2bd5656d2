//! `apiwall`: az-style commands over the apiwall service.
//!
//! Exit codes: 0 success, 1 failed operation, 2 usage error, 3 resource not found.

use std::process::ExitCode;

mod args;
mod argv;
mod commands;
mod gate;
mod lab;
mod output;

fn main() -> ExitCode {
    let argv = match argv::expand(std::env::args_os()) {
        Ok(a) => a,
        Err(e) => {
            eprintln!("ERROR: {e:#}");
            return ExitCode::from(2);
        }
    };
    let cli = match <args::Cli as clap::Parser>::try_parse_from(argv) {
        Ok(cli) => cli,
        Err(e) => {
            // Help and version are not errors; clap knows which is which.
            let code = if e.use_stderr() { 2 } else { 0 };
            let _ = e.print();
            return ExitCode::from(code);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("APIWALL_LOG")
                .unwrap_or_else(|_| cli.global.log_filter().into()),
        )
        .init();
    commands::run(cli)
}
