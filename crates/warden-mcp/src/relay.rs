//! The relay: what happens to each message between one MCP client and one
//! upstream server.
//!
//! This module owns the relay semantics and nothing about transports: the
//! stdio proxy (and later the HTTP gateway) feed it messages and carry out
//! what it returns. For each client request it decides (one decision
//! function for calls and for list filtering), records the decision before
//! anything is forwarded, and answers denials itself. Responses are matched
//! to requests by their exact id token, so every request gets exactly one
//! answer: the upstream's, or Warden's when the upstream fails, times out or
//! exits.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};
use warden_policy::{Action, DecisionRequest, Effect, Environment, Pdp, Principal, Target};
use warden_store::{DecisionLog, DecisionRecord};

use crate::jsonrpc::{self, Id, Message, Parsed};
use crate::pins::Pins;
use crate::record::{self, Origin, Subject};

/// How one relay is set up.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// The upstream server's configured name.
    pub server: String,
    /// Who the client acts as.
    pub principal: Principal,
    /// The human the agent acts for.
    pub acting_for: Option<String>,
    /// This Warden process, for the decision log.
    pub instance: String,
    /// How long an upstream may take to answer one request.
    pub call_timeout: Duration,
    /// `stdio` or `http`.
    pub transport: String,
    /// The client's address (`local` over stdio).
    pub client_address: String,
}

/// Something the transport must send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Out {
    /// A line for the client.
    Client(String),
    /// A line for the upstream server.
    Server(String),
}

/// Counters an operator (and the tests) can read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RelayStats {
    /// Lines from the upstream that were not JSON-RPC messages, dropped.
    pub upstream_garbage: u64,
    /// Upstream responses that matched no request in flight, dropped.
    pub upstream_unmatched: u64,
    /// Client messages refused as malformed.
    pub client_rejected: u64,
    /// Requests denied by policy.
    pub denied: u64,
    /// Requests allowed and forwarded.
    pub forwarded: u64,
    /// Records that could not be written.
    pub record_failures: u64,
}

// LIMITATION: the 2026-07-28 revision is relayed, not spoken: `server/discover`
// and per-request `_meta` pass through; no pinned peer serves it to test against.
/// Methods that carry the protocol itself and need no decision.
const PLUMBING_REQUESTS: &[&str] = &["initialize", "ping", "server/discover", "logging/setLevel"];
const PLUMBING_NOTIFICATIONS: &[&str] = &[
    "notifications/initialized",
    "notifications/progress",
    "notifications/roots/list_changed",
];
/// Most client requests awaiting an answer at once; more are refused, so a
/// client cannot grow Warden's memory without bound.
const MAX_IN_FLIGHT: usize = 4096;
/// The `_meta` key under which Warden's own answers carry their decision.
pub const DECISION_META: &str = "warden/decision";
/// Most pages Warden follows when it lists an upstream's tools itself.
const MAX_CATALOG_PAGES: usize = 100;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum ListKind {
    Tools,
    Resources,
    Prompts,
    Other,
}

#[derive(Debug)]
enum PendingKind {
    Call,
    List { kind: ListKind, cursor: bool },
    Plumbing,
}

#[derive(Debug)]
struct Pending {
    /// The id token the client used; the upstream saw Warden's own id.
    client_id: Id,
    /// The client cancelled it; the upstream was told.
    cancelled: bool,
    kind: PendingKind,
    subject: Subject,
    decision_id: Option<String>,
    started: Instant,
}

/// A `tools/list` walk Warden runs itself to learn the upstream's tools.
#[derive(Debug)]
struct Fetch {
    id: Id,
    names: BTreeSet<String>,
    meta: Option<Value>,
    pages: usize,
    started: Instant,
    /// The upstream said its tools changed during the walk.
    stale: bool,
    restarts: usize,
}

/// The relay between one client and one upstream.
#[derive(Debug)]
pub struct Relay {
    config: RelayConfig,
    origin: Origin,
    pdp: Arc<Pdp>,
    pending: HashMap<Id, Pending>,
    server_requests: HashSet<Id>,
    /// The upstream's tool names, when known. A call must name one exactly.
    catalog: Option<BTreeSet<String>>,
    fetch: Option<Fetch>,
    queued: Vec<(Parsed, String)>,
    next_own_id: u64,
    stats: RelayStats,
    /// Tool pins, when a store keeps them.
    pins: Option<Pins>,
    /// Whether the server had no pins when this relay first looked.
    first_sight: Option<bool>,
    /// Listed tools whose definition is not (yet) accepted: hidden, and
    /// their calls refused.
    held: BTreeSet<String>,
}

impl Relay {
    /// A relay deciding with `pdp`.
    pub fn new(config: RelayConfig, pdp: Arc<Pdp>) -> Self {
        let origin = Origin {
            principal: config.principal.to_string(),
            acting_for: config.acting_for.clone(),
            server: config.server.clone(),
            instance: config.instance.clone(),
        };
        Relay {
            config,
            origin,
            pdp,
            pending: HashMap::new(),
            server_requests: HashSet::new(),
            catalog: None,
            fetch: None,
            queued: Vec::new(),
            next_own_id: 1,
            stats: RelayStats::default(),
            pins: None,
            first_sight: None,
            held: BTreeSet::new(),
        }
    }

