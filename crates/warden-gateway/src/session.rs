//! Downstream sessions: one MCP session of one authenticated client with one
//! server (or, on the aggregated endpoint, several), run by one task that
//! owns each member server's relay and upstream connection.
//!
//! This module owns the routing of messages inside a session: which HTTP
//! stream an answer, a progress notification or a server request goes to,
//! and which member a message is for. Every decision about a message is a
//! relay's; the renaming on the aggregated endpoint is `aggregate`'s.
//! Because each session has upstream connections of its own (for a stdio
//! server: its own child process), a message from an upstream can only ever
//! belong to this session's client; nothing is shared between clients.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio::sync::mpsc;
use warden_mcp::jsonrpc::{self, Message};
use warden_mcp::{Out, Relay};
use warden_store::DecisionLog as _;

use crate::aggregate::{Aggregate, Route};
use crate::log::SharedLog;
use crate::restarts::Restarts;
use crate::upstream::{UpstreamConnection, UpstreamEvent};

/// How often call timeouts are checked.
const TICK: Duration = Duration::from_millis(200);
/// Server messages kept for a client that has no stream open yet, and
/// events kept for resuming a stream.
const HISTORY: usize = 256;
/// Messages a slow client stream may fall behind before it is cut off.
const STREAM_BUFFER: usize = 1024;

/// One event on a client's SSE stream.
#[derive(Debug, Clone)]
pub struct StreamEvent {
    /// `{stream}-{seq}`, for `Last-Event-ID`.
    pub id: String,
    /// The JSON-RPC message.
    pub data: String,
}

/// A request to the session task.
#[derive(Debug)]
pub enum Command {
    /// A message from the client. Requests carry the stream their answer
    /// (and anything related to them) is written to.
    Client {
        /// The message text.
        line: String,
        /// Where the answer goes; `None` for notifications and responses.
        reply: Option<mpsc::Sender<StreamEvent>>,
    },
    /// The client opened its standalone GET stream; `resume_after` is a
    /// `Last-Event-ID` it sent.
    OpenStream {
        /// Where server messages go.
        stream: mpsc::Sender<StreamEvent>,
        /// Replay events of that stream after this id first.
        resume_after: Option<String>,
        /// Answered `false` when a GET stream is open already.
        accepted: tokio::sync::oneshot::Sender<bool>,
    },
    /// End the session: stop the upstream, answer nothing more.
    Close,
}

/// What the rest of the gateway knows of a session.
#[derive(Debug)]
pub struct SessionHandle {
    /// The session id the client presents (`Mcp-Session-Id`).
    pub id: String,
    /// The server it talks to.
    pub server: String,
    /// Who owns it: the principal and the human it acts for. Another
    /// principal presenting this id is told the session does not exist.
    pub owner: String,
    inbox: mpsc::Sender<Command>,
    state: Arc<Mutex<Shared>>,
}

#[derive(Debug, Default)]
struct Shared {
    last_used: Option<Instant>,
    protocol_version: Option<String>,
    closed: bool,
}

impl SessionHandle {
    /// Sends a command to the session task; `false` when it has ended.
    pub async fn send(&self, command: Command) -> bool {
        self.touch();
        self.inbox.send(command).await.is_ok()
    }

    /// The protocol version the client and Warden agreed in `initialize`.
    pub fn protocol_version(&self) -> Option<String> {
        self.state.lock().ok()?.protocol_version.clone()
    }

    /// Whether the session has ended (upstream gone, closed, or idle).
    pub fn is_closed(&self) -> bool {
        self.inbox.is_closed() || self.state.lock().map_or(true, |s| s.closed)
    }

    /// How long since the client last used it.
    pub fn idle_for(&self, now: Instant) -> Duration {
        self.state
            .lock()
            .ok()
            .and_then(|s| s.last_used)
            .map_or(Duration::ZERO, |t| now.saturating_duration_since(t))
    }

    fn touch(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.last_used = Some(Instant::now());
        }
    }
}

/// One server of a session: its relay and its upstream connection.
#[derive(Debug)]
pub struct Member {
    /// The server's configured name.
    pub server: String,
    /// The relay that decides and records for this server.
    pub relay: Relay,
    /// The server's upstream session.
    pub upstream: UpstreamConnection,
}

