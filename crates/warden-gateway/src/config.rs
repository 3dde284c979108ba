//! The gateway's settings, validated: what `warden serve` runs with.
//!
//! The file shape (`warden.toml`, with its `Raw*` types, secret references
//! and path resolution) belongs to the `warden` command, which checks it and
//! builds these values; nothing here reads files or the environment.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use crate::auth::AuthConfig;
use crate::upstream::UpstreamSpec;

/// Everything `warden serve` needs besides the policies and the store.
#[derive(Debug, Clone)]
pub struct GatewayConfig {
    /// Where to listen.
    pub listen: SocketAddr,
    /// The URL agents use to reach this gateway (`https://gw.example`),
    /// without a trailing slash. Resource metadata and audiences derive
    /// from it. Defaults to `http://{listen}`.
    pub public_url: String,
    /// `Host` header values accepted (host, or host:port). A request with
    /// any other `Host` is refused with 403 (DNS-rebinding protection).
    pub allowed_hosts: Vec<String>,
    /// `Origin` header values accepted (`http://localhost:8080`). A request
    /// without `Origin` is accepted; one with any other is refused with 403.
    pub allowed_origins: Vec<String>,
    /// The upstream servers, by name; each is served at `/mcp/{name}`.
    pub servers: BTreeMap<String, ServerConfig>,
    /// The aggregated endpoint, if one is configured.
    pub aggregate: Option<AggregateConfig>,
    /// How agents authenticate.
    pub auth: AuthConfig,
    /// How long an upstream may take to answer one request.
    pub call_timeout: Duration,
    /// Largest message accepted from either side, in bytes.
    pub max_message_bytes: usize,
    /// A session unused for this long is ended (and its upstream stopped).
    pub session_idle_timeout: Duration,
    /// Most sessions open at once, over all servers and agents.
    pub max_sessions: usize,
    /// Most sessions one principal may have open at once.
    pub max_sessions_per_agent: usize,
    /// This gateway instance, for the decision log.
    pub instance: String,
}

/// One upstream server.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// How to reach it, with the credentials Warden adds on the way out.
    pub upstream: UpstreamSpec,
}

/// One endpoint, `/mcp/{name}`, that offers the tools of several servers
/// under the names `SERVER__TOOL`.
#[derive(Debug, Clone)]
pub struct AggregateConfig {
    /// Its name: distinct from every server's, even ignoring case and
    /// `-` versus `_`.
    pub name: String,
    /// The member servers, in the order their tools are listed. Each is a
    /// configured server whose name passes
    /// [`is_member_name`](crate::aggregate::is_member_name).
    pub servers: Vec<String>,
}

impl GatewayConfig {
    /// The servers an endpoint name stands for: the server itself, or the
    /// aggregate's members; `None` for a name that is neither.
    pub fn endpoint(&self, name: &str) -> Option<Vec<&str>> {
        if let Some((server, _)) = self.servers.get_key_value(name) {
            return Some(vec![server.as_str()]);
        }
        let aggregate = self.aggregate.as_ref().filter(|a| a.name == name)?;
        Some(aggregate.servers.iter().map(String::as_str).collect())
    }
}
