//! The `warden` command: a thin layer of argument parsing and output over
//! the policy, MCP and store crates.

mod cli;
mod config;
mod policy_dir;

use std::io::{self, Write};
use std::process::ExitCode;

use clap::Parser as _;

use crate::cli::{Cli, Command, Failure};

/// Stack for the command's thread. Cedar's parser, validator and evaluator
/// recurse over a policy's expressions; a generous stack (reserved, not
/// committed, memory) keeps hostile nesting from aborting the process.
const STACK_BYTES: usize = 256 * 1024 * 1024;

fn main() -> ExitCode {
    let command = std::thread::Builder::new()
        .name("warden".to_owned())
        .stack_size(STACK_BYTES)
        .spawn(run);
    match command.map(|handle| handle.join()) {
        Ok(Ok(code)) => code,
        Ok(Err(_)) | Err(_) => {
            let _ = writeln!(io::stderr(), "warden: error: internal failure");
            ExitCode::from(1)
        }
    }
}

fn run() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            // Usage errors exit 1: exit 2 means "denied" in Warden's contract.
            let _ = e.print();
            return if e.use_stderr() {
                ExitCode::from(1)
            } else {
                ExitCode::SUCCESS
            };
        }
    };
    init_logging();
    let result = match cli.command {
        Command::Proxy(args) => cli::proxy::run(args),
        Command::Serve(args) => cli::serve::run(args),
        Command::Keys(args) => cli::keys::run(args, cli.format),
        Command::Tools(args) => cli::tools::run(args, cli.format),
        Command::Config(args) => cli::config::run(args, cli.format),
        Command::Policy(args) => cli::policy::run(args, cli.format),
        Command::Audit(args) => cli::audit::run(args, cli.format),
    };
    match result {
        Ok(code) => code,
        Err(failure) => report(failure),
    }
}

fn report(failure: Failure) -> ExitCode {
    let code = failure.exit_code();
    if !failure.is_broken_pipe() {
        let mut stderr = io::stderr().lock();
        let _ = writeln!(stderr, "warden: error: {}", failure.chain());
        if let Some(help) = failure.help() {
            let _ = writeln!(stderr, "  help: {help}");
        }
    }
    code
}

/// Logs go to stderr only: over stdio, stdout carries the protocol.
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_env("WARDEN_LOG").unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new("warn,warden=info,warden_mcp=info,warden_gateway=info")
    });
    use std::io::IsTerminal as _;
    let colour = io::stderr().is_terminal() && std::env::var_os("NO_COLOR").is_none();
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(colour)
        .with_writer(io::stderr)
        .with_target(false)
        .try_init();
}
