//! From the file to what the commands run with: every value checked against
//! the others, every default filled in, and (for `warden serve` and
//! `warden config check`) every secret resolved and every named file found.
//!
//! Problems are noted, never returned early: one pass reports them all.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::time::Duration;

use jsonwebtoken::Algorithm;
use url::{Host, Url};
use warden_gateway::aggregate::{is_member_name, SEPARATOR};
use warden_gateway::auth::{AuthConfig, JwksSource, JwtConfig};
use warden_gateway::config::{AggregateConfig, GatewayConfig, ServerConfig};
use warden_gateway::upstream::UpstreamSpec;

use super::problem::{KeyPath, Problems};
use super::raw::{
    RawAggregate, RawAuth, RawConfig, RawGateway, RawJwt, RawLimits, RawServer, RawTransport,
};
use super::secret::{is_sensitive_header, Resolver, Secret};

/// What `warden serve` needs from the file besides the gateway's own
/// settings: the files it opens and the bounds on call arguments.
#[derive(Debug, Clone)]
pub struct ServeSettings {
    /// The policy directory, absolute; `None` when the file names none.
    pub policies: Option<PathBuf>,
    /// The decision log, absolute; `None` when the file names none (the
    /// default is `config::store_path(None)`).
    pub store: Option<PathBuf>,
    /// Bounds checked on a call's arguments before policy sees them.
    pub limits: warden_policy::Limits,
}

/// How much to check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// What the file says on its own, for any command.
    Static,
    /// Also what `warden serve` needs: secrets resolved, named files
    /// present, a way for agents to authenticate, at least one server.
    Serve,
}

const DEFAULT_LISTEN: &str = "127.0.0.1:8080";
const DEFAULT_ALGORITHMS: [Algorithm; 3] = [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA];

/// The gateway's settings from `raw`, or `None` when any problem was noted.
pub fn build(
    raw: &RawConfig,
    base: &Path,
    mode: Mode,
    problems: &mut Problems,
) -> Option<(GatewayConfig, ServeSettings)> {
    let start = problems.len();
    let root = KeyPath::root();
    let limits = limits(&raw.limits, &root.key("limits"), problems);
    let listener = listener(&raw.gateway, &root.key("gateway"), problems);
    let public_url = listener.as_ref().map(|l| l.public_url.as_str());
    let auth = auth(
        &raw.auth,
        public_url,
        base,
        mode,
        &root.key("auth"),
        problems,
    );
    let servers = servers(&raw.servers, base, mode, &root.key("servers"), problems);
    let aggregate = raw.gateway.aggregate.as_ref().and_then(|a| {
        let path = root.key("gateway").key("aggregate");
        aggregate(a, &raw.servers, &path, problems)
    });
    let resolve = |path: &Option<PathBuf>| path.as_ref().map(|p| base.join(p));
    let settings = ServeSettings {
        policies: resolve(&raw.policies),
        store: resolve(&raw.store),
        limits: limits.as_ref().map(|l| l.arguments).unwrap_or_default(),
    };
    if mode == Mode::Serve {
        if let Some(dir) = settings.policies.as_ref().filter(|d| !d.is_dir()) {
            problems.add(
                &root.key("policies"),
                format!("`{}` is not a directory", dir.display()),
            );
        }
    }
    let (limits, listener, auth, servers) = (limits?, listener?, auth?, servers?);
    if problems.len() > start {
        return None;
    }
    let gateway = GatewayConfig {
        listen: listener.listen,
        public_url: listener.public_url,
        allowed_hosts: listener.allowed_hosts,
        allowed_origins: listener.allowed_origins,
        servers,
        aggregate,
        auth,
        call_timeout: limits.call_timeout,
        max_message_bytes: limits.max_message_bytes,
        session_idle_timeout: listener.session_idle_timeout,
        max_sessions: listener.max_sessions,
        max_sessions_per_agent: listener.max_sessions_per_agent,
        instance: listener.instance,
    };
    Some((gateway, settings))
}

