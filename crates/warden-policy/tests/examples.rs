//! The policy directories under `examples/`: each one loads without problems
//! and decides as its README says. Adding an example without a test here
//! fails `every_example_directory_is_tested`.

use std::error::Error;
use std::fs;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use warden_policy::{
    load, Action, Decision, DecisionRequest, Effect, Environment, Limits, Pdp, PolicySources,
    Principal, Reason, SourceFile, Target,
};

type TestResult = Result<(), Box<dyn Error>>;

/// The examples this file has decision tests for.
const TESTED: &[&str] = &[
    "confined-dir",
    "gateway/policies",
    "no-destructive",
    "per-human",
    "read-only-fs",
];

// === loading ===

fn examples_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// Every example policy directory, relative to `examples/`, in name order:
/// a directory of its own, or the `policies` directory of a configuration
/// example (one with a `warden.toml`).
fn example_names() -> Result<Vec<String>, Box<dyn Error>> {
    let mut names = Vec::new();
    for entry in fs::read_dir(examples_dir())? {
        let entry = entry?;
        if entry.file_type()?.is_dir() {
            let name = entry.file_name().to_string_lossy().into_owned();
            if entry.path().join("warden.toml").exists() {
                names.push(format!("{name}/policies"));
            } else {
                names.push(name);
            }
        }
    }
    names.sort();
    Ok(names)
}

/// Reads a policy directory as the proxy does: every `*.cedar` file, in
/// subdirectories too and skipping names that start with `.`, in path order,
/// and `entities.json` at the top when present; each named relative to the
/// directory.
fn read_sources(dir: &Path) -> Result<PolicySources, Box<dyn Error>> {
    let mut paths = Vec::new();
    find_cedar_files(dir, &mut paths)?;
    paths.sort();
    let mut policies = Vec::new();
    for path in paths {
        let name = path.strip_prefix(dir)?.to_string_lossy().into_owned();
        let text = fs::read_to_string(&path)?;
        policies.push(SourceFile { name, text });
    }
    let entities_path = dir.join("entities.json");
    let entities = if entities_path.exists() {
        Some(SourceFile {
            name: "entities.json".to_owned(),
            text: fs::read_to_string(entities_path)?,
        })
    } else {
        None
    };
    Ok(PolicySources { policies, entities })
}

fn find_cedar_files(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), Box<dyn Error>> {
    for entry in fs::read_dir(dir)? {
        let path = entry?.path();
        let hidden = path
            .file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with('.'));
        if hidden {
            continue;
        }
        if path.is_dir() {
            find_cedar_files(&path, out)?;
        } else if path.extension().is_some_and(|e| e == "cedar") {
            out.push(path);
        }
    }
    Ok(())
}

fn example(name: &str) -> Result<Pdp, Box<dyn Error>> {
    let sources = read_sources(&examples_dir().join(name))?;
    let policies = load(&sources).map_err(|e| format!("example `{name}`: {e}"))?;
    Ok(Pdp::new(policies, Limits::default()))
}

// === asking ===

struct Caller {
    principal: Principal,
    acting_for: Option<&'static str>,
}

fn agent() -> Caller {
    Caller {
        principal: Principal::Agent("claude".into()),
        acting_for: None,
    }
}

fn agent_for(human: &'static str) -> Caller {
    Caller {
        principal: Principal::Agent("claude".into()),
        acting_for: Some(human),
    }
}

fn service_account(id: &str) -> Caller {
    Caller {
        principal: Principal::ServiceAccount(id.into()),
        acting_for: None,
    }
}

fn env() -> Environment {
    Environment {
        transport: "stdio".into(),
        client_address: "local".into(),
        now: 1_767_225_600,
    }
}

fn ask(pdp: &Pdp, who: &Caller, action: Action, target: Target, args: Option<&Value>) -> Decision {
    let env = env();
    pdp.decide(&DecisionRequest {
        principal: &who.principal,
        acting_for: who.acting_for,
        action,
        method: action.as_str(),
        target,
        arguments: args,
        environment: &env,
    })
}