    /// Checks every listed tool's definition against `pins` (see
    /// [`crate::pins`]).
    pub fn with_pins(mut self, pins: Pins) -> Self {
        self.pins = Some(pins);
        self
    }

    /// The counters so far.
    pub fn stats(&self) -> RelayStats {
        self.stats
    }

    /// How many client requests await an answer.
    pub fn in_flight(&self) -> usize {
        self.pending.len() + self.queued.len()
    }

    /// Handles one line from the client.
    pub fn on_client(&mut self, line: &str, log: &mut dyn DecisionLog) -> Vec<Out> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let parsed = match jsonrpc::parse(line) {
            Ok(parsed) => parsed,
            Err(invalid) => return self.reject_invalid(invalid, log),
        };
        match &parsed.message {
            Message::Request { id, method, params } => {
                let (id, method, params) = (id.clone(), method.clone(), params.clone());
                self.client_request(parsed, line, &id, &method, &params, log)
            }
            Message::Notification { method, params } => {
                let (method, params) = (method.clone(), params.clone());
                self.client_notification(&parsed, line, &method, &params, log)
            }
            Message::Response { id, .. } => {
                if self.server_requests.remove(id) {
                    vec![Out::Server(line.to_owned())]
                } else {
                    tracing::debug!(jsonrpc.id = ?id.raw(), "dropped a client response to no request");
                    Vec::new()
                }
            }
        }
    }

    /// Handles one line from the upstream.
    pub fn on_server(&mut self, line: &str, log: &mut dyn DecisionLog) -> Vec<Out> {
        if line.trim().is_empty() {
            return Vec::new();
        }
        let parsed = match jsonrpc::parse(line) {
            Ok(parsed) => parsed,
            Err(_) => {
                self.stats.upstream_garbage += 1;
                let count = self.stats.upstream_garbage;
                if count <= 10 || count % 100 == 0 {
                    tracing::warn!(
                        mcp.server = %self.config.server,
                        upstream.garbage_lines = count,
                        "dropped a line from the upstream that is not a JSON-RPC message"
                    );
                }
                return Vec::new();
            }
        };
        match &parsed.message {
            // LIMITATION: server-to-client requests (sampling, elicitation,
            // roots) reach the client without a policy decision.
            Message::Request { id, .. } => {
                self.server_requests.insert(id.clone());
                vec![Out::Client(line.to_owned())]
            }
            Message::Notification { method, .. } => {
                if method == "notifications/tools/list_changed" {
                    self.catalog = None;
                    if let Some(fetch) = &mut self.fetch {
                        fetch.stale = true;
                    }
                }
                vec![Out::Client(line.to_owned())]
            }
            Message::Response { id, outcome } => {
                let (id, outcome) = (id.clone(), outcome.clone());
                self.server_response(&parsed, &id, &outcome, log)
            }
        }
    }

    /// Answers every request that has waited longer than the call timeout.
    pub fn on_tick(&mut self, now: Instant, log: &mut dyn DecisionLog) -> Vec<Out> {
        let timeout = self.config.call_timeout;
        let expired: Vec<Id> = self
            .pending
            .iter()
            .filter(|(_, p)| now.saturating_duration_since(p.started) >= timeout)
            .map(|(id, _)| id.clone())
            .collect();
        let mut out = Vec::new();
        for id in expired {
            let Some(pending) = self.pending.get(&id) else {
                continue;
            };
            if pending.cancelled {
                // The client gave up on it already: no answer is owed.
                let _unanswered = self.fail_pending(
                    &id,
                    jsonrpc::UPSTREAM_TIMEOUT,
                    "cancelled",
                    "the client cancelled the call",
                    log,
                );
                continue;
            }
            // MCP forbids cancelling `initialize`.
            let cancellable = pending.subject.method != "initialize";
            let message = format!(
                "upstream server `{}` did not answer within {} s",
                self.config.server,
                timeout.as_secs()
            );
            out.extend(self.fail_pending(&id, jsonrpc::UPSTREAM_TIMEOUT, "timeout", &message, log));
            if cancellable {
                out.push(cancellation(&id));
            }
        }
        let fetch_expired = self
            .fetch
            .as_ref()
            .is_some_and(|f| now.saturating_duration_since(f.started) >= timeout);
        if fetch_expired {
            let message = format!(
                "cannot learn the tools of upstream server `{}`: it did not answer `tools/list`",
                self.config.server
            );
            if let Some(fetch) = self.fetch.take() {
                out.push(cancellation(&fetch.id));
            }
            out.extend(self.fail_queued(jsonrpc::UPSTREAM_TIMEOUT, "timeout", &message, log));
        }
        out
    }

    /// Answers every request in flight once the upstream has gone.
    pub fn on_server_exit(&mut self, log: &mut dyn DecisionLog) -> Vec<Out> {
        self.fetch = None;
        let message = format!("upstream server `{}` exited", self.config.server);
        let ids: Vec<Id> = self.pending.keys().cloned().collect();
        let mut out = Vec::new();
        for id in ids {
            out.extend(self.fail_pending(
                &id,
                jsonrpc::UPSTREAM_UNAVAILABLE,
                "upstream_exited",
                &message,
                log,
            ));
        }
        out.extend(self.fail_queued(
            jsonrpc::UPSTREAM_UNAVAILABLE,
            "upstream_exited",
            &message,
            log,
        ));
        out
    }

    /// Answers a client message that could not be read at all (not UTF-8,
    /// too large).
    pub fn on_client_unreadable(&mut self, problem: &str, log: &mut dyn DecisionLog) -> Vec<Out> {
        self.reject_invalid(
            jsonrpc::Invalid {
                code: jsonrpc::PARSE_ERROR,
                message: problem.to_owned(),
                id: None,
                method: None,
                label: "unreadable",
            },
            log,
        )
    }

    /// Handles an upstream line over the size limit, of which only the
    /// first and last bytes were kept. If they name a request in flight
    /// (Warden's upstream ids are small integers, and answers carry them at
    /// one end or the other), that request is answered with an error at
    /// once rather than left to time out.
    pub fn on_server_oversized(
        &mut self,
        head: &str,
        tail: &str,
        limit: usize,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        self.stats.upstream_garbage += 1;
        let owner = [tail, head]
            .into_iter()
            .flat_map(integer_ids)
            .find(|id| self.pending.contains_key(id));
        let Some(id) = owner else {
            return Vec::new();
        };
        let message = format!(
            "the answer of upstream server `{}` is larger than {limit} bytes",
            self.config.server
        );
        self.fail_pending(
            &id,
            jsonrpc::UPSTREAM_TOO_LARGE,
            "upstream_too_large",
            &message,
            log,
        )
    }

    /// Counts a line from the upstream that could not be read at all.
    pub fn on_server_garbage(&mut self) {
        self.stats.upstream_garbage += 1;
    }

    /// Records that every request in flight was abandoned because the
    /// client went away.
    pub fn abandon_all(&mut self, log: &mut dyn DecisionLog) {
        let message = "the client closed the connection before the answer";
        for (_, pending) in std::mem::take(&mut self.pending) {
            if let Some(decision_id) = &pending.decision_id {
                let latency = micros(pending.started.elapsed());
                let entry = record::outcome_record(
                    &self.origin,
                    &pending.subject,
                    decision_id,
                    "client_closed",
                    message,
                    latency,
                );
                let _ = self.write(log, &entry);
            }
        }
        self.queued.clear();
    }

    // === client requests ===

    fn client_request(
        &mut self,
        parsed: Parsed,
        line: &str,
        id: &Id,
        method: &str,
        params: &Value,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let subject = Subject {
            method: method.to_owned(),
            ..Subject::default()
        };
        if method.starts_with("notifications/") {
            return self.reject(
                id,
                jsonrpc::INVALID_REQUEST,
                "notification_with_id",
                "a notification must not carry an id",
                subject,
                log,
            );
        }
        if self.pending.values().any(|p| &p.client_id == id)
            || self.queued.iter().any(|(p, _)| request_id(p) == Some(id))
        {
            return self.reject(
                id,
                jsonrpc::INVALID_REQUEST,
                "duplicate_id",
                "a request with this id is already in flight",
                subject,
                log,
            );
        }
        if self.in_flight() >= MAX_IN_FLIGHT {
            let message = format!("more than {MAX_IN_FLIGHT} requests are in flight; retry later");
            return self.reject(
                id,
                jsonrpc::TOO_MANY_IN_FLIGHT,
                "too_many_in_flight",
                &message,
                subject,
                log,
            );
        }
        if PLUMBING_REQUESTS.contains(&method) {
            let upstream = self.track(id, PendingKind::Plumbing, subject, None);
            return vec![Out::Server(parsed.rewrite(Some(&upstream), None))];
        }
        let action = Action::for_method(method);
        let target = match self.target_of(action, params) {
            Ok(target) => target,
            Err(problem) => {
                return self.reject(
                    id,
                    jsonrpc::INVALID_PARAMS,
                    "invalid_params",
                    &problem,
                    subject,
                    log,
                );
            }
        };
        if action == Action::ToolsCall {
            return self.tool_call(parsed, line, id, params, target, log);
        }
        let list = match action {
            Action::ToolsList => Some(ListKind::Tools),
            Action::ResourcesList => Some(ListKind::Resources),
            Action::PromptsList => Some(ListKind::Prompts),
            Action::ResourcesTemplatesList => Some(ListKind::Other),
            _ => None,
        };
        let kind = match list {
            Some(kind) => PendingKind::List {
                kind,
                cursor: params.get("cursor").is_some(),
            },
            None => PendingKind::Call,
        };
        self.decide_and_forward(&parsed, id, method, action, target, params, kind, log)
    }

    fn tool_call(
        &mut self,
        parsed: Parsed,
        line: &str,
        id: &Id,
        params: &Value,
        target: Target,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let name = target.item().unwrap_or_default().to_owned();
        let subject = Subject {
            method: "tools/call".to_owned(),
            tool: Some(name.clone()),
            arguments: params.get("arguments").cloned(),
        };
        // LIMITATION: servers whose tool names use characters outside the spec
        // set cannot be used through Warden.
        if !is_valid_tool_name(&name) {
            let message = format!(
                "tool name `{}` is not a valid MCP tool name",
                name.escape_debug()
            );
            return self.reject(
                id,
                jsonrpc::INVALID_PARAMS,
                "invalid_tool_name",
                &message,
                subject,
                log,
            );
        }
        match &self.catalog {
            Some(names) if !names.contains(&name) => {
                let message = format!(
                    "unknown tool `{}` on server `{}`",
                    name.escape_debug(),
                    self.config.server
                );
                return self.reject_unknown_tool(id, &message, subject, log);
            }
            Some(_) if self.held.contains(&name) => {
                let message = format!(
                    "tool `{}` of server `{}` changed (or is new) since it was trusted; it is held until a reviewer accepts it (`warden tools diff {} {}`)",
                    name.escape_debug(),
                    self.config.server,
                    self.config.server,
                    name.escape_debug(),
                );
                return self.reject(id, jsonrpc::DENIED, "tool_held", &message, subject, log);
            }
            Some(_) => {}
            None => {
                // Learn the catalog first: the call waits, and is decided
                // once Warden knows whether the tool exists.
                self.queued.push((parsed, line.to_owned()));
                if self.fetch.is_some() {
                    return Vec::new();
                }
                // The call's per-request metadata (the 2026-07-28 protocol
                // version, client info) applies to Warden's own listing too;
                // its progress token belongs to the call alone.
                let meta = params.get("_meta").cloned().map(|mut meta| {
                    if let Some(object) = meta.as_object_mut() {
                        object.remove("progressToken");
                    }
                    meta
                });
                return vec![self.start_fetch(meta, 0)];
            }
        }
        let kind = PendingKind::Call;
        self.decide_and_forward(
            &parsed,
            id,
            "tools/call",
            Action::ToolsCall,
            target,
            params,
            kind,
            log,
        )
    }

    #[expect(
        clippy::too_many_arguments,
        reason = "one step of the relay with everything it decides on; a struct would only rename them"
    )]
    fn decide_and_forward(
        &mut self,
        parsed: &Parsed,
        id: &Id,
        method: &str,
        action: Action,
        target: Target,
        params: &Value,
        kind: PendingKind,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let arguments = call_arguments(action, params);
        let subject = Subject {
            method: method.to_owned(),
            tool: target.item().map(str::to_owned),
            arguments: arguments.clone(),
        };
        let started = Instant::now();
        let environment = self.environment();
        let decision = self.pdp.decide(&DecisionRequest {
            principal: &self.config.principal,
            acting_for: self.config.acting_for.as_deref(),
            action,
            method,
            target,
            arguments: arguments.as_ref(),
            environment: &environment,
        });
        let latency = micros(started.elapsed());
        let decision_id = record::new_decision_id();
        let entry =
            record::decision_record(&self.origin, &subject, &decision_id, &decision, latency);
        let written = self.write(log, &entry);

        if !decision.is_allowed() {
            self.stats.denied += 1;
            tracing::info!(
                decision.id = %decision_id,
                agent.id = %self.origin.principal,
                mcp.method.name = ?method,
                gen_ai.tool.name = ?subject.tool.as_deref().unwrap_or(""),
                mcp.server = %self.config.server,
                decision.reason = decision.reason.label(),
                policy.ids = ?decision.policy_ids,
                "request denied"
            );
            let mut data = json!({
                "decision_id": decision_id,
                "reason": decision.reason.label(),
                "policy_ids": decision.policy_ids,
                "policy_version": decision.policy_version,
            });
            if let (Some(approval), Some(object)) = (&decision.approval, data.as_object_mut()) {
                object.insert("approvers".into(), json!(approval.groups));
                object.insert("approval_ttl_secs".into(), json!(approval.ttl_secs));
            }
            // LIMITATION: always explicit; masking a denial as "unknown tool" is
            // not offered yet.
            // LIMITATION: approvals cannot be requested or granted yet; a call
            // that policy permits only with approval is refused (fail closed).
            let message = match decision.effect {
                Effect::ApprovalRequired => format!(
                    "approval required: {}; this Warden cannot take approvals yet, so the call is refused (decision {decision_id})",
                    decision.explain()
                ),
                Effect::Allow | Effect::Deny => format!(
                    "denied by policy: {} (decision {decision_id})",
                    decision.explain()
                ),
            };
            return vec![Out::Client(jsonrpc::error_response(
                Some(id),
                jsonrpc::DENIED,
                &message,
                Some(data),
            ))];
        }
        // INVARIANT: nothing is forwarded unless its decision record is
        // durable; the decision log is evidence, not best effort.
        if let Err(problem) = written {
            let message = format!("refused: the decision record could not be written ({problem})");
            return vec![Out::Client(jsonrpc::error_response(
                Some(id),
                jsonrpc::RECORD_FAILED,
                &message,
                Some(json!({"decision_id": decision_id})),
            ))];
        }
        self.stats.forwarded += 1;
        tracing::debug!(decision.id = %decision_id, mcp.method.name = ?method, "request allowed");
        let upstream = self.track(id, kind, subject, Some(decision_id));
        vec![Out::Server(parsed.rewrite(Some(&upstream), None))]
    }

    fn client_notification(
        &mut self,
        parsed: &Parsed,
        line: &str,
        method: &str,
        params: &Value,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        if method == "notifications/cancelled" {
            return self.client_cancellation(parsed, params, log);
        }
        if PLUMBING_NOTIFICATIONS.contains(&method) {
            return vec![Out::Server(line.to_owned())];
        }
        let subject = Subject {
            method: method.to_owned(),
            ..Subject::default()
        };
        if !method.starts_with("notifications/") {
            // A request without an id would run upstream with no answer and,
            // worse, might be taken for a notification that needs no
            // decision (failure case C02). It is never forwarded.
            self.stats.client_rejected += 1;
            let message = format!("request `{method}` without an id is not forwarded");
            let entry = record::refusal_record(
                &self.origin,
                &subject,
                &record::new_decision_id(),
                "missing_id",
                &message,
                Some(self.pdp.policies().version()),
            );
            let _ = self.write(log, &entry);
            tracing::debug!(mcp.method.name = ?method, "dropped a request without an id");
            return Vec::new();
        }
        let target = Target::Server {
            server: self.config.server.clone(),
        };
        let environment = self.environment();
        let started = Instant::now();
        let decision = self.pdp.decide(&DecisionRequest {
            principal: &self.config.principal,
            acting_for: self.config.acting_for.as_deref(),
            action: Action::Other,
            method,
            target,
            arguments: None,
            environment: &environment,
        });
        let entry = record::decision_record(
            &self.origin,
            &subject,
            &record::new_decision_id(),
            &decision,
            micros(started.elapsed()),
        );
        let written = self.write(log, &entry);
        if decision.is_allowed() && written.is_ok() {
            vec![Out::Server(line.to_owned())]
        } else {
            self.stats.denied += 1;
            Vec::new()
        }
    }

    /// Cancels one of the client's own requests: a held call is dropped
    /// before it ever runs; a forwarded one is cancelled upstream under
    /// Warden's id. A cancellation of anything else is dropped.
    fn client_cancellation(
        &mut self,
        parsed: &Parsed,
        params: &Value,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let Some(target) = parsed
            .params_member("requestId")
            .and_then(|raw| Id::from_raw(&raw))
        else {
            return Vec::new();
        };
        if let Some(index) = self
            .queued
            .iter()
            .position(|(p, _)| request_id(p) == Some(&target))
        {
            let (held, _) = self.queued.remove(index);
            let message = "the client cancelled the call before it was decided";
            self.record_held_refusal(&held, "cancelled", message, log);
            return Vec::new();
        }
        let upstream = self
            .pending
            .iter_mut()
            .find(|(_, p)| p.client_id == target && !p.cancelled);
        let Some((upstream, pending)) = upstream else {
            tracing::debug!("dropped a cancellation of no request in flight");
            return Vec::new();
        };
        // INVARIANT: a cancelled request stays pending, so a late answer is
        // still delivered at most once, but it is never timed out or
        // cancelled twice.
        pending.cancelled = true;
        let mut params = params.clone();
        if let Some(object) = params.as_object_mut() {
            let value = serde_json::from_str(upstream.raw()).unwrap_or(Value::Null);
            object.insert("requestId".into(), value);
        }
        vec![Out::Server(notification(
            "notifications/cancelled",
            &params,
        ))]
    }

    // === upstream responses ===

    fn server_response(
        &mut self,
        parsed: &Parsed,
        id: &Id,
        outcome: &Result<Value, Value>,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        if self.fetch.as_ref().is_some_and(|f| &f.id == id) {
            return self.catalog_page(outcome, log);
        }
        let Some(pending) = self.pending.remove(id) else {
            self.stats.upstream_unmatched += 1;
            tracing::warn!(jsonrpc.id = %id, "dropped an upstream response to no request in flight");
            return Vec::new();
        };
        let latency = micros(pending.started.elapsed());
        let filtered = match (&pending.kind, outcome) {
            (PendingKind::List { kind, cursor }, Ok(result)) => {
                Some(self.filter_list(*kind, *cursor, result))
            }
            _ => None,
        };
        let line = parsed.rewrite(Some(&pending.client_id), filtered.as_ref());
        if let Some(decision_id) = &pending.decision_id {
            let (label, message) = match outcome {
                Ok(result) if result.get("isError") == Some(&Value::Bool(true)) => {
                    ("tool_error", "the tool reported an error".to_owned())
                }
                Ok(_) => ("completed", "the upstream answered".to_owned()),
                Err(error) => (
                    "upstream_error",
                    format!("the upstream answered with an error: {}", error_text(error)),
                ),
            };
            let entry = record::outcome_record(
                &self.origin,
                &pending.subject,
                decision_id,
                label,
                &message,
                latency,
            );
            let _ = self.write(log, &entry);
        }
        vec![Out::Client(line)]
    }

    /// Removes from a list result every item no call could be allowed on.
    fn filter_list(&mut self, kind: ListKind, cursor: bool, result: &Value) -> Value {
        let (field, key) = match kind {
            ListKind::Tools => ("tools", "name"),
            ListKind::Resources => ("resources", "uri"),
            ListKind::Prompts => ("prompts", "name"),
            // LIMITATION: resource templates are not filtered one by one.
            ListKind::Other => return result.clone(),
        };
        if kind == ListKind::Tools {
            let names: BTreeSet<String> = listed_tool_names(result).collect();
            let complete = !cursor && result.get("nextCursor").is_none();
            self.learn_tools(names, complete);
            self.check_pins(result);
        }
        let mut result = result.clone();
        let Some(items) = result.get_mut(field).and_then(Value::as_array_mut) else {
            return result;
        };
        let server = self.config.server.clone();
        let environment = self.environment();
        let keep = |item: &Value| -> bool {
            let Some(name) = item.get(key).and_then(Value::as_str) else {
                return false;
            };
            let (action, target) = match kind {
                ListKind::Tools if !is_valid_tool_name(name) => return false,
                ListKind::Tools if self.held.contains(name) => return false,
                ListKind::Tools => (
                    Action::ToolsCall,
                    Target::Tool {
                        server: server.clone(),
                        name: name.to_owned(),
                    },
                ),
                ListKind::Resources => (
                    Action::ResourcesRead,
                    Target::Resource {
                        server: server.clone(),
                        uri: name.to_owned(),
                    },
                ),
                ListKind::Prompts => (
                    Action::PromptsGet,
                    Target::Prompt {
                        server: server.clone(),
                        name: name.to_owned(),
                    },
                ),
                ListKind::Other => return true,
            };
            self.pdp.may_allow(&DecisionRequest {
                principal: &self.config.principal,
                acting_for: self.config.acting_for.as_deref(),
                action,
                method: action.as_str(),
                target,
                arguments: None,
                environment: &environment,
            })
        };
        items.retain(keep);
        result
    }

    /// Holds the tools of a `tools/list` page whose definitions are not
    /// accepted, and releases those that are.
    fn check_pins(&mut self, result: &Value) {
        let Some(pins) = &self.pins else {
            return;
        };
        let held = pins.check(&self.config.server, result, &mut self.first_sight);
        for name in listed_tool_names(result) {
            if held.contains(&name) {
                self.held.insert(name);
            } else {
                self.held.remove(&name);
            }
        }
    }

    fn learn_tools(&mut self, names: BTreeSet<String>, complete: bool) {
        match &mut self.catalog {
            Some(known) => known.extend(names),
            None if complete => self.catalog = Some(names),
            None => {}
        }
    }

    // === the catalog Warden fetches itself ===

    fn start_fetch(&mut self, meta: Option<Value>, restarts: usize) -> Out {
        let id = self.own_id();
        let line = jsonrpc::request(&id, "tools/list", &list_params(meta.as_ref(), None));
        self.fetch = Some(Fetch {
            id,
            names: BTreeSet::new(),
            meta,
            pages: 1,
            started: Instant::now(),
            stale: false,
            restarts,
        });
        Out::Server(line)
    }

    fn own_id(&mut self) -> Id {
        let id = Id::own(self.next_own_id);
        self.next_own_id += 1;
        id
    }

    fn catalog_page(
        &mut self,
        outcome: &Result<Value, Value>,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let Some(mut fetch) = self.fetch.take() else {
            return Vec::new();
        };
        let result = match outcome {
            Ok(result) => result,
            Err(error) => {
                let message = format!(
                    "cannot learn the tools of upstream server `{}`: {}",
                    self.config.server,
                    error_text(error)
                );
                return self.fail_queued(
                    jsonrpc::UPSTREAM_UNAVAILABLE,
                    "upstream_error",
                    &message,
                    log,
                );
            }
        };
        fetch.names.extend(listed_tool_names(result));
        self.check_pins(result);
        let next = result.get("nextCursor").and_then(Value::as_str);
        if let Some(cursor) = next.filter(|_| fetch.pages < MAX_CATALOG_PAGES) {
            let id = self.own_id();
            let line = jsonrpc::request(
                &id,
                "tools/list",
                &list_params(fetch.meta.as_ref(), Some(cursor)),
            );
            fetch.id = id;
            fetch.pages += 1;
            self.fetch = Some(fetch);
            return vec![Out::Server(line)];
        }
        if fetch.stale && fetch.restarts < 3 {
            return vec![self.start_fetch(fetch.meta, fetch.restarts + 1)];
        }
        self.catalog = Some(fetch.names);
        let queued = std::mem::take(&mut self.queued);
        let mut out = Vec::new();
        for (_, line) in queued {
            out.extend(self.on_client(&line, log));
        }
        out
    }

    // === refusals and failures ===

    fn reject_invalid(&mut self, invalid: jsonrpc::Invalid, log: &mut dyn DecisionLog) -> Vec<Out> {
        self.stats.client_rejected += 1;
        let subject = Subject {
            method: invalid
                .method
                .clone()
                .unwrap_or_else(|| "<invalid>".to_owned()),
            ..Subject::default()
        };
        let entry = record::refusal_record(
            &self.origin,
            &subject,
            &record::new_decision_id(),
            invalid.label,
            &invalid.message,
            None,
        );
        let _ = self.write(log, &entry);
        tracing::debug!(reason = invalid.label, "refused a malformed client message");
        vec![Out::Client(jsonrpc::error_response(
            invalid.id.as_ref(),
            invalid.code,
            &invalid.message,
            None,
        ))]
    }

    fn reject(
        &mut self,
        id: &Id,
        code: i64,
        label: &str,
        message: &str,
        subject: Subject,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let decision_id = self.record_refusal(label, message, subject, log);
        vec![Out::Client(refusal_response(
            id,
            code,
            message,
            &decision_id,
            label,
        ))]
    }

    /// A call of a tool the server does not offer is refused and recorded
    /// like any other refusal, but answered as a tool execution error
    /// (`isError: true`), as the official SDKs' servers answer it: a model
    /// sees that text and can correct itself, where a protocol error is
    /// usually hidden from it. Nothing reaches the server.
    fn reject_unknown_tool(
        &mut self,
        id: &Id,
        message: &str,
        subject: Subject,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let label = "unknown_tool";
        let decision_id = self.record_refusal(label, message, subject, log);
        let result = unknown_tool_result(message, &decision_id);
        vec![Out::Client(jsonrpc::result_response(id, &result))]
    }

    /// Writes the record of a refusal decided before policy; returns its
    /// decision id.
    fn record_refusal(
        &mut self,
        label: &str,
        message: &str,
        subject: Subject,
        log: &mut dyn DecisionLog,
    ) -> String {
        self.stats.client_rejected += 1;
        let decision_id = record::new_decision_id();
        let entry = record::refusal_record(
            &self.origin,
            &subject,
            &decision_id,
            label,
            message,
            Some(self.pdp.policies().version()),
        );
        let _ = self.write(log, &entry);
        decision_id
    }

    fn fail_pending(
        &mut self,
        id: &Id,
        code: i64,
        label: &str,
        message: &str,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let Some(pending) = self.pending.remove(id) else {
            return Vec::new();
        };
        if let Some(decision_id) = &pending.decision_id {
            let latency = micros(pending.started.elapsed());
            let entry = record::outcome_record(
                &self.origin,
                &pending.subject,
                decision_id,
                label,
                message,
                latency,
            );
            let _ = self.write(log, &entry);
        }
        vec![Out::Client(jsonrpc::error_response(
            Some(&pending.client_id),
            code,
            message,
            None,
        ))]
    }

    fn fail_queued(
        &mut self,
        code: i64,
        label: &str,
        message: &str,
        log: &mut dyn DecisionLog,
    ) -> Vec<Out> {
        let queued = std::mem::take(&mut self.queued);
        let mut out = Vec::new();
        for (parsed, _) in queued {
            let Some(id) = request_id(&parsed).cloned() else {
                continue;
            };
            self.record_held_refusal(&parsed, label, message, log);
            out.push(Out::Client(jsonrpc::error_response(
                Some(&id),
                code,
                message,
                None,
            )));
        }
        out
    }

    /// Records the refusal of a call that was held for the catalog and never
    /// decided.
    fn record_held_refusal(
        &mut self,
        held: &Parsed,
        label: &str,
        message: &str,
        log: &mut dyn DecisionLog,
    ) {
        let subject = match &held.message {
            Message::Request { params, .. } => Subject {
                method: "tools/call".to_owned(),
                tool: params
                    .get("name")
                    .and_then(Value::as_str)
                    .map(str::to_owned),
                arguments: params.get("arguments").cloned(),
            },
            _ => Subject::default(),
        };
        let version = self.pdp.policies().version().to_owned();
        let entry = record::refusal_record(
            &self.origin,
            &subject,
            &record::new_decision_id(),
            label,
            message,
            Some(&version),
        );
        let _ = self.write(log, &entry);
    }

    // === helpers ===

    fn write(&mut self, log: &mut dyn DecisionLog, entry: &DecisionRecord) -> Result<(), String> {
        log.append(entry).map_err(|e| {
            self.stats.record_failures += 1;
            tracing::error!(error = %e, decision.id = %entry.decision_id, "decision record not written");
            e.to_string()
        })
    }

    /// Remembers a request forwarded upstream under a fresh id of Warden's
    /// own, which the returned id is. Upstream ids never repeat, so an
    /// upstream that mangles ids (a JavaScript server rounding a large
    /// integer) cannot misroute an answer, and the client always gets its
    /// own id token back.
    fn track(
        &mut self,
        client_id: &Id,
        kind: PendingKind,
        subject: Subject,
        decision_id: Option<String>,
    ) -> Id {
        let upstream = self.own_id();
        self.pending.insert(
            upstream.clone(),
            Pending {
                client_id: client_id.clone(),
                cancelled: false,
                kind,
                subject,
                decision_id,
                started: Instant::now(),
            },
        );
        upstream
    }

    fn environment(&self) -> Environment {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
            .unwrap_or(0);
        Environment {
            transport: self.config.transport.clone(),
            client_address: self.config.client_address.clone(),
            now,
        }
    }

    fn target_of(&self, action: Action, params: &Value) -> Result<Target, String> {
        let server = self.config.server.clone();
        let field = |key: &str| -> Result<String, String> {
            params
                .get(key)
                .and_then(Value::as_str)
                .map(str::to_owned)
                .ok_or_else(|| format!("`params.{key}` must be a string"))
        };
        let arguments_ok = match params.get("arguments") {
            None | Some(Value::Object(_)) => true,
            Some(_) => false,
        };
        let named = matches!(
            action,
            Action::ToolsCall
                | Action::PromptsGet
                | Action::ResourcesRead
                | Action::ResourcesSubscribe
                | Action::ResourcesUnsubscribe
        );
        if named && !params.is_object() {
            return Err("`params` must be an object".to_owned());
        }
        Ok(match action {
            Action::ToolsCall | Action::PromptsGet if !arguments_ok => {
                return Err("`params.arguments` must be an object".to_owned());
            }
            Action::ToolsCall => Target::Tool {
                server,
                name: field("name")?,
            },
            Action::PromptsGet => Target::Prompt {
                server,
                name: field("name")?,
            },
            Action::ResourcesRead | Action::ResourcesSubscribe | Action::ResourcesUnsubscribe => {
                Target::Resource {
                    server,
                    uri: field("uri")?,
                }
            }
            _ => Target::Server { server },
        })
    }
}

