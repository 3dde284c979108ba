//! The relay's contract, driven through its sans-IO interface: every line a
//! client or upstream could send, what Warden sends on in return, and what
//! it writes to the decision log.
//!
//! No process and no database is involved: the decision log is a `Vec` in
//! memory (with a switch that makes writes fail), the policy is Cedar text
//! loaded the way `warden proxy` loads it, and time is whatever `on_tick` is
//! told. The end-to-end versions of some of these cases, against real MCP
//! peers, live in `crates/warden/tests/it`.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "a test reports a failure by panicking"
)]

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use warden_mcp::jsonrpc;
use warden_mcp::{Out, Relay, RelayConfig};
use warden_policy::{load, Limits, Pdp, PolicySources, Principal, SourceFile};
use warden_store::{DecisionLog, DecisionRecord, RecordKind, SqliteStore, StoreError};

// === the setting ===

/// Lists are allowed; every tool except `delete_file`; resources under
/// `file:///pub/`; the prompt `greet`. Nothing else (so no `other`).
const POLICY: &str = r#"
@id("lists")
permit(
  principal,
  action in [Action::"tools/list", Action::"resources/list",
             Action::"resources/templates/list", Action::"prompts/list"],
  resource
);

@id("tools")
permit(principal, action == Action::"tools/call", resource);

@id("no-delete")
forbid(principal, action == Action::"tools/call", resource)
when { resource.name == "delete_file" };

@id("public-resources")
permit(principal, action == Action::"resources/read", resource)
when { resource.uri like "file:///pub/*" };

@id("greet-prompt")
permit(principal, action == Action::"prompts/get", resource)
when { resource.name == "greet" };
"#;

const TIMEOUT: Duration = Duration::from_secs(30);

/// Per-request metadata as MCP 2026-07-28 clients send it in `params._meta`.
fn meta() -> Value {
    json!({
        "io.modelcontextprotocol/protocolVersion": "2026-07-28",
        "io.modelcontextprotocol/clientInfo": {"name": "test-client", "version": "1.0"}
    })
}

/// A decision log in memory. `failing` makes every `append` fail the way a
/// broken SQLite store does.
#[derive(Default)]
struct MemoryLog {
    records: Vec<DecisionRecord>,
    failing: bool,
}

impl DecisionLog for MemoryLog {
    fn append(&mut self, record: &DecisionRecord) -> Result<(), StoreError> {
        if self.failing {
            return Err(write_error());
        }
        let mut record = record.clone();
        record.seq = i64::try_from(self.records.len()).unwrap() + 1;
        self.records.push(record);
        Ok(())
    }

    fn tail(&self, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        let skip = self.records.len().saturating_sub(limit);
        Ok(self.records[skip..].to_vec())
    }

    fn since(&self, after: i64, limit: usize) -> Result<Vec<DecisionRecord>, StoreError> {
        Ok(self
            .records
            .iter()
            .filter(|r| r.seq > after)
            .take(limit)
            .cloned()
            .collect())
    }
}

/// A genuine `StoreError::Write`: `rusqlite::Error` has no public constructor
/// this crate can reach without depending on rusqlite, so the error of
/// opening a store in a directory that does not exist is borrowed.
fn write_error() -> StoreError {
    let dir = tempfile::tempdir().unwrap();
    match SqliteStore::open(&dir.path().join("missing").join("log.db")) {
        Err(StoreError::Open { source, .. }) => StoreError::Write(source),
        other => panic!("opening a store in a missing directory should fail: {other:?}"),
    }
}

fn pdp(policy: &str) -> Arc<Pdp> {
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "test.cedar".into(),
            text: policy.into(),
        }],
        entities: None,
    };
    match load(&sources) {
        Ok(policies) => Arc::new(Pdp::new(policies, Limits::default())),
        Err(e) => panic!("policies should load: {:#?}", e.problems),
    }
}

fn config() -> RelayConfig {
    RelayConfig {
        server: "fs".into(),
        principal: Principal::Agent("claude".into()),
        acting_for: None,
        instance: "test-instance".into(),
        call_timeout: TIMEOUT,
        transport: "stdio".into(),
        client_address: "local".into(),
    }
}

/// A relay, its decision log, and shorthands for the lines both sides send.
struct Harness {
    relay: Relay,
    log: MemoryLog,
}

impl Harness {
    fn new() -> Self {
        Harness::with_policy(POLICY)
    }

    fn with_policy(policy: &str) -> Self {
        Harness {
            relay: Relay::new(config(), pdp(policy)),
            log: MemoryLog::default(),
        }
    }

    /// A raw line from the client.
    fn client(&mut self, line: &str) -> Sent {
        Sent(self.relay.on_client(line, &mut self.log))
    }

    /// A raw line from the upstream.
    fn server(&mut self, line: &str) -> Sent {
        Sent(self.relay.on_server(line, &mut self.log))
    }

    /// A client request; `id` is the raw JSON token (`1`, `"a"`).
    fn request(&mut self, id: &str, method: &str, params: Value) -> Sent {
        self.client(&request_line(id, method, &params))
    }

    fn call(&mut self, id: &str, tool: &str, arguments: Value) -> Sent {
        self.request(
            id,
            "tools/call",
            json!({"name": tool, "arguments": arguments}),
        )
    }

    /// The upstream answers `to` (a forwarded request) with `result`.
    fn answer(&mut self, to: &Value, result: Value) -> Sent {
        self.server(&format!(
            r#"{{"jsonrpc":"2.0","id":{},"result":{result}}}"#,
            to["id"]
        ))
    }

    /// The upstream answers `to` with a JSON-RPC error.
    fn fail(&mut self, to: &Value, code: i64, message: &str) -> Sent {
        let error = json!({"code": code, "message": message});
        self.server(&format!(
            r#"{{"jsonrpc":"2.0","id":{},"error":{error}}}"#,
            to["id"]
        ))
    }

    fn tick_after(&mut self, elapsed: Duration) -> Sent {
        Sent(self.relay.on_tick(Instant::now() + elapsed, &mut self.log))
    }

    fn server_exit(&mut self) -> Sent {
        Sent(self.relay.on_server_exit(&mut self.log))
    }

    /// Teaches the relay the upstream's tools through a complete client
    /// `tools/list`, then forgets the records that took.
    fn know_tools(&mut self, names: &[&str]) {
        let up = self
            .request(r#""setup-list""#, "tools/list", json!({}))
            .only_server();
        self.answer(&up, tools_result(names)).only_client();
        self.log.records.clear();
    }

    fn records(&self) -> &[DecisionRecord] {
        &self.log.records
    }
}

/// What one call into the relay returned.
#[derive(Debug)]
struct Sent(Vec<Out>);

impl Sent {
    fn to_client(&self) -> Vec<Value> {
        self.client_lines().iter().map(|l| parse(l)).collect()
    }

    fn to_server(&self) -> Vec<Value> {
        self.server_lines().iter().map(|l| parse(l)).collect()
    }

    fn client_lines(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|o| match o {
                Out::Client(line) => Some(line.clone()),
                Out::Server(_) => None,
            })
            .collect()
    }

    fn server_lines(&self) -> Vec<String> {
        self.0
            .iter()
            .filter_map(|o| match o {
                Out::Server(line) => Some(line.clone()),
                Out::Client(_) => None,
            })
            .collect()
    }