fn call(pdp: &Pdp, who: &Caller, server: &str, tool: &str, args: &Value) -> Decision {
    let target = Target::Tool {
        server: server.into(),
        name: tool.into(),
    };
    ask(pdp, who, Action::ToolsCall, target, Some(args))
}

fn list(pdp: &Pdp, who: &Caller, action: Action, server: &str) -> Decision {
    let target = Target::Server {
        server: server.into(),
    };
    ask(pdp, who, action, target, None)
}

/// Whether `tools/list` shows the tool: some arguments could make it allowed.
fn listed(pdp: &Pdp, who: &Caller, server: &str, tool: &str) -> bool {
    let env = env();
    pdp.may_allow(&DecisionRequest {
        principal: &who.principal,
        acting_for: who.acting_for,
        action: Action::ToolsCall,
        method: "tools/call",
        target: Target::Tool {
            server: server.into(),
            name: tool.into(),
        },
        arguments: None,
        environment: &env,
    })
}

fn assert_permitted(decision: &Decision, by: &str, what: &str) {
    assert_eq!(
        decision.effect,
        Effect::Allow,
        "{what}: {}",
        decision.explain()
    );
    assert_eq!(decision.policy_ids, [by], "{what}");
}

fn assert_forbidden(decision: &Decision, by: &str, what: &str) {
    assert_eq!(
        decision.reason,
        Reason::Forbidden,
        "{what}: {}",
        decision.explain()
    );
    assert_eq!(decision.policy_ids, [by], "{what}");
}

fn assert_not_permitted(decision: &Decision, what: &str) {
    assert_eq!(
        decision.reason,
        Reason::NoPermit,
        "{what}: {}",
        decision.explain()
    );
}

const LISTS: [Action; 4] = [
    Action::ToolsList,
    Action::ResourcesList,
    Action::ResourcesTemplatesList,
    Action::PromptsList,
];

// === every example ===

#[test]
fn every_example_directory_is_tested() -> TestResult {
    assert_eq!(example_names()?, TESTED);
    Ok(())
}

#[test]
fn every_example_loads_without_problems_or_warnings() -> TestResult {
    for name in example_names()? {
        let sources = read_sources(&examples_dir().join(&name))?;
        assert!(!sources.policies.is_empty(), "`{name}` has no .cedar file");
        match load(&sources) {
            Ok(policies) => {
                let warnings: Vec<String> = policies
                    .warnings()
                    .iter()
                    .map(ToString::to_string)
                    .collect();
                assert!(warnings.is_empty(), "`{name}`: {warnings:#?}");
            }
            Err(e) => {
                let problems: Vec<String> = e.problems.iter().map(ToString::to_string).collect();
                assert!(problems.is_empty(), "`{name}`: {problems:#?}");
            }
        }
    }
    Ok(())
}

#[test]
fn every_example_policy_has_an_id() -> TestResult {
    for name in example_names()? {
        let sources = read_sources(&examples_dir().join(&name))?;
        let ids: usize = sources
            .policies
            .iter()
            .map(|f| f.text.matches("@id(\"").count())
            .sum();
        let policies = load(&sources)?;
        assert_eq!(
            ids,
            policies.policy_count(),
            "`{name}`: a policy has no @id"
        );
    }
    Ok(())
}

#[test]
fn every_example_readme_gives_its_proxy_command() -> TestResult {
    // Configuration examples are run with `warden serve`, which their
    // `warden.toml` explains.
    for name in example_names()?.iter().filter(|n| !n.contains('/')) {
        let readme = fs::read_to_string(examples_dir().join(name).join("README.md"))?;
        let command = format!("warden proxy --policies examples/{name} --agent ");
        assert!(
            readme.contains(&command),
            "`{name}`: README lacks `{command}`"
        );
    }
    Ok(())
}

// === read-only-fs ===

const FS_READ_TOOLS: &[&str] = &[
    "read_file",
    "read_text_file",
    "read_media_file",
    "read_multiple_files",
    "list_directory",
    "list_directory_with_sizes",
    "directory_tree",
    "search_files",
    "get_file_info",
    "list_allowed_directories",
];

