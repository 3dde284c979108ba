//! Decisions of the policy core, including failure cases C16, C18 and C26.

use rstest::rstest;
use serde_json::{json, Value};
use warden_policy::{
    load, Action, Decision, DecisionRequest, Effect, Environment, Limits, Pdp, PolicySources,
    Principal, Reason, SourceFile, Target,
};

fn pdp(policies: &str) -> Pdp {
    pdp_with_entities(policies, None)
}

fn pdp_with_entities(policies: &str, entities: Option<&str>) -> Pdp {
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "test.cedar".into(),
            text: policies.into(),
        }],
        entities: entities.map(|text| SourceFile {
            name: "entities.json".into(),
            text: text.into(),
        }),
    };
    match load(&sources) {
        Ok(policies) => Pdp::new(policies, Limits::default()),
        Err(e) => unreachable!("policies should load: {:#?}", e.problems),
    }
}

fn env() -> Environment {
    Environment {
        transport: "stdio".into(),
        client_address: "local".into(),
        now: 1_700_000_000,
    }
}

fn call(pdp: &Pdp, agent: &str, acting_for: Option<&str>, tool: &str, args: Value) -> Decision {
    let principal = Principal::Agent(agent.into());
    let env = env();
    pdp.decide(&DecisionRequest {
        principal: &principal,
        acting_for,
        action: Action::ToolsCall,
        method: "tools/call",
        target: Target::Tool {
            server: "fs".into(),
            name: tool.into(),
        },
        arguments: Some(&args),
        environment: &env,
    })
}

fn visible(pdp: &Pdp, tool: &str) -> bool {
    let principal = Principal::Agent("a".into());
    let env = env();
    pdp.may_allow(&DecisionRequest {
        principal: &principal,
        acting_for: None,
        action: Action::ToolsCall,
        method: "tools/call",
        target: Target::Tool {
            server: "fs".into(),
            name: tool.into(),
        },
        arguments: None,
        environment: &env,
    })
}

const CONFINED: &str = r#"
@id("read-inside-data")
permit(principal, action == Action::"tools/call", resource)
when { resource.name == "read_file" && context.args.paths_within.contains("/srv/data") };
"#;

#[rstest]
#[case("/srv/data_evil/secret", Effect::Deny)]
#[case("/srv/data-evil/x", Effect::Deny)]
#[case("/srv/data/../data_evil/x", Effect::Deny)]
#[case("/srv/data/./../../etc/passwd", Effect::Deny)]
#[case("srv/data/x", Effect::Deny)]
#[case("/srv/data/x\u{0}.txt", Effect::Deny)]
#[case("~/x", Effect::Deny)]
#[case("/srv/data/%2e%2e/x", Effect::Allow)]
#[case("//srv/data/x", Effect::Allow)]
#[case("/srv/data", Effect::Allow)]
#[case("/srv/data/", Effect::Allow)]
#[case("/srv/data/sub/../x", Effect::Allow)]
fn c16_path_prefix_containment(#[case] path: &str, #[case] expected: Effect) {
    let pdp = pdp(CONFINED);
    let decision = call(&pdp, "a", None, "read_file", json!({ "path": path }));
    assert_eq!(
        decision.effect,
        expected,
        "path {path:?}: {}",
        decision.explain()
    );
}

#[test]
fn c16_every_path_argument_is_confined_not_just_the_first() {
    let pdp = pdp(CONFINED);
    let inside = json!({"source": "/srv/data/a", "destination": "/srv/data/b"});
    let escaping = json!({"source": "/srv/data/a", "destination": "/srv/data/../../etc/cron.d/x"});
    let listed = json!({"paths": ["/srv/data/a", "/srv/data_evil/b"]});
    assert!(call(&pdp, "a", None, "read_file", inside).is_allowed());
    assert!(!call(&pdp, "a", None, "read_file", escaping).is_allowed());
    assert!(!call(&pdp, "a", None, "read_file", listed).is_allowed());
}

