//! The Streamable HTTP client transport (MCP 2025-03-26 to 2025-11-25).
//!
//! This module owns one upstream MCP session over HTTP: the POST of each
//! message, the session and protocol-version headers, reading answers
//! (JSON bodies and event streams), resuming a broken answer stream, the
//! GET stream for messages the server starts, and the DELETE at the end.
//! It turns HTTP failures into JSON-RPC error answers for the requests they
//! concern; everything else about the messages is the relay's.
//!
//! The helpers for reading JSON-RPC ids and HTTP error answers are shared
//! with the legacy SSE transport.

use std::collections::HashSet;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::StreamExt;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue, ACCEPT, CONTENT_TYPE};
use reqwest::{Response, StatusCode};
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{Map, Value};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use url::Url;
use warden_mcp::jsonrpc::{self, Id};

use super::sse::SseParser;
use super::{
    channels, header_map, http_client, redacted, Capped, EventSink, UpstreamConnection,
    UpstreamError, UpstreamEvent, UpstreamOptions,
};

const SESSION_ID: HeaderName = HeaderName::from_static("mcp-session-id");
const PROTOCOL_VERSION: HeaderName = HeaderName::from_static("mcp-protocol-version");
const LAST_EVENT_ID: HeaderName = HeaderName::from_static("last-event-id");
const POST_ACCEPT: &str = "application/json, text/event-stream";
const EVENT_STREAM: &str = "text/event-stream";

/// How long the DELETE that ends a session may take.
const DELETE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long reading the body of an HTTP error answer may take.
const ERROR_BODY_TIMEOUT: Duration = Duration::from_secs(2);
/// Largest error body read for a JSON-RPC message.
const ERROR_BODY_MAX: usize = 64 * 1024;
/// How often an answer stream that broke off is resumed.
const MAX_RESUMES: u32 = 3;
/// How often the GET stream is reopened after failing in a row.
const MAX_RECONNECTS: u32 = 5;
/// A GET stream open this long counts as healthy, even without events.
const HEALTHY_STREAM: Duration = Duration::from_secs(10);
/// First back-off before reconnecting, doubled each time.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// Bounds on any reconnection delay, including one the server asks for.
const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(30);

/// A response body being read.
pub(super) type Body = BoxStream<'static, Result<Bytes, reqwest::Error>>;

/// Prepares the client and starts the connection's task; sends nothing.
pub(super) fn connect(
    url: &Url,
    headers: &[(String, String)],
    options: &UpstreamOptions,
) -> Result<UpstreamConnection, UpstreamError> {
    let headers = header_map(headers)?;
    let client = http_client(options)?;
    let (ends, caller) = channels();
    let shared = Arc::new(Shared {
        client,
        url: url.clone(),
        headers,
        options: options.clone(),
        events: ends.events,
        state: Mutex::new(State::default()),
    });
    let task = tokio::spawn(dispatch(shared, ends.messages, ends.stop));
    Ok(caller.connection(task))
}

/// What the tasks of one connection share.
struct Shared {
    client: reqwest::Client,
    url: Url,
    /// The configured headers (brokered credentials).
    headers: HeaderMap,
    options: UpstreamOptions,
    events: EventSink,
    state: Mutex<State>,
}

/// What the upstream told us about its session.
#[derive(Debug, Default)]
struct State {
    /// The upstream's `Mcp-Session-Id`, from its answer to `initialize`.
    session_id: Option<HeaderValue>,
    /// The `protocolVersion` of the `initialize` result.
    protocol_version: Option<HeaderValue>,
    /// The id of the `initialize` request still waiting for its answer.
    initialize_id: Option<Id>,
}

/// What a finished task asks the dispatcher to do next.
enum Follow {
    Nothing,
    /// `notifications/initialized` was accepted: open the GET stream.
    Listen,
    /// The upstream session is gone; `Closed` was delivered.
    Expired,
}