const FS_WRITE_TOOLS: &[&str] = &["write_file", "edit_file", "move_file", "create_directory"];

/// Realistic arguments for a tool of `@modelcontextprotocol/server-filesystem`.
fn fs_args(tool: &str, path: &str) -> Value {
    match tool {
        "read_file" | "read_text_file" => json!({ "path": path, "head": 20 }),
        "read_multiple_files" => json!({ "paths": [path, "/srv/data/notes.md"] }),
        "list_directory_with_sizes" => json!({ "path": path, "sortBy": "size" }),
        "directory_tree" => json!({ "path": path, "excludePatterns": ["node_modules"] }),
        "search_files" => json!({ "path": path, "pattern": "*.csv", "excludePatterns": [] }),
        "list_allowed_directories" => json!({}),
        "write_file" => json!({ "path": path, "content": "quarterly totals\n" }),
        "edit_file" => json!({
            "path": path,
            "edits": [{ "oldText": "draft", "newText": "final" }],
            "dryRun": false
        }),
        "move_file" => json!({ "source": path, "destination": "/srv/data/archive/report.csv" }),
        _ => json!({ "path": path }),
    }
}

#[test]
fn read_only_fs_permits_every_read_tool() -> TestResult {
    let pdp = example("read-only-fs")?;
    for tool in FS_READ_TOOLS {
        let decision = call(
            &pdp,
            &agent(),
            "fs",
            tool,
            &fs_args(tool, "/srv/data/report.csv"),
        );
        assert_permitted(&decision, "fs-read-tools", tool);
    }
    Ok(())
}

#[test]
fn read_only_fs_forbids_writes_edits_moves_and_creates() -> TestResult {
    let pdp = example("read-only-fs")?;
    for tool in FS_WRITE_TOOLS {
        let decision = call(
            &pdp,
            &agent(),
            "fs",
            tool,
            &fs_args(tool, "/srv/data/report.csv"),
        );
        assert_forbidden(&decision, "fs-no-writes", tool);
    }
    Ok(())
}

#[test]
fn read_only_fs_denies_a_tool_missing_from_the_allowlist() -> TestResult {
    let pdp = example("read-only-fs")?;
    for tool in ["delete_file", "execute_command", "READ_FILE"] {
        let decision = call(
            &pdp,
            &agent(),
            "fs",
            tool,
            &json!({ "path": "/srv/data/x" }),
        );
        assert_not_permitted(&decision, tool);
    }
    Ok(())
}

#[test]
fn read_only_fs_lists_only_the_read_tools() -> TestResult {
    let pdp = example("read-only-fs")?;
    for action in LISTS {
        assert_permitted(
            &list(&pdp, &agent(), action, "fs"),
            "fs-lists",
            action.as_str(),
        );
    }
    for tool in FS_READ_TOOLS {
        assert!(
            listed(&pdp, &agent(), "fs", tool),
            "{tool} should be listed"
        );
    }
    for tool in FS_WRITE_TOOLS.iter().chain(&["delete_file"]) {
        assert!(
            !listed(&pdp, &agent(), "fs", tool),
            "{tool} should be hidden"
        );
    }
    Ok(())
}

#[test]
fn read_only_fs_denies_everything_when_the_server_is_not_named_fs() -> TestResult {
    let pdp = example("read-only-fs")?;
    let args = json!({ "path": "/srv/data/report.csv" });
    assert_not_permitted(
        &call(&pdp, &agent(), "default", "read_text_file", &args),
        "call",
    );
    assert_not_permitted(&list(&pdp, &agent(), Action::ToolsList, "default"), "list");
    assert!(!listed(&pdp, &agent(), "default", "read_text_file"));
    Ok(())
}

#[test]
fn read_only_fs_denies_callers_that_are_not_agents() -> TestResult {
    let pdp = example("read-only-fs")?;
    let args = json!({ "path": "/srv/data/report.csv" });
    let decision = call(
        &pdp,
        &service_account("backup"),
        "fs",
        "read_text_file",
        &args,
    );
    assert_not_permitted(&decision, "service account");
    Ok(())
}

