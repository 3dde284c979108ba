//! `warden proxy`: authorize one MCP server over stdio.

use std::ffi::OsString;
use std::io;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{anyhow, Context as _};
use clap::{Args, ValueEnum};
use warden_mcp::{run_stdio_proxy, Pins, ProxyExit, ProxyOptions, RelayConfig};
use warden_policy::{Limits, Pdp, Principal};
use warden_store::SqliteStore;

use crate::cli::{CliResult, Failure};
use crate::config::{self, Config};
use crate::policy_dir;

#[derive(Debug, Args)]
pub struct ProxyArgs {
    /// The policy directory (`*.cedar` files and an optional `entities.json`).
    #[arg(long, env = "WARDEN_POLICIES")]
    policies: Option<PathBuf>,

    /// The id of the agent the client acts as (`Agent::"ID"` in policy).
    #[arg(long, env = "WARDEN_AGENT")]
    agent: Option<String>,

    /// What kind of principal `--agent` names.
    #[arg(long, value_enum, default_value_t = PrincipalKind::Agent)]
    principal_type: PrincipalKind,

    /// The human the agent acts for (`context.acting_for` in policy).
    #[arg(long, env = "WARDEN_ACTING_FOR")]
    acting_for: Option<String>,

    /// The decision log (SQLite file). Defaults to `decisions.db` in the
    /// user's data directory.
    #[arg(long, env = "WARDEN_STORE")]
    store: Option<PathBuf>,

    /// The name policy knows the server by (`Server::"NAME"`, tool ids
    /// `NAME/tool`). Defaults to the `--server` name, or `default`.
    #[arg(long)]
    server_name: Option<String>,

    /// A configuration file naming the policies, identity, store and servers.
    #[arg(long, env = "WARDEN_CONFIG", requires = "server")]
    config: Option<PathBuf>,

    /// The server of the configuration file to run.
    #[arg(long, requires = "config")]
    server: Option<String>,

    /// Seconds an upstream may take to answer one request before the client
    /// gets an error [default: 300; 1 to 86400].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..=86_400))]
    call_timeout: Option<u64>,

    /// Largest message accepted from either side, in bytes [default:
    /// 4194304; 1024 to 1073741824].
    #[arg(long, value_parser = clap::value_parser!(u64).range(1024..=1_073_741_824))]
    max_message_bytes: Option<u64>,

    /// The upstream MCP server command and its arguments (after `--`, or
    /// after the last option).
    #[arg(
        value_name = "COMMAND",
        trailing_var_arg = true,
        allow_hyphen_values = true
    )]
    command: Vec<OsString>,
}

#[derive(Debug, Clone, Copy, ValueEnum)]
enum PrincipalKind {
    Agent,
    ServiceAccount,
    Human,
}

/// Everything the proxy needs, from flags and the configuration file.
struct Settings {
    policies: PathBuf,
    principal: Principal,
    acting_for: Option<String>,
    store: PathBuf,
    server: String,
    command: Vec<OsString>,
    env: Vec<(OsString, OsString)>,
    /// The server's working folder; `None` for Warden's own.
    cwd: Option<PathBuf>,
    call_timeout: Duration,
    max_message_bytes: usize,
    limits: Limits,
}

pub fn run(args: ProxyArgs) -> CliResult {
    let settings = settings(args)?;
    let policies = policy_dir::load_for_start(&settings.policies)?;
    let version = policies.version().to_owned();
    let named = policies.referenced_servers();
    if !named.is_empty() && !named.contains(&settings.server) {
        // Scoping rules to a server by name is the usual way to write them; a
        // proxy started under another name silently escapes them.
        tracing::warn!(
            mcp.server = %settings.server,
            policy.servers = ?named,
            "the policies name other servers than this one; rules scoped to them never apply here (check --server-name)"
        );
    }
    let pdp = Arc::new(Pdp::new(policies, settings.limits));
    let mut store = SqliteStore::open(&settings.store)?;

    tracing::info!(
        mcp.server = %settings.server,
        agent.id = %settings.principal,
        policy.version = %version,
        store.path = %settings.store.display(),
        "starting proxy"
    );
    let options = ProxyOptions {
        command: settings.command,
        env: settings.env,
        cwd: settings.cwd,
        relay: RelayConfig {
            server: settings.server.clone(),
            principal: settings.principal,
            acting_for: settings.acting_for,
            instance: format!("warden-proxy-{}", std::process::id()),
            call_timeout: settings.call_timeout,
            transport: "stdio".to_owned(),
            client_address: "local".to_owned(),
        },
        max_message_bytes: settings.max_message_bytes,
        pins: Some(Pins::new(Arc::new(Mutex::new(SqliteStore::open(
            &settings.store,
        )?)))),
    };
    let mut stdout = io::stdout();
    let exit = run_stdio_proxy(options, pdp, &mut store, io::stdin(), &mut stdout)?;
    match exit {
        ProxyExit::ClientClosed(stats) => {
            summary(&settings.server, &stats);
            Ok(ExitCode::SUCCESS)
        }
        ProxyExit::Signalled(stats, signal) => {
            summary(&settings.server, &stats);
            tracing::info!(signal, "stopped by a signal");
            Ok(ExitCode::SUCCESS)
        }
        ProxyExit::UpstreamExited(stats, status) => {
            summary(&settings.server, &stats);
            let status = status.map_or_else(|| "unknown status".to_owned(), |s| s.to_string());
            Err(Failure::error(anyhow!(
                "upstream server `{}` exited ({status}); requests in flight were answered with an error",
                settings.server
            )))
        }
    }
}