/// What a new session is made of.
#[derive(Debug)]
pub struct SessionStart {
    /// The session id the client will present.
    pub id: String,
    /// The endpoint: a server's name, or the aggregated endpoint's.
    pub server: String,
    /// The principal (and the human it acts for) that owns it.
    pub owner: String,
    /// One member, or on the aggregated endpoint several, with `aggregate`
    /// translating between them and the client.
    pub members: Vec<Member>,
    /// The aggregated endpoint's translation, if this is one.
    pub aggregate: Option<Aggregate>,
    /// Where records go.
    pub log: SharedLog,
    /// Largest message from an upstream.
    pub max_message_bytes: usize,
    /// Where an upstream that dies on its own is counted.
    pub restarts: Arc<Restarts>,
}

/// Starts the task of a new session.
pub fn start(spec: SessionStart) -> Arc<SessionHandle> {
    let (inbox, commands) = mpsc::channel(64);
    let state = Arc::new(Mutex::new(Shared {
        last_used: Some(Instant::now()),
        ..Shared::default()
    }));
    let mut servers = Vec::with_capacity(spec.members.len());
    let mut relays = Vec::with_capacity(spec.members.len());
    let mut upstreams = Vec::with_capacity(spec.members.len());
    for member in spec.members {
        servers.push(member.server);
        relays.push(member.relay);
        upstreams.push(member.upstream);
    }
    let task = SessionTask {
        relays,
        servers,
        aggregate: spec.aggregate,
        log: spec.log,
        state: Arc::clone(&state),
        routes: Routes::default(),
        server: spec.server.clone(),
        max_message_bytes: spec.max_message_bytes,
        restarts: spec.restarts,
        started: Instant::now(),
    };
    tokio::spawn(task.run(commands, upstreams));
    Arc::new(SessionHandle {
        id: spec.id,
        server: spec.server,
        owner: spec.owner,
        inbox,
        state,
    })
}

/// Where client-bound messages go.
#[derive(Debug, Default)]
struct Routes {
    /// Open request streams, by the request's id key, oldest first.
    requests: Vec<RequestRoute>,
    /// The standalone GET stream.
    standalone: Option<(u64, mpsc::Sender<StreamEvent>)>,
    /// Server messages that found no open stream.
    undelivered: VecDeque<String>,
    /// Recent events of every stream, for resumption.
    history: VecDeque<(u64, u64, String)>,
    next_stream: u64,
    next_seq: u64,
    /// The id key of the client's `initialize`, to learn the version.
    initialize: Option<String>,
}

#[derive(Debug)]
struct RequestRoute {
    key: String,
    stream: u64,
    progress_token: Option<String>,
    sender: mpsc::Sender<StreamEvent>,
}

impl Routes {
    fn new_stream(&mut self) -> u64 {
        self.next_stream += 1;
        self.next_stream
    }

    fn event(&mut self, stream: u64, data: String) -> StreamEvent {
        self.next_seq += 1;
        self.history
            .push_back((stream, self.next_seq, data.clone()));
        if self.history.len() > HISTORY {
            self.history.pop_front();
        }
        StreamEvent {
            id: format!("{stream}-{}", self.next_seq),
            data,
        }
    }

    /// Sends on a stream; a full or closed stream is the client's loss,
    /// never a reason to block the session.
    fn push(&mut self, stream: u64, sender: &mpsc::Sender<StreamEvent>, data: String) -> bool {
        let event = self.event(stream, data);
        sender.try_send(event).is_ok()
    }

    /// Delivers a message the upstream (or Warden) addressed to the client.
    fn deliver(&mut self, line: String, answered: &mut Option<Initialized>) {
        let parsed = jsonrpc::parse(&line).ok();
        let response_key = match parsed.as_ref().map(|p| &p.message) {
            Some(Message::Response { id, .. }) => Some(id.key().to_owned()),
            _ => None,
        };
        if let Some(key) = response_key {
            self.answer(&key, line, answered);
            return;
        }
        // Progress goes to the stream of the request that asked for it.
        let token = parsed.as_ref().and_then(|p| match &p.message {
            Message::Notification { method, params } if method == "notifications/progress" => {
                params.get("progressToken").map(Value::to_string)
            }
            _ => None,
        });
        if let Some(token) = token {
            let route = self
                .requests
                .iter()
                .position(|r| r.progress_token.as_deref() == Some(token.as_str()));
            if let Some(index) = route {
                let (stream, sender) = match self.requests.get(index) {
                    Some(r) => (r.stream, r.sender.clone()),
                    None => return,
                };
                self.push(stream, &sender, line);
                return;
            }
        }
        self.send_anywhere(line);
    }