// === confined-dir ===

#[test]
fn confined_dir_permits_every_filesystem_tool_inside_the_directory() -> TestResult {
    let pdp = example("confined-dir")?;
    for tool in FS_READ_TOOLS.iter().chain(FS_WRITE_TOOLS) {
        if *tool == "list_allowed_directories" {
            continue;
        }
        let decision = call(
            &pdp,
            &agent(),
            "fs",
            tool,
            &fs_args(tool, "/srv/data/report.csv"),
        );
        assert_permitted(&decision, "fs-inside-data", tool);
    }
    let decision = call(
        &pdp,
        &agent(),
        "fs",
        "create_directory",
        &json!({ "path": "/srv/data/q3" }),
    );
    assert_permitted(&decision, "fs-inside-data", "create_directory");
    Ok(())
}

#[test]
fn confined_dir_permits_paths_that_normalise_into_the_directory() -> TestResult {
    let pdp = example("confined-dir")?;
    for path in [
        "/srv/data",
        "/srv/data/",
        "//srv//data///report.csv",
        "/srv/data/./report.csv",
        "/srv/data/q3/../report.csv",
        // A plain path is literal: `%2e%2e` is a file name, not `..`.
        "/srv/data/%2e%2e/report.csv",
    ] {
        let decision = call(
            &pdp,
            &agent(),
            "fs",
            "read_text_file",
            &json!({ "path": path }),
        );
        assert_permitted(&decision, "fs-inside-data", path);
    }
    Ok(())
}

#[test]
fn confined_dir_forbids_paths_that_escape_the_directory() -> TestResult {
    let pdp = example("confined-dir")?;
    for path in [
        "/srv/data/../../etc/passwd",
        "/srv/data/./../../etc/shadow",
        "/srv/data/q3/../../data_evil/x",
        "/srv/data_evil/secret.txt",
        "/srv/data-backup/report.csv",
        "/srv/dat",
        "/srv",
        "/",
        "/etc/passwd",
        "report.csv",
        "./report.csv",
        "srv/data/report.csv",
        "~/.ssh/id_ed25519",
        "/srv/data/report.csv\u{0}.txt",
        // A file URL is percent-decoded, so this `%2e%2e` is `..`.
        "file:///srv/data/%2e%2e/%2e%2e/etc/passwd",
    ] {
        let decision = call(
            &pdp,
            &agent(),
            "fs",
            "read_text_file",
            &json!({ "path": path }),
        );
        assert_forbidden(&decision, "no-path-outside-data", &format!("{path:?}"));
    }
    Ok(())
}

#[test]
fn confined_dir_forbids_a_call_when_any_one_path_is_outside() -> TestResult {
    let pdp = example("confined-dir")?;
    let cases = [
        (
            "move_file",
            json!({ "source": "/srv/data/report.csv", "destination": "/tmp/report.csv" }),
        ),
        (
            "move_file",
            json!({ "source": "/srv/data/../../home/alice/.bashrc", "destination": "/srv/data/x" }),
        ),
        (
            "read_multiple_files",
            json!({ "paths": ["/srv/data/a.csv", "/srv/data/b.csv", "/srv/data_evil/c.csv"] }),
        ),
        (
            "read_multiple_files",
            json!({ "paths": ["/srv/data/a.csv", "b.csv"] }),
        ),
    ];
    for (tool, args) in cases {
        let decision = call(&pdp, &agent(), "fs", tool, &args);
        assert_forbidden(&decision, "no-path-outside-data", &format!("{tool} {args}"));
    }
    Ok(())
}

#[test]
fn confined_dir_treats_any_string_starting_with_a_slash_as_a_path() -> TestResult {
    let pdp = example("confined-dir")?;
    let args = json!({
        "path": "/srv/data/main.c",
        "edits": [{ "oldText": "/* draft */", "newText": "/* final */" }],
    });
    let decision = call(&pdp, &agent(), "fs", "edit_file", &args);
    assert_forbidden(
        &decision,
        "no-path-outside-data",
        "edit with slash-led text",
    );
    Ok(())
}