/// The arguments policy sees for a call: tool and prompt arguments, or the
/// URI of a resource (so `file://` URIs are normalised like paths).
fn call_arguments(action: Action, params: &Value) -> Option<Value> {
    match action {
        Action::ToolsCall | Action::PromptsGet => params.get("arguments").cloned(),
        Action::ResourcesRead | Action::ResourcesSubscribe | Action::ResourcesUnsubscribe => {
            params.get("uri").map(|uri| json!({ "uri": uri }))
        }
        _ => None,
    }
}

/// The JSON-RPC error answering a request refused before policy was asked,
/// naming its decision and reason in `error.data`.
pub fn refusal_response(
    id: &Id,
    code: i64,
    message: &str,
    decision_id: &str,
    reason: &str,
) -> String {
    let data = json!({"decision_id": decision_id, "reason": reason});
    jsonrpc::error_response(Some(id), code, message, Some(data))
}

/// The answer to a call of a tool the server does not offer: a tool
/// execution error (`isError`) whose text names the tool and the decision,
/// with the decision in `_meta` under [`DECISION_META`].
pub fn unknown_tool_result(message: &str, decision_id: &str) -> Value {
    json!({
        "content": [{"type": "text", "text": format!("{message} (decision {decision_id})")}],
        "isError": true,
        "_meta": {DECISION_META: {"decision_id": decision_id, "reason": "unknown_tool"}},
    })
}

