//! Why the gateway refused an HTTP request, and the one mapping from each
//! reason to what the client sees.
//!
//! Refusals that happen before a message reaches its session's relay are
//! HTTP answers; what the relay decides about a message (denials, upstream
//! failures) are JSON-RPC answers the relay writes itself.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use warden_mcp::jsonrpc;

/// A request the gateway refused before any relay saw it.
#[derive(Debug, Clone)]
pub enum GatewayError {
    /// The `Host` header names a host not configured (DNS rebinding).
    ForeignHost,
    /// The `Origin` header names an origin not configured.
    ForeignOrigin,
    /// No server of that name is served.
    NoSuchServer,
    /// No credential, or a bad one; carries the `WWW-Authenticate` value.
    Unauthenticated {
        /// The challenge.
        challenge: String,
        /// Whether a credential was presented (and refused).
        presented: bool,
    },
    /// A body larger than the message limit.
    TooLarge {
        /// The limit, in bytes.
        limit: usize,
    },
    /// A POST with an empty body.
    EmptyBody,
    /// A POST whose body is not declared as JSON.
    NotJson,
    /// A body that is not UTF-8.
    NotUtf8,
    /// A GET that does not accept `text/event-stream`.
    NotEventStream,
    /// A request that needs `Mcp-Session-Id` came without one.
    SessionRequired {
        /// The request's id, when it had one.
        id: Option<jsonrpc::Id>,
    },
    /// The session id is unknown, ended, or another principal's.
    NoSuchSession,
    /// The session ended while the request was being answered.
    SessionEnded,
    /// `MCP-Protocol-Version` names a version Warden does not speak.
    UnsupportedVersion,
    /// `MCP-Protocol-Version` differs from the session's.
    VersionMismatch,
    /// `MCP-Protocol-Version` is given more than once.
    VersionRepeated,
    /// The session already has its GET stream open.
    StreamOpen,
    /// Too many sessions are open.
    TooManySessions,
    /// This agent has as many sessions open as it may.
    TooManyAgentSessions,
    /// The upstream could not be reached to start a session.
    UpstreamUnavailable {
        /// The server's configured name.
        server: String,
        /// The request to answer, when the refusal answers one.
        id: Option<jsonrpc::Id>,
    },
    /// The upstream kept failing; it is not started again before
    /// `retry_after` has passed.
    UpstreamBackoff {
        /// The server's configured name.
        server: String,
        /// How long until it is tried again.
        retry_after: std::time::Duration,
        /// The request to answer, when the refusal answers one.
        id: Option<jsonrpc::Id>,
    },
}

impl GatewayError {
    /// The same refusal, answering request `id` where it names one.
    pub fn answering(self, id: &jsonrpc::Id) -> Self {
        match self {
            GatewayError::UpstreamUnavailable { server, .. } => GatewayError::UpstreamUnavailable {
                server,
                id: Some(id.clone()),
            },
            GatewayError::UpstreamBackoff {
                server,
                retry_after,
                ..
            } => GatewayError::UpstreamBackoff {
                server,
                retry_after,
                id: Some(id.clone()),
            },
            other => other,
        }
    }

    /// A stable label for logs and metrics.
    pub fn reason(&self) -> &'static str {
        match self {
            GatewayError::ForeignHost => "foreign_host",
            GatewayError::ForeignOrigin => "foreign_origin",
            GatewayError::NoSuchServer => "no_such_server",
            GatewayError::Unauthenticated { .. } => "unauthenticated",
            GatewayError::TooLarge { .. } => "too_large",
            GatewayError::EmptyBody => "empty_body",
            GatewayError::NotJson => "not_json",
            GatewayError::NotUtf8 => "not_utf8",
            GatewayError::NotEventStream => "not_event_stream",
            GatewayError::SessionRequired { .. } => "session_required",
            GatewayError::NoSuchSession => "no_such_session",
            GatewayError::SessionEnded => "session_ended",
            GatewayError::UnsupportedVersion => "unsupported_version",
            GatewayError::VersionMismatch => "version_mismatch",
            GatewayError::VersionRepeated => "version_repeated",
            GatewayError::StreamOpen => "stream_open",
            GatewayError::TooManySessions => "too_many_sessions",
            GatewayError::TooManyAgentSessions => "too_many_agent_sessions",
            GatewayError::UpstreamUnavailable { .. } => "upstream_unavailable",
            GatewayError::UpstreamBackoff { .. } => "upstream_backoff",
        }
    }
}

/// Whole seconds to wait, at least one.
fn retry_secs(wait: std::time::Duration) -> u64 {
    wait.as_secs() + u64::from(wait.subsec_nanos() > 0)
}

/// How an answer's body is written.
enum Body {
    /// One line of text.
    Text(String),
    /// A JSON-RPC error with this code, answering this id.
    Rpc(Option<jsonrpc::Id>, i64, String),
}

