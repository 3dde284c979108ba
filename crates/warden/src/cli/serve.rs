//! `warden serve`: the central gateway over Streamable HTTP.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex};

use anyhow::{anyhow, Context as _};
use clap::Args;
use warden_gateway::auth::Authenticator;
use warden_gateway::log::SharedLog;
use warden_gateway::metrics::Metrics;
use warden_gateway::Gateway;
use warden_mcp::Pins;
use warden_policy::Pdp;
use warden_store::{KeyStore, SqliteStore};

use crate::cli::{CliResult, Failure};
use crate::config;
use crate::policy_dir;

#[derive(Debug, Args)]
pub struct ServeArgs {
    /// The configuration file: listener, servers, authentication, policies
    /// and store (see `warden config schema`).
    #[arg(long, env = "WARDEN_CONFIG")]
    config: PathBuf,
}

pub fn run(args: ServeArgs) -> CliResult {
    let (gateway_config, settings) = config::load_for_serve(&args.config).map_err(|problems| {
        for line in problems.lines() {
            eprintln!("{line}");
        }
        Failure::invalid(anyhow!(
            "the configuration `{}` is invalid ({}); not starting",
            args.config.display(),
            crate::cli::count(problems.problems().len(), "problem")
        ))
    })?;
    let policy_dir = settings.policies.clone().ok_or_else(|| {
        Failure::error(anyhow!("the configuration names no policy directory"))
            .with_help("add `policies = \"DIR\"` to the configuration")
    })?;
    let policies = policy_dir::load_for_start(&policy_dir)?;
    let version = policies.version().to_owned();
    let pdp = Arc::new(Pdp::new(policies, settings.limits));

    let store_path = config::store_path(settings.store.as_deref())?;
    let metrics = Arc::new(Metrics::new());
    let log = SharedLog::new(
        Box::new(SqliteStore::open(&store_path)?),
        Arc::clone(&metrics),
    );
    let keys: Arc<Mutex<dyn KeyStore>> = Arc::new(Mutex::new(SqliteStore::open(&store_path)?));
    let pins = Pins::new(Arc::new(Mutex::new(SqliteStore::open(&store_path)?)));

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("warden-serve")
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let auth = Authenticator::new(gateway_config.auth.clone(), Some(keys))
            .await
            .context("cannot set up agent authentication")?;
        let listen = gateway_config.listen;
        let listener = tokio::net::TcpListener::bind(listen)
            .await
            .with_context(|| format!("cannot listen on `{listen}`"))?;
        let servers: Vec<String> = gateway_config.servers.keys().cloned().collect();
        let public_url = gateway_config.public_url.clone();
        tracing::info!(
            http.listen = %listen,
            policy.version = %version,
            store.path = %store_path.display(),
            mcp.servers = ?servers,
            "gateway serving"
        );
        for server in &servers {
            eprintln!("warden: serving `{server}` at {public_url}/mcp/{server}");
        }
        if let Some(aggregate) = &gateway_config.aggregate {
            eprintln!(
                "warden: serving the tools of {} at {public_url}/mcp/{} (aggregated)",
                aggregate.servers.join(", "),
                aggregate.name
            );
        }
        let gateway = Gateway::new(gateway_config, pdp, log, auth, metrics, Some(pins));
        warden_gateway::serve(gateway, listener, stop_signal())
            .await
            .context("the gateway stopped with an error")
    })?;
    Ok(ExitCode::SUCCESS)
}

/// SIGINT or SIGTERM.
async fn stop_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(term) => term,
                Err(_) => {
                    let _ = interrupt.await;
                    return;
                }
            };
        tokio::select! {
            _ = interrupt => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
