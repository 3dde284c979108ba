//! Real clients against real servers through `warden proxy`: the official
//! Python SDK client (both protocol generations' negotiation), the MCP
//! inspector CLI, and server-filesystem, server-everything and
//! server-memory.

use std::process::Command;

use serde_json::{json, Value};

use crate::support::*;

const READ_ONLY: &str = r#"
@id("list") permit(principal == Agent::"reader", action in [Action::"tools/list", Action::"resources/list", Action::"prompts/list"], resource);
@id("read-tools")
permit(principal == Agent::"reader", action == Action::"tools/call", resource is Tool)
when { ["read_text_file", "list_directory", "list_allowed_directories"].contains(resource.name) };
"#;

fn op(doc: &Value, index: usize) -> &Value {
    &doc["ops"][index]
}

fn names(list: &Value, field: &str) -> Vec<String> {
    list[field]
        .as_array()
        .unwrap_or_else(|| panic!("no `{field}` in {list}"))
        .iter()
        .map(|n| n.as_str().unwrap().to_owned())
        .collect()
}

#[test]
fn sdk_client_sees_allowed_calls_answered_and_denied_calls_refused_on_server_filesystem() {
    let ws = Workspace::new(READ_ONLY);
    let root = ws.path("root");
    std::fs::create_dir(&root).unwrap();
    std::fs::write(root.join("hello.txt"), "hello from the real server").unwrap();
    let tap = ws.path("upstream.log");
    let server = tapped(
        &tap,
        vec![npm_bin("mcp-server-filesystem"), root.display().to_string()],
    );
    let read = json!({"path": root.join("hello.txt")}).to_string();
    let write = json!({"path": root.join("evil.txt"), "content": "x"}).to_string();

    let doc = sdk_client(
        &[
            "--list",
            "--call",
            "read_text_file",
            &read,
            "--call",
            "write_file",
            &write,
        ],
        "auto",
        &proxy_command(&ws, "reader", &server),
    );
    let tools = names(op(&doc, 0), "tools");
    assert!(tools.contains(&"read_text_file".to_owned()), "{tools:?}");
    assert!(
        !tools.contains(&"write_file".to_owned()),
        "write_file must be hidden: {tools:?}"
    );
    assert_eq!(op(&doc, 1)["isError"], false);
    assert_eq!(op(&doc, 1)["text"], "hello from the real server");
    let denied = &op(&doc, 2)["error"];
    assert_eq!(denied["code"], -32010, "{doc}");
    assert!(denied["message"]
        .as_str()
        .unwrap()
        .contains("denied by policy"));

    // The denied call never reached the server: nothing was written, and
    // the server saw no write_file.
    assert!(!root.join("evil.txt").exists());
    assert!(!upstream_lines(&tap)
        .join("\n")
        .contains("write_file\",\"arguments"));
    // The SDK probed the 2026-07-28 generation first and fell back.
    let received = upstream_lines(&tap);
    let first = received.first().map(String::as_str).unwrap_or_default();
    assert!(first.contains("server/discover"), "{first}");
    assert!(received.iter().any(|l| l.contains("\"initialize\"")));
    assert_eq!(doc["protocolVersion"], "2025-11-25");

    let records = ws.records();
    let decisions = of_kind(&records, "decision");
    assert!(decisions
        .iter()
        .any(|r| r["tool"] == "read_text_file" && r["decision"] == "allow"));
    let deny = decisions
        .iter()
        .find(|r| r["tool"] == "write_file")
        .expect("the denied call is recorded");
    assert_eq!(deny["decision"], "deny");
    assert_eq!(deny["reason"], "no_permit");
    assert_eq!(deny["principal"], "Agent::\"reader\"");
    assert!(deny["args_digest"].as_str().unwrap().starts_with("sha256:"));
    assert_eq!(deny["args_redacted"]["content"], "<string:1>");
    assert!(records
        .iter()
        .any(|r| r["kind"] == "outcome" && r["tool"] == "read_text_file"));
}

