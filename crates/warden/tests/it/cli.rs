//! The command line: exit codes, messages and hostile arguments.

use std::process::Command;

use crate::support::*;

/// `warden policy validate DIR` must fail with exit 3 and say `needle`.
fn assert_invalid(dir: &str, needle: &str) {
    let out = warden(&["policy", "validate", dir]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains(needle), "{}", text(&out));
}

#[test]
fn policy_validate_accepts_a_valid_directory_with_exit_0() {
    let ws = Workspace::new("@id(\"x\") permit(principal, action, resource);");
    let out = warden(&["policy", "validate", &ws.policies()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid: 1 policy in"), "{}", text(&out));
}

#[test]
fn policy_validate_reports_every_problem_with_file_line_column_and_exit_3() {
    let ws = Workspace::new("permit(principal, action, resource);\n\nforbid(principal, action == Action::\"tools/cal\", resource);\n");
    std::fs::write(
        ws.path("policies/second.cedar"),
        "permit(principal, action, resource) when { context.nope };\n",
    )
    .unwrap();
    std::fs::write(
        ws.path("policies/broken.cedar"),
        "permit(principal, action resource);\n",
    )
    .unwrap();
    let out = warden(&["policy", "validate", &ws.policies()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("test.cedar:3:"), "{stdout}");
    assert!(stdout.contains("second.cedar:1:"), "{stdout}");
    assert!(stdout.contains("broken.cedar:1:"), "{stdout}");
    let json = warden(&["policy", "validate", "--format", "json", &ws.policies()]);
    let doc: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["problems"].as_array().unwrap().len(), 3, "{doc}");

    // An unreadable file is one more problem, not the only one; every path
    // is given as the directory was, so it opens from where the command ran.
    std::fs::write(ws.path("policies/binary.cedar"), [0xff, 0xfe]).unwrap();
    let out = warden(&["policy", "validate", &ws.policies()]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let dir = ws.policies();
    for located in [
        format!("{dir}/binary.cedar:1:1: file is not valid UTF-8"),
        format!("{dir}/test.cedar:3:"),
        format!("{dir}/second.cedar:1:"),
        format!("{dir}/broken.cedar:1:"),
    ] {
        assert!(stdout.contains(&located), "{located} in {stdout}");
    }
}

#[test]
fn policy_validate_refuses_missing_empty_and_binary_inputs_with_exit_3() {
    let ws = Workspace::new("permit(principal, action, resource);");
    let missing = warden(&["policy", "validate", &ws.path("nope").display().to_string()]);
    assert_eq!(missing.status.code(), Some(3), "{}", text(&missing));
    let empty = ws.path("empty");
    std::fs::create_dir(&empty).unwrap();
    let out = warden(&["policy", "validate", &empty.display().to_string()]);
    assert_eq!(out.status.code(), Some(3));
    assert!(text(&out).contains("no `.cedar` files"), "{}", text(&out));
    std::fs::write(ws.path("policies/bin.cedar"), [0xff, 0xfe, 0x00, 0x41]).unwrap();
    assert_invalid(&ws.policies(), "bin.cedar:1:1: file is not valid UTF-8");
    std::fs::write(
        ws.path("policies/bin.cedar"),
        "permit(principal, action, resource);",
    )
    .unwrap();
    std::fs::write(ws.path("policies/entities.json"), "{not json").unwrap();
    assert_invalid(&ws.policies(), "entities.json:1:2: invalid JSON");
}

#[test]
fn proxy_with_invalid_policies_exits_3_before_starting_the_server() {
    let ws = Workspace::new("permit(principal, action, resource) when { context.nope };");
    let marker = ws.path("started");
    let out = warden(&[
        "proxy",
        "--policies",
        &ws.policies(),
        "--agent",
        "a",
        "--store",
        &ws.store(),
        "--",
        "touch",
        &marker.display().to_string(),
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("test.cedar:1:"), "{}", text(&out));
    assert!(!marker.exists(), "the upstream must not start");
}

#[test]
fn proxy_explains_missing_arguments_with_exit_1() {
    let ws = Workspace::new("permit(principal, action, resource);");
    let no_command = warden(&["proxy", "--policies", &ws.policies(), "--agent", "a"]);
    assert_eq!(no_command.status.code(), Some(1));
    assert!(
        text(&no_command).contains("no upstream server to run"),
        "{}",
        text(&no_command)
    );
    assert!(text(&no_command).contains("help:"), "{}", text(&no_command));
    let no_agent = warden(&["proxy", "--policies", &ws.policies(), "--", "true"]);
    assert_eq!(no_agent.status.code(), Some(1));
    assert!(
        text(&no_agent).contains("no agent id"),
        "{}",
        text(&no_agent)
    );
    let bad_server = warden(&[
        "proxy",
        "--policies",
        &ws.policies(),
        "--agent",
        "a",
        "--server-name",
        "a/b",
        "--",
        "true",
    ]);
    assert_eq!(bad_server.status.code(), Some(1));
    let missing = warden(&[
        "proxy",
        "--policies",
        &ws.policies(),
        "--agent",
        "a",
        "--store",
        &ws.store(),
        "--",
        "/nonexistent/mcp-server",
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("cannot start the upstream server"),
        "{}",
        text(&missing)
    );
}

#[test]
fn usage_errors_exit_1_and_help_exits_0() {
    let bad = warden(&["proxy", "--call-timeout", "0"]);
    assert_eq!(bad.status.code(), Some(1), "{}", text(&bad));
    let unknown = warden(&["frobnicate"]);
    assert_eq!(unknown.status.code(), Some(1));
    let help = warden(&["--help"]);
    assert_eq!(help.status.code(), Some(0));
    assert!(text(&help).contains("proxy"));
    let proxy_help = warden(&["proxy", "--help"]);
    assert!(
        text(&proxy_help).contains("warden proxy --policies"),
        "{}",
        text(&proxy_help)
    );
}

#[test]
fn config_file_form_runs_the_named_server_and_rejects_unknown_keys() {
    let ws = Workspace::new("@id(\"all\") permit(principal, action, resource);");
    let config = ws.path("warden.toml");
    // A command and a log named relative to the configuration's folder, and
    // the proxy run from elsewhere: both resolve as `warden serve` does.
    std::fs::create_dir(ws.path("bin")).unwrap();
    let script = ws.path("bin/up");
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\nexec '{}' '{}' \"$@\"\n",
            python(),
            peer_script("fake_upstream.py")
        ),
    )
    .unwrap();
    std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    std::fs::write(
        &config,
        "policies = \"policies\"\nstore = \"decisions.db\"\n[identity]\nagent = \"cfg-agent\"\n\
         [servers.fake]\ncommand = \"bin/up\"\nargs = [\"--log\", \"received.log\"]\n\
         env = { FAKE_TOKEN = \"${WARDEN_TEST_TOKEN}\" }\n",
    )
    .unwrap();
    let mut child = Command::new(WARDEN)
        .args([
            "proxy",
            "--config",
            &config.display().to_string(),
            "--server",
            "fake",
        ])
        .current_dir("/")
        .env("WARDEN_TEST_TOKEN", "obviously-fake-token")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    {
        use std::io::Write;
        let stdin = child.stdin.as_mut().unwrap();
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"0"}}}}}}"#).unwrap();
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"cfg"}}}}}}"#).unwrap();
    }
    drop(child.stdin.take());
    let out = child.wait_with_output().unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("Echo: cfg"), "{stdout}");
    assert!(upstream_lines(&ws.path("received.log"))
        .iter()
        .any(|l| l.contains("Echo") || l.contains("cfg")));
    let records = ws.records();
    assert!(records
        .iter()
        .any(|r| r["principal"] == "Agent::\"cfg-agent\"" && r["server"] == "fake"));

    std::fs::write(&config, "policies = \"policies\"\npolcies = 1\n").unwrap();
    let out = warden(&[
        "proxy",
        "--config",
        &config.display().to_string(),
        "--server",
        "fake",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("warden.toml:2:1"), "{}", text(&out));

    std::fs::write(
        &config,
        "[servers.fake]\ncommand = \"true\"\nenv = { T = \"${WARDEN_TEST_UNSET_VAR_X}\" }\n",
    )
    .unwrap();
    let out = warden(&[
        "proxy",
        "--config",
        &config.display().to_string(),
        "--server",
        "fake",
        "--policies",
        &ws.policies(),
        "--agent",
        "a",
        "--store",
        &ws.store(),
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out).contains("`WARDEN_TEST_UNSET_VAR_X` it refers to is not set"),
        "{}",
        text(&out)
    );
}

