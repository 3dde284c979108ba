//! The configuration checker: every problem in one pass, each at its path
//! and place; secrets never inline and never echoed; hostile files refused.

use std::path::{Path, PathBuf};

use super::*;

struct File {
    dir: tempfile::TempDir,
    path: PathBuf,
}

fn file(text: &str) -> File {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("warden.toml");
    std::fs::write(&path, text).unwrap();
    File { dir, path }
}

fn serve_problems(text: &str) -> Vec<String> {
    let f = file(text);
    match load_for_serve(&f.path) {
        Ok(_) => Vec::new(),
        Err(problems) => problems
            .lines()
            .map(|l| l.replace(&f.path.display().to_string(), "FILE"))
            .collect(),
    }
}

fn has(problems: &[String], needle: &str) -> bool {
    problems.iter().any(|p| p.contains(needle))
}

const MINIMAL: &str = "policies = \"p\"\n[servers.fs]\ncommand = \"cat\"\n";

#[test]
fn a_minimal_gateway_file_is_valid_with_safe_defaults() {
    let f = file(MINIMAL);
    std::fs::create_dir(f.dir.path().join("p")).unwrap();
    let (gateway, settings) = load_for_serve(&f.path).unwrap();
    assert_eq!(gateway.listen.to_string(), "127.0.0.1:8080");
    assert!(gateway.auth.api_keys);
    assert!(gateway.auth.jwt.is_none());
    assert!(gateway.allowed_hosts.contains(&"127.0.0.1:8080".to_owned()));
    assert_eq!(settings.policies, Some(f.dir.path().join("p")));
}

#[test]
fn every_problem_is_reported_in_one_pass_with_its_path_and_place() {
    let problems = serve_problems(
        "polices = \"p\"\n\
         [gateway]\nlisten = \"nowhere\"\nmax_sessions = 0\n\
         [servers.fs]\ncommand = \"cat\"\nurl = \"http://127.0.0.1:1/mcp\"\n\
         [servers.web]\nurl = \"ftp://x\"\nbogus = 1\n",
    );
    assert!(has(&problems, "FILE:1:1: polices:"), "{problems:#?}");
    assert!(
        has(&problems, "gateway.listen: `nowhere` is not an IP address"),
        "{problems:#?}"
    );
    assert!(
        has(&problems, "gateway.max_sessions: is 0"),
        "{problems:#?}"
    );
    assert!(
        has(&problems, "servers.fs: give either `command`"),
        "{problems:#?}"
    );
    assert!(
        has(&problems, "servers.web.url: must be http or https"),
        "{problems:#?}"
    );
    assert!(has(&problems, "servers.web.bogus"), "{problems:#?}");
}

#[test]
fn values_of_the_wrong_type_are_named_and_the_rest_still_checked() {
    let problems = serve_problems(
        "policies = 3\n[limits]\ncall_timeout_secs = \"soon\"\n[servers.fs]\ncommand = \"cat\"\n",
    );
    assert!(has(&problems, "policies"), "{problems:#?}");
    assert!(has(&problems, "limits.call_timeout_secs"), "{problems:#?}");
}

#[test]
fn inline_credentials_are_refused_without_being_echoed() {
    let problems = serve_problems(
        "[servers.web]\nurl = \"https://mcp.example/mcp\"\n\
         headers = { Authorization = \"Bearer sk-live-not-a-real-secret\" }\n",
    );
    assert!(
        has(&problems, "servers.web.headers.Authorization"),
        "{problems:#?}"
    );
    assert!(
        !has(&problems, "sk-live-not-a-real-secret"),
        "{problems:#?}"
    );
    let problems = serve_problems(
        "[servers.web]\nurl = \"https://mcp.example/mcp\"\nbearer_token = \"plain-token-value\"\n",
    );
    assert!(has(&problems, "servers.web.bearer_token"), "{problems:#?}");
    assert!(!has(&problems, "plain-token-value"), "{problems:#?}");
}

#[test]
fn secret_references_name_what_is_missing_never_a_value() {
    let problems = serve_problems(
        "[servers.web]\nurl = \"https://mcp.example/mcp\"\n\
         bearer_token = \"${WARDEN_TEST_UNSET_TOKEN_VAR}\"\n\
         [servers.fs]\ncommand = \"cat\"\nenv = { KEY = \"file:missing.txt\" }\n",
    );
    assert!(
        has(
            &problems,
            "`WARDEN_TEST_UNSET_TOKEN_VAR` it refers to is not set"
        ),
        "{problems:#?}"
    );
    assert!(
        has(
            &problems,
            "servers.fs.env.KEY: cannot read the secret file `missing.txt`"
        ),
        "{problems:#?}"
    );
}

#[test]
fn a_file_reference_is_read_relative_to_the_configuration() {
    let f = file(
        "[servers.web]\nurl = \"https://mcp.example/mcp\"\nbearer_token = \"file:token.txt\"\n",
    );
    std::fs::write(f.dir.path().join("token.txt"), "test-token-123\n").unwrap();
    let (gateway, _) = load_for_serve(&f.path).unwrap();
    let spec = format!("{:?}", gateway.servers["web"].upstream);
    assert!(spec.contains("Bearer test-token-123"), "{spec}");
}