#[test]
fn sdk_client_in_legacy_mode_negotiates_without_the_probe() {
    let ws = Workspace::new(r#"@id("all") permit(principal, action, resource);"#);
    let tap = ws.path("upstream.log");
    let server = tapped(&tap, vec![npm_bin("mcp-server-everything"), "stdio".into()]);
    let doc = sdk_client(
        &["--list", "--call", "get-sum", r#"{"a": 40, "b": 2}"#],
        "legacy",
        &proxy_command(&ws, "a", &server),
    );
    assert_eq!(op(&doc, 1)["text"], "The sum of 40 and 2 is 42.");
    assert!(!upstream_lines(&tap).join("\n").contains("server/discover"));
}

#[test]
fn directory_confinement_holds_against_path_tricks_on_the_real_server() {
    // The policy names the real directory, so it is written below.
    let ws = Workspace::new("");
    let root = ws.path("root");
    let data = root.join("data");
    std::fs::create_dir_all(&data).unwrap();
    std::fs::create_dir_all(root.join("data_evil")).unwrap();
    std::fs::write(data.join("ok.txt"), "inside").unwrap();
    std::fs::write(root.join("data_evil/secret.txt"), "outside").unwrap();
    std::fs::write(
        ws.path("policies/test.cedar"),
        format!(
            r#"@id("list") permit(principal, action == Action::"tools/list", resource);
               @id("inside-data")
               permit(principal, action == Action::"tools/call", resource is Tool)
               when {{ context.args.paths_within.contains("{}") }};"#,
            data.display()
        ),
    )
    .unwrap();
    let server = vec![npm_bin("mcp-server-filesystem"), root.display().to_string()];
    let d = data.display().to_string();
    let cases: Vec<(String, bool)> = vec![
        (format!("{d}/ok.txt"), true),
        (format!("{d}//./ok.txt"), true),
        (format!("{d}/sub/../ok.txt"), true),
        (format!("{d}_evil/secret.txt"), false),
        (format!("{d}/../data_evil/secret.txt"), false),
        (format!("{d}/./../../data_evil/secret.txt"), false),
        ("data/ok.txt".to_owned(), false),
        (format!("{d}/%2e%2e/data_evil/secret.txt"), true),
    ];
    let mut ops: Vec<String> = Vec::new();
    for (path, _) in &cases {
        ops.push("--call".into());
        ops.push("read_text_file".into());
        ops.push(json!({ "path": path }).to_string());
    }
    let ops: Vec<&str> = ops.iter().map(String::as_str).collect();
    let doc = sdk_client(&ops, "legacy", &proxy_command(&ws, "a", &server));
    for (index, (path, allowed)) in cases.iter().enumerate() {
        let result = op(&doc, index);
        let denied = result["error"]["code"] == -32010;
        assert_eq!(!denied, *allowed, "{path}: {result}");
        assert!(
            !result.to_string().contains("outside"),
            "{path} leaked: {result}"
        );
    }
}

#[test]
fn server_memory_list_is_filtered_by_the_call_policy() {
    let ws = Workspace::new(
        r#"@id("all") permit(principal, action, resource);
           @id("no-deletes") forbid(principal, action == Action::"tools/call", resource is Tool)
           when { resource.name like "delete_*" };"#,
    );
    let memory = ws.path("memory.jsonl");
    let doc = sdk_client(
        &[
            "--env",
            &format!("MEMORY_FILE_PATH={}", memory.display()),
            "--list",
            "--call",
            "create_entities",
            r#"{"entities":[{"name":"n","entityType":"t","observations":["o"]}]}"#,
            "--call",
            "delete_entities",
            r#"{"entityNames":["n"]}"#,
        ],
        "legacy",
        &proxy_command(&ws, "a", &[npm_bin("mcp-server-memory")]),
    );
    let tools = names(op(&doc, 0), "tools");
    assert!(tools.contains(&"create_entities".to_owned()), "{tools:?}");
    assert!(tools.iter().all(|t| !t.starts_with("delete_")), "{tools:?}");
    assert_eq!(op(&doc, 1)["isError"], false, "{doc}");
    assert_eq!(op(&doc, 2)["error"]["code"], -32010, "{doc}");
    let stored = std::fs::read_to_string(&memory).unwrap_or_default();
    assert!(
        stored.contains("\"n\""),
        "the entity survives the denied delete: {stored}"
    );
}

#[test]
fn inspector_cli_lists_and_calls_through_the_proxy() {
    let ws = Workspace::new(
        r#"@id("all") permit(principal, action, resource);
           @id("no-env") forbid(principal, action == Action::"tools/call", resource is Tool)
           when { resource.name == "get-env" };
           @id("no-forbidden-echo") forbid(principal, action == Action::"tools/call", resource is Tool)
           when { resource.name == "echo" && context.args.strings.hasTag("message") &&
                  context.args.strings.getTag("message") == "forbidden" };"#,
    );
    let home = ws.path("home");
    std::fs::create_dir(&home).unwrap();
    let proxy = proxy_command(
        &ws,
        "a",
        &[npm_bin("mcp-server-everything"), "stdio".into()],
    );
    let inspector = |extra: &[&str]| {
        let out = Command::new(npm_bin("mcp-inspector"))
            .arg("--cli")
            .args(&proxy)
            .args(extra)
            .env("HOME", &home)
            .output()
            .unwrap();
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stdout).into_owned(),
            String::from_utf8_lossy(&out.stderr).into_owned(),
        )
    };
    let (code, stdout, stderr) = inspector(&["--method", "tools/list"]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    let list: Value = serde_json::from_str(&stdout).unwrap();
    let names: Vec<&str> = list["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap())
        .collect();
    assert!(
        names.contains(&"echo") && !names.contains(&"get-env"),
        "{names:?}"
    );

    let (code, stdout, stderr) = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "echo",
        "--tool-arg",
        "message=inspected",
    ]);
    assert_eq!(code, Some(0), "{stdout}{stderr}");
    assert!(stdout.contains("Echo: inspected"), "{stdout}");

    let (code, stdout, stderr) = inspector(&[
        "--method",
        "tools/call",
        "--tool-name",
        "echo",
        "--tool-arg",
        "message=forbidden",
    ]);
    assert_ne!(code, Some(0), "a denied call must fail: {stdout}");
    let output = format!("{stdout}{stderr}");
    assert!(
        output.contains("denied by policy") && output.contains("no-forbidden-echo"),
        "{output}"
    );
}

