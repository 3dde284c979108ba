//! Upstream transports: how Warden talks to one upstream MCP server.
//!
//! This module owns the wire between Warden and one upstream session: it
//! starts the child or prepares the HTTP client, frames outgoing JSON-RPC
//! message texts, and turns whatever comes back into an ordered stream of
//! [`UpstreamEvent`]s. It does not look inside messages beyond what the
//! transport itself needs (request ids, the `initialize` answer): every
//! decision about a message, and every check that it is valid JSON-RPC,
//! belongs to the relay above (`warden_mcp::Relay`).
//!
//! # The shape of a connection
//!
//! [`connect`] returns an [`UpstreamConnection`], which is one MCP session of
//! the upstream (for stdio: one child process of its own). Each connection
//! runs one background task that owns the transport; the caller talks to it
//! through two channels:
//!
//! * [`UpstreamConnection::send`] (or a cloned [`UpstreamSender`]) queues one
//!   message text. It fails with [`UpstreamError::Closed`] once the
//!   connection can take no more.
//! * [`UpstreamConnection::next_event`] yields what the upstream sent, in
//!   order, and finally one [`UpstreamEvent::Closed`] with a reason for
//!   operators; after that it yields `None`.
//! * [`UpstreamConnection::close`] ends the connection politely and waits
//!   (bounded) for the transport to finish. Dropping a connection without
//!   closing it does the same in the background.
//!
//! Every message is bounded by [`UpstreamOptions::max_message_bytes`]: a
//! longer one is reported as [`UpstreamEvent::Oversized`] with only its first
//! and last 512 bytes, so memory stays bounded whatever the upstream sends,
//! and the relay can still find which request an oversized answer belongs to.
//!
//! # stdio
//!
//! The child gets Warden's own environment plus the spec's `env`, and its
//! working directory. Messages are written one per line; a message text that
//! contains a line break has it replaced by a space first (a line break can
//! only be whitespace between JSON tokens, and passing it on would split one
//! message into two frames). Each line of stdout is one event; stderr is
//! drained continuously into `debug` log events, so a chatty child never
//! blocks on a full pipe. When stdout ends or the child exits, the
//! connection ends with `Closed("upstream server exited with status …")`.
//! `close` closes the child's stdin, waits up to 2 s, then kills it and reaps
//! it; the child is also killed if the connection is dropped.
//!
//! # Streamable HTTP (MCP 2025-03-26 to 2025-11-25)
//!
//! Each outgoing message is one POST, run concurrently with the others so a
//! slow call does not hold up the rest. The one exception is
//! `notifications/initialized`: it is posted before any later message, so a
//! server that refuses requests before initialization sees them in order.
//! Requests carry exactly the spec's headers plus `Content-Type`, `Accept`,
//! and, once known, `Mcp-Session-Id` (from the `initialize` answer's
//! response header) and `MCP-Protocol-Version` (the `protocolVersion` of the
//! `initialize` result). Redirects are not followed: a redirect could carry
//! the brokered credentials to another origin.
//!
//! Answers: 202 or 204 carry nothing; an `application/json` body is one
//! message; a `text/event-stream` body is read event by event as it arrives
//! (progress notifications flow before the answer). When an event stream
//! ends before every request it carried is answered, and the server gave
//! event ids, Warden resumes it with a GET carrying `Last-Event-ID`;
//! otherwise the unanswered requests get an error. An HTTP error status
//! becomes the JSON-RPC message in its body when there is one (with the
//! request's id filled in when the upstream left it `null`), or else a
//! synthesized error `-32012` `"upstream server answered HTTP <status>"`. A
//! 404 to a request that carried a session id also ends the connection
//! (`Closed("upstream session expired")`), and an upstream that cannot be
//! reached or does not answer in time gives error `-32012` for that request
//! without ending the connection.
//!
//! Once `notifications/initialized` has been accepted, Warden opens one GET
//! event stream for messages the server starts on its own (sampling,
//! elicitation, list changes). A 405 means the server offers none; a stream
//! that drops is reopened a few times with back-off and `Last-Event-ID`.
//! `close` sends DELETE with the session id (bounded to 2 s, errors
//! ignored).
//!
//! # Legacy HTTP+SSE (MCP 2024-11-05)
//!
//! `connect` opens the GET event stream at once and waits (up to
//! `connect_timeout`) for its `endpoint` event, the URL to POST messages to.
//! An endpoint on another origin than the event stream is refused: it would
//! send the brokered credentials elsewhere. Messages are POSTed there
//! (answered 202), and answers arrive as `message` events on the stream.
//! When the stream ends, so does the connection.

