//! `warden keys`: the API keys agents present to `warden serve`.

use std::io::{self, Write};
use std::process::ExitCode;

use anyhow::anyhow;
use clap::{Args, Subcommand, ValueEnum};
use serde_json::json;
use warden_gateway::auth::mint_api_key;
use warden_policy::Principal;
use warden_store::{ApiKey, KeyStore};

use crate::cli::{open_store as open, CliResult, Failure, Format, StoreArgs};

#[derive(Debug, Args)]
pub struct KeysArgs {
    #[command(subcommand)]
    command: KeysCommand,
}

#[derive(Debug, Subcommand)]
enum KeysCommand {
    /// Mint a key for an agent. The key is printed once; the store keeps
    /// only its hash.
    #[command(after_help = "Example:\n  \
    warden keys create --config warden.toml --agent claude --acting-for alice\n\n\
    The agent sends it as `Authorization: Bearer <key>`.")]
    Create(CreateArgs),
    /// List keys (ids, principals, state; never the keys).
    List(StoreArgs),
    /// Revoke a key by its id; the gateway refuses it from then on.
    Revoke(RevokeArgs),
}

#[derive(Debug, Args)]
struct CreateArgs {
    /// The principal's id (`Agent::"ID"` in policy).
    #[arg(long)]
    agent: String,
    /// What kind of principal `--agent` names.
    #[arg(long, value_enum, default_value_t = PrincipalKind::Agent)]
    principal_type: PrincipalKind,
    /// The human the agent acts for (`context.acting_for` in policy).
    #[arg(long)]
    acting_for: Option<String>,
    /// A note for people (`ci runner`).
    #[arg(long)]
    label: Option<String>,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Args)]
struct RevokeArgs {
    /// The key's id (from `warden keys list`).
    key_id: String,
    #[command(flatten)]
    store: StoreArgs,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PrincipalKind {
    Agent,
    ServiceAccount,
    Human,
}

pub fn run(args: KeysArgs, format: Format) -> CliResult {
    match args.command {
        KeysCommand::Create(args) => create(args, format),
        KeysCommand::List(args) => list(&args, format),
        KeysCommand::Revoke(args) => revoke(&args),
    }
}

fn create(args: CreateArgs, format: Format) -> CliResult {
    for (flag, id) in [
        ("agent", Some(&args.agent)),
        ("acting-for", args.acting_for.as_ref()),
    ] {
        if let Some(id) = id {
            crate::cli::check_id(flag, id)?;
        }
    }
    let principal = match args.principal_type {
        PrincipalKind::Agent => Principal::Agent(args.agent),
        PrincipalKind::ServiceAccount => Principal::ServiceAccount(args.agent),
        PrincipalKind::Human => Principal::Human(args.agent),
    };
    let mut store = open(&args.store)?;
    let (key, stored) = mint_api_key(&principal, args.acting_for, args.label, now());
    store.add_key(&stored)?;
    let mut out = io::stdout().lock();
    match format {
        Format::Json => writeln!(out, "{}", json!({"key": key, "key_id": stored.key_id}))?,
        Format::Human => {
            writeln!(out, "{key}")?;
            eprintln!(
                "warden: key `{}` for {principal}; it is shown only now, store it safely",
                stored.key_id
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn list(args: &StoreArgs, format: Format) -> CliResult {
    let keys = open(args)?.list_keys()?;
    let mut out = io::stdout().lock();
    for key in &keys {
        match format {
            Format::Json => writeln!(out, "{}", key_json(key))?,
            Format::Human => writeln!(
                out,
                "{}  {}::{:?}  acting-for {}  created {}  {}",
                key.key_id,
                key.principal_type,
                key.principal_id,
                key.acting_for
                    .as_deref()
                    .map_or("-".to_owned(), |h| format!("{h:?}")),
                key.created,
                key.revoked
                    .as_deref()
                    .map_or("active".to_owned(), |r| format!("revoked {r}")),
            )?,
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn revoke(args: &RevokeArgs) -> CliResult {
    if open(&args.store)?.revoke_key(&args.key_id, &now())? {
        eprintln!("warden: key `{}` revoked", args.key_id);
        Ok(ExitCode::SUCCESS)
    } else {
        Err(
            Failure::error(anyhow!("no active key with id `{}`", args.key_id))
                .with_help("see `warden keys list`"),
        )
    }
}

fn key_json(key: &ApiKey) -> serde_json::Value {
    json!({
        "key_id": key.key_id,
        "principal": {"type": key.principal_type, "id": key.principal_id},
        "acting_for": key.acting_for,
        "label": key.label,
        "created": key.created,
        "revoked": key.revoked,
    })
}

fn now() -> String {
    warden_mcp::record::now_rfc3339()
}
