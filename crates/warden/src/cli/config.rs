//! `warden config`: check a configuration file, print its JSON Schema.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::cli::{CliResult, Failure, Format};
use crate::config;

#[derive(Debug, Args)]
pub struct ConfigArgs {
    #[command(subcommand)]
    command: ConfigCommand,
}

#[derive(Debug, Subcommand)]
enum ConfigCommand {
    /// Check a configuration as `warden serve` would: every key, value,
    /// secret reference and named file. Exit 0 when valid, 3 when not, with
    /// every problem as `file:line:column: path: message`.
    Check(CheckArgs),
    /// Print the JSON Schema of `warden.toml`.
    Schema,
}

#[derive(Debug, Args)]
struct CheckArgs {
    /// The configuration file.
    file: PathBuf,
}

pub fn run(args: ConfigArgs, format: Format) -> CliResult {
    match args.command {
        ConfigCommand::Check(args) => check(&args, format),
        ConfigCommand::Schema => {
            io::stdout()
                .lock()
                .write_all(config::raw::schema_text().as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn check(args: &CheckArgs, format: Format) -> CliResult {
    let mut out = io::stdout().lock();
    match config::load_for_serve(&args.file) {
        Ok((gateway, _)) => {
            let servers: Vec<&String> = gateway.servers.keys().collect();
            match format {
                Format::Json => {
                    writeln!(out, "{}", json!({"valid": true, "servers": servers}))?;
                }
                Format::Human => writeln!(
                    out,
                    "valid: `{}` ({} on {})",
                    args.file.display(),
                    crate::cli::count(servers.len(), "server"),
                    gateway.listen
                )?,
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(problems) => {
            match format {
                Format::Json => {
                    let list: Vec<_> = problems
                        .problems()
                        .iter()
                        .map(|p| {
                            json!({"path": p.path, "message": p.message,
                                   "line": p.location.map(|l| l.0),
                                   "column": p.location.map(|l| l.1)})
                        })
                        .collect();
                    writeln!(out, "{}", json!({"valid": false, "problems": list}))?;
                }
                Format::Human => {
                    for line in problems.lines() {
                        writeln!(out, "{line}")?;
                    }
                }
            }
            Err(Failure::invalid(anyhow!(
                "the configuration `{}` is invalid ({})",
                args.file.display(),
                crate::cli::count(problems.problems().len(), "problem")
            )))
        }
    }
}