/// Why the dispatcher stopped.
enum Ending {
    /// The caller closed or dropped the connection.
    Stopped,
    /// The upstream session expired.
    Expired,
}

/// Takes messages and posts each one, concurrently, until the connection
/// is closed or the session expires; then ends the session politely.
async fn dispatch(
    shared: Arc<Shared>,
    mut messages: mpsc::Receiver<String>,
    mut stop: oneshot::Receiver<()>,
) {
    let mut tasks: JoinSet<Follow> = JoinSet::new();
    let mut listening = false;
    let ending = loop {
        let follow = tokio::select! {
            _ = &mut stop => break Ending::Stopped,
            message = messages.recv() => {
                let Some(message) = message else { break Ending::Stopped };
                let outgoing = Outgoing::read(&message);
                if outgoing.initialized {
                    // A barrier: the server sees `initialized` before any
                    // request that follows it (some servers refuse requests
                    // before it).
                    tokio::select! {
                        follow = post(Arc::clone(&shared), message, outgoing) => follow,
                        _ = &mut stop => break Ending::Stopped,
                    }
                } else {
                    tasks.spawn(post(Arc::clone(&shared), message, outgoing));
                    Follow::Nothing
                }
            }
            Some(joined) = tasks.join_next(), if !tasks.is_empty() => {
                joined.unwrap_or(Follow::Nothing)
            }
        };
        match follow {
            Follow::Listen if !listening => {
                listening = true;
                tasks.spawn(listen(Arc::clone(&shared)));
            }
            Follow::Listen | Follow::Nothing => {}
            Follow::Expired => break Ending::Expired,
        }
    };
    // From here every send fails, and every post and stream is dropped.
    drop(messages);
    tasks.shutdown().await;
    if matches!(ending, Ending::Stopped) {
        end_session(&shared).await;
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The headers of one request: the configured ones, then the protocol's
    /// (which win over configured ones of the same name). Nothing else is
    /// ever added. Also says whether a session id is among them.
    fn request_headers(&self, accept: Option<&'static str>, json: bool) -> (HeaderMap, bool) {
        let mut headers = self.headers.clone();
        if json {
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
        }
        if let Some(accept) = accept {
            headers.insert(ACCEPT, HeaderValue::from_static(accept));
        }
        let state = self.state();
        let with_session = match &state.session_id {
            Some(session) => {
                headers.insert(SESSION_ID, session.clone());
                true
            }
            None => {
                headers.remove(SESSION_ID);
                false
            }
        };
        match &state.protocol_version {
            Some(version) => headers.insert(PROTOCOL_VERSION, version.clone()),
            None => headers.remove(PROTOCOL_VERSION),
        };
        (headers, with_session)
    }

    /// Keeps the session id of the answer to `initialize`.
    fn take_session_id(&self, response: &Response) {
        let Some(value) = response.headers().get(SESSION_ID) else {
            return;
        };
        // The spec allows visible ASCII only; anything else is not echoed.
        if value.is_empty() || !value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) {
            tracing::warn!(upstream.url = %redacted(&self.url), "upstream server sent an invalid session id; ignored");
            return;
        }
        let mut value = value.clone();
        value.set_sensitive(true);
        self.state().session_id = Some(value);
    }

    /// Notes what a message from the upstream answers: requests of ours
    /// still pending, and the `initialize` result's protocol version.
    fn observe(&self, text: &str, pending: &mut HashSet<Id>) {
        let initialize = self.state().initialize_id.clone();
        if initialize.is_none() && pending.is_empty() {
            return;
        }
        for envelope in envelopes(text) {
            if envelope.method.is_some() {
                continue;
            }
            let Some(id) = envelope.id.as_deref().and_then(Id::from_raw) else {
                continue;
            };
            pending.remove(&id);
            if initialize.as_ref() == Some(&id) {
                let version = envelope.result.as_deref().and_then(protocol_version);
                let mut state = self.state();
                state.initialize_id = None;
                if let Some(version) = version {
                    state.protocol_version = Some(version);
                }
            }
        }
    }

    /// Delivers one message read from an answer; `false` when the
    /// connection is gone.
    async fn deliver(&self, event: UpstreamEvent, pending: &mut HashSet<Id>) -> bool {
        if let UpstreamEvent::Line(text) = &event {
            self.observe(text, pending);
        }
        self.events.emit(event).await
    }

    /// Reads the answer to a POST that the upstream accepted.
    async fn read_answer(&self, response: Response, requests: &[Id]) {
        let status = response.status();
        match media_type(&response).as_deref() {
            Some(EVENT_STREAM) => self.follow_stream(response, requests).await,
            Some("application/json") => {
                let max = self.options.max_message_bytes;
                let read =
                    tokio::time::timeout(self.options.request_timeout, read_body(response, max));
                match read.await {
                    Ok(Ok(body)) if !body.is_empty() => {
                        self.deliver(body.finish(), &mut HashSet::new()).await;
                    }
                    Ok(Ok(_)) => {
                        answer_failure(
                            &self.events,
                            requests,
                            "upstream server answered with an empty body",
                        )
                        .await;
                    }
                    Ok(Err(_)) | Err(_) => {
                        answer_failure(
                            &self.events,
                            requests,
                            "upstream server's answer could not be read",
                        )
                        .await;
                    }
                }
            }
            // 202 and 204 carry nothing, as for notifications; an answer to
            // a request may then come on the GET stream.
            _ if status == StatusCode::ACCEPTED || status == StatusCode::NO_CONTENT => {}
            _ => {
                let message = "upstream server answered with an unexpected content type";
                answer_failure(&self.events, requests, message).await;
            }
        }
    }

    /// Reads an event-stream answer as it arrives, until every request it
    /// carried is answered or it ends; resumes it when it breaks off early
    /// and the server gave event ids.
    async fn follow_stream(&self, response: Response, requests: &[Id]) {
        let mut pending: HashSet<Id> = requests.iter().cloned().collect();
        let awaited = !pending.is_empty();
        let mut parser = SseParser::new(self.options.max_message_bytes);
        let mut body = response.bytes_stream().boxed();
        let mut resumes = 0;
        loop {
            let read = self
                .read_stream(&mut body, &mut parser, &mut pending, awaited)
                .await;
            // After an oversized or unreadable message, which request it
            // answered is unknown: the relay matches it, not us.
            if !awaited || pending.is_empty() || read.unsure || self.events.is_closed() {
                return;
            }
            let Some(last) = parser.last_event_id().map(str::to_owned) else {
                break;
            };
            resumes += 1;
            if resumes > MAX_RESUMES {
                break;
            }
            tokio::time::sleep(backoff(resumes, parser.retry())).await;
            let Some(resumed) = self.resume(&last).await else {
                break;
            };
            body = resumed;
            parser.restart();
        }
        let pending: Vec<Id> = pending.into_iter().collect();
        let message = "upstream server ended the stream without answering";
        answer_failure(&self.events, &pending, message).await;
    }

    /// Reopens a broken answer stream after its last event.
    async fn resume(&self, last_event_id: &str) -> Option<Body> {
        let (mut headers, _) = self.request_headers(Some(EVENT_STREAM), false);
        headers.insert(LAST_EVENT_ID, HeaderValue::from_str(last_event_id).ok()?);
        let request = self.client.get(self.url.clone()).headers(headers);
        let response = tokio::time::timeout(self.options.request_timeout, request.send())
            .await
            .ok()?
            .ok()?;
        if !response.status().is_success() || !is_event_stream(&response) {
            tracing::debug!(
                upstream.url = %redacted(&self.url),
                http.response.status_code = response.status().as_u16(),
                "upstream server did not resume an answer stream",
            );
            return None;
        }
        Some(response.bytes_stream().boxed())
    }

    /// Delivers the messages of one event stream until it ends, or, when
    /// `awaited`, until nothing in `pending` is left unanswered.
    async fn read_stream(
        &self,
        body: &mut Body,
        parser: &mut SseParser,
        pending: &mut HashSet<Id>,
        awaited: bool,
    ) -> StreamRead {
        let mut read = StreamRead::default();
        let mut events = Vec::new();
        while let Some(chunk) = body.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                Err(error) => {
                    tracing::debug!(upstream.url = %redacted(&self.url), error = %error, "upstream event stream broke off");
                    break;
                }
            };
            parser.feed(&chunk, &mut events);
            for event in events.drain(..) {
                let Some(message) = event.into_message() else {
                    continue;
                };
                read.delivered += 1;
                read.unsure |= !matches!(message, UpstreamEvent::Line(_));
                if !self.deliver(message, pending).await {
                    return read;
                }
            }
            if awaited && pending.is_empty() {
                break;
            }
        }
        read
    }
}

