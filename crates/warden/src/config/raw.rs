//! The file as written: the `Raw*` types of `warden.toml`, and the JSON
//! Schema generated from them.
//!
//! Every field is optional or has a default, so that any subset of a valid
//! file is itself valid: the checker relies on that to drop a bad key and go
//! on checking the rest. Whether a value makes sense (ranges, URLs, secret
//! references, which keys go together) is `serve.rs`'s business.

use std::collections::BTreeMap;
use std::path::PathBuf;

use schemars::JsonSchema;
use serde::Deserialize;

/// Warden's configuration file (`warden.toml`): the policies and the
/// decision log, the gateway (`warden serve`), how agents authenticate, and
/// the upstream MCP servers. Relative paths are relative to the file's
/// folder. Secrets are never written inline: use `${VAR}` (read from
/// Warden's environment) or `file:PATH` references.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "warden.toml")]
pub struct RawConfig {
    /// The policy directory (`*.cedar` files and an optional
    /// `entities.json`), relative to this file.
    pub policies: Option<PathBuf>,
    /// The decision log (SQLite file), relative to this file. Default:
    /// `decisions.db` in the user's data directory.
    pub store: Option<PathBuf>,
    /// Who the client acts as, for `warden proxy` (the gateway learns it
    /// from each agent's credential instead).
    #[serde(default)]
    pub identity: RawIdentity,
    /// Bounds on calls and messages, for `warden proxy` and `warden serve`.
    #[serde(default)]
    pub limits: RawLimits,
    /// The gateway's HTTP listener (`warden serve`).
    #[serde(default)]
    pub gateway: RawGateway,
    /// How agents authenticate to the gateway (`warden serve`).
    #[serde(default)]
    pub auth: RawAuth,
    /// The upstream MCP servers, by name. The name is what policy sees
    /// (`Server::"NAME"`, tools `Tool::"NAME/tool"`) and where the gateway
    /// serves it (`/mcp/NAME`): 1 to 64 ASCII letters, digits, `_` or `-`,
    /// and no two names may differ only in case or in `-` versus `_`.
    #[serde(default)]
    #[schemars(extend("propertyNames" = { "pattern": "^[A-Za-z0-9_-]{1,64}$" }))]
    pub servers: BTreeMap<String, RawServer>,
}

/// The identity `warden proxy` runs as.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawIdentity {
    /// The agent id (`Agent::"ID"` in policy).
    pub agent: Option<String>,
    /// The human the agent acts for (`context.acting_for` in policy).
    pub acting_for: Option<String>,
}

/// Bounds on calls and messages.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawLimits {
    /// Seconds an upstream may take to answer one request (1 to 86400;
    /// default 300).
    #[schemars(range(min = 1, max = 86_400), extend("default" = 300))]
    pub call_timeout_secs: Option<u64>,
    /// Largest message accepted from either side, in bytes (1024 to 1 GiB;
    /// default 4 MiB).
    #[schemars(range(min = 1024, max = 1_073_741_824), extend("default" = 4_194_304))]
    pub max_message_bytes: Option<usize>,
    /// Largest serialised size of a call's arguments, in bytes (1 to 1 GiB;
    /// default 1 MiB).
    #[schemars(range(min = 1, max = 1_073_741_824), extend("default" = 1_048_576))]
    pub max_argument_bytes: Option<usize>,
    /// Deepest nesting of a call's arguments (1 to 128; default 32).
    #[schemars(range(min = 1, max = 128), extend("default" = 32))]
    pub max_argument_depth: Option<usize>,
    /// Most values (leaves) in a call's arguments (1 to 1000000; default
    /// 10000).
    #[schemars(range(min = 1, max = 1_000_000), extend("default" = 10_000))]
    pub max_argument_values: Option<usize>,
}

/// The gateway's HTTP listener.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawGateway {
    /// The address to listen on, `IP:PORT`.
    #[schemars(extend("default" = "127.0.0.1:8080"))]
    pub listen: Option<String>,
    /// The URL agents use to reach the gateway (`https://gw.example`).
    /// Default: `http://{listen}`.
    pub public_url: Option<String>,
    /// `Host` header values accepted (`host` or `host:port`); any other is
    /// refused (DNS-rebinding protection). Default for a loopback `listen`:
    /// `127.0.0.1:{port}`, `localhost:{port}` and `[::1]:{port}`; required
    /// for any other `listen`.
    pub allowed_hosts: Option<Vec<String>>,
    /// `Origin` header values accepted (`http://localhost:8080`). A request
    /// without `Origin` is accepted. Default: `http://127.0.0.1:{port}` and
    /// `http://localhost:{port}`.
    pub allowed_origins: Option<Vec<String>>,
    /// Seconds a session may stay unused before it is ended (10 to 86400;
    /// default 1800).
    #[schemars(range(min = 10, max = 86_400), extend("default" = 1800))]
    pub session_idle_timeout_secs: Option<u64>,
    /// Most sessions open at once (1 to 100000; default 1000).
    #[schemars(range(min = 1, max = 100_000), extend("default" = 1000))]
    pub max_sessions: Option<u64>,
    /// Most sessions one agent (one principal, whoever it acts for) may
    /// have open at once, so that no one agent can take every session
    /// (1 to 100000; default 32).
    #[schemars(range(min = 1, max = 100_000), extend("default" = 32))]
    pub max_sessions_per_agent: Option<u64>,
    /// This gateway instance's name in the decision log. Default: the host
    /// name, or `warden`.
    pub instance: Option<String>,
    /// One endpoint that offers the tools of several servers at once.
    pub aggregate: Option<RawAggregate>,
}