#[rstest]
#[case("/workspace/../etc/passwd", Effect::Deny)]
#[case("/workspace/a/../../etc/shadow", Effect::Deny)]
#[case("/workspace/ok.txt", Effect::Allow)]
fn c18_like_over_normalised_paths_does_not_admit_traversal(
    #[case] path: &str,
    #[case] expected: Effect,
) {
    let pdp = pdp(r#"
        permit(principal, action == Action::"tools/call", resource)
        when {
            resource.name == "read_file" &&
            context.args.paths.hasTag("path") &&
            context.args.paths.getTag("path") like "/workspace/*"
        };"#);
    let decision = call(&pdp, "a", None, "read_file", json!({ "path": path }));
    assert_eq!(decision.effect, expected, "path {path:?}");
}

#[test]
fn c26_erroring_forbid_is_rejected_at_load() {
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "bad.cedar".into(),
            text: "permit(principal, action, resource);\n\
                   forbid(principal, action, resource)\n  when { context.command in [\"rm -rf\"] };\n"
                .into(),
        }],
        entities: None,
    };
    let err = load(&sources).expect_err("an invalid set must not load");
    let problem = &err.problems[0];
    assert_eq!(problem.file, "bad.cedar");
    assert_eq!(problem.line, 3, "{problem}");
    assert!(problem.to_string().starts_with("bad.cedar:3:"), "{problem}");
}