/// What reading one event stream came to.
#[derive(Debug, Default)]
struct StreamRead {
    /// Messages delivered.
    delivered: usize,
    /// Some message could not be read (oversized or not UTF-8).
    unsure: bool,
}

/// Posts one message and delivers its answer, or an error answer for each
/// request in it when the upstream fails.
async fn post(shared: Arc<Shared>, body: String, outgoing: Outgoing) -> Follow {
    if let Some(id) = &outgoing.initialize {
        shared.state().initialize_id = Some(id.clone());
    }
    let (headers, with_session) = shared.request_headers(Some(POST_ACCEPT), true);
    let request = shared
        .client
        .post(shared.url.clone())
        .headers(headers)
        .body(body);
    let sent = tokio::time::timeout(shared.options.request_timeout, request.send()).await;
    let response = match sent {
        Ok(Ok(response)) => response,
        Ok(Err(error)) => {
            tracing::warn!(upstream.url = %redacted(&shared.url), error = %error, "upstream server could not be reached");
            let message = "upstream server could not be reached";
            answer_failure(&shared.events, &outgoing.requests, message).await;
            return Follow::Nothing;
        }
        Err(_) => {
            tracing::warn!(upstream.url = %redacted(&shared.url), "upstream server did not answer in time");
            let message = "upstream server could not be reached in time";
            answer_failure(&shared.events, &outgoing.requests, message).await;
            return Follow::Nothing;
        }
    };

    let status = response.status();
    if status.is_success() {
        if outgoing.initialize.is_some() {
            shared.take_session_id(&response);
        }
        shared.read_answer(response, &outgoing.requests).await;
        return if outgoing.initialized {
            Follow::Listen
        } else {
            Follow::Nothing
        };
    }
    let max = shared.options.max_message_bytes;
    let forgot_session = error_status(&shared.events, response, &outgoing.requests, max).await;
    // 404 is what the specification says of an unknown session; some
    // servers (server-everything among them) say 400 with a message. Either
    // way the session is gone upstream, so it ends here too and the client
    // is told to start a new one, rather than every later call failing.
    if (status == StatusCode::NOT_FOUND || forgot_session) && with_session {
        shared
            .events
            .close("upstream session expired".to_owned())
            .await;
        return Follow::Expired;
    }
    Follow::Nothing
}