impl IntoResponse for GatewayError {
    fn into_response(self) -> Response {
        use GatewayError as E;
        let text = |s: &str| Body::Text(s.to_owned());
        let (status, body) = match &self {
            E::ForeignHost => (
                StatusCode::FORBIDDEN,
                text("the `Host` header names a host this gateway does not serve"),
            ),
            E::ForeignOrigin => (
                StatusCode::FORBIDDEN,
                text("requests from this `Origin` are not accepted"),
            ),
            E::NoSuchServer => (
                StatusCode::NOT_FOUND,
                text("no MCP server of that name is served here"),
            ),
            E::Unauthenticated { presented, .. } => (
                StatusCode::UNAUTHORIZED,
                text(if *presented {
                    "the credential was refused (see `WWW-Authenticate`)"
                } else {
                    "authentication required: send `Authorization: Bearer` with an API key or an access token"
                }),
            ),
            E::TooLarge { limit } => (
                StatusCode::PAYLOAD_TOO_LARGE,
                Body::Text(format!(
                    "the message is larger than {limit} bytes (`limits.max_message_bytes`)"
                )),
            ),
            E::EmptyBody => (
                StatusCode::BAD_REQUEST,
                Body::Rpc(
                    None,
                    jsonrpc::INVALID_REQUEST,
                    "the body is empty: send one JSON-RPC message".to_owned(),
                ),
            ),
            E::NotJson => (
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                text("messages must be sent as `Content-Type: application/json`"),
            ),
            E::NotUtf8 => (
                StatusCode::BAD_REQUEST,
                Body::Rpc(
                    None,
                    jsonrpc::PARSE_ERROR,
                    "the body is not UTF-8".to_owned(),
                ),
            ),
            E::NotEventStream => (
                StatusCode::NOT_ACCEPTABLE,
                text("the server message stream needs `Accept: text/event-stream`"),
            ),
            E::SessionRequired { id } => (
                StatusCode::BAD_REQUEST,
                Body::Rpc(
                    id.clone(),
                    jsonrpc::INVALID_REQUEST,
                    "`Mcp-Session-Id` is required; start a session with `initialize`".to_owned(),
                ),
            ),
            E::NoSuchSession => (
                StatusCode::NOT_FOUND,
                text("no such session; start a new one with `initialize`"),
            ),
            E::SessionEnded => (
                StatusCode::NOT_FOUND,
                Body::Rpc(
                    None,
                    jsonrpc::UPSTREAM_UNAVAILABLE,
                    "the session ended; start a new one with `initialize`".to_owned(),
                ),
            ),
            E::UnsupportedVersion => (
                StatusCode::BAD_REQUEST,
                text(
                    "unsupported `MCP-Protocol-Version` for a session; sessions speak 2024-11-05, \
                     2025-03-26, 2025-06-18 and 2025-11-25 (a 2026-07-28 request carries no \
                     `Mcp-Session-Id`)",
                ),
            ),
            E::VersionMismatch => (
                StatusCode::BAD_REQUEST,
                text("`MCP-Protocol-Version` differs from the version this session agreed"),
            ),
            E::VersionRepeated => (
                StatusCode::BAD_REQUEST,
                text("`MCP-Protocol-Version` is given more than once"),
            ),
            E::StreamOpen => (
                StatusCode::CONFLICT,
                text("this session has a server message stream open already"),
            ),
            E::TooManySessions => (
                StatusCode::SERVICE_UNAVAILABLE,
                text("too many sessions are open; retry later"),
            ),
            E::TooManyAgentSessions => (
                StatusCode::TOO_MANY_REQUESTS,
                text("this agent has as many sessions open as it may; end one (DELETE) or let one expire"),
            ),
            E::UpstreamUnavailable { server, id } => (
                StatusCode::BAD_GATEWAY,
                Body::Rpc(
                    id.clone(),
                    jsonrpc::UPSTREAM_UNAVAILABLE,
                    format!("upstream server `{server}` is unavailable"),
                ),
            ),
            E::UpstreamBackoff {
                server,
                retry_after,
                id,
            } => (
                StatusCode::SERVICE_UNAVAILABLE,
                Body::Rpc(
                    id.clone(),
                    jsonrpc::UPSTREAM_UNAVAILABLE,
                    format!(
                        "upstream server `{server}` keeps failing; it is started again in {} s",
                        retry_secs(*retry_after)
                    ),
                ),
            ),
        };
        let mut response = match body {
            Body::Text(message) => (status, format!("{message}\n")).into_response(),
            Body::Rpc(id, code, message) => json_body(
                status,
                jsonrpc::error_response(id.as_ref(), code, &message, None),
            ),
        };
        if let E::UpstreamBackoff { retry_after, .. } = &self {
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_secs(*retry_after)),
            );
        }
        if let E::Unauthenticated { challenge, .. } = &self {
            if let Ok(value) = HeaderValue::from_str(challenge) {
                response
                    .headers_mut()
                    .insert(header::WWW_AUTHENTICATE, value);
            }
        }
        response
    }
}

/// A JSON body with its content type.
pub fn json_body(status: StatusCode, body: String) -> Response {
    (status, [(header::CONTENT_TYPE, "application/json")], body).into_response()
}
