//! Failure cases from `shared/reference/failure-cases.md`, each as a named
//! test through `warden proxy` over stdio: C01, C02, C11, C12, C15 (stdio
//! part), C21. (C16, C18 and C26 are decided in the policy core: see
//! `crates/warden-policy/tests/decisions.rs`; C16 also runs end to end in
//! `real_peers.rs`.)

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::support::*;

const ALLOW_ALL: &str = "@id(\"all\") permit(principal, action, resource);";

fn everything() -> Vec<String> {
    vec![npm_bin("mcp-server-everything"), "stdio".into()]
}

fn error_code(v: &Value) -> i64 {
    v["error"]["code"]
        .as_i64()
        .unwrap_or_else(|| panic!("not an error: {v}"))
}

#[test]
fn c01_batch_arrays_are_rejected_whole_and_nothing_reaches_the_upstream() {
    let ws = Workspace::new(ALLOW_ALL);
    let tap = ws.path("upstream.log");
    let mut proxy = Proxy::start(&ws, "a", &tapped(&tap, everything()));
    proxy.handshake("2025-06-18");

    let variants = [
        r#"[{"jsonrpc":"2.0","id":1,"method":"ping"},{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{"name":"echo","arguments":{"message":"x"}}}]"#,
        "[]",
        r#"[{"jsonrpc":"2.0","method":"notifications/initialized"}]"#,
        r#"[{"jsonrpc":"2.0","id":3,"method":"initialize","params":{}}]"#,
        r#"[{"jsonrpc":"2.0","id":4,"result":{}}]"#,
    ];
    for variant in variants {
        proxy.send(variant);
        let answer = proxy.response("null");
        assert_eq!(error_code(&answer), -32600, "{variant}");
    }
    // The proxy keeps serving.
    let pong = proxy.request(json!(10), "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));

    let received: Vec<String> = upstream_lines(&tap)
        .into_iter()
        .filter(|l| !l.contains("\"initialize") && !l.contains("notifications/initialized"))
        .collect();
    assert_eq!(
        received.len(),
        1,
        "only the ping may reach the upstream: {received:#?}"
    );
    assert!(received.iter().all(|l| !l.trim_start().starts_with('[')));
    let batch_records = ws
        .records()
        .into_iter()
        .filter(|r| r["reason"] == "batch")
        .count();
    assert_eq!(batch_records, variants.len(), "one deny record per batch");
}

#[test]
fn c02_null_invalid_and_missing_ids_are_never_forwarded_and_ids_return_exactly() {
    let ws = Workspace::new(ALLOW_ALL);
    let tap = ws.path("upstream.log");
    let mut proxy = Proxy::start(&ws, "a", &tapped(&tap, everything()));
    proxy.handshake("2025-06-18");
    let echo = |id: &str| {
        format!(
            r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{}"}}}}}}"#,
            id.replace('"', "q")
        )
    };

    // id null and ids of the wrong type: -32600 with a null id.
    for bad in ["null", "1.5", "true", "{}"] {
        proxy.send(&echo(bad));
        assert_eq!(error_code(&proxy.response("null")), -32600, "id {bad}");
    }
    // A tools/call without an id is not a request: dropped, not answered.
    proxy.send(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"message":"noid"}}}"#);
    // A notification carrying an id is refused.
    proxy.send(
        r#"{"jsonrpc":"2.0","id":7,"method":"notifications/cancelled","params":{"requestId":3}}"#,
    );
    assert_eq!(error_code(&proxy.response("7")), -32600);
    // Only the top-level id counts.
    proxy.send(r#"{"jsonrpc":"2.0","method":"tools/call","params":{"name":"echo","arguments":{"message":"nested","id":99}},"id":5}"#);
    assert_eq!(
        proxy.response("5")["result"]["content"][0]["text"],
        "Echo: nested"
    );
    // 1 and "1" are different requests; a large id is not rounded.
    proxy.send(&echo("1"));
    proxy.send(&echo("\"1\""));
    proxy.send(&echo("9007199254740993"));
    assert_eq!(
        proxy.response("1")["result"]["content"][0]["text"],
        "Echo: m1"
    );
    assert_eq!(
        proxy.response("\"1\"")["result"]["content"][0]["text"],
        "Echo: mq1q"
    );
    let big = proxy.response("9007199254740993");
    assert_eq!(big["id"].to_string(), "9007199254740993");
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));

    let received = upstream_lines(&tap).join("\n");
    for absent in ["mnull", "m1.5", "mtrue", "m{}", "noid", "\"requestId\":3"] {
        assert!(
            !received.contains(absent),
            "`{absent}` reached the upstream"
        );
    }
    let records = ws.records();
    let reasons: Vec<&str> = records
        .iter()
        .filter_map(|r| r["reason"].as_str())
        .collect();
    assert!(reasons.contains(&"null_id"));
    assert_eq!(reasons.iter().filter(|r| **r == "invalid_id").count(), 3);
    assert!(reasons.contains(&"missing_id"));
    assert!(reasons.contains(&"notification_with_id"));
}