/// Keeps one GET stream open for messages the server starts, reopening it
/// with back-off when it drops.
async fn listen(shared: Arc<Shared>) -> Follow {
    let mut parser = SseParser::new(shared.options.max_message_bytes);
    let mut failures: u32 = 0;
    loop {
        let (mut headers, with_session) = shared.request_headers(Some(EVENT_STREAM), false);
        let last = parser
            .last_event_id()
            .and_then(|id| HeaderValue::from_str(id).ok());
        if let Some(last) = last {
            headers.insert(LAST_EVENT_ID, last);
        }
        let request = shared.client.get(shared.url.clone()).headers(headers);
        let sent = tokio::time::timeout(shared.options.request_timeout, request.send()).await;
        match sent {
            Ok(Ok(response)) if response.status() == StatusCode::METHOD_NOT_ALLOWED => {
                tracing::debug!(upstream.url = %redacted(&shared.url), "upstream server offers no event stream of its own");
                return Follow::Nothing;
            }
            Ok(Ok(response)) if response.status() == StatusCode::NOT_FOUND && with_session => {
                shared
                    .events
                    .close("upstream session expired".to_owned())
                    .await;
                return Follow::Expired;
            }
            Ok(Ok(response)) if response.status().is_success() && is_event_stream(&response) => {
                let opened = Instant::now();
                parser.restart();
                let mut body = response.bytes_stream().boxed();
                let read = shared
                    .read_stream(&mut body, &mut parser, &mut HashSet::new(), false)
                    .await;
                if shared.events.is_closed() {
                    return Follow::Nothing;
                }
                if read.delivered > 0 || opened.elapsed() >= HEALTHY_STREAM {
                    failures = 0;
                }
                tracing::debug!(upstream.url = %redacted(&shared.url), "upstream event stream ended");
            }
            Ok(Ok(response)) => {
                tracing::warn!(
                    upstream.url = %redacted(&shared.url),
                    http.response.status_code = response.status().as_u16(),
                    "upstream server refused its event stream",
                );
            }
            Ok(Err(error)) => {
                tracing::warn!(upstream.url = %redacted(&shared.url), error = %error, "upstream event stream could not be opened");
            }
            Err(_) => {
                tracing::warn!(upstream.url = %redacted(&shared.url), "upstream event stream did not open in time");
            }
        }
        failures += 1;
        if failures > MAX_RECONNECTS {
            // LIMITATION: after this, messages the server starts on its own
            // (list changes, sampling, elicitation) no longer reach the
            // client, although calls still work.
            tracing::warn!(upstream.url = %redacted(&shared.url), "giving up on the upstream event stream");
            return Follow::Nothing;
        }
        tokio::time::sleep(backoff(failures, parser.retry())).await;
    }
}

