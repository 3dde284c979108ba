//! Command-line arguments and the exit-code contract.
//!
//! Exit codes: 0 success, 1 error, 2 denied, 3 invalid policies or configuration. A
//! broken pipe on output exits 0.

pub mod audit;
pub mod config;
pub mod keys;
pub mod policy;
pub mod proxy;
pub mod serve;
pub mod tools;

use std::io;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};

/// Runtime authorization for AI workloads.
///
/// Warden sits between an AI agent's MCP client and the MCP servers it uses.
/// Every tool call, resource read and prompt fetch is decided by Cedar
/// policy, in context, and recorded in a decision log.
#[derive(Debug, Parser)]
#[command(name = "warden", version, propagate_version = true)]
#[command(
    after_help = "Exit codes: 0 success, 1 error, 2 denied, 3 invalid policies or configuration.\n\
Logs go to stderr; set WARDEN_LOG (for example `debug`) to change how much."
)]
pub struct Cli {
    /// Output format for reports.
    #[arg(long, global = true, value_enum, default_value_t = Format::Human, env = "WARDEN_FORMAT")]
    pub format: Format,

    #[command(subcommand)]
    pub command: Command,
}

/// How reports are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Aligned text for people.
    Human,
    /// JSON for machines (one object per line where there are several).
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Authorize an MCP server over stdio: put this in place of the server
    /// command in your MCP client's configuration.
    #[command(after_help = "Examples:\n  \
    warden proxy --policies examples/read-only-fs --agent claude --server-name fs -- \\\n    \
    npx -y @modelcontextprotocol/server-filesystem /srv/data\n  \
    warden proxy --config warden.toml --server fs\n\n\
    Every decision is written to the decision log; read it with `warden audit tail`.\n\
    Denied calls get JSON-RPC error -32010 naming the decision id and the reason.")]
    Proxy(proxy::ProxyArgs),
    /// Run the central gateway: every configured MCP server at its own
    /// Streamable HTTP endpoint, for agents with API keys or JWTs.
    #[command(after_help = "Example:\n  \
    warden serve --config examples/gateway/warden.toml\n\n\
    Each server is served at `/mcp/NAME`; `/healthz`, `/readyz` and `/metrics` are for operators.\n\
    Mint agent keys with `warden keys create`; check the file with `warden config check`.")]
    Serve(serve::ServeArgs),
    /// Manage the API keys agents present to `warden serve`.
    Keys(keys::KeysArgs),
    /// Review tool definitions: list them, see what changed, accept or
    /// reject a held one.
    Tools(tools::ToolsArgs),
    /// Check a configuration file, or print its JSON Schema.
    Config(config::ConfigArgs),
    /// Work with policy sets.
    Policy(policy::PolicyArgs),
    /// Read the decision log.
    Audit(audit::AuditArgs),
}

/// Which store a command works on.
#[derive(Debug, clap::Args)]
pub struct StoreArgs {
    /// The store (SQLite file). Defaults to the configuration's `store`,
    /// else `decisions.db` in the user's data directory.
    #[arg(long, env = "WARDEN_STORE")]
    store: Option<std::path::PathBuf>,
    /// A configuration file whose `store` to use.
    #[arg(long, env = "WARDEN_CONFIG")]
    config: Option<std::path::PathBuf>,
}

/// Opens the store `args` name.
pub fn open_store(args: &StoreArgs) -> Result<warden_store::SqliteStore, Failure> {
    let from_file = match &args.config {
        Some(path) => {
            let file = crate::config::Config::load(path)?;
            file.raw.store.as_ref().map(|p| file.resolve(p))
        }
        None => None,
    };
    let path = crate::config::store_path(args.store.as_deref().or(from_file.as_deref()))?;
    Ok(warden_store::SqliteStore::open(&path)?)
}

/// A failure of a command: its exit code, its cause chain and an optional
/// hint.
#[derive(Debug)]
pub struct Failure {
    error: anyhow::Error,
    code: u8,
    help: Option<String>,
}

impl Failure {
    /// A general error (exit 1).
    pub fn error(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            error: error.into(),
            code: 1,
            help: None,
        }
    }

    /// Policies failed to validate (exit 3).
    pub fn invalid(error: impl Into<anyhow::Error>) -> Self {
        Failure {
            error: error.into(),
            code: 3,
            help: None,
        }
    }

    /// Adds a hint printed on its own line.
    pub fn with_help(mut self, help: impl Into<String>) -> Self {
        self.help = Some(help.into());
        self
    }

    pub fn exit_code(&self) -> ExitCode {
        if self.is_broken_pipe() {
            ExitCode::SUCCESS
        } else {
            ExitCode::from(self.code)
        }
    }

    pub fn is_broken_pipe(&self) -> bool {
        self.error.chain().any(|cause| {
            cause
                .downcast_ref::<io::Error>()
                .is_some_and(|e| e.kind() == io::ErrorKind::BrokenPipe)
        })
    }

    /// The error and its causes, outermost first, joined by colons.
    pub fn chain(&self) -> String {
        self.error
            .chain()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(": ")
    }

    pub fn help(&self) -> Option<&str> {
        self.help.as_deref()
    }
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(error: E) -> Self {
        Failure::error(error)
    }
}

pub type CliResult = Result<ExitCode, Failure>;

/// Identity ids appear in policy and logs; refuse ones that cannot be read
/// back unambiguously.
pub fn check_id(flag: &str, id: &str) -> Result<(), Failure> {
    if id.is_empty() || id.len() > 256 || id.chars().any(char::is_control) {
        return Err(Failure::error(anyhow::anyhow!(
            "`--{flag}` must be 1 to 256 characters with no control characters"
        )));
    }
    Ok(())
}

/// `1 problem`, `3 problems`.
pub fn count(n: usize, noun: &str) -> String {
    if n == 1 {
        format!("1 {noun}")
    } else {
        format!("{n} {noun}s")
    }
}
