//! The aggregated endpoint: one MCP session over several upstream servers,
//! their tools merged under names that say which server each comes from.
//!
//! This module owns the translation between the client's view (one server
//! whose tools are named `SERVER__TOOL`) and each member server's relay (its
//! own server and the tool's real name). It decides nothing: every member's
//! relay decides, records and filters exactly as on the server's own
//! endpoint, so policy, records and the catalog always see the real
//! (server, tool) pair, never the exposed name.
//!
//! # Names
//!
//! A tool is exposed as `{server}__{tool}`. The configuration admits to an
//! aggregate only servers whose names hold no `__` and do not end in `_`, so
//! the first `__` of an exposed name always ends the server name: the
//! mapping is injective, and two (server, tool) pairs can never share a name
//! (see [`split`]). A name that would not be a valid MCP tool name once
//! prefixed (longer than 128 bytes) is left out of lists and cannot be
//! called here; the server's own endpoint still offers it.
//!
//! # What is served
//!
//! Tools only: `initialize` goes to every member and their answers are
//! merged; `tools/list` pages through the members one after the other (the
//! cursor says which member and that member's own cursor); `tools/call` goes
//! to the member its name names; `ping` to the first member. Other requests
//! are refused with -32601 and recorded: resources and prompts are served on
//! each server's own endpoint. Server-to-client requests get ids of the
//! aggregate's own, so the client's answer reaches the member that asked.

use std::collections::HashMap;

use serde_json::{json, Value};
use warden_mcp::jsonrpc::{self, Id, Message, Parsed};
use warden_mcp::record::{self, Origin, Subject};
use warden_mcp::relay::is_valid_tool_name;
use warden_store::DecisionRecord;

/// What separates the server name from the tool name in an exposed name.
pub const SEPARATOR: &str = "__";

/// Whether servers of this name may be members of an aggregate: its tools'
/// exposed names can then be split back unambiguously.
pub fn is_member_name(server: &str) -> bool {
    !server.contains(SEPARATOR) && !server.ends_with('_')
}

/// The exposed name of `tool` of `server`.
pub fn exposed_name(server: &str, tool: &str) -> String {
    format!("{server}{SEPARATOR}{tool}")
}

/// The (server, tool) an exposed name stands for.
///
/// INVARIANT: for servers that pass [`is_member_name`], this inverts
/// [`exposed_name`]: a server name has no `__` and does not end in `_`, so
/// no `__` can start before the separator.
pub fn split(exposed: &str) -> Option<(&str, &str)> {
    exposed.split_once(SEPARATOR)
}

/// Where one client message goes.
#[derive(Debug)]
pub enum Route {
    /// To the relay of member `.0`, as the text `.1`.
    Member(usize, String),
    /// Refused here: the answer to the client and the record to write.
    Refused {
        /// The JSON-RPC answer.
        answer: String,
        /// The decision record of the refusal.
        record: Box<DecisionRecord>,
    },
}

/// What a client request is waiting for.
#[derive(Debug)]
enum Pending {
    /// Every member's answer to `initialize`, by member.
    Initialize(Vec<Option<Value>>),
    /// One member's page of tools.
    List(usize),
    /// Any other request, sent to one member.
    Other(usize),
}

/// The translation state of one aggregated session.
#[derive(Debug)]
pub struct Aggregate {
    servers: Vec<String>,
    origin: Origin,
    /// By the client's request id.
    pending: HashMap<Id, Pending>,
    /// Server-to-client requests by the aggregate's id for them: the member
    /// and the id it used.
    server_requests: HashMap<Id, (usize, Id)>,
    next_request: u64,
}

impl Aggregate {
    /// An aggregate over `servers` (in member order), recording its own
    /// refusals as `origin` (whose `server` is the endpoint's name).
    pub fn new(servers: Vec<String>, origin: Origin) -> Self {
        Aggregate {
            servers,
            origin,
            pending: HashMap::new(),
            server_requests: HashMap::new(),
            next_request: 0,
        }
    }