/// Ends the upstream session with DELETE, if it has one. Errors are
/// ignored: the session is over for Warden either way.
async fn end_session(shared: &Shared) {
    let (headers, with_session) = shared.request_headers(None, false);
    if !with_session {
        return;
    }
    let request = shared.client.delete(shared.url.clone()).headers(headers);
    match tokio::time::timeout(DELETE_TIMEOUT, request.send()).await {
        Ok(Ok(response)) => tracing::debug!(
            upstream.url = %redacted(&shared.url),
            http.response.status_code = response.status().as_u16(),
            "upstream session ended",
        ),
        Ok(Err(error)) => {
            tracing::debug!(upstream.url = %redacted(&shared.url), error = %error, "cannot end the upstream session");
        }
        Err(_) => {
            tracing::debug!(upstream.url = %redacted(&shared.url), "upstream session did not end in time");
        }
    }
}

/// The delay before reconnection number `attempt` (from 1): what the
/// server asked for, or an exponential back-off; always bounded.
fn backoff(attempt: u32, asked: Option<Duration>) -> Duration {
    let delay = asked.unwrap_or_else(|| {
        FIRST_BACKOFF.saturating_mul(2u32.saturating_pow(attempt.saturating_sub(1)))
    });
    delay.clamp(MIN_BACKOFF, MAX_BACKOFF)
}

/// The parts of a JSON-RPC message a transport needs.
#[derive(Debug, Deserialize)]
struct Envelope {
    #[serde(default)]
    id: Option<Box<RawValue>>,
    #[serde(default)]
    method: Option<String>,
    #[serde(default)]
    result: Option<Box<RawValue>>,
}

/// The messages of one text: one, a batch, or none when it is not JSON-RPC
/// (the relay deals with those).
fn envelopes(text: &str) -> Vec<Envelope> {
    if text.trim_start().starts_with('[') {
        serde_json::from_str(text).unwrap_or_default()
    } else {
        serde_json::from_str(text).map_or_else(|_| Vec::new(), |one| vec![one])
    }
}

