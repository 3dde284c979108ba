//! `warden policy`: validate a policy directory, print the schema.

use std::io::{self, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Subcommand};
use serde_json::json;
use warden_policy::{Problem, SCHEMA_TEXT};

use crate::cli::{CliResult, Failure, Format};
use crate::policy_dir;

#[derive(Debug, Args)]
pub struct PolicyArgs {
    #[command(subcommand)]
    command: PolicyCommand,
}

#[derive(Debug, Subcommand)]
enum PolicyCommand {
    /// Check every `.cedar` file (and `entities.json`) of a policy directory
    /// against the Warden schema in strict mode. Exit 0 when valid, 3 when
    /// not, with every problem as `file:line:column: message`.
    Validate(ValidateArgs),
    /// Print the Warden Cedar schema that policies are validated against.
    Schema,
}

#[derive(Debug, Args)]
struct ValidateArgs {
    /// The policy directory.
    dir: PathBuf,
}

pub fn run(args: PolicyArgs, format: Format) -> CliResult {
    match args.command {
        PolicyCommand::Validate(args) => validate(&args, format),
        PolicyCommand::Schema => {
            io::stdout().lock().write_all(SCHEMA_TEXT.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn validate(args: &ValidateArgs, format: Format) -> CliResult {
    let dir = args.dir.display().to_string();
    let mut out = io::stdout().lock();
    match policy_dir::load_dir(&args.dir) {
        Ok(policies) => {
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({
                        "valid": true,
                        "policies": policies.policy_count(),
                        "version": policies.version(),
                        "warnings": policies.warnings().iter().map(problem_json).collect::<Vec<_>>(),
                    })
                )?,
                Format::Human => {
                    for warning in policies.warnings() {
                        writeln!(out, "{}: warning: {}", location(warning), warning.message)?;
                    }
                    let policies_text = match policies.policy_count() {
                        1 => "1 policy".to_owned(),
                        n => format!("{n} policies"),
                    };
                    writeln!(
                        out,
                        "valid: {policies_text} in `{dir}` (version {})",
                        policies.version()
                    )?;
                }
            }
            Ok(ExitCode::SUCCESS)
        }
        Err(error) => {
            match format {
                Format::Json => writeln!(
                    out,
                    "{}",
                    json!({
                        "valid": false,
                        "problems": error.problems.iter().map(problem_json).collect::<Vec<_>>(),
                    })
                )?,
                Format::Human => {
                    for problem in &error.problems {
                        writeln!(out, "{problem}")?;
                        if let Some(help) = &problem.help {
                            writeln!(out, "  help: {help}")?;
                        }
                    }
                }
            }
            Err(Failure::invalid(anyhow::anyhow!(
                "the policy set in `{dir}` is invalid ({})",
                crate::cli::count(error.problems.len(), "problem")
            )))
        }
    }
}

fn location(problem: &Problem) -> String {
    format!("{}:{}:{}", problem.file, problem.line, problem.column)
}

fn problem_json(problem: &Problem) -> serde_json::Value {
    json!({
        "file": problem.file,
        "line": problem.line,
        "column": problem.column,
        "message": problem.message,
        "help": problem.help,
    })
}