fn summary(server: &str, stats: &warden_mcp::RelayStats) {
    tracing::info!(
        mcp.server = %server,
        requests.forwarded = stats.forwarded,
        requests.denied = stats.denied,
        client.rejected = stats.client_rejected,
        upstream.garbage_lines = stats.upstream_garbage,
        upstream.unmatched = stats.upstream_unmatched,
        records.failed = stats.record_failures,
        "proxy stopped"
    );
}

fn settings(args: ProxyArgs) -> Result<Settings, Failure> {
    let file = args.config.as_deref().map(Config::load).transpose()?;
    let raw_server = match (&file, &args.server) {
        (Some(file), Some(name)) => Some(file.raw.servers.get(name).ok_or_else(|| {
            let known: Vec<&str> = file.raw.servers.keys().map(String::as_str).collect();
            Failure::error(anyhow!("no server `{name}` in the configuration"))
                .with_help(format!("configured servers: {}", known.join(", ")))
        })?),
        _ => None,
    };

    let mut cwd = None;
    let (command, env) = match raw_server {
        Some(_) if !args.command.is_empty() => {
            return Err(Failure::error(anyhow!(
                "give the server either with `--config`/`--server` or after `--`, not both"
            )))
        }
        Some(server) if server.command.is_empty() => {
            let name = args.server.as_deref().unwrap_or_default();
            return Err(Failure::error(anyhow!(
                "server `{name}` is a remote server; `warden proxy` runs local stdio servers"
            ))
            .with_help("serve remote servers with `warden serve --config FILE`"));
        }
        Some(server) => {
            // As `warden serve` runs it: the program and the working folder
            // relative to the configuration's folder.
            let config = file.as_ref().map(|f| f.base.as_path()).unwrap_or(Path::new("."));
            let program = config::resolve_program(config, &server.command);
            cwd = Some(config.join(server.cwd.as_deref().unwrap_or(Path::new("."))));
            let mut command = vec![program.into_os_string()];
            command.extend(server.args.iter().map(OsString::from));
            let env = server
                .env
                .iter()
                .map(|(k, v)| {
                    let name = args.server.as_deref().unwrap_or_default();
                    let value = file.as_ref().map(|f| f.secret(name, k, v)).transpose()?;
                    Ok((OsString::from(k), OsString::from(value.unwrap_or_default())))
                })
                .collect::<anyhow::Result<Vec<_>>>()
                .context("cannot prepare the server's environment")?;
            (command, env)
        }
        None if args.command.is_empty() => {
            return Err(Failure::error(anyhow!("no upstream server to run")).with_help(
                "put the server command after `--`, e.g. `warden proxy --policies p --agent a -- npx -y @modelcontextprotocol/server-everything`, or use `--config FILE --server NAME`",
            ))
        }
        None => (args.command, Vec::new()),
    };

    let from_file =
        |f: fn(&Config) -> Option<PathBuf>| file.as_ref().and_then(|c| f(c).map(|p| c.resolve(&p)));
    let policies = args
        .policies
        .or_else(|| from_file(|c| c.raw.policies.clone()))
        .ok_or_else(|| {
            Failure::error(anyhow!("no policy directory given"))
                .with_help("pass `--policies DIR` (see `examples/`)")
        })?;
    let agent = args
        .agent
        .or_else(|| file.as_ref().and_then(|c| c.raw.identity.agent.clone()))
        .ok_or_else(|| {
            Failure::error(anyhow!("no agent id given"))
                .with_help("pass `--agent ID`: the id policies name as `Agent::\"ID\"`")
        })?;
    crate::cli::check_id("agent", &agent)?;
    let acting_for = args.acting_for.or_else(|| {
        file.as_ref()
            .and_then(|c| c.raw.identity.acting_for.clone())
    });
    if let Some(human) = &acting_for {
        crate::cli::check_id("acting-for", human)?;
    }
    let principal = match args.principal_type {
        PrincipalKind::Agent => Principal::Agent(agent),
        PrincipalKind::ServiceAccount => Principal::ServiceAccount(agent),
        PrincipalKind::Human => Principal::Human(agent),
    };
    let store_flag = args.store.or_else(|| from_file(|c| c.raw.store.clone()));
    let store = config::store_path(store_flag.as_deref())?;
    let server = args
        .server_name
        .or(args.server)
        .unwrap_or_else(|| "default".to_owned());
    config::check_server_name(&server)?;

    let raw_limits = file.as_ref().map(|c| &c.raw.limits);
    let defaults = Limits::default();
    let limits = Limits {
        max_bytes: raw_limits
            .and_then(|l| l.max_argument_bytes)
            .unwrap_or(defaults.max_bytes),
        max_depth: raw_limits
            .and_then(|l| l.max_argument_depth)
            .unwrap_or(defaults.max_depth),
        max_values: raw_limits
            .and_then(|l| l.max_argument_values)
            .unwrap_or(defaults.max_values),
    };
    let call_timeout = args
        .call_timeout
        .or_else(|| raw_limits.and_then(|l| l.call_timeout_secs))
        .unwrap_or(300);
    let max_message_bytes = args
        .max_message_bytes
        .and_then(|b| usize::try_from(b).ok())
        .or_else(|| raw_limits.and_then(|l| l.max_message_bytes))
        .unwrap_or(4 * 1024 * 1024);
    if call_timeout == 0 || max_message_bytes < 1024 {
        return Err(Failure::error(anyhow!(
            "limits: `call_timeout_secs` must be at least 1 and `max_message_bytes` at least 1024"
        )));
    }
    Ok(Settings {
        policies,
        principal,
        acting_for,
        store,
        server,
        command,
        env,
        cwd,
        call_timeout: Duration::from_secs(call_timeout),
        max_message_bytes,
        limits,
    })
}