/// The `protocolVersion` of an `initialize` result, as a header value.
fn protocol_version(result: &RawValue) -> Option<HeaderValue> {
    #[derive(Deserialize)]
    struct InitializeResult {
        #[serde(rename = "protocolVersion")]
        protocol_version: String,
    }
    let result: InitializeResult = serde_json::from_str(result.get()).ok()?;
    HeaderValue::from_str(&result.protocol_version).ok()
}

/// What an outgoing message text is, as far as the transport cares.
#[derive(Debug, Default)]
pub(super) struct Outgoing {
    /// The ids of the requests in it: each must get an answer.
    pub(super) requests: Vec<Id>,
    /// The id of an `initialize` request in it.
    pub(super) initialize: Option<Id>,
    /// Whether it holds `notifications/initialized`.
    pub(super) initialized: bool,
}

impl Outgoing {
    pub(super) fn read(text: &str) -> Outgoing {
        let mut outgoing = Outgoing::default();
        for envelope in envelopes(text) {
            let id = envelope.id.as_deref().and_then(Id::from_raw);
            match (envelope.method.as_deref(), id) {
                (Some("notifications/initialized"), None) => outgoing.initialized = true,
                (Some("initialize"), Some(id)) => {
                    outgoing.initialize = Some(id.clone());
                    outgoing.requests.push(id);
                }
                (Some(_), Some(id)) => outgoing.requests.push(id),
                _ => {}
            }
        }
        outgoing
    }
}

/// Answers each request with error `-32012` and `message`.
pub(super) async fn answer_failure(events: &EventSink, requests: &[Id], message: &str) {
    for id in requests {
        let line = jsonrpc::error_response(Some(id), jsonrpc::UPSTREAM_UNAVAILABLE, message, None);
        if !events.emit(UpstreamEvent::Line(line)).await {
            return;
        }
    }
}

/// Answers the requests of a POST the upstream refused with an HTTP error
/// status: with the JSON-RPC message in the body when there is one, else
/// with error `-32012` naming the status.
/// Answers `requests` from an error status and its body. Returns whether
/// the body says the upstream does not know the session (some servers
/// answer a forgotten session with 400 and a message, not 404).
pub(super) async fn error_status(
    events: &EventSink,
    response: Response,
    requests: &[Id],
    max: usize,
) -> bool {
    let status = response.status();
    if status.is_server_error() {
        tracing::warn!(
            http.response.status_code = status.as_u16(),
            "upstream server failed a message"
        );
    } else {
        tracing::debug!(
            http.response.status_code = status.as_u16(),
            "upstream server refused a message"
        );
    }
    let read = tokio::time::timeout(
        ERROR_BODY_TIMEOUT,
        read_body(response, max.min(ERROR_BODY_MAX)),
    );
    let text = match read.await {
        Ok(Ok(body)) => match body.finish() {
            UpstreamEvent::Line(text) => Some(text),
            _ => None,
        },
        Ok(Err(_)) | Err(_) => None,
    };
    let forgot_session = status == StatusCode::BAD_REQUEST
        && text
            .as_deref()
            .is_some_and(|t| t.to_ascii_lowercase().contains("session"));
    let mut unanswered = requests.to_vec();
    if let Some(line) = text.and_then(|text| rpc_answer(&text, &mut unanswered)) {
        if !events.emit(UpstreamEvent::Line(line)).await {
            return forgot_session;
        }
    }
    let message = format!("upstream server answered HTTP {}", status.as_u16());
    answer_failure(events, &unanswered, &message).await;
    forgot_session
}