mod http;
mod sse;
mod stdio;

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

/// How to reach one upstream server, with the credentials Warden holds for
/// it (never the agent's).
#[derive(Debug, Clone)]
pub enum UpstreamSpec {
    /// A child process speaking MCP over stdio.
    Stdio {
        /// The program.
        command: String,
        /// Its arguments.
        args: Vec<String>,
        /// Extra environment (brokered credentials), resolved already.
        env: Vec<(String, String)>,
        /// Working directory, if not Warden's own.
        cwd: Option<PathBuf>,
    },
    /// A remote server speaking Streamable HTTP.
    Http {
        /// Its MCP endpoint.
        url: url::Url,
        /// Headers added to every request (brokered credentials), resolved.
        headers: Vec<(String, String)>,
    },
    /// A remote server speaking the legacy HTTP+SSE transport (2024-11-05).
    Sse {
        /// Its SSE endpoint (`…/sse`).
        url: url::Url,
        /// Headers added to every request (brokered credentials), resolved.
        headers: Vec<(String, String)>,
    },
}

/// Limits and timings for one upstream connection.
#[derive(Debug, Clone)]
pub struct UpstreamOptions {
    /// Largest message accepted from the upstream, in bytes; a longer one
    /// becomes [`UpstreamEvent::Oversized`].
    pub max_message_bytes: usize,
    /// How long establishing a TCP connection (and, for the legacy SSE
    /// transport, receiving the message endpoint) may take.
    pub connect_timeout: Duration,
    /// How long the upstream may take to start answering one HTTP request
    /// (its response headers). An event-stream body may stream longer.
    pub request_timeout: Duration,
}

/// What the upstream sent or what happened to it, in order.
#[derive(Debug)]
pub enum UpstreamEvent {
    /// One JSON-RPC message text from the upstream (a line of stdout, or one
    /// JSON body / one SSE `data` payload over HTTP).
    Line(String),
    /// A message over `max_message_bytes`: only its first and last 512
    /// bytes kept (lossy UTF-8).
    Oversized {
        /// The first bytes of the message.
        head: String,
        /// The last bytes of the message.
        tail: String,
    },
    /// Unreadable output (not UTF-8), counted by the caller.
    Garbage,
    /// The upstream is gone (child exited, HTTP session ended with 404, SSE
    /// stream closed for good); nothing more will arrive. The string says
    /// why, for operators.
    Closed(String),
}

/// Why an upstream connection could not be opened or used.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The child process could not be started.
    #[error("cannot start the upstream server `{program}`")]
    Spawn {
        /// The program.
        program: String,
        /// Why.
        #[source]
        source: io::Error,
    },
    /// The connection has ended; nothing more can be sent.
    #[error("the upstream connection is closed")]
    Closed,
    /// A configured header has an invalid name or value (the value is never
    /// shown: it is usually a credential).
    #[error("invalid header `{name}` for the upstream server")]
    Header {
        /// The header's name, as configured.
        name: String,
    },
    /// The HTTP client could not be built.
    #[error("cannot prepare the http client for the upstream server")]
    Client(#[source] reqwest::Error),
    /// The upstream could not be reached or answered unusably while the
    /// connection was being opened.
    #[error("{0}")]
    Http(String),
    /// A legacy SSE server announced a message endpoint on another origin.
    #[error(
        "upstream server at `{url}` announced a message endpoint on another origin: `{endpoint}`"
    )]
    ForeignEndpoint {
        /// The event stream's URL (without query or credentials).
        url: String,
        /// The announced endpoint (without query or credentials).
        endpoint: String,
    },
}