#[test]
fn a_call_is_refused_when_its_decision_record_cannot_be_written() {
    let ws = Workspace::new(r#"@id("all") permit(principal, action, resource);"#);
    let tap = ws.path("upstream.log");
    let mut proxy = Proxy::start(
        &ws,
        "a",
        &tapped(&tap, vec![npm_bin("mcp-server-everything"), "stdio".into()]),
    );
    proxy.handshake("2025-06-18");
    proxy.request(json!(1), "tools/list", json!({}));
    // Another process holds the database's write lock for longer than the
    // store waits.
    let mut locker = Command::new(python())
        .args([
            "-c",
            "import sqlite3,sys,time\nc=sqlite3.connect(sys.argv[1],isolation_level=None)\nc.execute('BEGIN EXCLUSIVE')\nprint('locked',flush=True)\ntime.sleep(12)\n",
            &ws.store(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(locker.stdout.as_mut().unwrap()),
        &mut line,
    )
    .unwrap();
    assert_eq!(line.trim(), "locked");
    let answer = proxy.request(
        json!(2),
        "tools/call",
        json!({"name": "echo", "arguments": {"message": "unrecorded"}}),
    );
    let _ = locker.kill();
    let _ = locker.wait();
    assert_eq!(answer["error"]["code"], -32013, "{answer}");
    assert!(!upstream_lines(&tap).join("\n").contains("unrecorded"));
    let (code, _) = proxy.finish();
    assert_eq!(code, Some(0));
}
