//! `warden tools`: review the tool definitions Warden has pinned.
//!
//! Pinning itself (what a definition is, when one is held) belongs to
//! `warden_mcp::pins`; this command shows the pins and records reviewers'
//! verdicts in the store.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand};
use serde_json::{json, Value};
use warden_store::{PinState, PinStore, ToolPin};

use crate::cli::{open_store, CliResult, Failure, Format, StoreArgs};

#[derive(Debug, Args)]
#[command(
    after_help = "The first time Warden sees a server's tools it trusts them as they are.\n\
A tool whose definition (name, description, input schema, annotations) changes later, and a\n\
tool that appears later, is hidden and its calls refused until it is accepted here.\n\n\
Example:\n  \
warden tools list --config warden.toml --held\n  \
warden tools diff --config warden.toml fs read_file\n  \
warden tools accept --config warden.toml fs read_file"
)]
pub struct ToolsArgs {
    #[command(subcommand)]
    command: ToolsCommand,
}

#[derive(Debug, Subcommand)]
enum ToolsCommand {
    /// List every pinned definition with its state.
    List(ListArgs),
    /// Show how a held definition differs from the one last accepted.
    Diff(ToolArgs),
    /// Accept a tool's held definition; it is listed and callable again.
    Accept(ToolArgs),
    /// Reject a tool's held definition; it stays hidden and refused.
    Reject(ToolArgs),
}

#[derive(Debug, Args)]
struct ListArgs {
    /// Only this server's tools.
    #[arg(long)]
    server: Option<String>,
    /// Only definitions waiting for a reviewer.
    #[arg(long)]
    held: bool,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
struct ToolArgs {
    /// The server's configured name.
    server: String,
    /// The tool's name.
    tool: String,
    #[command(flatten)]
    store: StoreArgs,
}

pub fn run(args: ToolsArgs, format: Format) -> CliResult {
    match args.command {
        ToolsCommand::List(args) => list(&args, format),
        ToolsCommand::Diff(args) => diff(&args),
        ToolsCommand::Accept(args) => decide(&args, PinState::Accepted),
        ToolsCommand::Reject(args) => decide(&args, PinState::Rejected),
    }
}

fn list(args: &ListArgs, format: Format) -> CliResult {
    let pins = open_store(&args.store)?.all_pins()?;
    let shown = pins.iter().filter(|p| {
        args.server.as_deref().is_none_or(|s| s == p.server)
            && (!args.held || p.state == PinState::Pending)
    });
    let mut out = io::stdout().lock();
    for pin in shown {
        match format {
            Format::Json => writeln!(out, "{}", pin_json(pin))?,
            Format::Human => writeln!(
                out,
                "{:<9} {}/{}  {}  first seen {}{}",
                pin.state.as_str(),
                pin.server,
                pin.tool.escape_debug(),
                short(&pin.hash),
                pin.first_seen,
                pin.decided
                    .as_deref()
                    .map_or(String::new(), |d| format!("  decided {d}")),
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn diff(args: &ToolArgs) -> CliResult {
    let pins = open_store(&args.store)?.server_pins(&args.server)?;
    let held = held_pin(&pins, args)?;
    let accepted = pins
        .iter()
        .filter(|p| p.tool == args.tool && p.state == PinState::Accepted)
        .max_by(|a, b| (&a.decided, &a.first_seen).cmp(&(&b.decided, &b.first_seen)));
    let old = accepted.map_or(String::new(), |p| pretty(&p.definition));
    let new = pretty(&held.definition);
    let mut out = io::stdout().lock();
    writeln!(
        out,
        "--- {}/{} {}",
        args.server,
        args.tool,
        accepted.map_or(
            "(no accepted definition: a new tool)".to_owned(),
            |p| format!("accepted {}", short(&p.hash))
        )
    )?;
    writeln!(
        out,
        "+++ {}/{} held {}",
        args.server,
        args.tool,
        short(&held.hash)
    )?;
    for change in similar::TextDiff::from_lines(&old, &new).iter_all_changes() {
        let sign = match change.tag() {
            similar::ChangeTag::Delete => '-',
            similar::ChangeTag::Insert => '+',
            similar::ChangeTag::Equal => ' ',
        };
        write!(out, "{sign}{change}")?;
    }
    Ok(ExitCode::SUCCESS)
}

fn decide(args: &ToolArgs, state: PinState) -> CliResult {
    let mut store = open_store(&args.store)?;
    let pins = store.server_pins(&args.server)?;
    let hash = held_pin(&pins, args)?.hash.clone();
    let now = warden_mcp::record::now_rfc3339();
    store.decide_pin(&args.server, &args.tool, &hash, state, &now)?;
    eprintln!(
        "warden: {} `{}/{}` {}; sessions see it at their next `tools/list`",
        state.as_str(),
        args.server,
        args.tool,
        short(&hash)
    );
    Ok(ExitCode::SUCCESS)
}

/// The newest held definition of the tool `args` names.
fn held_pin<'a>(pins: &'a [ToolPin], args: &ToolArgs) -> Result<&'a ToolPin, Failure> {
    pins.iter()
        .filter(|p| p.tool == args.tool && p.state == PinState::Pending)
        .max_by(|a, b| a.first_seen.cmp(&b.first_seen))
        .ok_or_else(|| {
            Failure::error(anyhow!(
                "no held definition of tool `{}` on server `{}`",
                args.tool.escape_debug(),
                args.server.escape_debug()
            ))
            .with_help("see `warden tools list --held`")
        })
}

fn pretty(definition: &str) -> String {
    let text = serde_json::from_str::<Value>(definition)
        .ok()
        .and_then(|v| serde_json::to_string_pretty(&v).ok())
        .unwrap_or_else(|| definition.to_owned());
    format!("{text}\n")
}

fn short(hash: &str) -> &str {
    hash.get(..19).unwrap_or(hash)
}

fn pin_json(pin: &ToolPin) -> Value {
    json!({
        "server": pin.server,
        "tool": pin.tool,
        "hash": pin.hash,
        "state": pin.state.as_str(),
        "first_seen": pin.first_seen,
        "decided": pin.decided,
        "definition": serde_json::from_str::<Value>(&pin.definition).unwrap_or(Value::Null),
    })
}