#[test]
fn audit_tail_shows_both_decisions_and_refuses_a_missing_store() {
    let ws = Workspace::new(
        "@id(\"all\") permit(principal, action, resource);\n\
         @id(\"no-env\") forbid(principal, action, resource is Tool) when { resource.name == \"get-env\" };",
    );
    let mut proxy = Proxy::start(
        &ws,
        "a",
        &[npm_bin("mcp-server-everything"), "stdio".into()],
    );
    proxy.handshake("2025-06-18");
    proxy.request(
        serde_json::json!(1),
        "tools/call",
        serde_json::json!({"name": "echo", "arguments": {"message": "x"}}),
    );
    proxy.request(
        serde_json::json!(2),
        "tools/call",
        serde_json::json!({"name": "get-env", "arguments": {}}),
    );
    proxy.finish();
    let out = warden(&["audit", "tail", "--store", &ws.store()]);
    assert_eq!(out.status.code(), Some(0));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("allow") && l.contains("srv/echo")),
        "{stdout}"
    );
    assert!(
        stdout
            .lines()
            .any(|l| l.contains("deny") && l.contains("srv/get-env") && l.contains("no-env")),
        "{stdout}"
    );

    let missing = warden(&[
        "audit",
        "tail",
        "--store",
        &ws.path("none.db").display().to_string(),
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("no decision log"),
        "{}",
        text(&missing)
    );
    let zero = warden(&["audit", "tail", "-n", "0", "--store", &ws.store()]);
    assert_eq!(zero.status.code(), Some(0));
    assert!(zero.stdout.is_empty() || text(&zero).contains("no decision records"));
    let negative = warden(&["audit", "tail", "-n", "-1", "--store", &ws.store()]);
    assert_eq!(negative.status.code(), Some(1));
}