/// The JSON-RPC answer in an error body, if it is one, taking the request
/// it answers off `unanswered`. An upstream that could not read a message
/// answers with a `null` id; when the POST carried a single request, the
/// answer is that request's, and gets its id (else the client would wait
/// for an answer that never comes).
fn rpc_answer(text: &str, unanswered: &mut Vec<Id>) -> Option<String> {
    let mut message: Map<String, Value> = serde_json::from_str(text).ok()?;
    let is_answer = message.get("jsonrpc").and_then(Value::as_str) == Some("2.0")
        && (message.contains_key("error") || message.contains_key("result"));
    if !is_answer {
        return None;
    }
    let id = match message.get("id") {
        None | Some(Value::Null) => None,
        Some(id) => Some(RawValue::from_string(id.to_string()).ok()?),
    };
    match id.as_deref().and_then(Id::from_raw) {
        Some(id) => {
            unanswered.retain(|pending| *pending != id);
            Some(text.to_owned())
        }
        None => {
            let [only] = unanswered.as_slice() else {
                return None;
            };
            let id: Value = serde_json::from_str(only.raw()).ok()?;
            message.insert("id".to_owned(), id);
            unanswered.clear();
            Some(Value::Object(message).to_string())
        }
    }
}

/// Reads a whole body, bounded like any message.
async fn read_body(response: Response, max: usize) -> Result<Capped, reqwest::Error> {
    let mut body = Capped::new(max);
    let mut stream = response.bytes_stream();
    while let Some(chunk) = stream.next().await {
        body.push(&chunk?);
    }
    Ok(body)
}