/// Tool names as MCP 2025-11-25 specifies them: 1 to 128 ASCII letters,
/// digits, `_`, `-`, `.` (and `/`, which some servers use for namespaces).
/// Anything else — case variants aside, homoglyphs, fullwidth letters,
/// invisible characters, spaces — is refused at ingress (failure case C21).
pub fn is_valid_tool_name(name: &str) -> bool {
    (1..=128).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'-' | b'.' | b'/'))
}

/// Every integer that follows an `"id":` in a fragment of JSON text.
fn integer_ids(fragment: &str) -> Vec<Id> {
    let mut ids = Vec::new();
    let mut rest = fragment;
    while let Some(at) = rest.find("\"id\"") {
        rest = rest.get(at + 4..).unwrap_or_default();
        let value = rest
            .trim_start()
            .strip_prefix(':')
            .unwrap_or("")
            .trim_start();
        let digits: String = value.chars().take_while(char::is_ascii_digit).collect();
        if !digits.is_empty() && digits.len() <= 19 {
            ids.push(Id::own(digits.parse().unwrap_or(u64::MAX)));
        }
    }
    ids
}

/// The valid tool names of a `tools/list` result.
fn listed_tool_names(result: &Value) -> impl Iterator<Item = String> + '_ {
    result
        .get("tools")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|t| t.get("name").and_then(Value::as_str))
        .filter(|n| is_valid_tool_name(n))
        .map(str::to_owned)
}

fn request_id(parsed: &Parsed) -> Option<&Id> {
    match &parsed.message {
        Message::Request { id, .. } => Some(id),
        _ => None,
    }
}

fn list_params(meta: Option<&Value>, cursor: Option<&str>) -> Value {
    let mut params = serde_json::Map::new();
    if let Some(meta) = meta {
        params.insert("_meta".into(), meta.clone());
    }
    if let Some(cursor) = cursor {
        params.insert("cursor".into(), Value::from(cursor));
    }
    Value::Object(params)
}

/// `notifications/cancelled` for a request Warden sent upstream.
fn cancellation(upstream: &Id) -> Out {
    let request_id = serde_json::from_str::<Value>(upstream.raw()).unwrap_or(Value::Null);
    let params = json!({"requestId": request_id, "reason": "timed out in warden"});
    Out::Server(notification("notifications/cancelled", &params))
}

fn notification(method: &str, params: &Value) -> String {
    format!(
        "{{\"jsonrpc\":\"2.0\",\"method\":{},\"params\":{}}}",
        Value::from(method),
        params
    )
}

fn error_text(error: &Value) -> String {
    error
        .get("message")
        .and_then(Value::as_str)
        .map_or_else(|| error.to_string(), str::to_owned)
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}
