//! The HTTP face of the gateway: one `Router` for `warden serve` and the
//! tests alike.
//!
//! Each configured server is exposed at `/mcp/{server}` over Streamable
//! HTTP: `POST` carries client messages, `GET` opens the stream of server
//! messages, `DELETE` ends a session. Every request is checked in the same
//! order: `Host` and `Origin` (DNS-rebinding protection), the server name,
//! the caller's own credential, then the session, which is found only by the
//! principal that created it. Operations endpoints (`/healthz`, `/readyz`,
//! `/metrics`) and the RFC 9728 metadata need no credential.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, DefaultBodyLimit, Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::Router;
use futures_util::stream::{self, Stream, StreamExt as _};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch};
use warden_mcp::jsonrpc::{self, Message};
use warden_mcp::{Pins, Relay, RelayConfig};
use warden_policy::Pdp;

use crate::aggregate::Aggregate;
use crate::auth::{self, Authenticator, Identity};
use crate::config::GatewayConfig;
use crate::error::{json_body, GatewayError};
use crate::log::SharedLog;
use crate::metrics::Metrics;
use crate::restarts::Restarts;
use crate::session::{self, Command, Member, SessionHandle, SessionStart, Sessions, StreamEvent};
use crate::stateless;
use crate::upstream::{self, UpstreamOptions};

/// Protocol versions of the handshake generation that Warden serves.
pub const PROTOCOL_VERSIONS: &[&str] = &["2024-11-05", "2025-03-26", "2025-06-18", "2025-11-25"];
/// What a request without `MCP-Protocol-Version` is taken to speak.
const DEFAULT_PROTOCOL_VERSION: &str = "2025-03-26";
/// How long an upstream has to come up and accept a new session.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(30);

/// Everything a request handler needs.
pub struct Gateway {
    config: GatewayConfig,
    pdp: Arc<Pdp>,
    log: SharedLog,
    auth: Authenticator,
    sessions: Sessions,
    /// The upstream session behind each stateless (2026-07-28) caller, by
    /// owner and endpoint.
    stateless: std::sync::Mutex<HashMap<String, Arc<StatelessRun>>>,
    stateless_ids: stateless::Ids,
    restarts: Arc<Restarts>,
    pins: Option<Pins>,
    metrics: Arc<Metrics>,
    shutdown: watch::Sender<bool>,
}

impl std::fmt::Debug for Gateway {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gateway")
            .field("listen", &self.config.listen)
            .finish_non_exhaustive()
    }
}

impl Gateway {
    /// A gateway deciding with `pdp`, recording into `log`, and checking
    /// tool definitions against `pins` when given.
    pub fn new(
        config: GatewayConfig,
        pdp: Arc<Pdp>,
        log: SharedLog,
        auth: Authenticator,
        metrics: Arc<Metrics>,
        pins: Option<Pins>,
    ) -> Arc<Self> {
        let (shutdown, _) = watch::channel(false);
        Arc::new(Gateway {
            config,
            pdp,
            log,
            auth,
            sessions: Sessions::default(),
            stateless: std::sync::Mutex::default(),
            stateless_ids: stateless::Ids::default(),
            restarts: Arc::default(),
            pins,
            metrics,
            shutdown,
        })
    }

    /// The settings it runs with.
    pub fn config(&self) -> &GatewayConfig {
        &self.config
    }

    /// The metrics it counts into.
    pub fn metrics(&self) -> &Metrics {
        &self.metrics
    }

    /// How many sessions are open.
    pub fn session_count(&self) -> usize {
        self.sessions.len()
    }

    /// Ends open `GET` streams so a graceful shutdown can finish; requests
    /// in flight still get their answers.
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Ends sessions that sat idle too long or whose upstream went away.
    pub async fn reap_sessions(&self) {
        for session in self.sessions.reap(self.config.session_idle_timeout) {
            session.send(Command::Close).await;
        }
        self.metrics.set_sessions(self.sessions.len());
    }

    /// Ends every session and stops its upstream.
    pub async fn close_all(&self) {
        for session in self.sessions.drain() {
            session.send(Command::Close).await;
        }
        self.metrics.set_sessions(0);
    }