#[test]
fn confined_dir_denies_filesystem_calls_without_a_path() -> TestResult {
    let pdp = example("confined-dir")?;
    let decision = call(&pdp, &agent(), "fs", "get_file_info", &json!({}));
    assert_not_permitted(&decision, "get_file_info without a path");
    let decision = call(&pdp, &agent(), "fs", "list_allowed_directories", &json!({}));
    assert_permitted(
        &decision,
        "fs-allowed-directories",
        "list_allowed_directories",
    );
    let decision = call(
        &pdp,
        &agent(),
        "fs",
        "list_allowed_directories",
        &json!({ "path": "/etc" }),
    );
    assert_forbidden(
        &decision,
        "no-path-outside-data",
        "list_allowed_directories with /etc",
    );
    Ok(())
}

#[test]
fn confined_dir_forbids_outside_paths_on_every_server() -> TestResult {
    let pdp = example("confined-dir")?;
    let args = json!({ "path": "/srv/data/../../etc/passwd" });
    let decision = call(&pdp, &agent(), "default", "read_text_file", &args);
    assert_forbidden(&decision, "no-path-outside-data", "server `default`");
    Ok(())
}

#[test]
fn confined_dir_lists_every_filesystem_tool() -> TestResult {
    let pdp = example("confined-dir")?;
    assert_permitted(
        &list(&pdp, &agent(), Action::ToolsList, "fs"),
        "fs-lists",
        "tools/list",
    );
    for tool in FS_READ_TOOLS.iter().chain(FS_WRITE_TOOLS) {
        assert!(
            listed(&pdp, &agent(), "fs", tool),
            "{tool} should be listed"
        );
    }
    assert!(!listed(&pdp, &agent(), "default", "read_text_file"));
    Ok(())
}

// === no-destructive ===

const DESTRUCTIVE: &[(&str, &str, &str)] = &[
    ("fs", "write_file", "no-fs-writes"),
    ("fs", "edit_file", "no-fs-writes"),
    ("fs", "move_file", "no-fs-writes"),
    ("fs", "create_directory", "no-fs-writes"),
    ("memory", "delete_entities", "no-memory-deletes"),
    ("memory", "delete_observations", "no-memory-deletes"),
    ("memory", "delete_relations", "no-memory-deletes"),
];

/// Realistic arguments for a tool of `@modelcontextprotocol/server-memory`.
fn memory_args(tool: &str) -> Value {
    match tool {
        "create_entities" => json!({ "entities": [
            { "name": "alice", "entityType": "person", "observations": ["works in finance"] }
        ]}),
        "add_observations" => json!({ "observations": [
            { "entityName": "alice", "contents": ["prefers email"] }
        ]}),
        "delete_entities" => json!({ "entityNames": ["alice"] }),
        "delete_observations" => json!({ "deletions": [
            { "entityName": "alice", "observations": ["works in finance"] }
        ]}),
        "delete_relations" | "create_relations" => json!({ "relations": [
            { "from": "alice", "to": "bob", "relationType": "reports_to" }
        ]}),
        "search_nodes" => json!({ "query": "finance" }),
        "open_nodes" => json!({ "names": ["alice", "bob"] }),
        _ => json!({}),
    }
}

fn args_for(server: &str, tool: &str) -> Value {
    match server {
        "memory" => memory_args(tool),
        _ => fs_args(tool, "/srv/data/report.csv"),
    }
}

#[test]
fn no_destructive_forbids_each_destructive_tool() -> TestResult {
    let pdp = example("no-destructive")?;
    for (server, tool, by) in DESTRUCTIVE {
        let decision = call(&pdp, &agent(), server, tool, &args_for(server, tool));
        assert_forbidden(&decision, by, tool);
    }
    Ok(())
}