#[test]
fn c11_a_tool_hidden_from_the_list_is_refused_on_every_path() {
    let ws = Workspace::new(
        r#"@id("all") permit(principal, action, resource);
           @id("hide-get-env") forbid(principal, action == Action::"tools/call", resource)
           when { resource.name == "get-env" };"#,
    );
    let tap = ws.path("upstream.log");
    let mut proxy = Proxy::start(&ws, "a", &tapped(&tap, everything()));
    proxy.handshake("2025-06-18");

    let list = proxy.request(json!(1), "tools/list", json!({}));
    let names: Vec<&str> = list["result"]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(names.contains(&"echo"), "{names:?}");
    assert!(!names.contains(&"get-env"), "hidden tool listed: {names:?}");

    let direct = proxy.request(
        json!(2),
        "tools/call",
        json!({"name": "get-env", "arguments": {}}),
    );
    assert_eq!(error_code(&direct), -32010);
    let message = direct["error"]["message"].as_str().unwrap();
    let decision_id = direct["error"]["data"]["decision_id"].as_str().unwrap();
    assert!(
        message.contains("hide-get-env") && message.contains(decision_id),
        "{message}"
    );
    let qualified = proxy.request(
        json!(3),
        "tools/call",
        json!({"name": "srv/get-env", "arguments": {}}),
    );
    // A name the server does not offer: refused as an unknown tool.
    assert_eq!(qualified["result"]["isError"], true, "{qualified}");
    assert_eq!(
        qualified["result"]["_meta"]["warden/decision"]["reason"],
        "unknown_tool"
    );
    proxy.send(r#"[{"jsonrpc":"2.0","id":4,"method":"tools/call","params":{"name":"get-env","arguments":{}}}]"#);
    assert_eq!(error_code(&proxy.response("null")), -32600);
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));

    let received = upstream_lines(&tap).join("\n");
    assert!(
        !received.contains("get-env"),
        "a hidden tool reached the upstream"
    );
    let denial = ws
        .records()
        .into_iter()
        .find(|r| r["decision_id"] == decision_id)
        .expect("the denial is recorded");
    assert_eq!(denial["decision"], "deny");
    assert_eq!(denial["policy_ids"], json!(["hide-get-env"]));
}

#[test]
fn c12_non_json_lines_from_the_upstream_are_dropped_and_counted() {
    let ws = Workspace::new(ALLOW_ALL);
    let mut proxy = Proxy::start(&ws, "a", &fake_upstream(&["--banner"]));
    proxy.handshake("2025-06-18");
    for id in 1..=2 {
        let answer = proxy.request(
            json!(id),
            "tools/call",
            json!({"name": "echo", "arguments": {"message": format!("m{id}")}}),
        );
        assert_eq!(
            answer["result"]["content"][0]["text"],
            format!("Echo: m{id}")
        );
    }
    let (code, stderr) = proxy.finish();
    assert_eq!(code, Some(0));
    // One banner at start, then `[db] Connected` and `{"not":"jsonrpc"}`
    // before each of the two call responses.
    assert!(
        stderr.contains("proxy stopped") && stderr.contains("upstream.garbage_lines=5"),
        "{stderr}"
    );
}