/// The aggregated endpoint: `/mcp/{name}` offers the tools of its servers,
/// each named `SERVER__TOOL`; policy still sees the real server and tool.
/// Resources and prompts stay on each server's own endpoint.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAggregate {
    /// The endpoint's name (served at `/mcp/{name}`): 1 to 64 ASCII
    /// letters, digits, `_` or `-`, not ambiguous with any server's name.
    #[schemars(regex(pattern = r"^[A-Za-z0-9_-]{1,64}$"))]
    pub name: Option<String>,
    /// The member servers, in the order their tools are listed. Default:
    /// every server. A member's name must not contain `__` nor end in `_`,
    /// so that every exposed name splits back into one server and tool.
    pub servers: Option<Vec<String>>,
}

/// How agents authenticate to the gateway. At least one way must be on.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawAuth {
    /// Accept Warden API keys (`warden keys`) as bearer tokens.
    #[schemars(extend("default" = true))]
    pub api_keys: Option<bool>,
    /// Accept JWT access tokens from an OAuth authorization server.
    pub jwt: Option<RawJwt>,
}

/// JWT access tokens, checked against the issuer's signing keys.
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RawJwt {
    /// The `iss` every token must carry (required).
    pub issuer: Option<String>,
    /// The `aud` every token must carry. Default: the gateway's
    /// `public_url`.
    pub audience: Option<String>,
    /// The issuer's signing keys as a JWKS file, relative to this file.
    /// Give this or `jwks_url`.
    pub jwks_file: Option<PathBuf>,
    /// Where to fetch the issuer's JWKS: `https`, or `http` only for a
    /// loopback host. Give this or `jwks_file`.
    #[schemars(extend("format" = "uri"))]
    pub jwks_url: Option<String>,
    /// Signature algorithms accepted. `none` and the shared-secret HMAC
    /// algorithms (`HS256`, `HS384`, `HS512`) are refused.
    #[schemars(extend("default" = ["RS256", "ES256", "EdDSA"]))]
    pub algorithms: Option<Vec<String>>,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds (0 to 300;
    /// default 60).
    #[schemars(range(min = 0, max = 300), extend("default" = 60))]
    pub leeway_secs: Option<u64>,
    /// The OAuth authorization servers agents are sent to (protected
    /// resource metadata). Default: `[issuer]`.
    pub authorization_servers: Option<Vec<String>>,
}

/// One upstream MCP server: either a local program (`command`) or a
/// remote endpoint (`url`).
#[derive(Debug, Default, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("oneOf" = [{ "required": ["command"] }, { "required": ["url"] }]))]
pub struct RawServer {
    /// A stdio server: the program to run. A relative path with a `/` is
    /// relative to this file's folder; a bare name is looked up on `PATH`.
    #[serde(default)]
    pub command: String,
    /// A stdio server's arguments.
    #[serde(default)]
    pub args: Vec<String>,
    /// A stdio server's environment, on top of Warden's own. Values may be
    /// `${VAR}` or `file:PATH` secret references.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// A stdio server's working directory, relative to this file. Default:
    /// this file's folder.
    pub cwd: Option<PathBuf>,
    /// A remote server: its MCP endpoint (`http` or `https`).
    #[schemars(extend("format" = "uri"))]
    pub url: Option<String>,
    /// A remote server's transport.
    pub transport: Option<RawTransport>,
    /// Headers added to every request to a remote server. Credentials must
    /// be `${VAR}` or `file:PATH` references, never inline.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A remote server's bearer token, sent as `Authorization: Bearer …`:
    /// a `${VAR}` or `file:PATH` reference.
    pub bearer_token: Option<String>,
}

/// How Warden talks to a remote server.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize, JsonSchema)]
pub enum RawTransport {
    /// Streamable HTTP (MCP 2025-03-26 and later).
    #[default]
    #[serde(rename = "streamable-http")]
    StreamableHttp,
    /// The legacy HTTP+SSE transport (MCP 2024-11-05).
    #[serde(rename = "sse")]
    Sse,
}

/// The JSON Schema of `warden.toml`, pretty-printed with a final newline.
pub fn schema_text() -> String {
    let mut schema = schemars::schema_for!(RawConfig).to_value();
    drop_null(&mut schema);
    let text = serde_json::to_string_pretty(&schema).unwrap_or_default();
    format!("{text}\n")
}

/// TOML has no null: an absent key is how a value is left out, so the
/// `null` alternatives schemars gives `Option` fields are removed.
fn drop_null(value: &mut serde_json::Value) {
    use serde_json::Value;
    let Value::Object(map) = value else {
        if let Value::Array(items) = value {
            items.iter_mut().for_each(drop_null);
        }
        return;
    };
    if let Some(Value::Array(types)) = map.get_mut("type") {
        types.retain(|t| t != "null");
        if let [only] = types.as_slice() {
            let only = only.clone();
            map.insert("type".to_owned(), only);
        }
    }
    if let Some(Value::Array(any)) = map.get_mut("anyOf") {
        any.retain(|s| s.get("type").is_none_or(|t| t != "null"));
        if let [only] = any.as_slice() {
            let only = only.clone();
            map.remove("anyOf");
            if let Value::Object(inner) = only {
                for (k, v) in inner {
                    map.entry(k).or_insert(v);
                }
            }
        }
    }
    map.values_mut().for_each(drop_null);
}