    /// A server request or notification: the GET stream, else the newest
    /// open request stream, else kept for the next GET stream.
    fn send_anywhere(&mut self, line: String) {
        if let Some((stream, sender)) = self.standalone.clone() {
            if self.push(stream, &sender, line.clone()) {
                return;
            }
            self.standalone = None;
        }
        if let Some((stream, sender)) = self.requests.last().map(|r| (r.stream, r.sender.clone())) {
            if self.push(stream, &sender, line.clone()) {
                return;
            }
        }
        self.undelivered.push_back(line);
        if self.undelivered.len() > HISTORY {
            self.undelivered.pop_front();
            tracing::warn!("dropped a server message: the client has no stream open");
        }
    }

    /// Whether `line` answers the client's `initialize`: `Some(true)` with a
    /// result, `Some(false)` with an error, `None` when it answers something
    /// else.
    fn initialize_answer(&self, line: &str) -> Option<bool> {
        let key = self.initialize.as_deref()?;
        match jsonrpc::parse(line).ok()?.message {
            Message::Response { id, outcome } if id.key() == key => Some(outcome.is_ok()),
            _ => None,
        }
    }

    fn answer(&mut self, key: &str, line: String, answered: &mut Option<Initialized>) {
        let Some(index) = self.requests.iter().position(|r| r.key == key) else {
            tracing::debug!("dropped an answer to a request with no open stream");
            return;
        };
        let route = self.requests.remove(index);
        if self.initialize.as_deref() == Some(key) {
            *answered = Some(match negotiated_version(&line) {
                Some(version) => Initialized::Agreed(version),
                None => Initialized::Refused(error_code(&line)),
            });
            self.initialize = None;
        }
        self.push(route.stream, &route.sender, line);
    }
}

/// Carries out a relay's outputs: messages for the client, or for the
/// upstream of the member (by index) whose relay wrote them.
type Steps = Vec<(usize, Out)>;

struct SessionTask {
    /// By member index, in the order of `aggregate`'s servers.
    relays: Vec<Relay>,
    /// The members' server names, by member index.
    servers: Vec<String>,
    aggregate: Option<Aggregate>,
    log: SharedLog,
    state: Arc<Mutex<Shared>>,
    routes: Routes,
    server: String,
    max_message_bytes: usize,
    restarts: Arc<Restarts>,
    started: Instant,
}