/// A proxy in front of the scripted upstream with a 2 s call timeout,
/// past its handshake.
fn proxy_with_short_timeout(ws: &Workspace) -> Proxy {
    let mut args = ws.proxy_args("a");
    args.extend(["--call-timeout".into(), "2".into()]);
    let mut proxy = Proxy::start_with(ws, args, &fake_upstream(&[]));
    proxy.handshake("2025-06-18");
    proxy
}

/// The call of `hang` has one decision record and one timeout outcome.
fn assert_hang_timed_out_once(ws: &Workspace) {
    let records = ws.records();
    let hang: Vec<&Value> = records.iter().filter(|r| r["tool"] == "hang").collect();
    assert_eq!(hang.len(), 2, "one decision and one outcome: {hang:#?}");
    assert_eq!(hang[1]["outcome"], "timeout");
}

#[test]
fn c15_a_hanging_upstream_call_times_out_with_one_error_and_one_record() {
    let ws = Workspace::new(ALLOW_ALL);
    let mut proxy = proxy_with_short_timeout(&ws);
    let started = Instant::now();
    let answer = proxy.request(
        json!(1),
        "tools/call",
        json!({"name": "hang", "arguments": {}}),
    );
    assert_eq!(error_code(&answer), -32011);
    assert!(started.elapsed() < Duration::from_secs(20));
    // The proxy keeps serving.
    let echo = proxy.request(
        json!(2),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "still"}}),
    );
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: still");
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));
    assert_hang_timed_out_once(&ws);
}

#[test]
fn c15_a_call_in_flight_when_the_client_closes_its_input_still_gets_its_timeout() {
    let ws = Workspace::new(ALLOW_ALL);
    let mut proxy = proxy_with_short_timeout(&ws);
    proxy.request(json!(1), "tools/list", json!({}));
    proxy.send_json(json!({"jsonrpc": "2.0", "id": 7, "method": "tools/call",
                           "params": {"name": "hang", "arguments": {}}}));
    proxy.close_input();
    let answer = proxy
        .next_response(Duration::from_secs(20))
        .expect("an answer after the client closed its input");
    assert_eq!(answer["id"], 7);
    assert_eq!(error_code(&answer), -32011);
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));
    assert_hang_timed_out_once(&ws);
}

#[test]
fn c15_an_upstream_crash_fails_every_call_in_flight_and_the_proxy_exits_clearly() {
    let ws = Workspace::new(ALLOW_ALL);
    let mut proxy = Proxy::start(&ws, "a", &fake_upstream(&[]));
    proxy.handshake("2025-06-18");
    // Learn the catalog first so the calls go out at once.
    proxy.request(json!(1), "tools/list", json!({}));
    for id in 10..14 {
        proxy.send_json(json!({"jsonrpc": "2.0", "id": id, "method": "tools/call",
                               "params": {"name": "hang", "arguments": {}}}));
    }
    proxy.send_json(json!({"jsonrpc": "2.0", "id": 14, "method": "tools/call",
                           "params": {"name": "crash", "arguments": {}}}));
    for id in 10..15 {
        let answer = proxy.response(&id.to_string());
        assert_eq!(error_code(&answer), -32012, "{answer}");
    }
    let (code, stderr) = proxy.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("upstream server `srv` exited"), "{stderr}");
    let records = ws.records();
    let exited = records
        .iter()
        .filter(|r| r["outcome"] == "upstream_exited")
        .count();
    assert_eq!(exited, 5, "one outcome record per call in flight");
}