    /// The single line sent, which must be for the client.
    fn only_client_line(self) -> String {
        match self.0.as_slice() {
            [Out::Client(line)] => line.clone(),
            other => panic!("expected exactly one line for the client, got {other:#?}"),
        }
    }

    /// The single line sent, which must be for the upstream.
    fn only_server_line(self) -> String {
        match self.0.as_slice() {
            [Out::Server(line)] => line.clone(),
            other => panic!("expected exactly one line for the upstream, got {other:#?}"),
        }
    }

    fn only_client(self) -> Value {
        parse(&self.only_client_line())
    }

    fn only_server(self) -> Value {
        parse(&self.only_server_line())
    }

    fn nothing(self) {
        assert!(
            self.0.is_empty(),
            "expected nothing sent, got {:#?}",
            self.0
        );
    }
}

fn parse(line: &str) -> Value {
    serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"))
}

fn request_line(id: &str, method: &str, params: &Value) -> String {
    format!(r#"{{"jsonrpc":"2.0","id":{id},"method":"{method}","params":{params}}}"#)
}

fn tools_result(names: &[&str]) -> Value {
    let tools: Vec<Value> = names
        .iter()
        .map(|n| json!({"name": n, "inputSchema": {"type": "object"}}))
        .collect();
    json!({ "tools": tools })
}

fn error_code(answer: &Value) -> i64 {
    answer["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error answer: {answer}"))
}

/// Asserts `answer` is Warden's "unknown tool" answer: a tool execution
/// error (`isError`) naming `tool`, with its decision in `_meta`.
fn assert_unknown_tool(answer: &Value, tool: &str) {
    let result = &answer["result"];
    assert_eq!(result["isError"], true, "{answer}");
    let text = result["content"][0]["text"].as_str().unwrap_or_default();
    assert!(
        text.starts_with(&format!("unknown tool `{tool}`")),
        "{answer}"
    );
    let decision = &result["_meta"][warden_mcp::DECISION_META];
    assert_eq!(decision["reason"], "unknown_tool", "{answer}");
    assert!(text.contains(decision["decision_id"].as_str().unwrap()));
}

/// The single record, which must be a refusal of malformed or refused
/// input with `reason`.
fn assert_one_refusal(records: &[DecisionRecord], reason: &str) {
    assert_eq!(records.len(), 1, "{records:#?}");
    let record = &records[0];
    assert_eq!(record.kind, RecordKind::Decision);
    assert_eq!(record.decision.as_deref(), Some("deny"));
    assert_eq!(record.outcome, "rejected");
    assert_eq!(record.reason, reason, "{record:#?}");
}

// === ids ===