impl SessionTask {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut upstreams: Vec<UpstreamConnection>,
    ) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let reason = loop {
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Client { line, reply }) => {
                        let steps = self.client(line, reply);
                        if let Err(ended) = self.dispatch(steps, &upstreams).await {
                            break self.end(ended, &upstreams).await;
                        }
                    }
                    Some(Command::OpenStream { stream, resume_after, accepted }) => {
                        let _ = accepted.send(self.open_stream(stream, resume_after));
                    }
                    Some(Command::Close) | None => break "the session was closed",
                },
                (member, event) = next_event(&mut upstreams) => {
                    let steps = match event {
                        Some(UpstreamEvent::Line(line)) => {
                            self.step(member, |r, log| r.on_server(&line, log))
                        }
                        Some(UpstreamEvent::Oversized { head, tail }) => {
                            let limit = self.max_message_bytes;
                            self.step(member, |r, log| r.on_server_oversized(&head, &tail, limit, log))
                        }
                        Some(UpstreamEvent::Garbage) => {
                            if let Some(relay) = self.relays.get_mut(member) {
                                relay.on_server_garbage();
                            }
                            Vec::new()
                        }
                        Some(UpstreamEvent::Closed(why)) => {
                            tracing::warn!(mcp.server = %self.server, upstream.member = member, upstream.reason = %why, "upstream session ended");
                            self.upstream_died(member, &upstreams).await;
                            break "the upstream ended";
                        }
                        None => {
                            self.upstream_died(member, &upstreams).await;
                            break "the upstream ended";
                        }
                    };
                    if let Err(ended) = self.dispatch(steps, &upstreams).await {
                        break self.end(ended, &upstreams).await;
                    }
                }
                _ = tick.tick() => {
                    let now = Instant::now();
                    let mut ended = Ok(());
                    for member in 0..self.relays.len() {
                        let steps = self.step(member, |r, log| r.on_tick(now, log));
                        ended = ended.and(self.dispatch(steps, &upstreams).await);
                    }
                    if let Err(ended) = ended {
                        break self.end(ended, &upstreams).await;
                    }
                }
            }
        };
        tracing::debug!(mcp.server = %self.server, session.end = reason, "session ended");
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
        for member in 0..self.relays.len() {
            self.step(member, |r, log| {
                r.abandon_all(log);
                Vec::new()
            });
        }
        commands.close();
        for upstream in upstreams {
            upstream.close().await;
        }
    }

    /// Member `member`'s upstream ended on its own: its calls in flight are
    /// answered, and the death is counted for the restart back-off.
    async fn upstream_died(&mut self, member: usize, upstreams: &[UpstreamConnection]) {
        let steps = self.step(member, |r, log| r.on_server_exit(log));
        let _ = self.dispatch(steps, upstreams).await;
        if let Some(server) = self.servers.get(member) {
            let now = Instant::now();
            self.restarts.died(server, now - self.started, now);
        }
    }

    /// Why the session ends, after answering what is owed.
    async fn end(&mut self, ended: Ended, upstreams: &[UpstreamConnection]) -> &'static str {
        match ended {
            Ended::Refused { unreachable } => {
                // An upstream that could not be reached counts towards its
                // back-off; one that refused the client's `initialize` (a
                // version it does not speak) is the client's business.
                if let ([server], true) = (self.servers.as_slice(), unreachable) {
                    self.restarts.failed(server, Instant::now());
                }
                "the initialize was refused"
            }
            Ended::Unwritable(member) => {
                self.upstream_died(member, upstreams).await;
                "the upstream stopped accepting messages"
            }
        }
    }

    /// Runs a step of member `member`'s relay with the decision log, and
    /// gives what it addressed to the client the aggregate's names.
    ///
    /// Writing a record is a synchronous, durable write, made here on the
    /// runtime's thread: every write goes through the one store connection
    /// anyway, and handing each write to another thread (`block_in_place`)
    /// measured slower at 1 and at 16 clients (`bench/gateway-http`).
    fn step(
        &mut self,
        member: usize,
        step: impl FnOnce(&mut Relay, &mut SharedLog) -> Vec<Out>,
    ) -> Steps {
        let Some(relay) = self.relays.get_mut(member) else {
            return Vec::new();
        };
        let log = &mut self.log;
        let outs = step(relay, log);
        let mut steps = Vec::with_capacity(outs.len());
        for out in outs {
            match (out, &mut self.aggregate) {
                (Out::Client(line), Some(aggregate)) => steps.extend(
                    aggregate
                        .from_member(member, line)
                        .into_iter()
                        .map(|line| (member, Out::Client(line))),
                ),
                (out, _) => steps.push((member, out)),
            }
        }
        steps
    }

    /// Hands a client message to the relay (or relays) it is for.
    fn relay_client(&mut self, line: String) -> Steps {
        let Some(aggregate) = &mut self.aggregate else {
            return self.step(0, |r, log| r.on_client(&line, log));
        };
        let mut steps = Vec::new();
        for route in aggregate.from_client(&line) {
            match route {
                Route::Member(member, text) => {
                    steps.extend(self.step(member, |r, log| r.on_client(&text, log)));
                }
                Route::Refused { answer, record } => {
                    let log = &mut self.log;
                    // The refusal stands whether or not its record is kept.
                    let _ = log.append(&record);
                    steps.push((0, Out::Client(answer)));
                }
            }
        }
        steps
    }

    fn client(&mut self, line: String, reply: Option<mpsc::Sender<StreamEvent>>) -> Steps {
        let request = match jsonrpc::parse(&line).map(|p| p.message) {
            Ok(Message::Request { id, method, params }) => {
                Some((id.key().to_owned(), method, params))
            }
            _ => None,
        };
        let mut own = None;
        if let (Some(sender), Some((key, method, params))) = (reply.clone(), request) {
            let stream = self.routes.new_stream();
            if method == "initialize" {
                self.routes.initialize = Some(key.clone());
            }
            let progress_token = params
                .get("_meta")
                .and_then(|m| m.get("progressToken"))
                .map(Value::to_string);
            self.routes.requests.push(RequestRoute {
                key,
                stream,
                progress_token,
                sender,
            });
        } else if let Some(sender) = reply {
            // Not a readable request: whatever the relay answers at once is
            // this message's answer.
            own = Some(sender);
        }
        let steps = self.relay_client(line);
        match own {
            Some(sender) => {
                let stream = self.routes.new_stream();
                let mut rest = Vec::new();
                for (member, out) in steps {
                    match out {
                        Out::Client(answer) => {
                            self.routes.push(stream, &sender, answer);
                        }
                        server => rest.push((member, server)),
                    }
                }
                rest
            }
            None => steps,
        }
    }

    fn open_stream(
        &mut self,
        stream: mpsc::Sender<StreamEvent>,
        resume_after: Option<String>,
    ) -> bool {
        let open = self
            .routes
            .standalone
            .as_ref()
            .is_some_and(|(_, s)| !s.is_closed());
        if open {
            return false;
        }
        let resumed = resume_after.as_deref().and_then(parse_event_id);
        let number = match resumed {
            Some((number, after)) => {
                let replay: Vec<String> = self
                    .routes
                    .history
                    .iter()
                    .filter(|(s, seq, _)| *s == number && *seq > after)
                    .map(|(_, _, data)| data.clone())
                    .collect();
                for data in replay {
                    self.routes.push(number, &stream, data);
                }
                number
            }
            None => self.routes.new_stream(),
        };
        while let Some(line) = self.routes.undelivered.pop_front() {
            self.routes.push(number, &stream, line);
        }
        self.routes.standalone = Some((number, stream));
        true
    }

    /// Carries out what the relays returned. Stops at the first message
    /// that shows the session is over.
    async fn dispatch(
        &mut self,
        steps: Steps,
        upstreams: &[UpstreamConnection],
    ) -> Result<(), Ended> {
        let mut ended = Ok(());
        for (member, out) in steps {
            match out {
                Out::Client(line) => {
                    let mut answered = None;
                    // A refused `initialize` closes the session before its
                    // answer is out, so a client that retries at once never
                    // finds the dead session (nor counts it against a cap).
                    let refused = matches!(self.routes.initialize_answer(&line), Some(false));
                    if refused {
                        self.mark_closed();
                    }
                    self.routes.deliver(line, &mut answered);
                    match answered {
                        Some(Initialized::Agreed(version)) => {
                            if let Ok(mut state) = self.state.lock() {
                                state.protocol_version = Some(version);
                            }
                        }
                        Some(Initialized::Refused(code)) => {
                            ended = Err(Ended::Refused {
                                unreachable: code == jsonrpc::UPSTREAM_UNAVAILABLE,
                            });
                        }
                        None => {}
                    }
                }
                Out::Server(line) => {
                    let sent = match upstreams.get(member) {
                        Some(upstream) => upstream.send(line).await.is_ok(),
                        None => false,
                    };
                    if !sent {
                        return Err(Ended::Unwritable(member));
                    }
                }
            }
        }
        ended
    }

    fn mark_closed(&self) {
        if let Ok(mut state) = self.state.lock() {
            state.closed = true;
        }
    }
}