#[test]
fn jwt_settings_refuse_none_and_shared_secret_algorithms() {
    let problems = serve_problems(
        "[auth.jwt]\nissuer = \"https://issuer.example\"\njwks_url = \"https://issuer.example/jwks\"\n\
         algorithms = [\"none\", \"HS256\", \"RS256\"]\n[servers.fs]\ncommand = \"cat\"\n",
    );
    assert!(has(&problems, "auth.jwt.algorithms[0]"), "{problems:#?}");
    assert!(has(&problems, "auth.jwt.algorithms[1]"), "{problems:#?}");
    assert!(!has(&problems, "auth.jwt.algorithms[2]"), "{problems:#?}");
}

#[test]
fn jwt_settings_need_one_key_source_and_a_trusted_url() {
    let both = serve_problems(
        "[auth.jwt]\nissuer = \"https://i.example\"\njwks_file = \"k.json\"\n\
         jwks_url = \"https://i.example/k\"\n[servers.fs]\ncommand = \"cat\"\n",
    );
    assert!(
        has(&both, "give either `jwks_file` or `jwks_url`"),
        "{both:#?}"
    );
    let plain_http = serve_problems(
        "[auth.jwt]\nissuer = \"https://i.example\"\njwks_url = \"http://i.example/k\"\n\
         [servers.fs]\ncommand = \"cat\"\n",
    );
    assert!(
        has(&plain_http, "auth.jwt.jwks_url: must be https"),
        "{plain_http:#?}"
    );
    let no_issuer = serve_problems(
        "[auth.jwt]\njwks_url = \"https://i.example/k\"\n[servers.fs]\ncommand = \"cat\"\n",
    );
    assert!(
        has(&no_issuer, "auth.jwt.issuer: is required"),
        "{no_issuer:#?}"
    );
}

#[test]
fn turning_every_authentication_off_is_refused() {
    let problems = serve_problems("[auth]\napi_keys = false\n[servers.fs]\ncommand = \"cat\"\n");
    assert!(
        has(&problems, "neither `api_keys` nor `jwt` is on"),
        "{problems:#?}"
    );
}

#[test]
fn a_public_listener_needs_its_allowed_hosts() {
    let problems =
        serve_problems("[gateway]\nlisten = \"0.0.0.0:8080\"\n[servers.fs]\ncommand = \"cat\"\n");
    assert!(
        has(&problems, "gateway.allowed_hosts: is required"),
        "{problems:#?}"
    );
}

#[test]
fn server_names_that_people_could_confuse_are_refused() {
    let problems = serve_problems(
        "[servers.my-server]\ncommand = \"cat\"\n[servers.My_Server]\ncommand = \"cat\"\n",
    );
    assert!(has(&problems, "is ambiguous with"), "{problems:#?}");
    let problems = serve_problems("[servers.\"a b\"]\ncommand = \"cat\"\n");
    assert!(has(&problems, "server name `a b`"), "{problems:#?}");
}

#[test]
fn a_gateway_without_servers_is_refused() {
    let problems = serve_problems("policies = \"p\"\n");
    assert!(has(&problems, "no servers"), "{problems:#?}");
}

#[test]
fn syntax_errors_stop_at_once_with_their_place() {
    let problems = serve_problems("[servers.fs\ncommand = \"cat\"\n");
    assert_eq!(problems.len(), 1, "{problems:#?}");
    assert!(problems[0].starts_with("FILE:1:"), "{problems:#?}");
    assert!(problems[0].contains("invalid TOML"), "{problems:#?}");
}

#[test]
fn oversized_and_binary_files_are_refused() {
    let f = file("");
    std::fs::write(&f.path, vec![b'#'; 2 * 1024 * 1024]).unwrap();
    let error = load_for_serve(&f.path).unwrap_err().to_string();
    assert!(error.contains("larger than"), "{error}");
    std::fs::write(&f.path, b"policies = \"\xff\xfe\"\n").unwrap();
    let error = load_for_serve(&f.path).unwrap_err().to_string();
    assert!(error.contains("not UTF-8"), "{error}");
    let error = load_for_serve(Path::new("/nonexistent/warden.toml"))
        .unwrap_err()
        .to_string();
    assert!(error.contains("cannot read the configuration"), "{error}");
}

#[test]
fn deep_nesting_is_refused_without_a_crash() {
    let text = format!("x = {}1{}\n", "[".repeat(5000), "]".repeat(5000));
    let problems = serve_problems(&text);
    assert!(!problems.is_empty());
}

#[test]
fn the_committed_json_schema_is_current() {
    let committed = include_str!("../../../../docs/warden.schema.json");
    assert!(
        committed == raw::schema_text(),
        "docs/warden.schema.json is stale: run `warden config schema > docs/warden.schema.json`"
    );
}
