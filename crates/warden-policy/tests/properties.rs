//! Properties of the policy core that must hold for every input, not just
//! the examples: path normalisation cannot be escaped, and a `forbid` can
//! only ever take permissions away.

#![allow(
    clippy::expect_used,
    reason = "a policy set that does not load fails the test"
)]

use proptest::prelude::*;
use serde_json::json;
use warden_policy::path::{ancestors, normalize};
use warden_policy::{
    load, Action, DecisionRequest, Environment, Limits, Pdp, PolicySources, Principal, SourceFile,
    Target,
};

fn path_strategy() -> impl Strategy<Value = String> {
    let component = prop_oneof![
        Just("..".to_owned()),
        Just(".".to_owned()),
        Just(String::new()),
        Just("data".to_owned()),
        Just("data_evil".to_owned()),
        Just("%2e%2e".to_owned()),
        "[a-z]{1,4}",
    ];
    (any::<bool>(), prop::collection::vec(component, 0..8)).prop_map(|(absolute, parts)| {
        let joined = parts.join("/");
        if absolute {
            format!("/{joined}")
        } else {
            joined
        }
    })
}

proptest! {
    #[test]
    fn normalised_paths_are_canonical_and_stable(raw in path_strategy()) {
        if let Ok(normal) = normalize(&raw) {
            prop_assert!(normal.starts_with('/'));
            prop_assert!(!normal.contains("//"));
            prop_assert!(!normal.split('/').any(|c| c == ".." || c == "."));
            prop_assert!(normal == "/" || !normal.ends_with('/'));
            prop_assert_eq!(normalize(&normal), Ok(normal.clone()));
        }
    }

    #[test]
    fn a_path_within_a_root_is_the_root_or_below_it_by_whole_components(raw in path_strategy()) {
        if let Ok(normal) = normalize(&raw) {
            for root in ancestors(&normal) {
                let below = root == "/" || normal == root || normal.starts_with(&format!("{root}/"));
                prop_assert!(below, "{} is not within {}", normal, root);
            }
            prop_assert!(!ancestors(&normal).contains(&"/data".to_owned())
                || !normal.starts_with("/data_evil"));
        }
    }

}

proptest! {
    // Each case loads and validates two policy sets: fewer cases suffice
    // for a space this small.
    #![proptest_config(ProptestConfig::with_cases(48))]

    #[test]
    fn adding_a_forbid_never_turns_a_deny_into_an_allow(
        tool in prop::sample::select(vec!["read_file", "write_file", "echo", "get-env"]),
        forbidden in prop::sample::select(vec!["read_file", "write_file", "echo", "nothing"]),
        permit_all in any::<bool>(),
        count in any::<i64>(),
    ) {
        let permits = if permit_all {
            "permit(principal, action, resource);".to_owned()
        } else {
            r#"permit(principal, action, resource is Tool) when { resource.name == "echo" };"#.to_owned()
        };
        let forbid = format!(
            r#"forbid(principal, action, resource is Tool) when {{ resource.name == "{forbidden}" }};
               forbid(principal, action, resource) when {{
                 context.args.numbers.hasTag("n") && context.args.numbers.getTag("n") * 3 > 7 }};"#
        );
        let without = decide(&permits, tool, count);
        let with = decide(&format!("{permits}\n{forbid}"), tool, count);
        prop_assert!(without || !with, "forbid turned deny into allow for {}", tool);
    }
}

fn decide(policies: &str, tool: &str, n: i64) -> bool {
    let sources = PolicySources {
        policies: vec![SourceFile {
            name: "p.cedar".into(),
            text: policies.into(),
        }],
        entities: None,
    };
    let pdp = Pdp::new(load(&sources).expect("valid"), Limits::default());
    let principal = Principal::Agent("a".into());
    let environment = Environment {
        transport: "stdio".into(),
        client_address: "local".into(),
        now: 0,
    };
    let args = json!({ "n": n });
    pdp.decide(&DecisionRequest {
        principal: &principal,
        acting_for: None,
        action: Action::ToolsCall,
        method: "tools/call",
        target: Target::Tool {
            server: "s".into(),
            name: tool.into(),
        },
        arguments: Some(&args),
        environment: &environment,
    })
    .is_allowed()
}