    /// Where a message from the client goes.
    pub fn from_client(&mut self, line: &str) -> Vec<Route> {
        let Ok(parsed) = jsonrpc::parse(line) else {
            // Unreadable: the first member's relay answers and records it.
            return vec![Route::Member(0, line.to_owned())];
        };
        match &parsed.message {
            Message::Request { id, method, params } => match method.as_str() {
                "initialize" => {
                    let waiting = Pending::Initialize(vec![None; self.servers.len()]);
                    self.pending.insert(id.clone(), waiting);
                    (0..self.servers.len())
                        .map(|member| Route::Member(member, line.to_owned()))
                        .collect()
                }
                "ping" => vec![self.send(id, Pending::Other(0), line.to_owned())],
                "tools/list" => vec![self.list(&parsed, id, params)],
                "tools/call" => vec![self.call(&parsed, id, params)],
                // LIMITATION: tools only; resources and prompts of the
                // members are served on each server's own endpoint.
                other => {
                    let message = format!(
                        "method `{}` is not offered by the aggregated endpoint `{}`, which serves \
                         tools only: use the server's own endpoint",
                        other.escape_debug(),
                        self.origin.server
                    );
                    let subject = subject(other, None);
                    vec![self.refuse(
                        id,
                        jsonrpc::METHOD_NOT_FOUND,
                        "unsupported_method",
                        &message,
                        subject,
                    )]
                }
            },
            Message::Notification { method, .. } if method == "notifications/cancelled" => {
                let member = parsed
                    .params_member("requestId")
                    .and_then(|raw| Id::from_raw(&raw))
                    .and_then(|id| self.pending.get(&id))
                    .and_then(Pending::member);
                member.map_or_else(Vec::new, |m| vec![Route::Member(m, line.to_owned())])
            }
            Message::Notification { .. } => (0..self.servers.len())
                .map(|member| Route::Member(member, line.to_owned()))
                .collect(),
            Message::Response { id, .. } => match self.server_requests.remove(id) {
                Some((member, theirs)) => {
                    vec![Route::Member(member, parsed.rewrite(Some(&theirs), None))]
                }
                // An answer to nothing asked: nobody is waiting for it.
                None => Vec::new(),
            },
        }
    }

    /// What the client gets of a message member `member`'s relay addressed
    /// to it.
    pub fn from_member(&mut self, member: usize, line: String) -> Vec<String> {
        let Ok(parsed) = jsonrpc::parse(&line) else {
            return vec![line];
        };
        match &parsed.message {
            Message::Response { id, outcome } => match self.pending.remove(id) {
                Some(Pending::Initialize(answers)) => {
                    self.initialized(id, member, outcome, answers)
                }
                Some(Pending::List(from)) => vec![self.page(&parsed, from, outcome)],
                Some(Pending::Other(_)) | None => vec![line],
            },
            Message::Request { id, .. } => {
                self.next_request += 1;
                let ours = Id::own(self.next_request);
                self.server_requests
                    .insert(ours.clone(), (member, id.clone()));
                vec![parsed.rewrite(Some(&ours), None)]
            }
            // Changes to what the aggregate does not serve mean nothing to
            // its client.
            Message::Notification { method, .. }
                if method.starts_with("notifications/resources/")
                    || method == "notifications/prompts/list_changed" =>
            {
                Vec::new()
            }
            Message::Notification { .. } => vec![line],
        }
    }

    fn send(&mut self, id: &Id, pending: Pending, line: String) -> Route {
        let member = pending.member().unwrap_or(0);
        self.pending.insert(id.clone(), pending);
        Route::Member(member, line)
    }

    fn list(&mut self, parsed: &Parsed, id: &Id, params: &Value) -> Route {
        let (member, cursor) = match params.get("cursor") {
            None | Some(Value::Null) => (0, None),
            Some(Value::String(cursor)) => match self.decode_cursor(cursor) {
                Some(found) => found,
                None => return self.invalid_cursor(id),
            },
            Some(_) => return self.invalid_cursor(id),
        };
        let cursor = cursor.map(Value::from);
        let line = parsed.with_param("cursor", cursor.as_ref());
        self.send(id, Pending::List(member), line)
    }