/// Bytes kept from each end of an oversized message.
const KEEP: usize = 512;
/// Messages queued towards the upstream before `send` waits.
const OUTGOING_QUEUE: usize = 256;
/// Events queued for the caller before the transport stops reading.
const EVENT_QUEUE: usize = 256;
/// How long `close` waits for the transport's polite shutdown.
const CLOSE_BOUND: Duration = Duration::from_secs(5);

/// A cheap clonable handle that queues messages for one upstream
/// connection from any task.
#[derive(Debug, Clone)]
pub struct UpstreamSender {
    messages: mpsc::Sender<String>,
}

impl UpstreamSender {
    /// Queues one JSON-RPC message text for the upstream.
    /// `Err(UpstreamError::Closed)` once the connection is closed.
    pub async fn send(&self, message: String) -> Result<(), UpstreamError> {
        self.messages
            .send(message)
            .await
            .map_err(|_| UpstreamError::Closed)
    }
}

/// One live connection to an upstream server: one MCP session of the
/// upstream (for stdio: one child process).
#[derive(Debug)]
pub struct UpstreamConnection {
    sender: UpstreamSender,
    events: mpsc::Receiver<UpstreamEvent>,
    finished: bool,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl UpstreamConnection {
    /// Queues one JSON-RPC message text for the upstream.
    /// `Err(UpstreamError::Closed)` once closed.
    pub async fn send(&self, message: String) -> Result<(), UpstreamError> {
        self.sender.send(message).await
    }

    /// A cheap clonable handle to send from other tasks.
    pub fn sender(&self) -> UpstreamSender {
        self.sender.clone()
    }

    /// The next event; `None` after `Closed` was delivered and the
    /// connection is finished. Cancel-safe: it can be used in `select!`.
    pub async fn next_event(&mut self) -> Option<UpstreamEvent> {
        if self.finished {
            return None;
        }
        match self.events.recv().await {
            Some(UpstreamEvent::Closed(why)) => {
                self.finished = true;
                Some(UpstreamEvent::Closed(why))
            }
            Some(event) => Some(event),
            None => {
                // The transport task ended without saying why (it should
                // not); the caller still gets exactly one `Closed`.
                self.finished = true;
                Some(UpstreamEvent::Closed(
                    "the upstream connection ended".to_owned(),
                ))
            }
        }
    }

    /// Ends the connection politely: stdio closes the child's stdin, waits
    /// up to 2 s, then kills and reaps it; Streamable HTTP sends DELETE with
    /// the upstream's session id when there is one (errors ignored, bounded
    /// by a short timeout); legacy SSE drops the stream.
    pub async fn close(self) {
        let UpstreamConnection {
            sender,
            mut events,
            stop,
            mut task,
            ..
        } = self;
        drop(sender);
        // Nobody reads events any more: a transport blocked on a full queue
        // must see its sends fail rather than wait.
        events.close();
        drop(events);
        let _ = stop.send(());
        if tokio::time::timeout(CLOSE_BOUND, &mut task).await.is_err() {
            tracing::warn!("upstream transport did not finish closing in time");
            task.abort();
        }
    }
}

/// Opens a connection (spawns the child / prepares the HTTP client). For
/// stdio a spawn failure is an error naming the program; for Streamable
/// HTTP nothing is sent until the first message; for legacy SSE the event
/// stream is opened and its message endpoint received.
pub async fn connect(
    spec: &UpstreamSpec,
    options: &UpstreamOptions,
) -> Result<UpstreamConnection, UpstreamError> {
    match spec {
        UpstreamSpec::Stdio {
            command,
            args,
            env,
            cwd,
        } => stdio::connect(command, args, env, cwd.as_deref(), options),
        UpstreamSpec::Http { url, headers } => http::connect(url, headers, options),
        UpstreamSpec::Sse { url, headers } => sse::connect(url, headers, options).await,
    }
}

/// The transport task's ends of a connection's channels.
struct TransportEnds {
    messages: mpsc::Receiver<String>,
    events: EventSink,
    stop: oneshot::Receiver<()>,
}

/// The caller's ends, waiting for the transport task.
struct CallerEnds {
    messages: mpsc::Sender<String>,
    events: mpsc::Receiver<UpstreamEvent>,
    stop: oneshot::Sender<()>,
}

impl CallerEnds {
    fn connection(self, task: JoinHandle<()>) -> UpstreamConnection {
        UpstreamConnection {
            sender: UpstreamSender {
                messages: self.messages,
            },
            events: self.events,
            finished: false,
            stop: self.stop,
            task,
        }
    }
}

fn channels() -> (TransportEnds, CallerEnds) {
    let (messages_tx, messages_rx) = mpsc::channel(OUTGOING_QUEUE);
    let (events_tx, events_rx) = mpsc::channel(EVENT_QUEUE);
    let (stop_tx, stop_rx) = oneshot::channel();
    let transport = TransportEnds {
        messages: messages_rx,
        events: EventSink {
            events: events_tx,
            closed: Arc::new(AtomicBool::new(false)),
        },
        stop: stop_rx,
    };
    let caller = CallerEnds {
        messages: messages_tx,
        events: events_rx,
        stop: stop_tx,
    };
    (transport, caller)
}

/// Where a transport's tasks deliver events. Once `Closed` has been sent,
/// nothing more is.
#[derive(Debug, Clone)]
struct EventSink {
    events: mpsc::Sender<UpstreamEvent>,
    closed: Arc<AtomicBool>,
}

impl EventSink {
    /// Delivers one event; `false` when the caller is gone or the
    /// connection already ended.
    async fn emit(&self, event: UpstreamEvent) -> bool {
        if self.closed.load(Ordering::Acquire) {
            return false;
        }
        self.events.send(event).await.is_ok()
    }

