//! The gateway's commands: `warden config`, `warden keys`, and `warden serve`
//! refusing to start on a bad configuration.

use serde_json::Value;

use crate::support::*;

/// A workspace with a `warden.toml` holding `body` after the policies and
/// store lines.
fn with_config(body: &str) -> (Workspace, String) {
    let ws = Workspace::new("@id(\"all\") permit(principal, action, resource);");
    let config = ws.path("warden.toml");
    let text = format!("policies = \"policies\"\nstore = \"decisions.db\"\n{body}");
    std::fs::write(&config, text).unwrap();
    (ws, config.display().to_string())
}

const ONE_SERVER: &str = "[servers.fs]\ncommand = \"cat\"\n";

#[test]
fn config_check_accepts_a_valid_file_with_exit_0() {
    let (ws, config) = with_config(ONE_SERVER);
    let out = warden(&["config", "check", &config]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    assert!(text(&out).contains("valid:"), "{}", text(&out));
    let json = warden(&["config", "check", "--format", "json", &config]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["valid"], true);
    assert_eq!(doc["servers"], serde_json::json!(["fs"]));

    // Named bare, from its own folder: that folder is the base for paths.
    let bare = std::process::Command::new(WARDEN)
        .args(["config", "check", "warden.toml"])
        .current_dir(ws.dir.path())
        .output()
        .unwrap();
    assert_eq!(bare.status.code(), Some(0), "{}", text(&bare));
}

#[test]
fn config_check_lists_every_problem_with_its_place_and_exits_3() {
    let (_ws, config) = with_config(
        "[gateway]\nlisten = \"somewhere\"\n[servers.fs]\ncommand = \"cat\"\nbogus = true\n",
    );
    let out = warden(&["config", "check", &config]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        stdout.contains("warden.toml:4:1: gateway.listen:"),
        "{stdout}"
    );
    assert!(
        stdout.contains("warden.toml:7:1: servers.fs.bogus:"),
        "{stdout}"
    );
    assert!(text(&out).contains("(2 problems)"), "{}", text(&out));
    let json = warden(&["config", "check", "--format", "json", &config]);
    let doc: Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(doc["valid"], false);
    assert_eq!(doc["problems"].as_array().unwrap().len(), 2, "{doc}");
    assert_eq!(doc["problems"][0]["line"], 4, "{doc}");
}

#[test]
fn config_check_refuses_missing_and_binary_files() {
    let out = warden(&["config", "check", "/nonexistent/warden.toml"]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(
        text(&out).contains("cannot read the configuration"),
        "{}",
        text(&out)
    );
    let (ws, config) = with_config("");
    std::fs::write(ws.path("warden.toml"), [0u8, 159, 146, 150]).unwrap();
    let out = warden(&["config", "check", &config]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("not UTF-8"), "{}", text(&out));
}

#[test]
fn config_schema_prints_the_committed_schema() {
    let out = warden(&["config", "schema"]);
    assert_eq!(out.status.code(), Some(0));
    let committed = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../docs/warden.schema.json"
    ))
    .unwrap();
    assert_eq!(out.stdout, committed);
}

#[test]
fn keys_are_printed_once_listed_without_the_key_and_revoked() {
    let (_ws, config) = with_config(ONE_SERVER);
    let out = warden(&[
        "keys",
        "create",
        "--config",
        &config,
        "--agent",
        "claude",
        "--acting-for",
        "alice",
    ]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out));
    let key = String::from_utf8_lossy(&out.stdout).trim().to_owned();
    assert!(key.starts_with("wdn_") && key.len() > 60, "{key}");

    let list = warden(&["keys", "list", "--config", &config, "--format", "json"]);
    let listed = String::from_utf8_lossy(&list.stdout).to_string();
    assert!(!listed.contains(&key), "a listing must never show the key");
    let entry: Value = serde_json::from_str(listed.lines().next().unwrap()).unwrap();
    assert_eq!(entry["principal"]["id"], "claude");
    assert_eq!(entry["acting_for"], "alice");
    assert_eq!(entry["revoked"], Value::Null);

    let id = entry["key_id"].as_str().unwrap();
    let revoke = warden(&["keys", "revoke", id, "--config", &config]);
    assert_eq!(revoke.status.code(), Some(0), "{}", text(&revoke));
    let again = warden(&["keys", "revoke", id, "--config", &config]);
    assert_eq!(again.status.code(), Some(1), "{}", text(&again));
    assert!(text(&again).contains("no active key"), "{}", text(&again));
}

#[test]
fn keys_refuse_ids_that_cannot_be_read_back() {
    let (_ws, config) = with_config(ONE_SERVER);
    for bad in ["", "a\nb", &"x".repeat(300)] {
        let out = warden(&["keys", "create", "--config", &config, "--agent", bad]);
        assert_eq!(out.status.code(), Some(1), "{bad:?}: {}", text(&out));
        assert!(text(&out).contains("`--agent` must be"), "{}", text(&out));
    }
}

#[test]
fn serve_refuses_an_invalid_configuration_with_exit_3() {
    let (_ws, config) = with_config("[servers.fs]\nurl = \"ftp://x\"\n");
    let out = warden(&["serve", "--config", &config]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("servers.fs.url"), "{}", text(&out));
    assert!(text(&out).contains("not starting"), "{}", text(&out));
}

#[test]
fn serve_refuses_invalid_policies_with_exit_3() {
    let (ws, config) = with_config(ONE_SERVER);
    std::fs::write(
        ws.path("policies/test.cedar"),
        "permit(principal, action resource);",
    )
    .unwrap();
    let out = warden(&["serve", "--config", &config]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out));
    assert!(text(&out).contains("test.cedar:1:"), "{}", text(&out));
}

#[test]
fn serve_says_so_when_its_port_is_taken() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    let (_ws, config) = with_config(&format!(
        "[gateway]\nlisten = \"127.0.0.1:{port}\"\n{ONE_SERVER}"
    ));
    let out = warden(&["serve", "--config", &config]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out));
    assert!(
        text(&out).contains(&format!("cannot listen on `127.0.0.1:{port}`")),
        "{}",
        text(&out)
    );
}

#[test]
fn tools_commands_explain_what_they_cannot_find_and_list_nothing_on_a_new_store() {
    let ws = Workspace::new("@id(\"all\") permit(principal, action, resource);");
    let store = ws.store();
    let list = warden(&["tools", "list", "--store", &store]);
    assert_eq!(list.status.code(), Some(0), "{}", text(&list));
    assert!(list.stdout.is_empty());
    for command in ["diff", "accept", "reject"] {
        let out = warden(&["tools", command, "fs", "no\u{1b}[2Jpe", "--store", &store]);
        assert_eq!(out.status.code(), Some(1), "{command}: {}", text(&out));
        let said = text(&out);
        assert!(said.contains("no held definition of tool"), "{said}");
        assert!(said.contains("warden tools list --held"), "{said}");
        assert!(
            !said.contains('\u{1b}'),
            "control characters are escaped: {said:?}"
        );
    }
    let missing = warden(&["tools", "accept", "fs"]);
    assert_eq!(missing.status.code(), Some(1), "{}", text(&missing));
    assert!(text(&missing).contains("<TOOL>"), "{}", text(&missing));
}