    fn call(&mut self, parsed: &Parsed, id: &Id, params: &Value) -> Route {
        let name = params
            .get("name")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let found = split(name).and_then(|(server, tool)| {
            let member = self.servers.iter().position(|s| s == server)?;
            Some((member, tool))
        });
        let Some((member, tool)) = found else {
            let message = format!(
                "unknown tool `{}` on `{}`: tools here are named SERVER{SEPARATOR}TOOL, for the \
                 servers {}",
                name.escape_debug(),
                self.origin.server,
                self.servers.join(", ")
            );
            let subject = Subject {
                arguments: params.get("arguments").cloned(),
                ..subject("tools/call", Some(name))
            };
            return self.refuse_unknown_tool(id, &message, subject);
        };
        let line = parsed.with_param("name", Some(&Value::from(tool)));
        self.send(id, Pending::Other(member), line)
    }

    /// `N:CURSOR`: member N's page at its own cursor (none when empty).
    fn decode_cursor(&self, cursor: &str) -> Option<(usize, Option<String>)> {
        let (member, inner) = cursor.split_once(':')?;
        let member: usize = member.parse().ok()?;
        (member < self.servers.len())
            .then(|| (member, Some(inner.to_owned()).filter(|c| !c.is_empty())))
    }

    fn invalid_cursor(&mut self, id: &Id) -> Route {
        let message = "invalid cursor: pass back a `nextCursor` this endpoint gave";
        let subject = subject("tools/list", None);
        self.refuse(
            id,
            jsonrpc::INVALID_PARAMS,
            "invalid_cursor",
            message,
            subject,
        )
    }

    /// Member `from`'s page with exposed names, and a cursor that goes on
    /// with its next page or, after its last, the next member's first.
    fn page(&self, parsed: &Parsed, from: usize, outcome: &Result<Value, Value>) -> String {
        let Ok(result) = outcome else {
            return parsed.rewrite(None, None);
        };
        let mut result = result.clone();
        let Some(object) = result.as_object_mut() else {
            return parsed.rewrite(None, None);
        };
        let server = self.servers.get(from).map_or("", String::as_str);
        if let Some(Value::Array(tools)) = object.get_mut("tools") {
            tools.retain_mut(|tool| rename(tool, server));
        }
        let next = match object.get("nextCursor").and_then(Value::as_str) {
            Some(inner) => Some(format!("{from}:{inner}")),
            None => (from + 1 < self.servers.len()).then(|| format!("{}:", from + 1)),
        };
        match next {
            Some(cursor) => object.insert("nextCursor".into(), Value::from(cursor)),
            None => object.remove("nextCursor"),
        };
        parsed.rewrite(None, Some(&result))
    }

    /// Keeps member `member`'s answer to `initialize`; once every member
    /// answered, the client gets one answer for them all.
    fn initialized(
        &mut self,
        id: &Id,
        member: usize,
        outcome: &Result<Value, Value>,
        mut answers: Vec<Option<Value>>,
    ) -> Vec<String> {
        let error = match outcome {
            Ok(result) => {
                if let Some(slot) = answers.get_mut(member) {
                    *slot = Some(result.clone());
                }
                None
            }
            Err(error) => Some(error),
        };
        if let Some(error) = error {
            // One member that cannot start fails the whole session: a
            // partial aggregate would quietly lack tools.
            let server = self.servers.get(member).map_or("", String::as_str);
            let message = format!(
                "server `{server}` of the aggregated endpoint refused to initialize: {}",
                error
                    .get("message")
                    .and_then(Value::as_str)
                    .unwrap_or("no reason given")
            );
            let code = error
                .get("code")
                .and_then(Value::as_i64)
                .unwrap_or(jsonrpc::UPSTREAM_UNAVAILABLE);
            return vec![jsonrpc::error_response(Some(id), code, &message, None)];
        }
        if answers.iter().any(Option::is_none) {
            self.pending
                .insert(id.clone(), Pending::Initialize(answers));
            return Vec::new();
        }
        let results: Vec<Value> = answers.into_iter().flatten().collect();
        vec![jsonrpc::result_response(id, &self.merged(&results))]
    }