    /// Delivers `Closed(why)`, once per connection.
    async fn close(&self, why: String) {
        if !self.closed.swap(true, Ordering::AcqRel) {
            let _ = self.events.send(UpstreamEvent::Closed(why)).await;
        }
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }
}

/// The bytes of one message, up to a limit; past it, only both ends are
/// kept, so memory stays bounded whatever the peer sends.
#[derive(Debug)]
struct Capped {
    max: usize,
    bytes: Vec<u8>,
    tail: Vec<u8>,
    over: bool,
}

impl Capped {
    fn new(max: usize) -> Capped {
        Capped {
            max,
            bytes: Vec::new(),
            tail: Vec::new(),
            over: false,
        }
    }

    fn push(&mut self, chunk: &[u8]) {
        if self.over {
            self.tail.extend_from_slice(chunk);
            let excess = self.tail.len().saturating_sub(KEEP);
            self.tail.drain(..excess);
            return;
        }
        if self.bytes.len().saturating_add(chunk.len()) <= self.max {
            self.bytes.extend_from_slice(chunk);
            return;
        }
        self.over = true;
        self.bytes.extend_from_slice(chunk);
        let start = self.bytes.len().saturating_sub(KEEP);
        self.tail = self.bytes.get(start..).unwrap_or_default().to_vec();
        self.bytes.truncate(KEEP);
    }

    /// Drops one trailing carriage return (of a CRLF line ending).
    fn trim_cr(&mut self) {
        let last = if self.over {
            &mut self.tail
        } else {
            &mut self.bytes
        };
        if last.last() == Some(&b'\r') {
            last.pop();
        }
    }

    fn is_empty(&self) -> bool {
        !self.over && self.bytes.is_empty()
    }