/// The next event of any of `upstreams`, with the index of its member.
async fn next_event(upstreams: &mut [UpstreamConnection]) -> (usize, Option<UpstreamEvent>) {
    match upstreams {
        [] => return std::future::pending().await,
        [only] => return (0, only.next_event().await),
        _ => {}
    }
    let waiting = upstreams
        .iter_mut()
        .enumerate()
        .map(|(member, upstream)| Box::pin(async move { (member, upstream.next_event().await) }));
    futures_util::future::select_all(waiting).await.0
}

fn parse_event_id(text: &str) -> Option<(u64, u64)> {
    let (stream, seq) = text.split_once('-')?;
    Some((stream.parse().ok()?, seq.parse().ok()?))
}

/// The code of a JSON-RPC error answer (0 when it has none).
fn error_code(line: &str) -> i64 {
    serde_json::from_str::<Value>(line)
        .ok()
        .and_then(|v| v.get("error")?.get("code")?.as_i64())
        .unwrap_or(0)
}

/// The `protocolVersion` of an `initialize` result.
fn negotiated_version(line: &str) -> Option<String> {
    let value: Value = serde_json::from_str(line).ok()?;
    value
        .get("result")?
        .get("protocolVersion")?
        .as_str()
        .map(str::to_owned)
}

/// Why dispatching ended the session.
#[derive(Debug)]
enum Ended {
    /// The client's `initialize` was answered with an error; `unreachable`
    /// when the error says the upstream could not be reached.
    Refused {
        /// The answer was -32012.
        unreachable: bool,
    },
    /// The upstream of this member can no longer be written to.
    Unwritable(usize),
}