/// Runs `check` and gives its value only if it noted no problem.
fn clean<T>(problems: &mut Problems, check: impl FnOnce(&mut Problems) -> Option<T>) -> Option<T> {
    let start = problems.len();
    let value = check(problems);
    value.filter(|_| problems.len() == start)
}

/// `value` or its default, noting a problem when outside `low..=high`.
fn in_range(
    problems: &mut Problems,
    path: &KeyPath,
    value: Option<u64>,
    default: u64,
    (low, high): (u64, u64),
) -> u64 {
    let value = value.unwrap_or(default);
    if !(low..=high).contains(&value) {
        problems.add(
            path,
            format!("is {value}; it must be between {low} and {high}"),
        );
    }
    value
}

fn to_usize(n: u64) -> usize {
    usize::try_from(n).unwrap_or(usize::MAX)
}

fn to_u64(n: usize) -> u64 {
    u64::try_from(n).unwrap_or(u64::MAX)
}

/// A non-secret value, fit to repeat in a message.
fn shown(value: &str) -> String {
    let mut out: String = value
        .chars()
        .take(80)
        .flat_map(char::escape_debug)
        .collect();
    if value.chars().count() > 80 {
        out.push('…');
    }
    out
}

// === limits ===

struct Limits {
    call_timeout: Duration,
    max_message_bytes: usize,
    arguments: warden_policy::Limits,
}

fn limits(raw: &RawLimits, path: &KeyPath, problems: &mut Problems) -> Option<Limits> {
    clean(problems, |problems| {
        let defaults = warden_policy::Limits::default();
        let mut check = |key: &str, value: Option<usize>, default: usize, range| {
            to_usize(in_range(
                problems,
                &path.key(key),
                value.map(to_u64),
                to_u64(default),
                range,
            ))
        };
        let max_message_bytes = check(
            "max_message_bytes",
            raw.max_message_bytes,
            4 << 20,
            (1024, 1 << 30),
        );
        let arguments = warden_policy::Limits {
            max_bytes: check(
                "max_argument_bytes",
                raw.max_argument_bytes,
                defaults.max_bytes,
                (1, 1 << 30),
            ),
            max_depth: check(
                "max_argument_depth",
                raw.max_argument_depth,
                defaults.max_depth,
                (1, 128),
            ),
            max_values: check(
                "max_argument_values",
                raw.max_argument_values,
                defaults.max_values,
                (1, 1_000_000),
            ),
        };
        let call_timeout = in_range(
            problems,
            &path.key("call_timeout_secs"),
            raw.call_timeout_secs,
            300,
            (1, 86_400),
        );
        Some(Limits {
            call_timeout: Duration::from_secs(call_timeout),
            max_message_bytes,
            arguments,
        })
    })
}

// === gateway ===

struct Listener {
    listen: SocketAddr,
    public_url: String,
    allowed_hosts: Vec<String>,
    allowed_origins: Vec<String>,
    session_idle_timeout: Duration,
    max_sessions: usize,
    max_sessions_per_agent: usize,
    instance: String,
}