#[test]
fn c26_forbid_that_errs_at_runtime_denies_and_names_the_policy() {
    // Validates, but overflows at runtime for large counts: Cedar would skip
    // the forbid and the blanket permit would allow.
    let pdp = pdp(r#"
        @id("allow-all") permit(principal, action, resource);
        @id("no-big-batches")
        forbid(principal, action == Action::"tools/call", resource)
        when { context.args.numbers.hasTag("count") && context.args.numbers.getTag("count") * 2 > 10 };
    "#);
    let decision = call(&pdp, "a", None, "write", json!({"count": i64::MAX}));
    assert_eq!(decision.effect, Effect::Deny);
    assert_eq!(decision.reason, Reason::EvaluationError);
    assert_eq!(decision.errors.len(), 1);
    assert_eq!(decision.errors[0].policy_id, "no-big-batches");
    assert!(decision.explain().contains("`no-big-batches`"));

    assert!(call(&pdp, "a", None, "write", json!({"count": 1})).is_allowed());
    assert!(!call(&pdp, "a", None, "write", json!({"count": 6})).is_allowed());
}

#[test]
fn numbers_stay_numbers_in_policy() {
    let pdp = pdp(r#"
        permit(principal, action, resource)
        when { context.args.numbers.hasTag("n") && context.args.numbers.getTag("n") > 5 };
    "#);
    assert!(call(&pdp, "a", None, "t", json!({"n": 6})).is_allowed());
    // The string "6" is not the number 6.
    assert!(!call(&pdp, "a", None, "t", json!({"n": "6"})).is_allowed());
}

#[test]
fn arguments_over_the_limits_are_denied_with_a_reason() {
    let pdp = pdp("permit(principal, action, resource);");
    let mut deep = json!(1);
    for _ in 0..40 {
        deep = json!({ "x": deep });
    }
    let decision = call(&pdp, "a", None, "t", json!({ "deep": deep }));
    assert!(matches!(decision.reason, Reason::InvalidArguments(_)));
    assert!(
        decision.explain().contains("deeper than 32"),
        "{}",
        decision.explain()
    );
}

#[test]
fn forbid_wins_and_is_named() {
    let pdp = pdp(r#"
        @id("all") permit(principal, action, resource);
        @id("no-writes") forbid(principal, action, resource is Tool) when { resource.name == "write_file" };
    "#);
    let decision = call(&pdp, "a", None, "write_file", json!({}));
    assert_eq!(decision.reason, Reason::Forbidden);
    assert_eq!(decision.policy_ids, vec!["no-writes".to_owned()]);
    let allowed = call(&pdp, "a", None, "read_file", json!({}));
    assert_eq!(allowed.policy_ids, vec!["all".to_owned()]);
    assert!(allowed.policy_version.starts_with("sha256:"));
}

#[test]
fn acting_for_human_in_group() {
    let entities = r#"[
        {"uid": {"type": "Human", "id": "alice"}, "attrs": {}, "parents": [{"type": "Group", "id": "finance"}]},
        {"uid": {"type": "Group", "id": "finance"}, "attrs": {}, "parents": []}
    ]"#;
    let pdp = pdp_with_entities(
        r#"permit(principal is Agent, action == Action::"tools/call", resource)
           when { context has acting_for && context.acting_for in Group::"finance" };"#,
        Some(entities),
    );
    assert!(call(&pdp, "a", Some("alice"), "t", json!({})).is_allowed());
    assert!(!call(&pdp, "a", Some("bob"), "t", json!({})).is_allowed());
    assert!(!call(&pdp, "a", None, "t", json!({})).is_allowed());
}

#[test]
fn list_filtering_hides_only_what_no_call_could_reach() {
    let pdp = pdp(r#"
        permit(principal, action == Action::"tools/call", resource)
        when { resource.name == "echo" };
        permit(principal, action == Action::"tools/call", resource)
        when { resource.name == "read_file" && context.args.paths_within.contains("/srv") };
        forbid(principal, action, resource is Tool) when { resource.name == "read_file" &&
            context.args.strings.hasTag("mode") && context.args.strings.getTag("mode") == "raw" };
    "#);
    assert!(visible(&pdp, "echo"));
    assert!(visible(&pdp, "read_file"), "allowed for some arguments");
    assert!(!visible(&pdp, "write_file"), "never permitted");
}

#[test]
fn the_schema_parses_and_every_action_is_declared() {
    let pdp = pdp("permit(principal, action, resource);");
    let principal = Principal::Agent("a".into());
    let env = env();
    for method in [
        "tools/list",
        "resources/list",
        "resources/templates/list",
        "prompts/list",
        "completion/complete",
        "tasks/get",
    ] {
        let decision = pdp.decide(&DecisionRequest {
            principal: &principal,
            acting_for: None,
            action: Action::for_method(method),
            method,
            target: Target::Server { server: "s".into() },
            arguments: None,
            environment: &env,
        });
        assert!(decision.is_allowed(), "{method}: {}", decision.explain());
    }
}

#[test]
fn list_filtering_understands_action_sets() {
    // `action in [...]` needs the action entities, also when evaluating
    // partially.
    let pdp = pdp(r#"
        permit(principal, action in [Action::"tools/list", Action::"prompts/list"], resource);
        permit(principal, action == Action::"tools/call", resource is Tool)
        when { resource.name == "read_file" };
    "#);
    assert!(visible(&pdp, "read_file"));
    assert!(!visible(&pdp, "delete_file"));
}

#[test]
fn one_problem_per_place_even_when_a_policy_applies_to_many_actions() {
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "p.cedar".into(),
            text: "permit(principal, action, resource) when { context.nope };".into(),
        }],
        entities: None,
    };
    let err = load(&sources).expect_err("invalid");
    assert_eq!(err.problems.len(), 1, "{:#?}", err.problems);
    assert!(
        !err.problems[0].message.contains("Action::"),
        "{}",
        err.problems[0]
    );
    assert_eq!(err.problems[0].help.as_deref(), Some("did you mean `now`?"));
}

#[test]
fn deeply_nested_policies_are_refused_not_crashed_on() {
    for (open, close) in [("(", ")"), ("[", "]")] {
        let text = format!(
            "permit(principal, action, resource) when {{ {}true{} }};",
            open.repeat(20_000),
            close.repeat(20_000)
        );
        let sources = PolicySources {
            policies: vec![SourceFile {
                name: "deep.cedar".into(),
                text,
            }],
            entities: None,
        };
        let err = load(&sources).expect_err("too deep");
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0].message.contains("deeper than 64"),
            "{}",
            err.problems[0]
        );
        assert_eq!((err.problems[0].line, err.problems[0].column), (1, 107));
    }
    // Brackets inside strings and comments do not count.
    let text = format!(
        "// {}\npermit(principal, action, resource) when {{ context.method == \"{}\" }};",
        "(".repeat(500),
        "[".repeat(500)
    );
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "ok.cedar".into(),
            text,
        }],
        entities: None,
    };
    assert!(load(&sources).is_ok());
}

fn load_text(text: String) -> Result<warden_policy::Policies, warden_policy::LoadError> {
    load(&PolicySources {
        policies: vec![SourceFile {
            name: "chain.cedar".into(),
            text,
        }],
        entities: None,
    })
}