    /// One `initialize` result for the members' `results`: the oldest
    /// protocol version any of them speaks, and tools.
    fn merged(&self, results: &[Value]) -> Value {
        let version = results
            .iter()
            .filter_map(|r| r.get("protocolVersion").and_then(Value::as_str))
            .min()
            .unwrap_or_default();
        let mut instructions = vec![format!(
            "Tools of the servers {}, each named SERVER{SEPARATOR}TOOL.",
            self.servers.join(", ")
        )];
        for (server, result) in self.servers.iter().zip(results) {
            if let Some(text) = result.get("instructions").and_then(Value::as_str) {
                instructions.push(format!("{server}: {text}"));
            }
        }
        json!({
            "protocolVersion": version,
            "capabilities": {"tools": {"listChanged": true}},
            "serverInfo": {"name": format!("warden/{}", self.origin.server),
                           "version": env!("CARGO_PKG_VERSION")},
            "instructions": instructions.join("\n"),
        })
    }

    fn refuse(
        &mut self,
        id: &Id,
        code: i64,
        label: &str,
        message: &str,
        subject: Subject,
    ) -> Route {
        let decision_id = record::new_decision_id();
        let entry =
            record::refusal_record(&self.origin, &subject, &decision_id, label, message, None);
        Route::Refused {
            answer: warden_mcp::relay::refusal_response(id, code, message, &decision_id, label),
            record: Box::new(entry),
        }
    }

    /// A tool no member offers under that name: answered as a tool error,
    /// as each server's own endpoint answers an unknown tool.
    fn refuse_unknown_tool(&mut self, id: &Id, message: &str, subject: Subject) -> Route {
        let label = "unknown_tool";
        let decision_id = record::new_decision_id();
        let entry =
            record::refusal_record(&self.origin, &subject, &decision_id, label, message, None);
        let result = warden_mcp::relay::unknown_tool_result(message, &decision_id);
        Route::Refused {
            answer: jsonrpc::result_response(id, &result),
            record: Box::new(entry),
        }
    }
}

impl Pending {
    fn member(&self) -> Option<usize> {
        match self {
            Pending::List(member) | Pending::Other(member) => Some(*member),
            Pending::Initialize(_) => None,
        }
    }
}

/// Gives `tool` its exposed name; `false` when that name is not a valid
/// tool name (so the tool is left out).
fn rename(tool: &mut Value, server: &str) -> bool {
    let Some(object) = tool.as_object_mut() else {
        return false;
    };
    let Some(name) = object.get("name").and_then(Value::as_str) else {
        return false;
    };
    let exposed = exposed_name(server, name);
    if !is_valid_tool_name(&exposed) {
        return false;
    }
    object.insert("name".into(), Value::from(exposed));
    true
}