fn listener(raw: &RawGateway, path: &KeyPath, problems: &mut Problems) -> Option<Listener> {
    clean(problems, |problems| {
        let idle = in_range(
            problems,
            &path.key("session_idle_timeout_secs"),
            raw.session_idle_timeout_secs,
            1800,
            (10, 86_400),
        );
        let max_sessions = in_range(
            problems,
            &path.key("max_sessions"),
            raw.max_sessions,
            1000,
            (1, 100_000),
        );
        let max_sessions_per_agent = in_range(
            problems,
            &path.key("max_sessions_per_agent"),
            raw.max_sessions_per_agent,
            32,
            (1, 100_000),
        );
        let instance = match &raw.instance {
            Some(name) if is_instance_name(name) => name.clone(),
            Some(_) => {
                problems.add(
                    &path.key("instance"),
                    "must be 1 to 128 characters without spaces or control characters",
                );
                String::new()
            }
            None => default_instance(),
        };
        let public_url = raw
            .public_url
            .as_deref()
            .and_then(|url| public_url(url, &path.key("public_url"), problems));
        let origins = raw
            .allowed_origins
            .as_ref()
            .map(|list| origins(list, &path.key("allowed_origins"), problems));
        let hosts = raw
            .allowed_hosts
            .as_ref()
            .map(|list| hosts(list, &path.key("allowed_hosts"), problems));

        let listen = listen(raw.listen.as_deref(), &path.key("listen"), problems)?;
        let port = listen.port();
        let allowed_hosts = match hosts {
            Some(hosts) => hosts,
            None if listen.ip().is_loopback() => vec![
                format!("127.0.0.1:{port}"),
                format!("localhost:{port}"),
                format!("[::1]:{port}"),
            ],
            None => {
                problems.add(
                    &path.key("allowed_hosts"),
                    "is required when `listen` is not a loopback address: list the host names agents reach the gateway by (this guards against DNS rebinding)",
                );
                Vec::new()
            }
        };
        Some(Listener {
            listen,
            public_url: public_url.unwrap_or_else(|| format!("http://{listen}")),
            allowed_hosts,
            allowed_origins: origins.unwrap_or_else(|| {
                vec![
                    format!("http://127.0.0.1:{port}"),
                    format!("http://localhost:{port}"),
                ]
            }),
            session_idle_timeout: Duration::from_secs(idle),
            max_sessions: to_usize(max_sessions),
            max_sessions_per_agent: to_usize(max_sessions_per_agent),
            instance,
        })
    })
}

fn listen(value: Option<&str>, path: &KeyPath, problems: &mut Problems) -> Option<SocketAddr> {
    let value = value.unwrap_or(DEFAULT_LISTEN);
    match value.parse::<SocketAddr>() {
        Ok(addr) if addr.port() == 0 => {
            problems.add(path, "port 0 is not allowed: agents need a known port");
            None
        }
        Ok(addr) => Some(addr),
        Err(_) => {
            problems.add(
                path,
                format!(
                    "`{}` is not an IP address and port, like `127.0.0.1:8080`",
                    shown(value)
                ),
            );
            None
        }
    }
}

fn public_url(value: &str, path: &KeyPath, problems: &mut Problems) -> Option<String> {
    let problem = match Url::parse(value) {
        Err(_) => "is not a URL",
        Ok(url) if !matches!(url.scheme(), "http" | "https") => "must be an http or https URL",
        Ok(url) if url.query().is_some() || url.fragment().is_some() => {
            "must not have a query or a fragment"
        }
        Ok(url) if !url.username().is_empty() || url.password().is_some() => {
            "must not carry credentials"
        }
        Ok(url) => return Some(url.as_str().trim_end_matches('/').to_owned()),
    };
    problems.add(path, problem);
    None
}

fn hosts(list: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<String> {
    if list.is_empty() {
        problems.add(path, "must name at least one host");
    }
    let mut hosts = Vec::new();
    for (i, host) in list.iter().enumerate() {
        let bad = host.is_empty()
            || host.contains('/')
            || host.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            problems.add(
                &path.index(i),
                format!("`{}` is not a host or host:port", shown(host)),
            );
        } else {
            hosts.push(host.to_ascii_lowercase());
        }
    }
    hosts
}

fn origins(list: &[String], path: &KeyPath, problems: &mut Problems) -> Vec<String> {
    let mut origins = Vec::new();
    for (i, origin) in list.iter().enumerate() {
        match Url::parse(origin) {
            Ok(url)
                if matches!(url.scheme(), "http" | "https")
                    && url.path() == "/"
                    && url.query().is_none()
                    && url.fragment().is_none()
                    && url.username().is_empty()
                    && url.password().is_none()
                    && !origin.ends_with('/') =>
            {
                origins.push(url.origin().ascii_serialization());
            }
            _ => problems.add(
                &path.index(i),
                format!(
                    "`{}` is not an origin like `https://app.example` or `http://localhost:8080`",
                    shown(origin)
                ),
            ),
        }
    }
    origins
}