#[test]
fn c15_an_upstream_that_exits_after_initialize_fails_the_next_call() {
    let ws = Workspace::new(ALLOW_ALL);
    let mut proxy = Proxy::start(&ws, "a", &fake_upstream(&["--exit-after-initialize"]));
    proxy.handshake("2025-06-18");
    proxy.send_json(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"message": "x"}}}));
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut answered = None;
    while answered.is_none() && !proxy.closed && Instant::now() < deadline {
        answered = proxy
            .next(Duration::from_millis(200))
            .filter(|v| v["id"] == 1);
    }
    if let Some(answer) = answered {
        assert!(answer.get("error").is_some(), "{answer}");
    }
    let (code, stderr) = proxy.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("exited"), "{stderr}");
}

#[test]
fn c21_tool_name_variants_are_denied_and_never_forwarded() {
    let ws = Workspace::new(
        r#"@id("all") permit(principal, action, resource);
           @id("no-write") forbid(principal, action, resource is Tool)
           when { resource.name == "write_file" };"#,
    );
    let root = ws.path("root");
    std::fs::create_dir(&root).unwrap();
    let tap = ws.path("upstream.log");
    let server = vec![npm_bin("mcp-server-filesystem"), root.display().to_string()];
    let mut proxy = Proxy::start(&ws, "a", &tapped(&tap, server));
    proxy.handshake("2025-06-18");
    let target = root.join("written.txt").display().to_string();
    // (name, how it is refused): the real name by policy (-32010); names
    // outside the MCP character set as invalid (-32602); well-formed names
    // the server does not offer as an unknown tool (a tool error).
    let variants = [
        ("write_file", "-32010"),
        ("Write_File", "unknown_tool"),
        ("WRITE_FILE", "unknown_tool"),
        ("write_f\u{0456}le", "-32602"),
        ("\u{FF57}rite_file", "-32602"),
        ("write_file\u{200B}", "-32602"),
        ("write_file ", "-32602"),
        ("srv/write_file", "unknown_tool"),
    ];
    for (id, (name, refusal)) in variants.iter().enumerate() {
        let answer = proxy.request(
            json!(id + 1),
            "tools/call",
            json!({"name": name, "arguments": {"path": target, "content": "pwned"}}),
        );
        let got = match answer["error"]["code"].as_i64() {
            Some(code) => code.to_string(),
            None if answer["result"]["isError"] == true => answer["result"]["_meta"]
                ["warden/decision"]["reason"]
                .as_str()
                .unwrap_or_default()
                .to_owned(),
            None => "not refused".to_owned(),
        };
        assert_eq!(&got, refusal, "{name:?}: {answer}");
    }
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));
    assert!(
        !root.join("written.txt").exists(),
        "a variant reached the server"
    );
    let calls = upstream_lines(&tap)
        .into_iter()
        .filter(|l| l.contains("\"tools/call\""))
        .count();
    assert_eq!(calls, 0, "no tools/call may reach the upstream");
}