fn subject(method: &str, tool: Option<&str>) -> Subject {
    Subject {
        method: method.to_owned(),
        tool: tool.map(str::to_owned),
        arguments: None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn aggregate() -> Aggregate {
        let origin = Origin {
            principal: "Agent::\"a\"".to_owned(),
            acting_for: None,
            server: "all".to_owned(),
            instance: "test".to_owned(),
        };
        Aggregate::new(vec!["fs".to_owned(), "git-hub".to_owned()], origin)
    }

    fn members(routes: &[Route]) -> Vec<(usize, Value)> {
        routes
            .iter()
            .map(|r| match r {
                Route::Member(m, text) => (*m, serde_json::from_str(text).unwrap()),
                Route::Refused { answer, .. } => panic!("refused: {answer}"),
            })
            .collect()
    }

    fn refused(routes: Vec<Route>) -> (Value, DecisionRecord) {
        match routes.into_iter().next() {
            Some(Route::Refused { answer, record }) => {
                (serde_json::from_str(&answer).unwrap(), *record)
            }
            other => panic!("not refused: {other:?}"),
        }
    }

    fn request(id: u64, method: &str, params: Value) -> String {
        json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}).to_string()
    }

    fn result(id: u64, result: Value) -> String {
        json!({"jsonrpc": "2.0", "id": id, "result": result}).to_string()
    }

    fn one(lines: Vec<String>) -> Value {
        assert_eq!(lines.len(), 1, "{lines:?}");
        serde_json::from_str(&lines[0]).unwrap()
    }

    #[test]
    fn exposed_names_split_back_into_exactly_one_server_and_tool() {
        for (server, tool) in [
            ("fs", "a__b"),
            ("fs", "__x"),
            ("git-hub", "_y_"),
            ("s", "t"),
        ] {
            assert!(is_member_name(server));
            assert_eq!(split(&exposed_name(server, tool)), Some((server, tool)));
        }
        // The C22 pair: only one of the two servers may be a member.
        assert!(is_member_name("fs") && !is_member_name("fs__a"));
        assert!(
            !is_member_name("fs_"),
            "`fs_` + `__` + `_b` would read as `fs` + `_b`"
        );
    }

    #[test]
    fn calls_reach_the_member_their_name_names_with_the_real_tool_name() {
        let mut agg = aggregate();
        let line = request(
            3,
            "tools/call",
            json!({"name": "git-hub__create__issue", "arguments": {"n": 1}}),
        );
        let routed = members(&agg.from_client(&line));
        assert_eq!(routed.len(), 1);
        assert_eq!(routed[0].0, 1);
        assert_eq!(routed[0].1["params"]["name"], "create__issue");
        assert_eq!(routed[0].1["params"]["arguments"], json!({"n": 1}));
        assert_eq!(routed[0].1["id"], 3);
    }

    #[test]
    fn a_name_without_a_member_is_an_unknown_tool_recorded_against_the_endpoint() {
        let mut agg = aggregate();
        for name in ["nope__x", "read_file", "FS__read", "", "fs_read"] {
            let line = request(4, "tools/call", json!({"name": name}));
            let (answer, record) = refused(agg.from_client(&line));
            assert_eq!(answer["result"]["isError"], true, "{name}: {answer}");
            assert_eq!(record.reason, "unknown_tool");
            assert_eq!(record.server, "all");
            assert_eq!(record.decision.as_deref(), Some("deny"));
        }
    }

    #[test]
    fn other_methods_are_refused_with_method_not_found() {
        let mut agg = aggregate();
        let (answer, record) = refused(agg.from_client(&request(5, "resources/list", json!({}))));
        assert_eq!(answer["error"]["code"], jsonrpc::METHOD_NOT_FOUND);
        assert_eq!(record.reason, "unsupported_method");
    }

    #[test]
    fn initialize_goes_to_every_member_and_one_merged_answer_comes_back() {
        let mut agg = aggregate();
        let line = request(0, "initialize", json!({"protocolVersion": "2025-11-25"}));
        let routed = members(&agg.from_client(&line));
        assert_eq!(routed.iter().map(|r| r.0).collect::<Vec<_>>(), [0, 1]);
        let first = result(
            0,
            json!({"protocolVersion": "2025-11-25", "capabilities": {"tools": {}}}),
        );
        assert!(agg.from_member(1, first).is_empty());
        let second = result(
            0,
            json!({"protocolVersion": "2025-06-18", "instructions": "be kind"}),
        );
        let merged = one(agg.from_member(0, second));
        assert_eq!(merged["id"], 0);
        assert_eq!(merged["result"]["protocolVersion"], "2025-06-18");
        assert_eq!(
            merged["result"]["capabilities"],
            json!({"tools": {"listChanged": true}})
        );
        assert!(merged["result"]["instructions"]
            .as_str()
            .unwrap()
            .contains("fs: be kind"));
    }

    #[test]
    fn a_member_that_refuses_initialize_fails_the_whole_session() {
        let mut agg = aggregate();
        agg.from_client(&request(0, "initialize", json!({})));
        let error =
            json!({"jsonrpc": "2.0", "id": 0, "error": {"code": -32602, "message": "bad version"}});
        let answer = one(agg.from_member(1, error.to_string()));
        assert_eq!(answer["error"]["code"], -32602);
        assert!(answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("`git-hub`"));
    }

    #[test]
    fn lists_page_through_every_member_with_exposed_names() {
        let mut agg = aggregate();
        let routed = members(&agg.from_client(&request(1, "tools/list", json!({}))));
        assert_eq!(routed[0].0, 0);
        assert_eq!(routed[0].1["params"], json!({}));
        let page = result(1, json!({"tools": [{"name": "read"}], "nextCursor": "p2"}));
        let answer = one(agg.from_member(0, page));
        assert_eq!(answer["result"]["tools"], json!([{"name": "fs__read"}]));
        let cursor = answer["result"]["nextCursor"].as_str().unwrap().to_owned();

        let routed =
            members(&agg.from_client(&request(2, "tools/list", json!({"cursor": cursor}))));
        assert_eq!(
            (routed[0].0, &routed[0].1["params"]["cursor"]),
            (0, &json!("p2"))
        );
        let last = one(agg.from_member(0, result(2, json!({"tools": [{"name": "write"}]}))));
        let cursor = last["result"]["nextCursor"].as_str().unwrap().to_owned();

        let routed =
            members(&agg.from_client(&request(3, "tools/list", json!({"cursor": cursor}))));
        assert_eq!(routed[0].0, 1);
        assert_eq!(routed[0].1["params"], json!({}), "the member's first page");
        let tools = json!({"tools": [{"name": "issue"}, {"name": "x".repeat(125)}]});
        let end = one(agg.from_member(1, result(3, tools)));
        assert_eq!(
            end["result"]["tools"],
            json!([{"name": "git-hub__issue"}]),
            "too long once prefixed"
        );
        assert!(end["result"].get("nextCursor").is_none());
    }

    #[test]
    fn cursors_this_endpoint_did_not_give_are_refused() {
        let mut agg = aggregate();
        for cursor in [json!("2:"), json!("x"), json!("-1:a"), json!(7), json!("")] {
            let (answer, record) =
                refused(agg.from_client(&request(1, "tools/list", json!({"cursor": cursor}))));
            assert_eq!(answer["error"]["code"], jsonrpc::INVALID_PARAMS, "{cursor}");
            assert_eq!(record.reason, "invalid_cursor");
        }
    }

    #[test]
    fn server_requests_get_ids_of_their_own_and_answers_go_back_to_the_member_that_asked() {
        let mut agg = aggregate();
        let ask = |id: u64| json!({"jsonrpc": "2.0", "id": id, "method": "roots/list"}).to_string();
        let a = one(agg.from_member(0, ask(1)));
        let b = one(agg.from_member(1, ask(1)));
        assert_ne!(
            a["id"], b["id"],
            "two members' id 1 must not meet at the client"
        );
        let answer = json!({"jsonrpc": "2.0", "id": b["id"], "result": {"roots": []}}).to_string();
        let routed = members(&agg.from_client(&answer));
        assert_eq!((routed[0].0, &routed[0].1["id"]), (1, &json!(1)));
        assert!(agg.from_client(&answer).is_empty(), "answered once only");
    }

    #[test]
    fn cancellations_reach_only_the_member_with_the_call() {
        let mut agg = aggregate();
        agg.from_client(&request(9, "tools/call", json!({"name": "git-hub__slow"})));
        let cancel = json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                            "params": {"requestId": 9}})
        .to_string();
        let routed = members(&agg.from_client(&cancel));
        assert_eq!(routed.iter().map(|r| r.0).collect::<Vec<_>>(), [1]);
        let unknown = cancel.replace("9", "10");
        assert!(agg.from_client(&unknown).is_empty());
        let initialized =
            json!({"jsonrpc": "2.0", "method": "notifications/initialized"}).to_string();
        assert_eq!(members(&agg.from_client(&initialized)).len(), 2);
    }
}