/// The media type of a response, lowercase, without parameters.
fn media_type(response: &Response) -> Option<String> {
    let value = response.headers().get(CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    Some(media.to_ascii_lowercase())
}

/// Whether a response is an event stream.
pub(super) fn is_event_stream(response: &Response) -> bool {
    media_type(response).as_deref() == Some(EVENT_STREAM)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicBool;

    fn shared(configured: &[(&str, &str)]) -> Shared {
        let configured: Vec<(String, String)> = configured
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        let options = UpstreamOptions {
            max_message_bytes: 1000,
            connect_timeout: Duration::from_secs(1),
            request_timeout: Duration::from_secs(1),
        };
        let (events, _) = mpsc::channel(1);
        Shared {
            client: reqwest::Client::new(),
            url: Url::parse("http://127.0.0.1:9/mcp").unwrap(),
            headers: header_map(&configured).unwrap(),
            options,
            events: EventSink {
                events,
                closed: Arc::new(AtomicBool::new(false)),
            },
            state: Mutex::new(State::default()),
        }
    }

    fn names(headers: &HeaderMap) -> Vec<String> {
        let mut names: Vec<String> = headers.keys().map(|k| k.as_str().to_owned()).collect();
        names.sort();
        names
    }

    fn ids(text: &str) -> Vec<String> {
        Outgoing::read(text)
            .requests
            .iter()
            .map(|id| id.raw().to_owned())
            .collect()
    }

    #[test]
    fn posts_carry_only_configured_and_protocol_headers() {
        let shared = shared(&[("Authorization", "Bearer t"), ("X-Team", "a")]);
        let (headers, with_session) = shared.request_headers(Some(POST_ACCEPT), true);
        assert!(!with_session);
        assert_eq!(
            names(&headers),
            ["accept", "authorization", "content-type", "x-team"]
        );
        assert_eq!(headers[ACCEPT], POST_ACCEPT);
    }

    #[test]
    fn session_and_version_headers_appear_once_known() {
        let shared = shared(&[("Authorization", "Bearer t")]);
        shared.state().initialize_id =
            Outgoing::read(r#"{"jsonrpc":"2.0","id":"i1","method":"initialize","params":{}}"#)
                .initialize;
        shared.state().session_id = Some(HeaderValue::from_static("abc"));
        shared.observe(
            r#"{"jsonrpc":"2.0","id":"i1","result":{"protocolVersion":"2025-06-18","capabilities":{}}}"#,
            &mut HashSet::new(),
        );
        let (headers, with_session) = shared.request_headers(Some(EVENT_STREAM), false);
        assert!(with_session);
        assert_eq!(
            names(&headers),
            [
                "accept",
                "authorization",
                "mcp-protocol-version",
                "mcp-session-id"
            ]
        );
        assert_eq!(headers[PROTOCOL_VERSION], "2025-06-18");
        assert!(shared.state().initialize_id.is_none());
    }

    #[test]
    fn the_protocol_decides_its_own_headers_whatever_is_configured() {
        let shared = shared(&[
            ("Accept", "text/html"),
            ("Mcp-Session-Id", "forged"),
            ("MCP-Protocol-Version", "1999-01-01"),
        ]);
        let (headers, with_session) = shared.request_headers(Some(POST_ACCEPT), true);
        assert!(!with_session);
        assert_eq!(names(&headers), ["accept", "content-type"]);
        assert_eq!(headers[ACCEPT], POST_ACCEPT);
    }

    #[test]
    fn only_the_answer_to_our_initialize_sets_the_version() {
        let shared = shared(&[]);
        shared.state().initialize_id = Some(Id::own(1));
        shared.observe(
            r#"{"jsonrpc":"2.0","id":2,"result":{"protocolVersion":"evil"}}"#,
            &mut HashSet::new(),
        );
        shared.observe(
            r#"{"jsonrpc":"2.0","id":1,"method":"x","params":{"protocolVersion":"evil"}}"#,
            &mut HashSet::new(),
        );
        assert!(shared.state().protocol_version.is_none());
        shared.observe(
            r#"{"jsonrpc":"2.0","id":1,"result":{"protocolVersion":"2025-11-25"}}"#,
            &mut HashSet::new(),
        );
        assert_eq!(
            shared.state().protocol_version.as_ref().unwrap(),
            "2025-11-25"
        );
    }

    #[test]
    fn reads_the_requests_of_an_outgoing_message() {
        assert_eq!(
            ids(r#"{"jsonrpc":"2.0","id":7,"method":"tools/list"}"#),
            ["7"]
        );
        assert_eq!(
            ids(r#"{"jsonrpc":"2.0","method":"notifications/progress"}"#),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(r#"{"jsonrpc":"2.0","id":7,"result":{}}"#),
            Vec::<String>::new()
        );
        assert_eq!(
            ids(
                r#"[{"jsonrpc":"2.0","id":"a","method":"x"},{"jsonrpc":"2.0","id":null,"method":"y"}]"#
            ),
            ["\"a\""]
        );
        assert_eq!(ids("not json"), Vec::<String>::new());
        assert!(
            Outgoing::read(r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#).initialized
        );
    }

    #[test]
    fn an_error_body_answer_gets_the_request_id_when_it_has_none() {
        let mut unanswered = vec![Id::own(5)];
        let body = r#"{"jsonrpc":"2.0","error":{"code":-32000,"message":"Bad Request"},"id":null}"#;
        let line = rpc_answer(body, &mut unanswered).unwrap();
        let value: Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["id"], 5);
        assert_eq!(value["error"]["message"], "Bad Request");
        assert!(unanswered.is_empty());

        let mut unanswered = vec![Id::own(5), Id::own(6)];
        let body = r#"{"jsonrpc":"2.0","error":{"code":-1,"message":"m"},"id":6}"#;
        assert_eq!(rpc_answer(body, &mut unanswered).unwrap(), body);
        assert_eq!(unanswered, [Id::own(5)]);

        assert!(rpc_answer("<html>oops</html>", &mut vec![Id::own(1)]).is_none());
        assert!(rpc_answer(r#"{"error":"x"}"#, &mut vec![Id::own(1)]).is_none());
    }

    #[test]
    fn backoff_grows_and_stays_bounded() {
        assert_eq!(backoff(1, None), Duration::from_millis(500));
        assert_eq!(backoff(3, None), Duration::from_secs(2));
        assert_eq!(backoff(40, None), MAX_BACKOFF);
        assert_eq!(backoff(1, Some(Duration::ZERO)), MIN_BACKOFF);
        assert_eq!(
            backoff(1, Some(Duration::from_secs(3))),
            Duration::from_secs(3)
        );
    }
}