#[test]
fn malformed_oversized_and_binary_client_lines_get_errors_and_the_proxy_keeps_serving() {
    let ws = Workspace::new(ALLOW_ALL);
    let tap = ws.path("upstream.log");
    let mut args = ws.proxy_args("a");
    args.extend(["--max-message-bytes".into(), "65536".into()]);
    let mut proxy = Proxy::start_with(&ws, args, &tapped(&tap, everything()));
    proxy.handshake("2025-06-18");
    let hostile = [
        "not json at all".to_owned(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,".to_owned(),
        "{\"jsonrpc\":\"1.0\",\"id\":1,\"method\":\"ping\"}".to_owned(),
        "{\"jsonrpc\":\"2.0\",\"id\":1,\"id\":2,\"method\":\"ping\"}".to_owned(),
        format!(
            "{{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"tools/call\",\"params\":{{\"name\":\"echo\",\"arguments\":{{\"message\":\"{}\"}}}}}}",
            "x".repeat(100_000)
        ),
        "\u{0}\u{1}\u{2}".to_owned(),
        "{\"jsonrpc\":\"2.0\",\"id\":9,\"method\":\"tools/call\",\"params\":{\"name\":\"echo\",\"arguments\":\"not an object\"}}".to_owned(),
    ];
    for line in &hostile {
        proxy.send(line);
        let answer = proxy
            .next_response(Duration::from_secs(10))
            .expect("every malformed line is answered");
        assert!(answer.get("error").is_some(), "{line:.60}: {answer}");
    }
    let pong = proxy.request(json!(2), "ping", json!({}));
    assert_eq!(pong["result"], json!({}));
    let echo = proxy.request(
        json!(3),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "fine"}}),
    );
    assert_eq!(echo["result"]["content"][0]["text"], "Echo: fine");
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));
    let received = upstream_lines(&tap).join("\n");
    assert!(!received.contains("xxxxxxxxxx") && !received.contains("not an object"));
    let refused = ws
        .records()
        .into_iter()
        .filter(|r| r["outcome"] == "rejected")
        .count();
    assert_eq!(refused, hostile.len(), "one record per refused line");
}

#[test]
fn an_unknown_method_is_refused_unless_policy_allows_it_and_then_relayed_intact() {
    let ws = Workspace::new(
        r#"@id("all-known") permit(principal, action, resource) unless { action == Action::"other" };
           @id("allow-tasks") permit(principal, action == Action::"other", resource)
           when { context.method == "tasks/list" };"#,
    );
    let tap = ws.path("upstream.log");
    let mut proxy = Proxy::start(&ws, "a", &tapped(&tap, everything()));
    proxy.handshake("2025-06-18");
    let refused = proxy.request(json!(1), "vendor/secret", json!({"x": 1}));
    assert_eq!(error_code(&refused), -32010);
    proxy.send(
        r#"{"jsonrpc":"2.0","id":2,"method":"tasks/list","params":{"x-unknown":{"kept":[1,2]}}}"#,
    );
    let relayed = proxy.response("2");
    assert!(
        relayed.get("result").is_some() || relayed.get("error").is_some(),
        "{relayed}"
    );
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));
    let received = upstream_lines(&tap);
    assert!(!received.iter().any(|l| l.contains("vendor/secret")));
    let tasks = received
        .iter()
        .find(|l| l.contains("tasks/list"))
        .expect("tasks/list relayed");
    let sent: Value = serde_json::from_str(tasks).unwrap();
    assert_eq!(
        sent["params"]["x-unknown"],
        json!({"kept": [1, 2]}),
        "unknown fields survive"
    );
}

#[test]
fn c15_an_upstream_that_stops_reading_ends_the_session_at_once() {
    let ws = Workspace::new(ALLOW_ALL);
    let mut args = ws.proxy_args("a");
    args.extend(["--call-timeout".into(), "120".into()]);
    let mut proxy = Proxy::start_with(
        &ws,
        args,
        &fake_upstream(&["--close-stdin-after-initialize"]),
    );
    proxy.handshake("2025-06-18");
    // The upstream says so once its input is closed; only then is the call
    // sent, so the test does not race the close.
    let deadline = Instant::now() + Duration::from_secs(20);
    while Instant::now() < deadline {
        let notice = proxy.next(Duration::from_millis(200));
        if notice.is_some_and(|n| n["params"]["data"] == "stdin closed") {
            break;
        }
    }
    let started = Instant::now();
    proxy.send_json(json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                           "params": {"name": "echo", "arguments": {"message": "x"}}}));
    let answer = proxy.response("1");
    assert_eq!(error_code(&answer), -32012, "{answer}");
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "answered only at the timeout"
    );
    let (code, stderr) = proxy.wait_exit(Duration::from_secs(20));
    assert_eq!(code, Some(1));
    assert!(stderr.contains("upstream server `srv` exited"), "{stderr}");
}