    fn resource_url(&self, server: &str) -> String {
        format!("{}/mcp/{server}", self.config.public_url)
    }

    fn metadata_url(&self, server: &str) -> String {
        format!(
            "{}/.well-known/oauth-protected-resource/mcp/{server}",
            self.config.public_url
        )
    }
}

/// The gateway's routes.
pub fn app(gateway: Arc<Gateway>) -> Router {
    let limit = gateway.config.max_message_bytes;
    Router::new()
        .route(
            "/mcp/{server}",
            get(open_stream).post(post_message).delete(end_session),
        )
        .route(
            "/.well-known/oauth-protected-resource/mcp/{server}",
            get(resource_metadata),
        )
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .layer(DefaultBodyLimit::max(limit))
        .with_state(gateway)
}

// === handlers ===

async fn post_message(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    ConnectInfo(peer): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let started = Instant::now();
    let response = match admit(&gw, &server, &headers).await {
        Ok(identity) => match body {
            Ok(body) => post(&gw, &server, peer, &headers, identity, body)
                .await
                .unwrap_or_else(IntoResponse::into_response),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                GatewayError::TooLarge {
                    limit: gw.config.max_message_bytes,
                }
                .into_response()
            }
            Err(rejection) => rejection.into_response(),
        },
        Err(refusal) => refusal.into_response(),
    };
    gw.metrics.http(
        "POST",
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn post(
    gw: &Arc<Gateway>,
    server: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    identity: Identity,
    body: Bytes,
) -> Result<Response, GatewayError> {
    if !is_json(headers) {
        return Err(GatewayError::NotJson);
    }
    let text = String::from_utf8(body.to_vec()).map_err(|_| GatewayError::NotUtf8)?;
    if text.trim().is_empty() {
        return Err(GatewayError::EmptyBody);
    }
    let parsed = jsonrpc::parse(&text);
    let owner = owner_of(&identity);
    let session = match session_id(headers) {
        Some(id) => find_session(gw, server, &id, &owner, headers)?,
        None => match &parsed {
            Ok(p) if is_initialize(&p.message) => {
                let started = start_session(gw, server, peer, &identity, owner).await;
                match (&p.message, started) {
                    (Message::Request { id, .. }, Err(refused)) => {
                        return Err(refused.answering(id))
                    }
                    (_, started) => started?,
                }
            }
            Ok(p) if stateless::is_modern(&p.message, headers) => {
                return modern(gw, server, peer, headers, &identity, p).await;
            }
            Ok(p) if stateless::is_modern_notification(&p.message, headers) => {
                // The revision defines no client notifications: nothing to do.
                return Ok(StatusCode::ACCEPTED.into_response());
            }
            _ => return Err(sessionless(parsed.ok().as_ref().map(|p| &p.message))),
        },
    };

    let request_key = match parsed.as_ref().map(|p| &p.message) {
        Ok(Message::Request { id, .. }) => Some(id.key().to_owned()),
        Ok(_) => None,
        // Unreadable or refused: the relay answers it (and records it).
        Err(_) => {
            let (reply, answers) = session::stream_channel();
            let line = Command::Client {
                line: text,
                reply: Some(reply),
            };
            session.send(line).await;
            return Ok(first_answer(answers, StatusCode::BAD_REQUEST, &session).await);
        }
    };
    let Some(key) = request_key else {
        // Notifications and responses: accepted, nothing to answer.
        let line = Command::Client {
            line: text,
            reply: None,
        };
        if !session.send(line).await {
            return Err(GatewayError::SessionEnded);
        }
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    let (reply, answers) = session::stream_channel();
    let line = Command::Client {
        line: text,
        reply: Some(reply),
    };
    if !session.send(line).await {
        return Err(GatewayError::SessionEnded);
    }
    let mut response = if accepts_event_stream(headers) {
        sse_answer(answers, key)
    } else {
        json_answer(answers, key).await
    };
    set_session_header(&mut response, &session);
    Ok(response)
}

fn is_initialize(message: &Message) -> bool {
    matches!(message, Message::Request { method, .. } if method == "initialize")
}

async fn open_stream(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    stream(&gw, &server, &headers)
        .await
        .unwrap_or_else(IntoResponse::into_response)
}

async fn stream(gw: &Gateway, server: &str, headers: &HeaderMap) -> Result<Response, GatewayError> {
    let identity = admit(gw, server, headers).await?;
    if !accepts_event_stream(headers) {
        return Err(GatewayError::NotEventStream);
    }
    let id = session_id(headers).ok_or(GatewayError::SessionRequired { id: None })?;
    let session = find_session(gw, server, &id, &owner_of(&identity), headers)?;
    let (stream, events) = session::stream_channel();
    let (accepted, answer) = tokio::sync::oneshot::channel();
    let resume_after = headers
        .get("last-event-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let command = Command::OpenStream {
        stream,
        resume_after,
        accepted,
    };
    if !session.send(command).await {
        return Err(GatewayError::SessionEnded);
    }
    if !answer.await.unwrap_or(false) {
        return Err(GatewayError::StreamOpen);
    }
    let mut stop = gw.shutdown.subscribe();
    let ended = async move {
        let _ = stop.wait_for(|stopping| *stopping).await;
    };
    let events = receiver_stream(events)
        .take_until(ended)
        .map(|e| Ok::<_, Infallible>(to_sse(e)));
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)))
        .into_response())
}