#[test]
fn long_operator_and_attribute_chains_are_refused_before_they_defeat_the_validator() {
    // Too deep for Cedar's validator, which then passed them as valid, and
    // for the stack of a process that loaded them.
    let sum = format!(
        "permit(principal, action, resource) when {{ 1{} == \"x\" }};",
        " + 1".repeat(15_000)
    );
    let access = format!(
        "permit(principal, action, resource) when {{ context{} == 1 }};",
        ".a".repeat(15_000)
    );
    for text in [sum, access] {
        let err = load_text(text).expect_err("too long a chain");
        assert_eq!(err.problems.len(), 1);
        assert!(
            err.problems[0]
                .message
                .contains("more than 1000 operator characters"),
            "{}",
            err.problems[0]
        );
    }
}

#[test]
fn the_operator_bound_is_per_policy_and_a_chain_under_it_evaluates_on_a_small_stack() {
    // 900 operators in each of three policies of one file.
    let policy = |id: &str| {
        format!(
            "@id(\"{id}\") forbid(principal, action, resource) when {{ context.args.numbers.hasTag(\"n\") && 1{} == context.args.numbers.getTag(\"n\") }};\n",
            " + 1".repeat(880)
        )
    };
    let text = format!(
        "@id(\"all\") permit(principal, action, resource);\n{}{}{}",
        policy("a"),
        policy("b"),
        policy("c")
    );
    let loaded = load_text(text).expect("under the bound");
    let pdp = Pdp::new(loaded, Limits::default());
    // Deciding runs on the caller's thread: 256 KiB is far below the 2 MiB
    // of an async runtime's worker.
    let decision = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(move || call(&pdp, "a", None, "t", json!({"n": 881})).effect)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(decision, Effect::Deny);
}

#[test]
fn endless_if_chains_are_refused() {
    let text = format!(
        "permit(principal, action, resource) when {{ {}true{} }};",
        "if true then ".repeat(1001),
        " else false".repeat(1001)
    );
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "ifs.cedar".into(),
            text,
        }],
        entities: None,
    };
    let err = load(&sources).expect_err("too many ifs");
    assert!(
        err.problems[0].message.contains("more than 1000 `if`"),
        "{}",
        err.problems[0]
    );
    // `iff` and `elif_x` are not `if`.
    let ok = "permit(principal, action, resource) when { context.method == \"if\" };";
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "ok.cedar".into(),
            text: ok.into(),
        }],
        entities: None,
    };
    assert!(load(&sources).is_ok());
}