#[test]
fn upstream_sees_wardens_own_small_integer_ids_not_the_clients() {
    let mut h = Harness::new();
    let ids = [r#""abc""#, "9007199254740993", r#""1""#, "-4"];
    let upstream: Vec<Value> = ids
        .iter()
        .map(|id| h.request(id, "ping", json!({})).only_server()["id"].clone())
        .collect();
    assert_eq!(upstream, vec![json!(1), json!(2), json!(3), json!(4)]);
}

#[test]
fn responses_carry_the_clients_exact_id_token_back() {
    let tokens = [
        "1",
        r#""1""#,
        "0",
        "-7",
        "9007199254740993",
        "123456789012345678901234567890",
        r#""a\"b\\c\n""#,
        r#""""#,
    ];
    for token in tokens {
        let mut h = Harness::new();
        let up = h.request(token, "ping", json!({})).only_server();
        let back = h.answer(&up, json!({})).only_client_line();
        assert_eq!(
            back,
            format!(r#"{{"jsonrpc":"2.0","id":{token},"result":{{}}}}"#),
            "id token {token}"
        );
    }
}

#[test]
fn warden_answers_carry_the_clients_exact_id_token_too() {
    let mut h = Harness::new();
    h.know_tools(&["read_file", "delete_file"]);
    let line = h
        .call("123456789012345678901234567890", "delete_file", json!({}))
        .only_client_line();
    assert!(
        line.contains(r#""id":123456789012345678901234567890,"#),
        "{line}"
    );
    let line = h
        .call(r#""9007199254740993""#, "delete_file", json!({}))
        .only_client_line();
    assert!(line.contains(r#""id":"9007199254740993","#), "{line}");
}

#[test]
fn string_ids_with_escapes_come_back_as_the_same_string() {
    // Warden keeps string ids in canonical form, so the bytes may differ
    // from what was sent (`\u00e9` comes back as `é`), but the id every
    // JSON parser reads is the same string.
    let mut h = Harness::new();
    let token = r#""\u00e9\ud83d\ude00\t\/x""#;
    let sent: Value = serde_json::from_str(token).unwrap();
    let up = h.request(token, "ping", json!({})).only_server();
    assert_eq!(up["id"], json!(1));
    let back = h.answer(&up, json!({})).only_client();
    assert_eq!(back["id"], sent);
    assert_eq!(back["id"], json!("é😀\t/x"));
}

#[test]
fn string_and_number_ids_with_the_same_digits_are_different_requests() {
    let mut h = Harness::new();
    let as_string = h.request(r#""1""#, "ping", json!({})).only_server();
    let as_number = h.request("1", "ping", json!({})).only_server();
    assert_eq!(h.relay.in_flight(), 2);
    // Answered in the other order, each goes back with its own token.
    assert_eq!(
        h.answer(&as_number, json!({})).only_client()["id"],
        json!(1)
    );
    assert_eq!(
        h.answer(&as_string, json!({})).only_client()["id"],
        json!("1")
    );
    assert_eq!(h.relay.in_flight(), 0);
}

#[test]
fn escaped_and_plain_spellings_of_one_string_id_are_one_request() {
    let mut h = Harness::new();
    h.request(r#""a""#, "ping", json!({})).only_server();
    let answer = h.request(r#""\u0061""#, "ping", json!({})).only_client();
    assert_eq!(error_code(&answer), jsonrpc::INVALID_REQUEST);
    assert_eq!(answer["error"]["data"]["reason"], "duplicate_id");
    assert_eq!(answer["id"], "a");
}

#[test]
fn an_upstream_answer_under_the_clients_id_instead_of_wardens_is_unmatched() {
    let mut h = Harness::new();
    let up = h.request("42", "ping", json!({})).only_server();
    assert_eq!(up["id"], json!(1));
    h.server(r#"{"jsonrpc":"2.0","id":42,"result":{}}"#)
        .nothing();
    // Warden's id as a string is not Warden's id either.
    h.server(r#"{"jsonrpc":"2.0","id":"1","result":{}}"#)
        .nothing();
    assert_eq!(h.relay.stats().upstream_unmatched, 2);
    assert_eq!(h.relay.in_flight(), 1);
    assert_eq!(h.answer(&up, json!({})).only_client()["id"], json!(42));
}

#[test]
fn upstream_ids_are_never_reused_after_an_answer() {
    let mut h = Harness::new();
    let first = h.request("1", "ping", json!({})).only_server();
    h.answer(&first, json!({})).only_client();
    let second = h.request("1", "ping", json!({})).only_server();
    assert_ne!(first["id"], second["id"]);
    // A late duplicate of the first answer cannot answer the second request.
    h.answer(&first, json!({"late": true})).nothing();
    assert_eq!(h.relay.stats().upstream_unmatched, 1);
    assert_eq!(h.relay.in_flight(), 1);
}

#[test]
fn forwarded_requests_are_byte_identical_but_for_the_id() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let line = r#"{"jsonrpc":"2.0","id":"c-1","method":"tools/call","params":{"name":"read_file","arguments":{"path":"/srv/x", "n": 1.50},"_meta":{"progressToken":"p"}},"x-extra":[1, 2]}"#;
    let up = h.client(line).only_server_line();
    let id = parse(&up)["id"].clone();
    assert_eq!(up, line.replace(r#""id":"c-1""#, &format!(r#""id":{id}"#)));
}

// === plumbing ===

#[test]
fn plumbing_requests_are_forwarded_without_a_decision() {
    let mut h = Harness::new();
    let plumbing = [
        (
            "initialize",
            json!({"protocolVersion": "2025-11-25", "capabilities": {}, "clientInfo": {"name": "t", "version": "1"}}),
        ),
        ("ping", json!({})),
        ("server/discover", json!({})),
        ("logging/setLevel", json!({"level": "debug"})),
    ];
    for (index, (method, params)) in plumbing.iter().enumerate() {
        let up = h
            .request(&format!(r#""p{index}""#), method, params.clone())
            .only_server();
        assert_eq!(up["method"], *method);
        assert_eq!(up["params"], *params);
    }
    assert!(h.records().is_empty(), "{:#?}", h.records());
    assert_eq!(h.relay.stats().forwarded, 0);
    assert_eq!(h.relay.stats().denied, 0);
    assert_eq!(h.relay.in_flight(), 4);
}

#[test]
fn plumbing_notifications_are_forwarded_verbatim_without_a_decision() {
    let mut h = Harness::new();
    for line in [
        r#"{"jsonrpc":"2.0","method":"notifications/initialized"}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/progress","params":{"progressToken":"t","progress":1}}"#,
        r#"{"jsonrpc":"2.0","method":"notifications/roots/list_changed"}"#,
    ] {
        assert_eq!(h.client(line).only_server_line(), line);
    }
    assert!(h.records().is_empty());
}

#[test]
fn other_client_notifications_are_decided_and_dropped_when_denied() {
    // POLICY permits no `other` action.
    let mut h = Harness::new();
    h.client(r#"{"jsonrpc":"2.0","method":"notifications/custom","params":{}}"#)
        .nothing();
    assert_eq!(h.records().len(), 1);
    assert_eq!(h.records()[0].decision.as_deref(), Some("deny"));
    assert_eq!(h.records()[0].method, "notifications/custom");
    assert_eq!(h.relay.stats().denied, 1);
}

#[test]
fn server_discover_with_meta_passes_through_with_meta_intact() {
    let mut h = Harness::new();
    let params = json!({ "_meta": meta() });
    let line = request_line(r#""disc-1""#, "server/discover", &params);
    let up = h.client(&line).only_server_line();
    let upstream = parse(&up);
    assert_eq!(upstream["params"], params);
    assert_eq!(
        up,
        line.replace(r#""id":"disc-1""#, &format!(r#""id":{}"#, upstream["id"]))
    );
}

#[test]
fn server_discover_error_goes_back_unchanged_but_for_the_id() {
    let mut h = Harness::new();
    let up = h
        .request(r#""disc-1""#, "server/discover", json!({"_meta": meta()}))
        .only_server();
    let error = r#"{"jsonrpc":"2.0","id":UP,"error":{"code":-32601,"message":"Method not found","data":{"method":"server/discover"}}}"#;
    let back = h
        .server(&error.replace("UP", &up["id"].to_string()))
        .only_client_line();
    assert_eq!(back, error.replace("UP", r#""disc-1""#));
    assert!(h.records().is_empty());
}

// === the tool catalog Warden learns itself ===

#[test]
fn first_tool_call_is_held_while_warden_lists_the_tools_itself() {
    let mut h = Harness::new();
    let list = h
        .call(r#""c1""#, "read_file", json!({"path": "/a"}))
        .only_server();
    assert_eq!(list["method"], "tools/list");
    assert_eq!(list["params"], json!({}));
    assert_eq!(h.relay.in_flight(), 1);
    assert!(h.records().is_empty(), "no decision before the catalog");

    let call = h.answer(&list, tools_result(&["read_file"])).only_server();
    assert_eq!(call["method"], "tools/call");
    assert_eq!(call["params"]["name"], "read_file");
    assert_ne!(call["id"], list["id"]);
    assert_eq!(h.records().len(), 1);
    assert_eq!(h.records()[0].decision.as_deref(), Some("allow"));

    let back = h.answer(&call, json!({"content": []})).only_client();
    assert_eq!(back["id"], "c1");
    assert_eq!(h.relay.in_flight(), 0);
}

#[test]
fn held_calls_meta_is_copied_into_wardens_tools_list() {
    let mut h = Harness::new();
    let params = json!({"name": "read_file", "arguments": {}, "_meta": meta()});
    let list = h.request("1", "tools/call", params).only_server();
    assert_eq!(list["method"], "tools/list");
    assert_eq!(list["params"], json!({ "_meta": meta() }));
}

#[test]
fn wardens_tools_list_follows_next_cursor_pages() {
    let mut h = Harness::new();
    let params = json!({"name": "write_file", "arguments": {}, "_meta": meta()});
    let first = h.request("1", "tools/call", params).only_server();
    let mut page_one = tools_result(&["read_file"]);
    page_one["nextCursor"] = json!("page-2");
    let second = h.answer(&first, page_one).only_server();
    assert_eq!(second["method"], "tools/list");
    assert_eq!(
        second["params"],
        json!({"_meta": meta(), "cursor": "page-2"})
    );
    assert_ne!(second["id"], first["id"]);

    // The tool is only on the second page.
    let call = h
        .answer(&second, tools_result(&["write_file"]))
        .only_server();
    assert_eq!(call["method"], "tools/call");
    assert_eq!(call["params"]["name"], "write_file");
}

#[test]
fn held_call_for_a_tool_the_upstream_does_not_list_is_refused_as_unknown() {
    let mut h = Harness::new();
    let list = h.call("9", "read_fiIe", json!({})).only_server();
    let answer = h.answer(&list, tools_result(&["read_file"])).only_client();
    assert_eq!(answer["id"], 9);
    assert_unknown_tool(&answer, "read_fiIe");
    assert_one_refusal(h.records(), "unknown_tool");
    assert_eq!(h.records()[0].tool.as_deref(), Some("read_fiIe"));
    assert_eq!(h.relay.in_flight(), 0);
}

#[test]
fn calls_held_during_one_walk_share_it_and_are_all_decided_when_it_ends() {
    let mut h = Harness::new();
    let list = h.call("1", "read_file", json!({})).only_server();
    h.call("2", "delete_file", json!({})).nothing();
    h.call("3", "nope", json!({})).nothing();
    assert_eq!(h.relay.in_flight(), 3);

    let sent = h.answer(&list, tools_result(&["read_file", "delete_file"]));
    let forwarded = sent.to_server();
    assert_eq!(forwarded.len(), 1, "{sent:#?}");
    assert_eq!(forwarded[0]["params"]["name"], "read_file");
    let answers = sent.to_client();
    assert_eq!(answers.len(), 2, "{sent:#?}");
    assert_eq!(answers[0]["id"], 2);
    assert_eq!(error_code(&answers[0]), jsonrpc::DENIED);
    assert_eq!(answers[1]["id"], 3);
    assert_unknown_tool(&answers[1], "nope");
    assert_eq!(h.relay.in_flight(), 1);
}

#[test]
fn tools_list_changed_during_the_walk_restarts_it() {
    let mut h = Harness::new();
    let params = json!({"name": "new_tool", "arguments": {}, "_meta": meta()});
    let first = h.request("1", "tools/call", params).only_server();

    let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    assert_eq!(h.server(changed).only_client_line(), changed);

    // The stale walk ends without deciding anything: Warden lists again.
    let again = h.answer(&first, tools_result(&["read_file"])).only_server();
    assert_eq!(again["method"], "tools/list");
    assert_eq!(again["params"], json!({ "_meta": meta() }));
    assert_ne!(again["id"], first["id"]);
    assert!(h.records().is_empty());

    let call = h
        .answer(&again, tools_result(&["read_file", "new_tool"]))
        .only_server();
    assert_eq!(call["params"]["name"], "new_tool");
}

#[test]
fn a_tool_list_that_keeps_changing_is_accepted_after_three_restarts() {
    let mut h = Harness::new();
    let mut list = h.call("1", "read_file", json!({})).only_server();
    let changed = r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#;
    for _ in 0..3 {
        h.server(changed).only_client();
        list = h.answer(&list, tools_result(&["read_file"])).only_server();
        assert_eq!(list["method"], "tools/list");
    }
    h.server(changed).only_client();
    let call = h.answer(&list, tools_result(&["read_file"])).only_server();
    assert_eq!(call["method"], "tools/call");
}

#[test]
fn error_answer_to_wardens_tools_list_fails_the_held_calls() {
    let mut h = Harness::new();
    let list = h.call(r#""h1""#, "read_file", json!({})).only_server();
    h.call(r#""h2""#, "read_file", json!({})).nothing();
    let sent = h.fail(&list, -32603, "boom");
    assert!(sent.server_lines().is_empty(), "{sent:#?}");
    let answers = sent.to_client();
    assert_eq!(answers.len(), 2);
    for (answer, id) in answers.iter().zip(["h1", "h2"]) {
        assert_eq!(answer["id"], id);
        assert_eq!(error_code(answer), jsonrpc::UPSTREAM_UNAVAILABLE);
        assert!(
            answer["error"]["message"]
                .as_str()
                .unwrap()
                .contains("boom"),
            "{answer}"
        );
    }
    assert_eq!(h.records().len(), 2);
    for record in h.records() {
        assert_eq!(record.decision.as_deref(), Some("deny"));
        assert_eq!(record.reason, "upstream_error");
        assert_eq!(record.tool.as_deref(), Some("read_file"));
    }
    assert_eq!(h.relay.in_flight(), 0);

    // The next call tries again.
    let retry = h.call(r#""h3""#, "read_file", json!({})).only_server();
    assert_eq!(retry["method"], "tools/list");
}

#[test]
fn timeout_of_wardens_tools_list_fails_the_held_calls() {
    let mut h = Harness::new();
    let list = h.call("5", "read_file", json!({})).only_server();
    h.tick_after(Duration::from_secs(1)).nothing();
    let sent = h.tick_after(TIMEOUT);
    // Warden's own listing is cancelled upstream under its own id.
    let cancel: Value = serde_json::from_str(&sent.server_lines()[0]).unwrap();
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(cancel["params"]["requestId"], list["id"]);
    let answers = sent.client_lines();
    assert_eq!(answers.len(), 1, "{answers:#?}");
    let answer: Value = serde_json::from_str(&answers[0]).unwrap();
    assert_eq!(answer["id"], 5);
    assert_eq!(error_code(&answer), jsonrpc::UPSTREAM_TIMEOUT);
    assert_one_refusal(h.records(), "timeout");
    assert_eq!(h.relay.in_flight(), 0);

    // A late catalog is not taken for anything.
    h.answer(&list, tools_result(&["read_file"])).nothing();
    assert_eq!(h.relay.stats().upstream_unmatched, 1);
}

#[test]
fn a_clients_complete_tools_list_teaches_the_catalog() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let call = h.call("1", "read_file", json!({})).only_server();
    assert_eq!(call["method"], "tools/call");
    let unknown = h.call("2", "write_file", json!({})).only_client();
    assert_unknown_tool(&unknown, "write_file");
}

#[test]
fn a_paginated_client_tools_list_does_not_teach_the_catalog() {
    let mut h = Harness::new();
    let up = h.request("1", "tools/list", json!({})).only_server();
    let mut page = tools_result(&["read_file"]);
    page["nextCursor"] = json!("more");
    h.answer(&up, page).only_client();
    let list = h.call("2", "read_file", json!({})).only_server();
    assert_eq!(list["method"], "tools/list");
}

#[test]
fn tools_list_changed_forgets_the_catalog() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    h.server(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#)
        .only_client();
    let list = h.call("1", "read_file", json!({})).only_server();
    assert_eq!(list["method"], "tools/list");
}

#[test]
fn tool_names_that_are_not_valid_mcp_names_are_refused_before_any_listing() {
    let too_long = "x".repeat(129);
    for name in [
        "read_file\u{200b}",
        "réad_file",
        "read file",
        "",
        "ｒｅａｄ",
        too_long.as_str(),
    ] {
        let mut h = Harness::new();
        let answer = h.call("1", name, json!({})).only_client();
        assert_eq!(error_code(&answer), jsonrpc::INVALID_PARAMS, "{name:?}");
        assert_eq!(answer["error"]["data"]["reason"], "invalid_tool_name");
        assert_one_refusal(h.records(), "invalid_tool_name");
    }
}

// === list filtering ===

#[test]
fn tools_list_hides_forbidden_tools_and_keeps_every_other_member() {
    let mut h = Harness::new();
    let up = h
        .request(r#""l""#, "tools/list", json!({"_meta": meta()}))
        .only_server();
    assert_eq!(up["params"], json!({"_meta": meta()}));
    let read_file = json!({
        "name": "read_file",
        "title": "Read",
        "inputSchema": {"type": "object", "properties": {"path": {"type": "string"}}},
        "annotations": {"readOnlyHint": true},
        "x-vendor": 1
    });
    let result = json!({
        "tools": [
            read_file,
            {"name": "delete_file", "inputSchema": {"type": "object"}},
            {"name": "bad name", "inputSchema": {"type": "object"}},
            {"title": "no name at all"}
        ],
        "nextCursor": "page-2",
        "_meta": {"io.example/trace": "abc"},
        "x-unknown": {"k": [1, 2]}
    });
    let line = json!({"jsonrpc": "2.0", "id": up["id"], "result": result, "x-top": true});
    let back = h.server(&line.to_string()).only_client();
    assert_eq!(back["id"], "l");
    assert_eq!(back["x-top"], true);
    assert_eq!(back["result"]["tools"], json!([read_file]));
    assert_eq!(back["result"]["nextCursor"], "page-2");
    assert_eq!(back["result"]["_meta"], json!({"io.example/trace": "abc"}));
    assert_eq!(back["result"]["x-unknown"], json!({"k": [1, 2]}));
}

#[test]
fn tools_list_is_decided_and_its_outcome_recorded() {
    let mut h = Harness::new();
    let up = h.request("1", "tools/list", json!({})).only_server();
    assert_eq!(h.records().len(), 1);
    assert_eq!(h.records()[0].method, "tools/list");
    assert_eq!(h.records()[0].decision.as_deref(), Some("allow"));
    h.answer(&up, tools_result(&["read_file"])).only_client();
    assert_eq!(h.records().len(), 2);
    assert_eq!(h.records()[1].kind, RecordKind::Outcome);
    assert_eq!(h.records()[1].outcome, "completed");
}

#[test]
fn resources_list_hides_resources_no_read_could_be_allowed_on() {
    let mut h = Harness::new();
    let up = h.request("1", "resources/list", json!({})).only_server();
    let public = json!({"uri": "file:///pub/a.txt", "name": "a"});
    let result = json!({
        "resources": [public, {"uri": "file:///secret/b.txt", "name": "b"}, {"name": "no uri"}],
        "nextCursor": "r2",
        "_meta": {"k": "v"}
    });
    let back = h.answer(&up, result).only_client();
    assert_eq!(back["result"]["resources"], json!([public]));
    assert_eq!(back["result"]["nextCursor"], "r2");
    assert_eq!(back["result"]["_meta"], json!({"k": "v"}));
}

#[test]
fn prompts_list_hides_prompts_no_get_could_be_allowed_on() {
    let mut h = Harness::new();
    let up = h.request("1", "prompts/list", json!({})).only_server();
    let greet = json!({"name": "greet", "arguments": [{"name": "who"}]});
    let result = json!({"prompts": [greet, {"name": "exfiltrate"}], "nextCursor": "p2"});
    let back = h.answer(&up, result).only_client();
    assert_eq!(back["result"]["prompts"], json!([greet]));
    assert_eq!(back["result"]["nextCursor"], "p2");
}

#[test]
fn resource_templates_list_is_not_filtered() {
    let mut h = Harness::new();
    let up = h
        .request("1", "resources/templates/list", json!({}))
        .only_server();
    let result = json!({"resourceTemplates": [{"uriTemplate": "file:///secret/{x}", "name": "s"}]});
    let back = h.answer(&up, result.clone()).only_client();
    assert_eq!(back["result"], result);
}

#[test]
fn list_error_answers_go_back_unfiltered() {
    let mut h = Harness::new();
    let up = h.request("1", "tools/list", json!({})).only_server();
    let back = h.fail(&up, -32603, "nope").only_client();
    assert_eq!(back["id"], 1);
    assert_eq!(back["error"], json!({"code": -32603, "message": "nope"}));
}

// === decisions and their records ===

#[test]
fn denied_call_is_answered_minus_32010_with_its_decision_id_and_never_forwarded() {
    let mut h = Harness::new();
    h.know_tools(&["read_file", "delete_file"]);
    let before = h.relay.stats();
    let answer = h
        .call(r#""d1""#, "delete_file", json!({"path": "/srv/x"}))
        .only_client();
    assert_eq!(answer["id"], "d1");
    assert_eq!(error_code(&answer), jsonrpc::DENIED);
    let data = &answer["error"]["data"];
    assert_eq!(data["reason"], "forbidden");
    assert_eq!(data["policy_ids"], json!(["no-delete"]));

    assert_eq!(h.records().len(), 1);
    let record = &h.records()[0];
    assert_eq!(record.kind, RecordKind::Decision);
    assert_eq!(record.decision.as_deref(), Some("deny"));
    assert_eq!(record.outcome, "denied");
    assert_eq!(record.tool.as_deref(), Some("delete_file"));
    assert_eq!(data["decision_id"], json!(record.decision_id));
    assert_eq!(record.principal, r#"Agent::"claude""#);
    assert_eq!(record.server, "fs");

    let stats = h.relay.stats();
    assert_eq!(stats.denied, before.denied + 1);
    assert_eq!(stats.forwarded, before.forwarded);
    assert_eq!(h.relay.in_flight(), 0);
}

#[test]
fn allowed_call_is_recorded_before_it_is_forwarded_and_its_completion_after() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let before = h.relay.stats();
    let up = h
        .call(
            "1",
            "read_file",
            json!({"path": "/srv/x", "token": "sk-secret"}),
        )
        .only_server();
    assert_eq!(
        h.records().len(),
        1,
        "the decision is durable when forwarded"
    );
    let decision = h.records()[0].clone();
    assert_eq!(decision.kind, RecordKind::Decision);
    assert_eq!(decision.decision.as_deref(), Some("allow"));
    assert_eq!(decision.outcome, "allowed");
    assert_eq!(decision.policy_ids, vec!["tools".to_owned()]);
    assert!(decision.args_digest.is_some());
    let redacted = decision.args_redacted.clone().unwrap().to_string();
    assert!(!redacted.contains("sk-secret"), "{redacted}");

    h.answer(&up, json!({"content": [{"type": "text", "text": "hi"}]}))
        .only_client();
    assert_eq!(h.records().len(), 2);
    let outcome = &h.records()[1];
    assert_eq!(outcome.kind, RecordKind::Outcome);
    assert_eq!(outcome.outcome, "completed");
    assert_eq!(outcome.decision_id, decision.decision_id);
    assert_eq!(outcome.tool.as_deref(), Some("read_file"));
    assert_eq!(h.relay.stats().forwarded, before.forwarded + 1);
}

#[test]
fn resource_reads_and_prompt_gets_are_decided_on_their_uri_and_name() {
    let mut h = Harness::new();
    let read = h
        .request("1", "resources/read", json!({"uri": "file:///pub/a.txt"}))
        .only_server();
    assert_eq!(read["method"], "resources/read");
    let denied = h
        .request(
            "2",
            "resources/read",
            json!({"uri": "file:///secret/b.txt"}),
        )
        .only_client();
    assert_eq!(error_code(&denied), jsonrpc::DENIED);
    let get = h
        .request(
            "3",
            "prompts/get",
            json!({"name": "greet", "arguments": {}}),
        )
        .only_server();
    assert_eq!(get["method"], "prompts/get");
    let denied = h
        .request("4", "prompts/get", json!({"name": "exfiltrate"}))
        .only_client();
    assert_eq!(error_code(&denied), jsonrpc::DENIED);
    let tools: Vec<Option<&str>> = h.records().iter().map(|r| r.tool.as_deref()).collect();
    assert_eq!(
        tools,
        vec![
            Some("file:///pub/a.txt"),
            Some("file:///secret/b.txt"),
            Some("greet"),
            Some("exfiltrate")
        ]
    );
}

#[test]
fn tool_result_with_is_error_is_recorded_as_tool_error() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let up = h.call("1", "read_file", json!({})).only_server();
    let back = h
        .answer(&up, json!({"content": [], "isError": true}))
        .only_client();
    assert_eq!(back["result"]["isError"], true);
    assert_eq!(h.records()[1].kind, RecordKind::Outcome);
    assert_eq!(h.records()[1].outcome, "tool_error");
}

#[test]
fn json_rpc_error_answer_is_recorded_as_upstream_error() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let up = h.call("1", "read_file", json!({})).only_server();
    let back = h.fail(&up, -32000, "disk on fire").only_client();
    assert_eq!(back["error"]["message"], "disk on fire");
    assert_eq!(h.records()[1].outcome, "upstream_error");
    assert!(h.records()[1].message.contains("disk on fire"));
}

#[test]
fn allowed_call_whose_record_cannot_be_written_is_refused_minus_32013_and_not_forwarded() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let before = h.relay.stats();
    h.log.failing = true;
    let answer = h.call("1", "read_file", json!({})).only_client();
    assert_eq!(answer["id"], 1);
    assert_eq!(error_code(&answer), jsonrpc::RECORD_FAILED);
    assert!(answer["error"]["data"]["decision_id"].is_string());
    assert!(h.records().is_empty());
    assert_eq!(h.relay.stats().record_failures, 1);
    assert_eq!(h.relay.stats().forwarded, before.forwarded);
    assert_eq!(h.relay.in_flight(), 0);

    // Nothing was left in flight: once the log works, the id is free.
    h.log.failing = false;
    assert_eq!(
        h.call("1", "read_file", json!({})).only_server()["method"],
        "tools/call"
    );
}

#[test]
fn allowed_list_whose_record_cannot_be_written_is_refused_too() {
    let mut h = Harness::new();
    h.log.failing = true;
    let answer = h.request("1", "tools/list", json!({})).only_client();
    assert_eq!(error_code(&answer), jsonrpc::RECORD_FAILED);
}

#[test]
fn denied_call_is_still_denied_when_its_record_cannot_be_written() {
    let mut h = Harness::new();
    h.know_tools(&["delete_file"]);
    h.log.failing = true;
    let answer = h.call("1", "delete_file", json!({})).only_client();
    assert_eq!(error_code(&answer), jsonrpc::DENIED);
    assert_eq!(h.relay.stats().record_failures, 1);
}

// === cancellation ===

#[test]
fn client_cancellation_of_an_in_flight_request_is_forwarded_with_the_upstream_id() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let up = h.call(r#""c-9""#, "read_file", json!({})).only_server();
    let cancel = h
        .client(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"c-9","reason":"user"}}"#,
        )
        .only_server();
    assert_eq!(cancel["method"], "notifications/cancelled");
    assert_eq!(
        cancel["params"],
        json!({"requestId": up["id"], "reason": "user"})
    );
}

#[test]
fn client_cancellation_by_a_large_integer_id_is_translated() {
    let mut h = Harness::new();
    let up = h
        .request("9007199254740993", "ping", json!({}))
        .only_server();
    let cancel = h
        .client(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":9007199254740993}}"#,
        )
        .only_server();
    assert_eq!(cancel["params"]["requestId"], up["id"]);
}

#[test]
fn client_cancellation_by_an_integer_id_beyond_64_bits_is_translated() {
    let mut h = Harness::new();
    let up = h
        .request("123456789012345678901234567890", "ping", json!({}))
        .only_server();
    let cancel = h
        .client(
            r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":123456789012345678901234567890}}"#,
        )
        .only_server();
    assert_eq!(cancel["params"]["requestId"], up["id"]);
}

#[test]
fn client_cancellation_of_an_unknown_request_is_dropped() {
    let mut h = Harness::new();
    h.request("1", "ping", json!({})).only_server();
    for request_id in [r#""1""#, "2", "null"] {
        h.client(&format!(
            r#"{{"jsonrpc":"2.0","method":"notifications/cancelled","params":{{"requestId":{request_id}}}}}"#
        ))
        .nothing();
    }
    h.client(r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{}}"#)
        .nothing();
}

#[test]
fn client_cancellation_of_a_held_call_keeps_it_from_running() {
    let mut h = Harness::new();
    let list = h.call(r#""held""#, "read_file", json!({})).only_server();
    h.client(
        r#"{"jsonrpc":"2.0","method":"notifications/cancelled","params":{"requestId":"held"}}"#,
    );
    let sent = h.answer(&list, tools_result(&["read_file"]));
    assert!(
        sent.server_lines().is_empty(),
        "a cancelled call must not reach the upstream: {sent:#?}"
    );
    assert_eq!(h.relay.in_flight(), 0);
}

// === requests from the upstream ===

#[test]
fn server_requests_go_to_the_client_and_only_their_answers_go_back_upstream() {
    let mut h = Harness::new();
    let sampling = r#"{"jsonrpc":"2.0","id":7,"method":"sampling/createMessage","params":{"messages":[],"maxTokens":10}}"#;
    assert_eq!(h.server(sampling).only_client_line(), sampling);
    let roots = r#"{"jsonrpc":"2.0","id":"r-1","method":"roots/list"}"#;
    assert_eq!(h.server(roots).only_client_line(), roots);

    let answer = r#"{"jsonrpc":"2.0","id":7,"result":{"role":"assistant","content":{"type":"text","text":"x"}}}"#;
    assert_eq!(h.client(answer).only_server_line(), answer);
    // Answered once; a second answer goes nowhere.
    h.client(answer).nothing();

    let refusal = r#"{"jsonrpc":"2.0","id":"r-1","error":{"code":-1,"message":"no roots"}}"#;
    assert_eq!(h.client(refusal).only_server_line(), refusal);
    assert!(h.records().is_empty());
}

#[test]
fn client_response_to_no_server_request_is_dropped() {
    let mut h = Harness::new();
    h.request("1", "ping", json!({})).only_server();
    // Not even a response to one of the client's own requests gets through.
    h.client(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
        .nothing();
    h.client(r#"{"jsonrpc":"2.0","id":"x","error":{"code":1,"message":"m"}}"#)
        .nothing();
    assert_eq!(h.relay.in_flight(), 1);
}

// === what the upstream must not be able to do ===

#[test]
fn upstream_garbage_and_unmatched_responses_are_counted_and_never_relayed() {
    let mut h = Harness::new();
    h.request("1", "ping", json!({})).only_server();
    for line in [
        "not json",
        "[]",
        r#"[{"jsonrpc":"2.0","id":1,"result":{}}]"#,
        r#"{"jsonrpc":"2.0","id":1,"id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":null,"result":{}}"#,
        r#"{"jsonrpc":"1.0","id":1,"result":{}}"#,
        r#"{"jsonrpc":"2.0","id":1,"result":{},"error":{}}"#,
    ] {
        h.server(line).nothing();
    }
    h.server("   ").nothing();
    h.relay.on_server_garbage();
    h.server(r#"{"jsonrpc":"2.0","id":99,"result":{}}"#)
        .nothing();
    let stats = h.relay.stats();
    assert_eq!(stats.upstream_garbage, 8);
    assert_eq!(stats.upstream_unmatched, 1);
    assert!(h.records().is_empty());
    // The real answer still gets through.
    assert_eq!(h.relay.in_flight(), 1);
    assert_eq!(
        h.server(r#"{"jsonrpc":"2.0","id":1,"result":{}}"#)
            .only_client()["id"],
        1
    );
}

// === the upstream fails ===

#[test]
fn upstream_exit_answers_every_in_flight_and_held_request_minus_32012() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    h.call(r#""call""#, "read_file", json!({})).only_server();
    h.request(r#""ping""#, "ping", json!({})).only_server();
    h.server(r#"{"jsonrpc":"2.0","method":"notifications/tools/list_changed"}"#)
        .only_client();
    h.call(r#""held""#, "read_file", json!({})).only_server();
    assert_eq!(h.relay.in_flight(), 3);
    let decision_id = h.records()[0].decision_id.clone();

    let sent = h.server_exit();
    assert!(sent.server_lines().is_empty());
    let mut answers = sent.to_client();
    answers.sort_by_key(|a| a["id"].as_str().unwrap().to_owned());
    let ids: Vec<&str> = answers.iter().map(|a| a["id"].as_str().unwrap()).collect();
    assert_eq!(ids, vec!["call", "held", "ping"]);
    for answer in &answers {
        assert_eq!(
            error_code(answer),
            jsonrpc::UPSTREAM_UNAVAILABLE,
            "{answer}"
        );
    }
    assert_eq!(h.relay.in_flight(), 0);

    // One outcome for the allowed call, one refusal for the held call, and
    // nothing for the plumbing.
    let records = &h.records()[1..];
    assert_eq!(records.len(), 2, "{records:#?}");
    let outcome = records
        .iter()
        .find(|r| r.kind == RecordKind::Outcome)
        .unwrap();
    assert_eq!(outcome.outcome, "upstream_exited");
    assert_eq!(outcome.decision_id, decision_id);
    let refusal = records
        .iter()
        .find(|r| r.kind == RecordKind::Decision)
        .unwrap();
    assert_eq!(refusal.decision.as_deref(), Some("deny"));
    assert_eq!(refusal.reason, "upstream_exited");
}

#[test]
fn timed_out_requests_are_answered_minus_32011_and_cancelled_upstream() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let up = h.call(r#""slow""#, "read_file", json!({})).only_server();
    h.tick_after(TIMEOUT - Duration::from_secs(1)).nothing();

    let sent = h.tick_after(TIMEOUT);
    let answers = sent.to_client();
    assert_eq!(answers.len(), 1, "{sent:#?}");
    assert_eq!(answers[0]["id"], "slow");
    assert_eq!(error_code(&answers[0]), jsonrpc::UPSTREAM_TIMEOUT);
    let cancels = sent.to_server();
    assert_eq!(cancels.len(), 1, "{sent:#?}");
    assert_eq!(cancels[0]["method"], "notifications/cancelled");
    assert_eq!(cancels[0]["params"]["requestId"], up["id"]);

    assert_eq!(h.records().len(), 2);
    assert_eq!(h.records()[1].kind, RecordKind::Outcome);
    assert_eq!(h.records()[1].outcome, "timeout");
    assert_eq!(h.relay.in_flight(), 0);

    // The late answer is dropped, not delivered a second time.
    h.answer(&up, json!({"content": []})).nothing();
    assert_eq!(h.relay.stats().upstream_unmatched, 1);
}

#[test]
fn abandoned_requests_record_client_closed_for_allowed_calls() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    h.call("1", "read_file", json!({})).only_server();
    h.request("2", "ping", json!({})).only_server();
    h.relay.abandon_all(&mut h.log);
    assert_eq!(h.relay.in_flight(), 0);
    assert_eq!(h.records().len(), 2);
    assert_eq!(h.records()[1].kind, RecordKind::Outcome);
    assert_eq!(h.records()[1].outcome, "client_closed");
}

// === malformed client input ===

#[test]
fn malformed_client_messages_are_answered_recorded_and_never_forwarded() {
    // (line, code, id in the answer, reason recorded)
    let cases: &[(&str, i64, Value, &str)] = &[
        (
            r#"[{"jsonrpc":"2.0","id":1,"method":"ping"}]"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "batch",
        ),
        ("[]", jsonrpc::INVALID_REQUEST, Value::Null, "batch"),
        ("hello", jsonrpc::PARSE_ERROR, Value::Null, "parse_error"),
        (
            r#""ping""#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "not_an_object",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"method":"ping""#,
            jsonrpc::PARSE_ERROR,
            Value::Null,
            "parse_error",
        ),
        (
            r#"{"jsonrpc":"2.0","id":null,"method":"tools/call"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "null_id",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1.5,"method":"tools/call"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "invalid_id",
        ),
        (
            r#"{"jsonrpc":"2.0","id":true,"method":"tools/call"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "invalid_id",
        ),
        (
            r#"{"jsonrpc":"2.0","id":{"a":1},"method":"tools/call"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "invalid_id",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1e3,"method":"tools/call"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "invalid_id",
        ),
        (
            // A leading zero is not JSON at all.
            r#"{"jsonrpc":"2.0","id":01,"method":"tools/call"}"#,
            jsonrpc::PARSE_ERROR,
            Value::Null,
            "parse_error",
        ),
        (
            r#"{"jsonrpc":"2.0","id":1,"id":2,"method":"ping"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "duplicate_key",
        ),
        (
            r#"{"jsonrpc":"1.0","id":5,"method":"ping"}"#,
            jsonrpc::INVALID_REQUEST,
            json!(5),
            "invalid_version",
        ),
        (
            r#"{"jsonrpc":"2.0","id":6,"method":7}"#,
            jsonrpc::INVALID_REQUEST,
            json!(6),
            "invalid_method",
        ),
        (
            r#"{"jsonrpc":"2.0","id":4,"method":"ping","result":{}}"#,
            jsonrpc::INVALID_REQUEST,
            json!(4),
            "invalid_message",
        ),
        (
            r#"{"jsonrpc":"2.0","id":"r","result":{},"error":{"code":1,"message":"m"}}"#,
            jsonrpc::INVALID_REQUEST,
            json!("r"),
            "invalid_message",
        ),
        (
            r#"{"jsonrpc":"2.0"}"#,
            jsonrpc::INVALID_REQUEST,
            Value::Null,
            "invalid_message",
        ),
    ];
    for (line, code, id, reason) in cases {
        let mut h = Harness::new();
        let answer = h.client(line).only_client();
        assert_eq!(error_code(&answer), *code, "{line}");
        assert_eq!(answer["id"], *id, "{line}");
        assert_one_refusal(h.records(), reason);
        assert_eq!(h.relay.stats().client_rejected, 1, "{line}");
    }
}

#[test]
fn duplicate_keys_inside_params_are_refused_and_never_forwarded() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let line = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/ok","path":"/etc/shadow"}}}"#;
    let answer = h.client(line).only_client();
    assert_eq!(error_code(&answer), jsonrpc::INVALID_REQUEST);
    assert_one_refusal(h.records(), "duplicate_key");
}

#[test]
fn duplicate_keys_inside_params_are_answered_under_the_requests_id() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    let line = r#"{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{"name":"read_file","arguments":{"path":"/ok","path":"/etc/shadow"}}}"#;
    let answer = h.client(line).only_client();
    assert_eq!(answer["id"], 1);
}

#[test]
fn unreadable_client_input_is_answered_with_a_parse_error_and_recorded() {
    let mut h = Harness::new();
    let answer = Sent(
        h.relay
            .on_client_unreadable("message is not valid UTF-8", &mut h.log),
    )
    .only_client();
    assert_eq!(error_code(&answer), jsonrpc::PARSE_ERROR);
    assert_eq!(answer["id"], Value::Null);
    assert_one_refusal(h.records(), "unreadable");
}

#[test]
fn blank_client_lines_are_ignored() {
    let mut h = Harness::new();
    h.client("").nothing();
    h.client("  \t ").nothing();
    assert!(h.records().is_empty());
}

#[test]
fn duplicate_in_flight_id_is_refused_and_the_first_request_stays_in_flight() {
    let mut h = Harness::new();
    let up = h.request("1", "ping", json!({})).only_server();
    let answer = h.request("1", "tools/list", json!({})).only_client();
    assert_eq!(answer["id"], 1);
    assert_eq!(error_code(&answer), jsonrpc::INVALID_REQUEST);
    assert_eq!(answer["error"]["data"]["reason"], "duplicate_id");
    assert_one_refusal(h.records(), "duplicate_id");
    assert_eq!(h.relay.in_flight(), 1);
    assert_eq!(h.answer(&up, json!({})).only_client()["id"], 1);
}

#[test]
fn duplicate_id_of_a_held_call_is_refused() {
    let mut h = Harness::new();
    let list = h.call(r#""h""#, "read_file", json!({})).only_server();
    let answer = h.call(r#""h""#, "delete_file", json!({})).only_client();
    assert_eq!(answer["error"]["data"]["reason"], "duplicate_id");
    // Only the first call is decided when the catalog arrives.
    let forwarded = h
        .answer(&list, tools_result(&["read_file", "delete_file"]))
        .only_server();
    assert_eq!(forwarded["params"]["name"], "read_file");
}

#[test]
fn tool_call_with_non_object_arguments_is_refused_minus_32602() {
    for arguments in [r#""x""#, "[1]", "5", "null", "true"] {
        let mut h = Harness::new();
        h.know_tools(&["read_file"]);
        let line = format!(
            r#"{{"jsonrpc":"2.0","id":1,"method":"tools/call","params":{{"name":"read_file","arguments":{arguments}}}}}"#
        );
        let answer = h.client(&line).only_client();
        assert_eq!(answer["id"], 1);
        assert_eq!(error_code(&answer), jsonrpc::INVALID_PARAMS, "{arguments}");
        assert_eq!(answer["error"]["data"]["reason"], "invalid_params");
        assert_one_refusal(h.records(), "invalid_params");
    }
}

#[test]
fn a_call_whose_params_are_not_an_object_is_told_so() {
    for (method, params) in [
        ("tools/call", json!("x")),
        ("tools/call", json!([1])),
        ("prompts/get", json!(5)),
        ("resources/read", json!(true)),
    ] {
        let mut h = Harness::new();
        h.know_tools(&["read_file"]);
        let answer = h.request("1", method, params.clone()).only_client();
        assert_eq!(error_code(&answer), jsonrpc::INVALID_PARAMS, "{params}");
        let message = answer["error"]["message"].as_str().unwrap();
        assert!(message.contains("`params` must be an object"), "{message}");
    }
}

#[test]
fn tool_call_without_a_name_is_refused_minus_32602() {
    for params in [json!({}), json!({"name": 5}), json!([]), Value::Null] {
        let mut h = Harness::new();
        let answer = h.request("1", "tools/call", params.clone()).only_client();
        assert_eq!(error_code(&answer), jsonrpc::INVALID_PARAMS, "{params}");
        assert_one_refusal(h.records(), "invalid_params");
    }
}

#[test]
fn id_less_tool_call_is_dropped_unanswered_but_recorded() {
    let mut h = Harness::new();
    h.know_tools(&["read_file"]);
    h.client(
        r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"read_file","arguments":{}}}"#,
    )
    .nothing();
    assert_one_refusal(h.records(), "missing_id");
    assert_eq!(h.records()[0].method, "tools/call");
    assert_eq!(h.relay.stats().client_rejected, 1);
    assert_eq!(h.relay.in_flight(), 0);
}

#[test]
fn notification_method_sent_with_an_id_is_refused() {
    let mut h = Harness::new();
    let answer = h
        .client(r#"{"jsonrpc":"2.0","id":3,"method":"notifications/initialized"}"#)
        .only_client();
    assert_eq!(answer["id"], 3);
    assert_eq!(error_code(&answer), jsonrpc::INVALID_REQUEST);
    assert_one_refusal(h.records(), "notification_with_id");
}

#[test]
fn requests_beyond_the_in_flight_bound_are_refused() {
    let mut h = Harness::new();
    for n in 0..4096 {
        h.client(&format!(r#"{{"jsonrpc":"2.0","id":{n},"method":"ping"}}"#))
            .only_server();
    }
    let answer = h
        .client(r#"{"jsonrpc":"2.0","id":"one-too-many","method":"ping"}"#)
        .only_client();
    assert_eq!(error_code(&answer), jsonrpc::TOO_MANY_IN_FLIGHT);
    assert_eq!(answer["id"], "one-too-many");
}

#[test]
fn an_oversized_upstream_answer_fails_its_request_at_once() {
    let mut h = Harness::new();
    let sent = h
        .client(r#"{"jsonrpc":"2.0","id":"mine","method":"ping"}"#)
        .only_server();
    let upstream_id = sent["id"].to_string();
    let out = Sent(h.relay.on_server_oversized(
        "{\"result\":{\"content\":[{\"text\":\"aaaa",
        &format!("aaaa\"}}]}},\"jsonrpc\":\"2.0\",\"id\":{upstream_id}}}"),
        1024,
        &mut h.log,
    ));
    let answer = out.only_client();
    assert_eq!(answer["id"], "mine");
    assert_eq!(error_code(&answer), jsonrpc::UPSTREAM_TOO_LARGE);
    assert_eq!(h.relay.in_flight(), 0);
    // A fragment naming no request in flight is only counted.
    Sent(
        h.relay
            .on_server_oversized("{\"id\":999", "", 1024, &mut h.log),
    )
    .nothing();
    assert_eq!(h.relay.stats().upstream_garbage, 2);
}

#[test]
fn a_call_that_needs_approval_is_refused_naming_the_approvers_and_never_forwarded() {
    let mut h = Harness::with_policy(
        r#"@id("lists") permit(principal, action == Action::"tools/list", resource);
           @id("writes-need-review") @approval("reviewers") @approval_ttl("10m")
           permit(principal, action == Action::"tools/call", resource) when { resource.name == "write_file" };"#,
    );
    h.know_tools(&["write_file"]);
    let answer = h
        .call("1", "write_file", json!({"path": "/x"}))
        .only_client();
    assert_eq!(error_code(&answer), jsonrpc::DENIED);
    let data = &answer["error"]["data"];
    assert_eq!(data["reason"], "approval_required");
    assert_eq!(data["approvers"], json!(["reviewers"]));
    assert_eq!(data["approval_ttl_secs"], 600);
    let message = answer["error"]["message"].as_str().unwrap();
    assert!(message.starts_with("approval required:"), "{message}");
    let records = h.records();
    assert_eq!(records.len(), 1, "{records:#?}");
    assert_eq!(records[0].decision.as_deref(), Some("approval_required"));
    assert_eq!(records[0].outcome, "approval_required");
    assert_eq!(records[0].policy_ids, ["writes-need-review"]);
    assert_eq!(h.relay.in_flight(), 0);
}