async fn end_session(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    match end(&gw, &server, &headers).await {
        Ok(status) => status.into_response(),
        Err(refusal) => refusal.into_response(),
    }
}

async fn end(gw: &Gateway, server: &str, headers: &HeaderMap) -> Result<StatusCode, GatewayError> {
    let identity = admit(gw, server, headers).await?;
    let id = session_id(headers).ok_or(GatewayError::SessionRequired { id: None })?;
    let session = find_session(gw, server, &id, &owner_of(&identity), headers)?;
    gw.sessions.remove(&session.id);
    session.send(Command::Close).await;
    gw.metrics.set_sessions(gw.sessions.len());
    Ok(StatusCode::OK)
}

async fn resource_metadata(
    State(gw): State<Arc<Gateway>>,
    Path(server): Path<String>,
    headers: HeaderMap,
) -> Response {
    if let Err(refusal) = check_host_and_origin(&gw.config, &headers) {
        return refusal.into_response();
    }
    if gw.config.endpoint(&server).is_none() {
        return GatewayError::NoSuchServer.into_response();
    }
    let document = auth::protected_resource_metadata(&gw.resource_url(&server), &gw.config.auth);
    axum::Json(document).into_response()
}

async fn healthz() -> Response {
    axum::Json(json!({"status": "ok"})).into_response()
}

async fn readyz(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    // What is served is worth keeping from other sites' pages.
    if let Err(refusal) = check_host_and_origin(&gw.config, &headers) {
        return refusal.into_response();
    }
    axum::Json(json!({
        "status": "ready",
        "policy_version": gw.pdp.policies().version(),
        "policies": gw.pdp.policies().policy_count(),
        "servers": gw.config.servers.keys().collect::<Vec<_>>(),
        "aggregate": gw.config.aggregate.as_ref().map(|a| &a.name),
        "sessions": gw.sessions.len(),
    }))
    .into_response()
}