#[test]
fn the_servers_a_policy_set_names_are_known() {
    let pdp = pdp(r#"
        permit(principal, action, resource in Server::"fs");
        forbid(principal, action, resource == Tool::"git/push");
        permit(principal, action, resource) when { resource in Server::"memory" };
    "#);
    let names: Vec<String> = pdp.policies().referenced_servers().into_iter().collect();
    assert_eq!(names, ["fs", "git", "memory"]);
}

// === approval in policy ===

#[test]
fn a_permit_that_asks_for_approval_turns_its_allow_into_approval_required() {
    let pdp = pdp(r#"
        @id("push-needs-review") @approval("release-managers")
        permit(principal, action == Action::"tools/call", resource) when { resource.name == "push" };
        @id("reads") permit(principal, action == Action::"tools/call", resource) when { resource.name == "read" };
    "#);
    let push = call(&pdp, "a", None, "push", json!({}));
    assert_eq!(push.effect, Effect::ApprovalRequired);
    assert_eq!(push.reason.label(), "approval_required");
    assert_eq!(push.policy_ids, ["push-needs-review"]);
    let approval = push.approval.as_ref().unwrap();
    assert_eq!(approval.groups, ["release-managers"]);
    assert_eq!(approval.ttl_secs, 900, "the default is 15 minutes");
    assert!(!push.is_allowed(), "approval required is not an allow");
    assert!(
        push.explain().contains("`release-managers`"),
        "{}",
        push.explain()
    );
    // The tool stays listed: a call can be allowed, with approval.
    assert!(visible(&pdp, "push"));
    let read = call(&pdp, "a", None, "read", json!({}));
    assert_eq!((read.effect, read.approval), (Effect::Allow, None));
}

#[test]
fn approval_is_required_only_when_every_determining_permit_asks_for_it() {
    let pdp = pdp(r#"
        @id("any-push") @approval("reviewers") @approval_ttl("2h")
        permit(principal, action == Action::"tools/call", resource) when { resource.name == "push" };
        @id("ops-push") @approval("ops") @approval_ttl("30m")
        permit(principal, action == Action::"tools/call", resource)
        when { resource.name == "push" && context has acting_for };
        @id("bot-push")
        permit(principal == Agent::"release-bot", action == Action::"tools/call", resource)
        when { resource.name == "push" };
    "#);
    // Two asking permits apply: either group may approve, within the
    // shorter time.
    let both = call(&pdp, "a", Some("alice"), "push", json!({}));
    assert_eq!(both.effect, Effect::ApprovalRequired);
    let approval = both.approval.unwrap();
    assert_eq!(approval.groups, ["ops", "reviewers"]);
    assert_eq!(approval.ttl_secs, 30 * 60);
    // A permit that asks for nothing is enough on its own.
    let bot = call(&pdp, "release-bot", None, "push", json!({}));
    assert_eq!((bot.effect, bot.approval), (Effect::Allow, None));
}

#[test]
fn a_forbid_or_an_error_beats_a_permit_that_asks_for_approval() {
    let pdp = pdp(r#"
        @id("push") @approval("reviewers")
        permit(principal, action == Action::"tools/call", resource) when { resource.name == "push" };
        @id("no-main") forbid(principal, action == Action::"tools/call", resource)
        when { context.args.strings.hasTag("branch") && context.args.strings.getTag("branch") == "main" };
        @id("overflow") forbid(principal, action == Action::"tools/call", resource)
        when { context.args.numbers.hasTag("count") && context.args.numbers.getTag("count") * 2 > 10 };
    "#);
    let main = call(&pdp, "a", None, "push", json!({"branch": "main"}));
    assert_eq!(
        (main.effect, main.reason.label()),
        (Effect::Deny, "forbidden")
    );
    assert_eq!(main.approval, None);
    // The forbid overflows and errs, and an error denies.
    let erring = call(
        &pdp,
        "a",
        None,
        "push",
        json!({"branch": "dev", "count": i64::MAX}),
    );
    assert_eq!(
        (erring.effect, erring.reason.label()),
        (Effect::Deny, "evaluation_error")
    );
    assert_eq!(erring.approval, None);
    let fine = call(
        &pdp,
        "a",
        None,
        "push",
        json!({"branch": "dev", "count": 1}),
    );
    assert_eq!(fine.effect, Effect::ApprovalRequired);
}

#[test]
fn approval_annotations_that_cannot_be_honoured_are_refused_at_load() {
    for (text, expected) in [
        (
            "@approval(\"g\") forbid(principal, action, resource);",
            "applies to permit policies only",
        ),
        (
            "@approval(\"\") permit(principal, action, resource);",
            "names the approvers' group",
        ),
        (
            "@approval(\"a b\") permit(principal, action, resource);",
            "names the approvers' group",
        ),
        (
            "@approval_ttl(\"1h\") permit(principal, action, resource);",
            "without `@approval`",
        ),
    ] {
        let err = load_text(text.to_owned()).expect_err(text);
        assert!(
            err.problems[0].message.contains(expected),
            "{text}: {}",
            err.problems[0]
        );
        assert_eq!(
            (err.problems[0].line, err.problems[0].column),
            (1, 1),
            "{text}"
        );
    }
    for ttl in [
        "0s", "8d", "15", "15x", "", "1.5h", "-1m", "9999999s", "1ｍ",
    ] {
        let text = format!(
            "@approval(\"g\") @approval_ttl(\"{ttl}\") permit(principal, action, resource);"
        );
        let err = load_text(text).expect_err(ttl);
        assert!(
            err.problems[0].message.contains("is not a duration"),
            "{ttl}: {}",
            err.problems[0]
        );
    }
    for (ttl, secs) in [
        ("1s", 1),
        ("45s", 45),
        ("15m", 900),
        ("2h", 7200),
        ("7d", 604_800),
    ] {
        let text = format!(
            "@id(\"p\") @approval(\"g\") @approval_ttl(\"{ttl}\") permit(principal, action, resource);"
        );
        let pdp = Pdp::new(load_text(text).unwrap(), Limits::default());
        let decision = call(&pdp, "a", None, "t", json!({}));
        assert_eq!(decision.approval.unwrap().ttl_secs, secs, "{ttl}");
    }
}