#[test]
fn no_destructive_forbids_destructive_tools_whatever_the_server_is_named() -> TestResult {
    let pdp = example("no-destructive")?;
    for (server, tool, by) in DESTRUCTIVE {
        let decision = call(&pdp, &agent(), "default", tool, &args_for(server, tool));
        assert_forbidden(&decision, by, &format!("default/{tool}"));
    }
    Ok(())
}

#[test]
fn no_destructive_permits_every_other_tool() -> TestResult {
    let pdp = example("no-destructive")?;
    let safe = [
        ("fs", "read_text_file"),
        ("fs", "list_directory"),
        ("fs", "search_files"),
        ("memory", "create_entities"),
        ("memory", "create_relations"),
        ("memory", "add_observations"),
        ("memory", "read_graph"),
        ("memory", "search_nodes"),
        ("memory", "open_nodes"),
    ];
    for (server, tool) in safe {
        let decision = call(&pdp, &agent(), server, tool, &args_for(server, tool));
        assert_permitted(&decision, "allow-everything", tool);
    }
    let echo = call(
        &pdp,
        &agent(),
        "everything",
        "echo",
        &json!({ "message": "hi" }),
    );
    assert_permitted(&echo, "allow-everything", "echo");
    Ok(())
}

#[test]
fn no_destructive_hides_only_the_destructive_tools_from_the_list() -> TestResult {
    let pdp = example("no-destructive")?;
    for server in ["fs", "memory"] {
        let decision = list(&pdp, &agent(), Action::ToolsList, server);
        assert_permitted(&decision, "allow-everything", server);
    }
    for (server, tool, _) in DESTRUCTIVE {
        assert!(
            !listed(&pdp, &agent(), server, tool),
            "{tool} should be hidden"
        );
    }
    for (server, tool) in [("fs", "read_text_file"), ("memory", "read_graph")] {
        assert!(
            listed(&pdp, &agent(), server, tool),
            "{tool} should be listed"
        );
    }
    Ok(())
}

// === per-human ===

#[test]
fn per_human_permits_an_agent_acting_for_a_finance_member() -> TestResult {
    let pdp = example("per-human")?;
    let alice = agent_for("alice");
    let echo = call(
        &pdp,
        &alice,
        "everything",
        "echo",
        &json!({ "message": "hello" }),
    );
    assert_permitted(&echo, "finance-delegation", "echo");
    let sum = call(
        &pdp,
        &alice,
        "everything",
        "get-sum",
        &json!({ "a": 2, "b": 3 }),
    );
    assert_permitted(&sum, "finance-delegation", "get-sum");
    for action in LISTS {
        let decision = list(&pdp, &alice, action, "everything");
        assert_permitted(&decision, "finance-delegation", action.as_str());
    }
    let resource = Target::Resource {
        server: "everything".into(),
        uri: "demo://resource/static/document/architecture.md".into(),
    };
    let read = ask(&pdp, &alice, Action::ResourcesRead, resource, None);
    assert_permitted(&read, "finance-delegation", "resources/read");
    let prompt = Target::Prompt {
        server: "everything".into(),
        name: "simple-prompt".into(),
    };
    let get = ask(&pdp, &alice, Action::PromptsGet, prompt, Some(&json!({})));
    assert_permitted(&get, "finance-delegation", "prompts/get");
    assert!(listed(&pdp, &alice, "everything", "echo"));
    Ok(())
}

#[test]
fn per_human_denies_an_agent_acting_for_someone_outside_finance() -> TestResult {
    let pdp = example("per-human")?;
    // bob is described but in no group; mallory is not described at all.
    for human in ["bob", "mallory"] {
        let who = agent_for(human);
        let echo = call(
            &pdp,
            &who,
            "everything",
            "echo",
            &json!({ "message": "hello" }),
        );
        assert_not_permitted(&echo, human);
        assert_not_permitted(&list(&pdp, &who, Action::ToolsList, "everything"), human);
        assert!(
            !listed(&pdp, &who, "everything", "echo"),
            "{human}: echo listed"
        );
    }
    Ok(())
}