async fn metrics(State(gw): State<Arc<Gateway>>, headers: HeaderMap) -> Response {
    if let Err(refusal) = check_host_and_origin(&gw.config, &headers) {
        return refusal.into_response();
    }
    gw.metrics.set_sessions(gw.sessions.len());
    (
        [(
            header::CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        gw.metrics.render(),
    )
        .into_response()
}

// === steps ===

/// Host and origin, server name, credential: the checks every MCP request
/// passes before anything else is read.
async fn admit(gw: &Gateway, server: &str, headers: &HeaderMap) -> Result<Identity, GatewayError> {
    check_host_and_origin(&gw.config, headers)?;
    if gw.config.endpoint(server).is_none() {
        return Err(GatewayError::NoSuchServer);
    }
    match gw.auth.authenticate(headers).await {
        Ok(identity) => Ok(identity),
        Err(error) => {
            gw.metrics.auth_failure(error.reason());
            tracing::debug!(auth.reason = error.reason(), "refused a credential");
            let challenge = gw.auth.challenge(&gw.metadata_url(server), &error);
            Err(GatewayError::Unauthenticated {
                challenge,
                presented: !matches!(error, auth::AuthError::Missing),
            })
        }
    }
}

/// DNS-rebinding protection: a browser page on another site that resolves
/// its own name to this gateway sends its own `Host` and `Origin`.
fn check_host_and_origin(config: &GatewayConfig, headers: &HeaderMap) -> Result<(), GatewayError> {
    let host = headers.get(header::HOST).and_then(|v| v.to_str().ok());
    let host_ok = host.is_some_and(|h| {
        config
            .allowed_hosts
            .iter()
            .any(|allowed| allowed.eq_ignore_ascii_case(h))
    });
    if !host_ok {
        return Err(GatewayError::ForeignHost);
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let allowed = origin.to_str().is_ok_and(|o| {
            config
                .allowed_origins
                .iter()
                .any(|allowed| allowed.eq_ignore_ascii_case(o))
        });
        if !allowed {
            return Err(GatewayError::ForeignOrigin);
        }
    }
    Ok(())
}

/// The session `id` of `owner` on the endpoint `server`, with the protocol
/// version header checked.
fn find_session(
    gw: &Gateway,
    server: &str,
    id: &str,
    owner: &str,
    headers: &HeaderMap,
) -> Result<Arc<SessionHandle>, GatewayError> {
    // INVARIANT: a session is found only at the endpoint it was opened on,
    // so a URL always names the server its requests reach, and controls in
    // front of the gateway that route or filter by path hold.
    let session = gw.sessions.get(id, owner).filter(|s| s.server == server);
    let Some(session) = session else {
        if gw.sessions.exists(id) {
            // INVARIANT: the answer is the same as for an unknown id, so a
            // session id is useless to anyone but its owner.
            tracing::info!(
                session.owner.mismatch = true,
                "refused a session id presented by another principal or at another endpoint"
            );
        }
        return Err(GatewayError::NoSuchSession);
    };
    check_protocol_version(headers, session.protocol_version().as_deref())?;
    Ok(session)
}

/// `MCP-Protocol-Version` must be one Warden speaks and, once the session
/// agreed one, that one or 2025-03-26. A missing header means 2025-03-26.
fn check_protocol_version(
    headers: &HeaderMap,
    negotiated: Option<&str>,
) -> Result<(), GatewayError> {
    if headers.get_all("mcp-protocol-version").iter().count() > 1 {
        return Err(GatewayError::VersionRepeated);
    }
    let Some(value) = headers.get("mcp-protocol-version") else {
        return match negotiated {
            Some(v) if v != DEFAULT_PROTOCOL_VERSION && v != "2024-11-05" => {
                // Older clients never send the header; newer ones must.
                tracing::debug!(
                    mcp.protocol.version = v,
                    "request without a protocol version header"
                );
                Ok(())
            }
            _ => Ok(()),
        };
    };
    let version = value.to_str().unwrap_or_default();
    if !PROTOCOL_VERSIONS.contains(&version) {
        return Err(GatewayError::UnsupportedVersion);
    }
    // The version a missing header stands for says no more than a missing
    // header, which is accepted on every session (the MCP conformance suite
    // sends it on a 2025-11-25 session). Either way the upstream is still
    // spoken to in the negotiated version.
    if version != DEFAULT_PROTOCOL_VERSION && negotiated.is_some_and(|n| n != version) {
        return Err(GatewayError::VersionMismatch);
    }
    Ok(())
}

async fn start_session(
    gw: &Arc<Gateway>,
    server: &str,
    peer: SocketAddr,
    identity: &Identity,
    owner: String,
) -> Result<Arc<SessionHandle>, GatewayError> {
    gw.reap_sessions().await;
    if gw.sessions.len() >= gw.config.max_sessions {
        return Err(GatewayError::TooManySessions);
    }
    if gw.sessions.count_of(&identity.principal.to_string()) >= gw.config.max_sessions_per_agent {
        return Err(GatewayError::TooManyAgentSessions);
    }
    let members = gw
        .config
        .endpoint(server)
        .ok_or(GatewayError::NoSuchServer)?;
    let mut connected = Vec::with_capacity(members.len());
    for member in &members {
        match connect_member(gw, member, peer, identity).await {
            Ok(member) => connected.push(member),
            Err(refusal) => {
                for started in connected {
                    started.upstream.close().await;
                }
                return Err(refusal);
            }
        }
    }
    let aggregate = gw
        .config
        .aggregate
        .as_ref()
        .filter(|a| a.name == server)
        .map(|a| {
            let origin = warden_mcp::record::Origin {
                principal: identity.principal.to_string(),
                acting_for: identity.acting_for.clone(),
                server: a.name.clone(),
                instance: gw.config.instance.clone(),
            };
            Aggregate::new(a.servers.clone(), origin)
        });
    let session = session::start(SessionStart {
        id: session::new_session_id(),
        server: server.to_owned(),
        owner,
        members: connected,
        aggregate,
        log: gw.log.clone(),
        max_message_bytes: gw.config.max_message_bytes,
        restarts: Arc::clone(&gw.restarts),
    });
    gw.sessions.insert(Arc::clone(&session));
    gw.metrics.set_sessions(gw.sessions.len());
    Ok(session)
}

/// Starts an upstream session of `server` and the relay that guards it.
async fn connect_member(
    gw: &Gateway,
    server: &str,
    peer: SocketAddr,
    identity: &Identity,
) -> Result<Member, GatewayError> {
    let Some(spec) = gw.config.servers.get(server).map(|s| &s.upstream) else {
        return Err(GatewayError::NoSuchServer);
    };
    if let Err(retry_after) = gw.restarts.check(server, Instant::now()) {
        gw.metrics.upstream_error("backoff");
        return Err(GatewayError::UpstreamBackoff {
            server: server.to_owned(),
            retry_after,
            id: None,
        });
    }
    let options = UpstreamOptions {
        max_message_bytes: gw.config.max_message_bytes,
        connect_timeout: CONNECT_TIMEOUT,
        request_timeout: gw.config.call_timeout,
    };
    let upstream = match upstream::connect(spec, &options).await {
        Ok(upstream) => upstream,
        Err(error) => {
            gw.restarts.failed(server, Instant::now());
            gw.metrics.upstream_error("connect_failed");
            tracing::warn!(mcp.server = %server, error = %error, "cannot start the upstream server");
            return Err(GatewayError::UpstreamUnavailable {
                server: server.to_owned(),
                id: None,
            });
        }
    };
    let mut relay = Relay::new(
        RelayConfig {
            server: server.to_owned(),
            principal: identity.principal.clone(),
            acting_for: identity.acting_for.clone(),
            instance: gw.config.instance.clone(),
            call_timeout: gw.config.call_timeout,
            transport: "http".to_owned(),
            client_address: peer.ip().to_string(),
        },
        Arc::clone(&gw.pdp),
    );
    if let Some(pins) = &gw.pins {
        relay = relay.with_pins(pins.clone());
    }
    Ok(Member {
        server: server.to_owned(),
        relay,
        upstream,
    })
}

// === the stateless revision ===

/// A stateless caller's upstream session, and what the upstream said when
/// Warden opened it.
#[derive(Debug)]
struct StatelessRun {
    session: Arc<SessionHandle>,
    initialized: Value,
}

/// A 2026-07-28 request: checked, then run through the caller's upstream
/// session (opened on its first request) under an id of Warden's, and
/// answered with the client's own id.
async fn modern(
    gw: &Arc<Gateway>,
    server: &str,
    peer: SocketAddr,
    headers: &HeaderMap,
    identity: &Identity,
    parsed: &jsonrpc::Parsed,
) -> Result<Response, GatewayError> {
    let Message::Request { id, method, params } = &parsed.message else {
        return Ok(StatusCode::ACCEPTED.into_response());
    };
    let envelope = match stateless::check(&parsed.message, headers) {
        Ok(envelope) => envelope,
        Err(refused) => {
            let answer =
                jsonrpc::error_response(Some(id), refused.code, &refused.message, refused.data);
            return Ok(json_body(StatusCode::BAD_REQUEST, answer));
        }
    };
    let run = stateless_run(gw, server, peer, identity, &envelope)
        .await
        .map_err(|e| e.answering(id))?;
    if method == "server/discover" {
        let result = stateless::discover_result(&run.initialized);
        return Ok(json_body(
            StatusCode::OK,
            jsonrpc::result_response(id, &result),
        ));
    }

    let ours = gw.stateless_ids.next();
    let line = stateless::to_session(parsed, &ours, params);
    let (reply, answers) = session::stream_channel();
    let command = Command::Client {
        line,
        reply: Some(reply),
    };
    if !run.session.send(command).await {
        return Err(GatewayError::SessionEnded);
    }
    let (client_id, method) = (id.clone(), method.clone());
    let events = until_answered(answers, ours.key().to_owned()).filter_map(move |event| {
        let data = stateless::to_client(&event.data, &client_id, &method);
        std::future::ready(data.map(|data| StreamEvent { id: event.id, data }))
    });
    let key = id.key().to_owned();
    if accepts_event_stream(headers) {
        let events = events.map(|e| Ok::<_, Infallible>(to_sse(e)));
        return Ok(Sse::new(events).into_response());
    }
    let last = Box::pin(events)
        .fold(None, |_, e| std::future::ready(Some(e)))
        .await;
    Ok(match last.filter(|e| is_response_to(&e.data, &key)) {
        Some(event) => json_body(StatusCode::OK, event.data),
        None => GatewayError::SessionEnded.into_response(),
    })
}

/// The upstream session behind `identity`'s stateless requests to
/// `server`: the open one, or a new one opened with an `initialize` built
/// from the request's envelope.
async fn stateless_run(
    gw: &Arc<Gateway>,
    server: &str,
    peer: SocketAddr,
    identity: &Identity,
    envelope: &stateless::Envelope,
) -> Result<Arc<StatelessRun>, GatewayError> {
    let owner = owner_of(identity);
    let key = format!("{owner}|{server}");
    let open = gw
        .stateless
        .lock()
        .ok()
        .and_then(|runs| runs.get(&key).cloned())
        .filter(|run| !run.session.is_closed());
    if let Some(run) = open {
        return Ok(run);
    }
    let session = start_session(gw, server, peer, identity, owner).await?;
    let ours = gw.stateless_ids.next();
    let (reply, answers) = session::stream_channel();
    let command = Command::Client {
        line: stateless::initialize(&ours, envelope),
        reply: Some(reply),
    };
    if !session.send(command).await {
        return Err(GatewayError::SessionEnded);
    }
    let answer = Box::pin(until_answered(answers, ours.key().to_owned()))
        .filter(|e| std::future::ready(is_response_to(&e.data, ours.key())))
        .next()
        .await;
    let initialized = answer
        .and_then(|e| serde_json::from_str::<Value>(&e.data).ok())
        .and_then(|v| v.get("result").cloned());
    let Some(initialized) = initialized else {
        // The upstream refused the handshake: nothing is left running.
        gw.sessions.remove(&session.id);
        session.send(Command::Close).await;
        return Err(GatewayError::UpstreamUnavailable {
            server: server.to_owned(),
            id: None,
        });
    };
    let done = r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#.to_owned();
    session
        .send(Command::Client {
            line: done,
            reply: None,
        })
        .await;
    let run = Arc::new(StatelessRun {
        session,
        initialized,
    });
    if let Ok(mut runs) = gw.stateless.lock() {
        runs.retain(|_, run| !run.session.is_closed());
        runs.insert(key, Arc::clone(&run));
    }
    Ok(run)
}

/// A message without a session that is neither `initialize` nor of the
/// stateless revision.
fn sessionless(message: Option<&Message>) -> GatewayError {
    match message {
        Some(Message::Request { id, .. }) => GatewayError::SessionRequired {
            id: Some(id.clone()),
        },
        _ => GatewayError::SessionRequired { id: None },
    }
}

// === answers ===

/// The answer to a request as an SSE stream: everything routed to it, up to
/// and including its response.
fn sse_answer(answers: mpsc::Receiver<StreamEvent>, key: String) -> Response {
    let events = until_answered(answers, key).map(|e| Ok::<_, Infallible>(to_sse(e)));
    Sse::new(events).into_response()
}

/// The answer to a request as one JSON body.
async fn json_answer(answers: mpsc::Receiver<StreamEvent>, key: String) -> Response {
    let mut events = Box::pin(until_answered(answers, key.clone()));
    let mut last = None;
    while let Some(event) = events.next().await {
        last = Some(event);
    }
    match last.filter(|e| is_response_to(&e.data, &key)) {
        Some(event) => json_body(StatusCode::OK, event.data),
        None => GatewayError::SessionEnded.into_response(),
    }
}

/// The first answer the relay wrote to an unreadable message.
async fn first_answer(
    mut answers: mpsc::Receiver<StreamEvent>,
    status: StatusCode,
    session: &SessionHandle,
) -> Response {
    let answer = tokio::time::timeout(Duration::from_secs(5), answers.recv()).await;
    match answer {
        Ok(Some(event)) => {
            let mut response = json_body(status, event.data);
            set_session_header(&mut response, session);
            response
        }
        _ => (status, "the message could not be read\n").into_response(),
    }
}

fn until_answered(
    answers: mpsc::Receiver<StreamEvent>,
    key: String,
) -> impl Stream<Item = StreamEvent> {
    stream::unfold((answers, false), move |(mut answers, done)| {
        let key = key.clone();
        async move {
            if done {
                return None;
            }
            let event = answers.recv().await?;
            let finished = is_response_to(&event.data, &key);
            Some((event, (answers, finished)))
        }
    })
}

fn receiver_stream(events: mpsc::Receiver<StreamEvent>) -> impl Stream<Item = StreamEvent> {
    stream::unfold(events, |mut events| async move {
        let event = events.recv().await?;
        Some((event, events))
    })
}

fn to_sse(event: StreamEvent) -> Event {
    Event::default()
        .event("message")
        .id(event.id)
        .data(event.data)
}

fn is_response_to(data: &str, key: &str) -> bool {
    matches!(
        jsonrpc::parse(data).map(|p| p.message),
        Ok(Message::Response { ref id, .. }) if id.key() == key
    )
}

fn set_session_header(response: &mut Response, session: &SessionHandle) {
    if let Ok(value) = HeaderValue::from_str(&session.id) {
        response.headers_mut().insert("mcp-session-id", value);
    }
}

// === headers ===

fn session_id(headers: &HeaderMap) -> Option<String> {
    headers
        .get("mcp-session-id")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned)
}

fn owner_of(identity: &Identity) -> String {
    format!(
        "{}|{}",
        identity.principal,
        identity.acting_for.as_deref().unwrap_or("")
    )
}

fn is_json(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .is_some_and(|v| v.trim().eq_ignore_ascii_case("application/json"))
}

fn accepts_event_stream(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|v| {
            v.split(';')
                .next()
                .is_some_and(|m| m.trim().eq_ignore_ascii_case("text/event-stream"))
        })
}

// === serving ===

/// How often idle sessions are looked for.
const REAP_EVERY: Duration = Duration::from_secs(15);

/// Serves `gateway` on `listener` until `stop` resolves, then shuts down
/// gracefully: open server-message streams end, requests in flight get their
/// answers, and every session's upstream is stopped.
pub async fn serve(
    gateway: Arc<Gateway>,
    listener: tokio::net::TcpListener,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let reaper = {
        let gateway = Arc::clone(&gateway);
        tokio::spawn(async move {
            let mut every = tokio::time::interval(REAP_EVERY);
            loop {
                every.tick().await;
                gateway.reap_sessions().await;
            }
        })
    };
    let stopping = {
        let gateway = Arc::clone(&gateway);
        async move {
            stop.await;
            tracing::info!("shutting down: finishing requests in flight");
            gateway.begin_shutdown();
        }
    };
    // LIMITATION: no read timeout on a request's headers or body; a slow
    // client holds its connection (bounded per client by later hardening).
    let service = app(Arc::clone(&gateway)).into_make_service_with_connect_info::<SocketAddr>();
    let served = axum::serve(listener, service)
        .with_graceful_shutdown(stopping)
        .await;
    reaper.abort();
    gateway.close_all().await;
    served
}