/// How the client's `initialize` was answered.
#[derive(Debug)]
enum Initialized {
    /// With this protocol version.
    Agreed(String),
    /// With an error (the upstream refused it, could not be reached, or
    /// died): the session is of no use and ends with this answer. `.0` is
    /// the error code.
    Refused(i64),
}

/// The buffer of a client stream.
pub fn stream_channel() -> (mpsc::Sender<StreamEvent>, mpsc::Receiver<StreamEvent>) {
    mpsc::channel(STREAM_BUFFER)
}

/// Sessions by id.
#[derive(Debug, Default)]
pub struct Sessions {
    by_id: Mutex<HashMap<String, Arc<SessionHandle>>>,
}

impl Sessions {
    /// The session `id` if `owner` owns it and it is still open.
    pub fn get(&self, id: &str, owner: &str) -> Option<Arc<SessionHandle>> {
        let map = self.by_id.lock().ok()?;
        let session = map.get(id)?;
        // INVARIANT: a session is found only by its owner; another
        // principal holding the id learns nothing, not even that it exists.
        (session.owner == owner && !session.is_closed()).then(|| Arc::clone(session))
    }

    /// Whether any principal owns a session with this id.
    pub fn exists(&self, id: &str) -> bool {
        self.by_id
            .lock()
            .map(|m| m.contains_key(id))
            .unwrap_or(false)
    }

    /// Adds a session.
    pub fn insert(&self, session: Arc<SessionHandle>) {
        if let Ok(mut map) = self.by_id.lock() {
            map.insert(session.id.clone(), session);
        }
    }

    /// Removes and returns a session.
    pub fn remove(&self, id: &str) -> Option<Arc<SessionHandle>> {
        self.by_id.lock().ok()?.remove(id)
    }

    /// How many sessions `principal` owns, whoever it acts for.
    pub fn count_of(&self, principal: &str) -> usize {
        let prefix = format!("{principal}|");
        self.by_id
            .lock()
            .map(|m| m.values().filter(|s| s.owner.starts_with(&prefix)).count())
            .unwrap_or(0)
    }

    /// How many sessions are open.
    pub fn len(&self) -> usize {
        self.by_id.lock().map(|m| m.len()).unwrap_or(0)
    }

    /// Whether no session is open.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Removes sessions that ended or sat idle longer than `idle`, and
    /// returns them so they can be closed.
    pub fn reap(&self, idle: Duration) -> Vec<Arc<SessionHandle>> {
        let now = Instant::now();
        let Ok(mut map) = self.by_id.lock() else {
            return Vec::new();
        };
        let stale: Vec<String> = map
            .values()
            .filter(|s| s.is_closed() || s.idle_for(now) >= idle)
            .map(|s| s.id.clone())
            .collect();
        stale.iter().filter_map(|id| map.remove(id)).collect()
    }

    /// Removes every session.
    pub fn drain(&self) -> Vec<Arc<SessionHandle>> {
        self.by_id
            .lock()
            .map(|mut m| m.drain().map(|(_, s)| s).collect())
            .unwrap_or_default()
    }
}

/// A fresh session id: 256 bits from the operating system's CSPRNG, as hex.
pub fn new_session_id() -> String {
    use rand::RngCore as _;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}