#[test]
fn requests_written_before_the_client_closes_are_all_answered() {
    use std::io::{Read, Write};
    let ws = Workspace::new("@id(\"all\") permit(principal, action, resource);");
    let mut child = Command::new(WARDEN)
        .args(ws.proxy_args("a"))
        .arg("--")
        .args([npm_bin("mcp-server-everything"), "stdio".into()])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":1,"method":"initialize","params":{{"protocolVersion":"2025-06-18","capabilities":{{}},"clientInfo":{{"name":"t","version":"0"}}}}}}"#).unwrap();
    writeln!(
        stdin,
        r#"{{"jsonrpc":"2.0","method":"notifications/initialized"}}"#
    )
    .unwrap();
    writeln!(stdin, r#"{{"jsonrpc":"2.0","id":2,"method":"tools/list"}}"#).unwrap();
    for id in 3..6 {
        writeln!(stdin, r#"{{"jsonrpc":"2.0","id":{id},"method":"tools/call","params":{{"name":"echo","arguments":{{"message":"m{id}"}}}}}}"#).unwrap();
    }
    drop(stdin);
    let mut stdout = String::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut stdout)
        .unwrap();
    assert!(child.wait().unwrap().success());
    for id in 1..6 {
        let answered = stdout.lines().any(|l| {
            let v: serde_json::Value = serde_json::from_str(l).unwrap();
            v["id"] == id && v.get("result").is_some()
        });
        assert!(answered, "request {id} was not answered: {stdout}");
    }
}

#[test]
fn audit_tail_shows_hostile_names_escaped_so_no_line_is_forged() {
    let ws = Workspace::new("@id(\"all\") permit(principal, action, resource);");
    let mut proxy = Proxy::start(
        &ws,
        "a",
        &[npm_bin("mcp-server-everything"), "stdio".into()],
    );
    proxy.handshake("2025-06-18");
    let forged = "x\n2026-12-03 19:44:54.184  allow  tools/call  srv/get-env  permitted \u{1b}[2J";
    let answer = proxy.request(
        serde_json::json!(1),
        "tools/call",
        serde_json::json!({"name": forged, "arguments": {}}),
    );
    assert!(answer.get("error").is_some());
    proxy.finish();
    let out = warden(&["audit", "tail", "-n", "1000", "--store", &ws.store()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(stdout.lines().count(), ws.records().len(), "{stdout}");
    assert!(!stdout.contains('\u{1b}'), "{stdout}");
    assert!(stdout.contains(r"\u{a}2026-12-03"), "{stdout}");
}

#[test]
fn policy_validate_refuses_special_files_and_names_bad_entities() {
    let ws = Workspace::new("permit(principal, action, resource);");
    let fifo = ws.path("policies/pipe.cedar");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    assert_invalid(&ws.policies(), "pipe.cedar:1:1: not a regular file");
    std::fs::remove_file(&fifo).unwrap();

    std::fs::write(
        ws.path("policies/entities.json"),
        r#"[{"uid":{"type":"Human","id":"alice"},"attrs":{"nick":"a"},"parents":[]}]"#,
    )
    .unwrap();
    assert_invalid(&ws.policies(), "attribute `nick` on `Human::\"alice\"`");
}

#[test]
fn proxy_warns_when_the_policies_only_name_other_servers() {
    let ws = Workspace::new(
        "@id(\"fs-only\") forbid(principal, action, resource in Server::\"fs\");\n\
         @id(\"all\") permit(principal, action, resource);",
    );
    let mut proxy = Proxy::start(&ws, "a", &fake_upstream(&[]));
    proxy.handshake("2025-06-18");
    let (_, stderr) = proxy.finish();
    assert!(
        stderr.contains("the policies name other servers"),
        "{stderr}"
    );
    assert!(stderr.contains("\"fs\""), "{stderr}");
}