    /// The message as an event: a line, oversized, or garbage.
    fn finish(self) -> UpstreamEvent {
        if self.over {
            return UpstreamEvent::Oversized {
                head: String::from_utf8_lossy(&self.bytes).into_owned(),
                tail: String::from_utf8_lossy(&self.tail).into_owned(),
            };
        }
        match String::from_utf8(self.bytes) {
            Ok(text) => UpstreamEvent::Line(text),
            Err(_) => UpstreamEvent::Garbage,
        }
    }

    /// The text, lossily, with `…` marking a cut (for logs).
    fn finish_lossy(self) -> String {
        let head = String::from_utf8_lossy(&self.bytes);
        if self.over {
            format!("{head}…{}", String::from_utf8_lossy(&self.tail))
        } else {
            head.into_owned()
        }
    }
}

/// The configured headers, checked. Values are marked sensitive so that
/// they never show in debug output.
fn header_map(headers: &[(String, String)]) -> Result<HeaderMap, UpstreamError> {
    let mut map = HeaderMap::new();
    for (name, value) in headers {
        let invalid = || UpstreamError::Header { name: name.clone() };
        let key = HeaderName::from_bytes(name.as_bytes()).map_err(|_| invalid())?;
        let mut value = HeaderValue::from_str(value).map_err(|_| invalid())?;
        value.set_sensitive(true);
        map.append(key, value);
    }
    Ok(map)
}

/// An HTTP client for one upstream: bounded connects, no redirects.
fn http_client(options: &UpstreamOptions) -> Result<reqwest::Client, UpstreamError> {
    // Redirects are refused: following one could carry the brokered
    // credentials to a host they were not meant for.
    reqwest::Client::builder()
        .connect_timeout(options.connect_timeout)
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .map_err(UpstreamError::Client)
}

/// A URL fit for errors and logs: origin and path, without credentials or
/// query (either may hold a secret).
fn redacted(url: &url::Url) -> String {
    format!("{}{}", url.origin().ascii_serialization(), url.path())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn line(event: UpstreamEvent) -> String {
        match event {
            UpstreamEvent::Line(text) => text,
            other => panic!("expected a line, got {other:?}"),
        }
    }

    #[test]
    fn capped_keeps_a_message_up_to_the_limit() {
        let mut capped = Capped::new(10);
        capped.push(b"01234");
        capped.push(b"56789");
        assert_eq!(line(capped.finish()), "0123456789");
    }

    #[test]
    fn capped_keeps_only_both_ends_past_the_limit() {
        let mut capped = Capped::new(1000);
        let mut whole = Vec::new();
        for i in 0..300u32 {
            let piece = format!("{i:05},");
            whole.extend_from_slice(piece.as_bytes());
            capped.push(piece.as_bytes());
        }
        match capped.finish() {
            UpstreamEvent::Oversized { head, tail } => {
                assert_eq!(head.as_bytes(), &whole[..KEEP]);
                assert_eq!(tail.as_bytes(), &whole[whole.len() - KEEP..]);
            }
            other => panic!("expected oversized, got {other:?}"),
        }
    }

    #[test]
    fn capped_reports_invalid_utf8_as_garbage() {
        let mut capped = Capped::new(100);
        capped.push(&[0xff, 0xfe, b'a']);
        assert!(matches!(capped.finish(), UpstreamEvent::Garbage));
    }

    #[test]
    fn configured_headers_are_checked_without_showing_values() {
        let good = header_map(&[("Authorization".into(), "Bearer s3cret".into())]).unwrap();
        assert!(!format!("{good:?}").contains("s3cret"));

        let error = header_map(&[("bad name".into(), "x".into())]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid header `bad name` for the upstream server"
        );
        let error = header_map(&[("X-Key".into(), "line\nbreak".into())]).unwrap_err();
        assert_eq!(
            error.to_string(),
            "invalid header `X-Key` for the upstream server"
        );
    }

    #[test]
    fn urls_in_messages_lose_credentials_and_query() {
        let url = url::Url::parse("https://user:pw@example.com:8443/mcp?key=secret").unwrap();
        assert_eq!(redacted(&url), "https://example.com:8443/mcp");
    }
}