#[test]
fn per_human_denies_an_agent_acting_for_nobody() -> TestResult {
    let pdp = example("per-human")?;
    let echo = call(
        &pdp,
        &agent(),
        "everything",
        "echo",
        &json!({ "message": "hello" }),
    );
    assert_not_permitted(&echo, "no human");
    assert!(!listed(&pdp, &agent(), "everything", "echo"));
    Ok(())
}

#[test]
fn per_human_does_not_take_an_agent_named_like_a_member_for_that_member() -> TestResult {
    let pdp = example("per-human")?;
    // The agent's own id matching a member's does not make it one.
    let who = Caller {
        principal: Principal::Agent("alice".into()),
        acting_for: None,
    };
    let echo = call(
        &pdp,
        &who,
        "everything",
        "echo",
        &json!({ "message": "hello" }),
    );
    assert_not_permitted(&echo, "agent named alice");
    Ok(())
}

#[test]
fn per_human_permits_a_finance_service_account_to_call_tools() -> TestResult {
    let pdp = example("per-human")?;
    let sync = service_account("ledger-sync");
    let sum = call(
        &pdp,
        &sync,
        "everything",
        "get-sum",
        &json!({ "a": 1, "b": 41 }),
    );
    assert_permitted(&sum, "finance-service-accounts", "get-sum");
    let decision = list(&pdp, &sync, Action::ToolsList, "everything");
    assert_permitted(&decision, "finance-service-accounts", "tools/list");
    let prompt = Target::Prompt {
        server: "everything".into(),
        name: "simple-prompt".into(),
    };
    let get = ask(&pdp, &sync, Action::PromptsGet, prompt, Some(&json!({})));
    assert_not_permitted(&get, "prompts/get is not granted to service accounts");
    Ok(())
}

#[test]
fn per_human_denies_a_service_account_outside_finance() -> TestResult {
    let pdp = example("per-human")?;
    let other = service_account("build-bot");
    let sum = call(
        &pdp,
        &other,
        "everything",
        "get-sum",
        &json!({ "a": 1, "b": 41 }),
    );
    assert_not_permitted(&sum, "build-bot");
    Ok(())
}

// === gateway ===

#[test]
fn gateway_example_lets_claude_read_files_and_use_two_safe_tools() -> TestResult {
    let pdp = example("gateway/policies")?;
    let args = json!({ "path": "data/report.txt" });
    for tool in [
        "read_text_file",
        "list_directory",
        "list_allowed_directories",
    ] {
        assert_permitted(&call(&pdp, &agent(), "fs", tool, &args), "fs-read", tool);
    }
    for tool in ["echo", "get-sum"] {
        let decision = call(&pdp, &agent(), "everything", tool, &json!({}));
        assert_permitted(&decision, "everything-safe-tools", tool);
    }
    for action in [
        Action::ToolsList,
        Action::ResourcesList,
        Action::PromptsList,
    ] {
        assert_permitted(&list(&pdp, &agent(), action, "fs"), "lists", "a list");
    }
    Ok(())
}

#[test]
fn gateway_example_refuses_writes_other_tools_and_other_agents() -> TestResult {
    let pdp = example("gateway/policies")?;
    let write = json!({ "path": "data/evil.txt", "content": "x" });
    assert_not_permitted(
        &call(&pdp, &agent(), "fs", "write_file", &write),
        "write_file",
    );
    let env_tool = call(&pdp, &agent(), "everything", "get-env", &json!({}));
    assert_not_permitted(&env_tool, "get-env");
    // The same tool of another server is another resource.
    let echo_fs = call(&pdp, &agent(), "fs", "echo", &json!({}));
    assert_not_permitted(&echo_fs, "fs/echo");
    let other = service_account("ci");
    let read = call(
        &pdp,
        &other,
        "fs",
        "read_text_file",
        &json!({ "path": "data/report.txt" }),
    );
    assert_not_permitted(&read, "another principal");
    assert!(!listed(&pdp, &agent(), "fs", "write_file"));
    assert!(listed(&pdp, &agent(), "everything", "echo"));
    Ok(())
}