fn is_instance_name(name: &str) -> bool {
    (1..=128).contains(&name.chars().count())
        && !name.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// The host name, or `warden`.
fn default_instance() -> String {
    std::env::var("HOSTNAME")
        .ok()
        .or_else(|| std::fs::read_to_string("/proc/sys/kernel/hostname").ok())
        .map(|name| name.trim().to_owned())
        .filter(|name| is_instance_name(name))
        .unwrap_or_else(|| "warden".to_owned())
}

// === auth ===

fn auth(
    raw: &RawAuth,
    public_url: Option<&str>,
    base: &Path,
    mode: Mode,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<AuthConfig> {
    clean(problems, |problems| {
        let api_keys = raw.api_keys.unwrap_or(true);
        if mode == Mode::Serve && !api_keys && raw.jwt.is_none() {
            problems.add(
                path,
                "neither `api_keys` nor `jwt` is on, so the gateway would refuse every agent",
            );
        }
        let jwt = match &raw.jwt {
            Some(jwt_raw) => Some(jwt(
                jwt_raw,
                public_url,
                base,
                mode,
                &path.key("jwt"),
                problems,
            )?),
            None => None,
        };
        Some(AuthConfig { api_keys, jwt })
    })
}

fn jwt(
    raw: &RawJwt,
    public_url: Option<&str>,
    base: &Path,
    mode: Mode,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<JwtConfig> {
    let issuer = match raw.issuer.as_deref() {
        None => {
            problems.add(&path.key("issuer"), "is required");
            None
        }
        Some("") => {
            problems.add(&path.key("issuer"), "must not be empty");
            None
        }
        Some(issuer) => Some(issuer.to_owned()),
    };
    let audience = match raw.audience.as_deref() {
        Some("") => {
            problems.add(&path.key("audience"), "must not be empty");
            None
        }
        Some(audience) => Some(audience.to_owned()),
        None => public_url.map(str::to_owned),
    };
    let jwks = jwks(raw, base, mode, path, problems);
    let algorithms = algorithms(raw.algorithms.as_deref(), &path.key("algorithms"), problems);
    let leeway = in_range(
        problems,
        &path.key("leeway_secs"),
        raw.leeway_secs,
        60,
        (0, 300),
    );
    let authorization_servers = match (&raw.authorization_servers, &issuer) {
        (Some(list), _) => {
            let list_path = path.key("authorization_servers");
            if list.is_empty() {
                problems.add(&list_path, "must name at least one authorization server");
            }
            for (i, server) in list.iter().enumerate() {
                if let Err(problem) = https_or_loopback(server) {
                    problems.add(&list_path.index(i), problem);
                }
            }
            list.clone()
        }
        (None, Some(issuer)) => {
            if https_or_loopback(issuer).is_err() {
                problems.add(
                    &path.key("authorization_servers"),
                    "defaults to `issuer`, which is not an https URL (or http on a loopback host): list the authorization servers' URLs",
                );
            }
            vec![issuer.clone()]
        }
        (None, None) => Vec::new(),
    };
    Some(JwtConfig {
        issuer: issuer?,
        audience: audience?,
        jwks: jwks?,
        algorithms,
        leeway: Duration::from_secs(leeway),
        authorization_servers,
    })
}

fn jwks(
    raw: &RawJwt,
    base: &Path,
    mode: Mode,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<JwksSource> {
    match (&raw.jwks_file, &raw.jwks_url) {
        (Some(_), Some(_)) => {
            problems.add(path, "give either `jwks_file` or `jwks_url`, not both");
            None
        }
        (None, None) => {
            problems.add(path, "one of `jwks_file` or `jwks_url` is required");
            None
        }
        (Some(file), None) => {
            let full = base.join(file);
            if mode == Mode::Serve && !full.is_file() {
                problems.add(
                    &path.key("jwks_file"),
                    format!("`{}` is not a readable file", file.display()),
                );
            }
            Some(JwksSource::File(full))
        }
        (None, Some(url)) => match https_or_loopback(url) {
            Ok(url) => Some(JwksSource::Url(url)),
            Err(problem) => {
                problems.add(&path.key("jwks_url"), problem);
                None
            }
        },
    }
}

/// A URL Warden fetches from or sends agents to: `https`, or `http` only on
/// this machine, where nobody in between can change what comes back.
fn https_or_loopback(value: &str) -> Result<Url, &'static str> {
    let url = Url::parse(value).map_err(|_| "is not a URL")?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials");
    }
    let loopback = match url.host() {
        Some(Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    match url.scheme() {
        "https" => Ok(url),
        "http" if loopback => Ok(url),
        "http" => Err("must be https (http only for a loopback host)"),
        _ => Err("must be an https URL"),
    }
}

fn algorithms(list: Option<&[String]>, path: &KeyPath, problems: &mut Problems) -> Vec<Algorithm> {
    let Some(list) = list else {
        return DEFAULT_ALGORITHMS.to_vec();
    };
    if list.is_empty() {
        problems.add(path, "must name at least one algorithm");
    }
    let mut algorithms = Vec::new();
    for (i, name) in list.iter().enumerate() {
        let refusal = if name.eq_ignore_ascii_case("none") {
            Some("an unsigned token proves nothing")
        } else if ["HS256", "HS384", "HS512"]
            .iter()
            .any(|hs| name.eq_ignore_ascii_case(hs))
        {
            Some("HMAC algorithms verify with a shared secret, so whoever can check a token can also forge one; use an asymmetric algorithm such as RS256, ES256 or EdDSA")
        } else {
            None
        };
        match (refusal, Algorithm::from_str(name)) {
            (Some(why), _) => {
                problems.add(&path.index(i), format!("`{}` is refused: {why}", shown(name)));
            }
            (None, Ok(algorithm)) => {
                if !algorithms.contains(&algorithm) {
                    algorithms.push(algorithm);
                }
            }
            (None, Err(_)) => problems.add(
                &path.index(i),
                format!(
                    "`{}` is not a JWT signature algorithm; use RS256, RS384, RS512, PS256, PS384, PS512, ES256, ES384 or EdDSA",
                    shown(name)
                ),
            ),
        }
    }
    algorithms
}

// === servers ===

fn servers(
    raw: &BTreeMap<String, RawServer>,
    base: &Path,
    mode: Mode,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<BTreeMap<String, ServerConfig>> {
    clean(problems, |problems| {
        if mode == Mode::Serve && raw.is_empty() {
            problems.add(path, "no servers: declare at least one `[servers.NAME]`");
        }
        let mut seen: BTreeMap<String, &str> = BTreeMap::new();
        let mut servers = BTreeMap::new();
        for (name, server) in raw {
            let here = path.key(name);
            if let Err(e) = super::check_server_name(name) {
                problems.add(&here, e.to_string());
            } else if let Some(other) = seen.get(&folded(name)) {
                problems.add(
                    &here,
                    format!("server name `{name}` is ambiguous with `{other}`: names must differ by more than letter case and `-` versus `_`"),
                );
            } else {
                seen.insert(folded(name), name);
            }
            let resolver = Resolver {
                base,
                resolve: mode == Mode::Serve,
            };
            if let Some(upstream) = upstream(server, &resolver, mode, &here, problems) {
                servers.insert(name.clone(), ServerConfig { upstream });
            }
        }
        Some(servers)
    })
}

/// The aggregated endpoint, checked against the servers: every exposed tool
/// name must split back into exactly one (server, tool), so a member name
/// with `__` in it or a trailing `_` is refused rather than risk two tools
/// sharing a name (failure case C22).
fn aggregate(
    raw: &RawAggregate,
    servers: &BTreeMap<String, RawServer>,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<AggregateConfig> {
    clean(problems, |problems| {
        let name = match raw.name.as_deref() {
            None => {
                problems.add(
                    path,
                    "missing `name`: the endpoint is served at `/mcp/NAME`",
                );
                return None;
            }
            Some(name) => name,
        };
        let here = path.key("name");
        if let Err(e) = super::check_server_name(name) {
            problems.add(
                &here,
                e.to_string().replace("server name", "aggregate name"),
            );
        } else if let Some(server) = servers.keys().find(|s| folded(s) == folded(name)) {
            problems.add(
                &here,
                format!("aggregate name `{name}` is ambiguous with server `{server}`: both would be served at `/mcp/{name}`"),
            );
        }
        let members: Vec<String> = match &raw.servers {
            Some(list) => list.clone(),
            None => servers.keys().cloned().collect(),
        };
        let list_path = path.key("servers");
        if members.is_empty() {
            problems.add(&list_path, "no servers: name at least one");
        }
        for (index, member) in members.iter().enumerate() {
            let here = match raw.servers {
                Some(_) => list_path.index(index),
                None => list_path.clone(),
            };
            if !servers.contains_key(member) {
                problems.add(&here, format!("no server is named `{member}`"));
            } else if members.iter().take(index).any(|m| m == member) {
                problems.add(&here, format!("server `{member}` is listed twice"));
            } else if !is_member_name(member) {
                problems.add(
                    &here,
                    format!("server `{member}` cannot be aggregated: a name with `{SEPARATOR}` in it or a trailing `_` would make tool names like `{member}{SEPARATOR}TOOL` ambiguous; rename the server"),
                );
            }
        }
        Some(AggregateConfig {
            name: name.to_owned(),
            servers: members,
        })
    })
}

/// The form two names share when people (and case-insensitive systems)
/// could take one for the other.
fn folded(name: &str) -> String {
    name.chars()
        .map(|c| match c {
            '-' | '_' | '.' => '-',
            c => c.to_ascii_lowercase(),
        })
        .collect()
}

fn upstream(
    raw: &RawServer,
    resolver: &Resolver<'_>,
    mode: Mode,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<UpstreamSpec> {
    let command = Some(raw.command.as_str()).filter(|c| !c.is_empty());
    match (command, raw.url.as_deref()) {
        (Some(_), Some(_)) => {
            problems.add(
                path,
                "give either `command` (a local stdio server) or `url` (a remote server), not both",
            );
            None
        }
        (None, None) => {
            problems.add(
                path,
                "one of `command` (a local stdio server) or `url` (a remote server) is required",
            );
            None
        }
        (Some(command), None) => {
            let remote_only = [
                ("transport", raw.transport.is_some()),
                ("headers", !raw.headers.is_empty()),
                ("bearer_token", raw.bearer_token.is_some()),
            ];
            misplaced(&remote_only, "remote servers (`url`)", path, problems);
            clean(problems, |problems| {
                stdio(command, raw, resolver, mode, path, problems)
            })
        }
        (None, Some(url)) => {
            let stdio_only = [
                ("args", !raw.args.is_empty()),
                ("env", !raw.env.is_empty()),
                ("cwd", raw.cwd.is_some()),
            ];
            misplaced(&stdio_only, "stdio servers (`command`)", path, problems);
            clean(problems, |problems| {
                remote(url, raw, resolver, path, problems)
            })
        }
    }
}

fn misplaced(keys: &[(&str, bool)], kind: &str, path: &KeyPath, problems: &mut Problems) {
    for (key, given) in keys {
        if *given {
            problems.add(&path.key(key), format!("applies only to {kind}"));
        }
    }
}

fn stdio(
    command: &str,
    raw: &RawServer,
    resolver: &Resolver<'_>,
    mode: Mode,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<UpstreamSpec> {
    let base = resolver.base;
    let program = super::resolve_program(base, command);
    if command.contains('\0') {
        problems.add(&path.key("command"), "must not contain a NUL character");
    } else if mode == Mode::Serve && command.contains('/') && !program.is_file() {
        problems.add(
            &path.key("command"),
            format!(
                "`{}` does not exist (relative paths are relative to the configuration's folder)",
                shown(command)
            ),
        );
    }
    for (i, arg) in raw.args.iter().enumerate() {
        if arg.contains('\0') {
            problems.add(
                &path.key("args").index(i),
                "must not contain a NUL character",
            );
        }
    }
    let mut env = Vec::new();
    for (key, value) in &raw.env {
        let here = path.key("env").key(key);
        if key.is_empty() || key.contains(['=', '\0']) {
            problems.add(&here, "is not a valid environment variable name");
        } else if let Some(value) = resolver.value(value, &here, problems) {
            if value.contains('\0') {
                problems.add(&here, "the resolved value contains a NUL character");
            }
            env.push((key.clone(), value));
        }
    }
    let cwd = raw
        .cwd
        .as_ref()
        .map_or_else(|| base.to_path_buf(), |dir| base.join(dir));
    if mode == Mode::Serve && !cwd.is_dir() {
        let shown_dir = raw.cwd.as_deref().unwrap_or(base);
        problems.add(
            &path.key("cwd"),
            format!("`{}` is not a directory", shown_dir.display()),
        );
    }
    let Some(command) = program.to_str() else {
        problems.add(&path.key("command"), "the resolved path is not valid UTF-8");
        return None;
    };
    Some(UpstreamSpec::Stdio {
        command: command.to_owned(),
        args: raw.args.clone(),
        env,
        cwd: Some(cwd),
    })
}

/// Headers Warden sets itself on the way to an upstream.
const MANAGED_HEADERS: &[&str] = &[
    "host",
    "content-length",
    "content-type",
    "accept",
    "connection",
    "transfer-encoding",
    "mcp-session-id",
    "mcp-protocol-version",
    "last-event-id",
];

fn remote(
    url: &str,
    raw: &RawServer,
    resolver: &Resolver<'_>,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<UpstreamSpec> {
    let url = match Url::parse(url) {
        Err(_) => Err("is not a URL"),
        Ok(url) if !matches!(url.scheme(), "http" | "https") => Err("must be http or https"),
        Ok(url) if !url.username().is_empty() || url.password().is_some() => Err(
            "must not carry credentials: use `bearer_token` or `headers` with a `${VAR}` or `file:` reference",
        ),
        Ok(url) => Ok(url),
    };
    let url = url.map_err(|problem| problems.add(&path.key("url"), problem));

    let mut headers = Vec::new();
    for (name, value) in &raw.headers {
        let here = path.key("headers").key(name);
        if let Some(value) = header(name, value, resolver, &here, problems) {
            headers.push((name.clone(), value));
        }
    }
    if let Some(token) = &raw.bearer_token {
        let here = path.key("bearer_token");
        if raw
            .headers
            .keys()
            .any(|h| h.eq_ignore_ascii_case("authorization"))
        {
            problems.add(
                &here,
                "conflicts with `headers.Authorization`; give one of them",
            );
        }
        match Secret::parse(token) {
            Ok(secret) if secret.is_pure_reference() => {
                if let Some(token) = resolver.secret(&secret, &here, problems) {
                    if token.chars().any(char::is_control) {
                        problems.add(&here, "the resolved token contains a control character or line break");
                    }
                    headers.push(("Authorization".to_owned(), format!("Bearer {token}")));
                }
            }
            Ok(_) => problems.add(
                &here,
                "must be a `${VAR}` or `file:PATH` reference, never the token itself; put secrets in ${VAR} or file: references",
            ),
            Err(problem) => problems.add(&here, problem),
        }
    }
    let url = url.ok()?;
    Some(match raw.transport.unwrap_or_default() {
        RawTransport::StreamableHttp => UpstreamSpec::Http { url, headers },
        RawTransport::Sse => UpstreamSpec::Sse { url, headers },
    })
}

fn header(
    name: &str,
    value: &str,
    resolver: &Resolver<'_>,
    path: &KeyPath,
    problems: &mut Problems,
) -> Option<String> {
    let token_char = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token_char) {
        problems.add(path, "is not a valid header name");
        return None;
    }
    if MANAGED_HEADERS.iter().any(|m| name.eq_ignore_ascii_case(m)) {
        problems.add(path, "is set by Warden and cannot be configured");
        return None;
    }
    let secret = match Secret::parse(value) {
        Ok(secret) => secret,
        Err(problem) => {
            problems.add(path, problem);
            return None;
        }
    };
    if is_sensitive_header(name) && secret.has_inline_credential() {
        problems.add(
            path,
            "holds an inline credential; put secrets in ${VAR} or file: references",
        );
        return None;
    }
    let value = resolver.secret(&secret, path, problems)?;
    if value.chars().any(|c| c.is_control() && c != '\t') {
        problems.add(
            path,
            "the resolved value contains a control character or line break, which a header cannot carry",
        );
        return None;
    }
    Some(value)
}
