//! Loading a policy set: parsing, validating against the Warden schema, and
//! reporting every problem with its place.
//!
//! This module owns the rule "a policy set that does not validate is never
//! installed". It receives file contents, not paths: reading the directory
//! is the caller's job, so this crate stays free of I/O.

use std::collections::{HashMap, HashSet};
use std::fmt;
use std::str::FromStr;

use cedar_policy::{Entities, PolicyId, PolicySet, Schema, ValidationMode, Validator};
use miette::Diagnostic;
use sha2::{Digest, Sha256};

/// The Warden schema, in Cedar's schema syntax.
pub const SCHEMA_TEXT: &str = include_str!("warden.cedarschema");

/// The entity types an `entities.json` may describe. Servers, tools,
/// resources, prompts and arguments are built by Warden from live traffic.
const USER_ENTITY_TYPES: &[&str] = &["Agent", "Human", "ServiceAccount", "Group"];

/// One input file: a name to report problems against, and its text.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceFile {
    /// The name used in messages, usually the path relative to the policy
    /// directory.
    pub name: String,
    /// The file's contents.
    pub text: String,
}

/// Everything a policy set is made from.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PolicySources {
    /// The `.cedar` files.
    pub policies: Vec<SourceFile>,
    /// The optional `entities.json` describing identities and groups.
    pub entities: Option<SourceFile>,
}

/// One problem found while loading, with its place.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The file the problem is in.
    pub file: String,
    /// 1-based line.
    pub line: usize,
    /// 1-based column, in characters.
    pub column: usize,
    /// What is wrong: one lowercase sentence.
    pub message: String,
    /// How to fix it, when known.
    pub help: Option<String>,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}",
            self.file, self.line, self.column, self.message
        )
    }
}

/// A policy set that could not be loaded, with every problem found.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("the policy set is invalid: {} problem{}, first: {}", .problems.len(), if .problems.len() == 1 { "" } else { "s" }, first(.problems))]
pub struct LoadError {
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

fn first(problems: &[Problem]) -> String {
    problems
        .first()
        .map(ToString::to_string)
        .unwrap_or_default()
}

/// A validated policy set, ready for decisions.
#[derive(Debug, Clone)]
pub struct Policies {
    pub(crate) set: PolicySet,
    pub(crate) schema: Schema,
    pub(crate) entities: Entities,
    version: String,
    warnings: Vec<Problem>,
    policy_count: usize,
    /// The approval each annotated permit asks for, by policy id.
    approvals: HashMap<String, AskedApproval>,
}

/// What one permit's `@approval` annotations ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct AskedApproval {
    /// The group whose members may approve.
    pub(crate) group: String,
    /// How long the approval may take, in seconds.
    pub(crate) ttl_secs: u64,
}

/// How long an approval may take when `@approval_ttl` does not say.
pub const DEFAULT_APPROVAL_TTL_SECS: u64 = 15 * 60;
/// The longest `@approval_ttl`.
pub const MAX_APPROVAL_TTL_SECS: u64 = 7 * 24 * 60 * 60;

impl Policies {
    /// The policy-set version: a digest of every loaded file's name and text.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// Warnings from validation (for example a policy that can never apply).
    pub fn warnings(&self) -> &[Problem] {
        &self.warnings
    }

    /// How many policies the set holds.
    pub fn policy_count(&self) -> usize {
        self.policy_count
    }

    /// The approval policy `id` asks for, if it is an annotated permit.
    pub(crate) fn approval(&self, id: &str) -> Option<&AskedApproval> {
        self.approvals.get(id)
    }

    /// The server names the policies mention (`Server::"fs"`, or the server
    /// part of `Tool::"fs/read_file"` and of resource and prompt ids). A
    /// gateway serving a server none of them names can warn that rules
    /// written for another name never apply to it.
    pub fn referenced_servers(&self) -> std::collections::BTreeSet<String> {
        let mut servers = std::collections::BTreeSet::new();
        for policy in self.set.policies() {
            if let Ok(json) = policy.to_json() {
                collect_servers(&json, &mut servers);
            }
        }
        servers
    }
}

fn collect_servers(value: &serde_json::Value, servers: &mut std::collections::BTreeSet<String>) {
    match value {
        serde_json::Value::Object(map) => {
            let field = |key: &str| map.get(key).and_then(serde_json::Value::as_str);
            match (field("type"), field("id")) {
                (Some("Server"), Some(id)) => {
                    servers.insert(id.to_owned());
                }
                (Some("Tool" | "Resource" | "Prompt"), Some(id)) => {
                    if let Some((server, _)) = id.split_once('/') {
                        servers.insert(server.to_owned());
                    }
                }
                _ => {}
            }
            map.values().for_each(|v| collect_servers(v, servers));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_servers(v, servers)),
        _ => {}
    }
}

/// Parses the Warden schema. It is part of this crate, so failure is a bug
/// that a unit test catches; it is still reported rather than panicking.
pub fn schema() -> Result<Schema, LoadError> {
    Schema::from_cedarschema_str(SCHEMA_TEXT)
        .map(|(schema, _warnings)| schema)
        .map_err(|e| LoadError {
            problems: vec![Problem {
                file: "<warden schema>".to_owned(),
                line: 1,
                column: 1,
                message: format!("the built-in schema is invalid: {e}"),
                help: None,
            }],
        })
}

/// Parses and validates (in strict mode) every file of `sources`.
pub fn load(sources: &PolicySources) -> Result<Policies, LoadError> {
    let schema = schema()?;
    let mut problems = Vec::new();
    let mut set = PolicySet::new();
    let mut texts: HashMap<PolicyId, &SourceFile> = HashMap::new();
    let mut approvals = HashMap::new();

    for file in &sources.policies {
        let mut parsed = Parsed {
            set: &mut set,
            texts: &mut texts,
            approvals: &mut approvals,
        };
        parse_file(file, &mut parsed, &mut problems);
    }

    let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
    for error in validation.validation_errors() {
        problems.push(locate(texts.get(error.policy_id()).copied(), error));
    }
    let warnings: Vec<Problem> = validation
        .validation_warnings()
        .map(|w| locate(texts.get(w.policy_id()).copied(), w))
        .collect();

    let entities = match &sources.entities {
        Some(file) => parse_entities(file, &schema, &mut problems),
        // Parsing with the schema adds the action entities, so that
        // `action in [...]` can be decided even by partial evaluation.
        None => Entities::from_json_str("[]", Some(&schema)).unwrap_or_else(|_| Entities::empty()),
    };

    if !problems.is_empty() {
        dedupe(&mut problems);
        // The message breaks ties, so the same set always reads the same.
        problems.sort_by(|a, b| {
            (&a.file, a.line, a.column, &a.message).cmp(&(&b.file, b.line, b.column, &b.message))
        });
        return Err(LoadError { problems });
    }
    let policy_count = set.policies().count();
    Ok(Policies {
        set,
        schema,
        entities,
        version: version_of(sources),
        warnings,
        policy_count,
        approvals,
    })
}

/// What parsing the files builds up.
struct Parsed<'s, 'a> {
    set: &'s mut PolicySet,
    texts: &'s mut HashMap<PolicyId, &'a SourceFile>,
    approvals: &'s mut HashMap<String, AskedApproval>,
}

/// Parses one `.cedar` file into `set`, naming each policy by its `@id`
/// annotation or, failing that, by `file:line`.
fn parse_file<'a>(
    file: &'a SourceFile,
    parsed_into: &mut Parsed<'_, 'a>,
    problems: &mut Vec<Problem>,
) {
    let Parsed {
        set,
        texts,
        approvals,
    } = parsed_into;
    // Cedar's parser recurses once per bracket: a few hundred nested
    // brackets exhaust the stack and abort the process, so nesting is
    // bounded before Cedar sees the text.
    if let Some((offset, message)) = too_deep(&file.text) {
        let mut problem = locate_offset(file, offset, "");
        problem.message = message;
        problem.help = Some("split the condition into simpler policies".to_owned());
        problems.push(problem);
        return;
    }
    let parsed = match PolicySet::from_str(&file.text) {
        Ok(parsed) => parsed,
        Err(errors) => {
            problems.extend(errors.iter().map(|e| locate(Some(file), e)));
            return;
        }
    };
    let offsets = policy_offsets(&file.text);
    let offset_of = |id: &PolicyId| offsets.get(id.to_string().as_str()).copied().unwrap_or(0);
    // LIMITATION: policy templates are refused at load; write concrete policies.
    if let Some(template) = parsed.templates().next() {
        let mut problem = locate_offset(file, offset_of(template.id()), "");
        problem.message = "policy templates are not supported yet".to_owned();
        problem.help = Some("write the policy with concrete entities".to_owned());
        problems.push(problem);
    }
    for policy in parsed.policies() {
        let offset = offset_of(policy.id());
        let id = match policy.annotation("id") {
            Some(id) => id.to_owned(),
            None => {
                let at = locate_offset(file, offset, "");
                format!("{}:{}", file.name, at.line)
            }
        };
        let id = PolicyId::new(id);
        if texts.contains_key(&id) {
            let mut problem = locate_offset(file, offset, "");
            problem.message = format!("policy id `{id}` is used twice");
            problem.help = Some("give each policy a unique `@id(\"...\")`".to_owned());
            problems.push(problem);
            continue;
        }
        match asked_approval(policy) {
            Ok(Some(asked)) => {
                approvals.insert(id.to_string(), asked);
            }
            Ok(None) => {}
            Err(message) => {
                let mut problem = locate_offset(file, offset, "");
                problem.message = message;
                problem.help = Some(
                    "write `@approval(\"GROUP\")` on a permit, and optionally `@approval_ttl(\"15m\")`"
                        .to_owned(),
                );
                problems.push(problem);
            }
        }
        if let Err(e) = set.add(policy.new_id(id.clone())) {
            problems.push(locate_offset(file, offset, &e.to_string()));
            continue;
        }
        texts.insert(id, file);
    }
}

/// The approval a policy's annotations ask for: `@approval("GROUP")` on a
/// permit, with an optional `@approval_ttl("30s" | "15m" | "2h" | "1d")`.
fn asked_approval(policy: &cedar_policy::Policy) -> Result<Option<AskedApproval>, String> {
    let group = policy.annotation("approval");
    let ttl = policy.annotation("approval_ttl");
    let Some(group) = group else {
        return match ttl {
            Some(_) => Err("`@approval_ttl` without `@approval`".to_owned()),
            None => Ok(None),
        };
    };
    if policy.effect() != cedar_policy::Effect::Permit {
        return Err(
            "`@approval` applies to permit policies only: a forbid needs no approval".to_owned(),
        );
    }
    let valid_group = !group.is_empty()
        && group.len() <= 128
        && group
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_.@".contains(c));
    if !valid_group {
        return Err(format!(
            "`@approval` names the approvers' group: 1 to 128 ASCII letters, digits, `-`, `_`, `.` or `@`, not `{}`",
            group.escape_debug()
        ));
    }
    let ttl_secs = match ttl {
        None => DEFAULT_APPROVAL_TTL_SECS,
        Some(text) => parse_ttl(text).ok_or_else(|| {
            format!(
                "`@approval_ttl(\"{}\")` is not a duration from 1s to 7d (like `30s`, `15m`, `2h`, `1d`)",
                text.escape_debug()
            )
        })?,
    };
    Ok(Some(AskedApproval {
        group: group.to_owned(),
        ttl_secs,
    }))
}

/// `30s`, `15m`, `2h` or `1d`, within 1 s and [`MAX_APPROVAL_TTL_SECS`].
fn parse_ttl(text: &str) -> Option<u64> {
    let unit = match text.chars().last()? {
        's' => 1,
        'm' => 60,
        'h' => 3600,
        'd' => 86_400,
        _ => return None,
    };
    let digits = text.get(..text.len() - 1)?;
    if digits.is_empty() || digits.len() > 6 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs = digits.parse::<u64>().ok()?.checked_mul(unit)?;
    (1..=MAX_APPROVAL_TTL_SECS).contains(&secs).then_some(secs)
}

/// Deepest nesting of `(`, `[` and `{` a policy file may use.
pub const MAX_NESTING: usize = 64;

/// Most `if` expressions a policy file may hold: they nest without
/// brackets.
pub const MAX_IFS: usize = 1000;

/// Most operator characters (`+ - * < > = ! & | .`) one policy may use. A
/// chain of binary operators or attribute accesses nests without brackets
/// (`1 + 1 + … + 1` is as deep as it is long), and Cedar's parser,
/// validator and evaluator all recurse once per level: tens of thousands of
/// levels exhaust the stack, and a few thousand already defeat the
/// validator's own depth guard, which then lets an ill-typed policy
/// through. Real policies use a few dozen.
pub const MAX_OPERATORS: usize = 1000;

/// Where (and how) `text` nests too deeply for the parser: the first
/// bracket deeper than [`MAX_NESTING`], the `if` past [`MAX_IFS`], or the
/// operator past [`MAX_OPERATORS`] in one policy; string literals and
/// comments do not count.
fn too_deep(text: &str) -> Option<(usize, String)> {
    let mut depth = 0usize;
    let mut ifs = 0usize;
    let mut operators = 0usize;
    let mut previous_is_word = false;
    let mut chars = text.char_indices().peekable();
    while let Some((offset, c)) = chars.next() {
        match c {
            '"' => {
                while let Some((_, c)) = chars.next() {
                    match c {
                        '\\' => {
                            chars.next();
                        }
                        '"' => break,
                        _ => {}
                    }
                }
            }
            '/' if chars.peek().map(|&(_, c)| c) == Some('/') => {
                for (_, c) in chars.by_ref() {
                    if c == '\n' {
                        break;
                    }
                }
            }
            '(' | '[' | '{' => {
                depth += 1;
                if depth > MAX_NESTING {
                    return Some((
                        offset,
                        format!("brackets nest deeper than {MAX_NESTING} levels"),
                    ));
                }
            }
            ')' | ']' | '}' => depth = depth.saturating_sub(1),
            // The end of a policy.
            ';' if depth == 0 => operators = 0,
            '+' | '-' | '*' | '<' | '>' | '=' | '!' | '&' | '|' | '.' => {
                operators += 1;
                if operators > MAX_OPERATORS {
                    return Some((
                        offset,
                        format!("a policy uses more than {MAX_OPERATORS} operator characters (each `&&` or `||` counts two)"),
                    ));
                }
            }
            'i' if !previous_is_word
                && text.get(offset..offset + 2) == Some("if")
                && !text
                    .get(offset + 2..)
                    .and_then(|rest| rest.chars().next())
                    .is_some_and(|c| c.is_alphanumeric() || c == '_') =>
            {
                ifs += 1;
                if ifs > MAX_IFS {
                    return Some((
                        offset,
                        format!("more than {MAX_IFS} `if` expressions in one file"),
                    ));
                }
            }
            _ => {}
        }
        previous_is_word = c.is_alphanumeric() || c == '_';
    }
    None
}

/// Where each policy of `text` starts, by the numbered id (`policy0`, …)
/// that parsing a whole file gives it.
fn policy_offsets(text: &str) -> HashMap<String, usize> {
    let Ok(parsed) = cedar_policy_core::parser::parse_policyset(text) else {
        return HashMap::new();
    };
    let policies = parsed
        .policies()
        .map(|p| (p.id().to_string(), p.loc().map(|l| l.span.offset())));
    let templates = parsed
        .all_templates()
        .map(|t| (t.id().to_string(), t.loc().map(|l| l.span.offset())));
    policies
        .chain(templates)
        .map(|(id, offset)| (id, offset.unwrap_or(0)))
        .collect()
}

fn parse_entities(file: &SourceFile, schema: &Schema, problems: &mut Vec<Problem>) -> Entities {
    if let Err(e) = serde_json::from_str::<serde_json::Value>(&file.text) {
        problems.push(Problem {
            file: file.name.clone(),
            line: e.line().max(1),
            column: e.column().max(1),
            message: format!("invalid JSON: {e}"),
            help: None,
        });
        return Entities::empty();
    }
    let entities = match Entities::from_json_str(&file.text, Some(schema)) {
        Ok(entities) => entities,
        Err(e) => {
            problems.push(Problem {
                file: file.name.clone(),
                line: 1,
                column: 1,
                message: format!("invalid entities: {}", one_line(&chain(&e))),
                help: e.help().map(|h| one_line(&h.to_string())),
            });
            return Entities::empty();
        }
    };
    let foreign: HashSet<String> = entities
        .iter()
        .map(|e| e.uid().type_name().to_string())
        .filter(|t| !USER_ENTITY_TYPES.contains(&t.as_str()) && !t.contains("Action"))
        .collect();
    for type_name in foreign {
        problems.push(Problem {
            file: file.name.clone(),
            line: 1,
            column: 1,
            message: format!("entities of type `{type_name}` cannot be declared here"),
            help: Some(format!(
                "`entities.json` describes {}; Warden builds the others from live traffic",
                USER_ENTITY_TYPES.join(", ")
            )),
        });
    }
    entities
}

/// Places a Cedar diagnostic in `file` by its first label.
fn locate(file: Option<&SourceFile>, diagnostic: &dyn Diagnostic) -> Problem {
    let offset = diagnostic
        .labels()
        .and_then(|mut labels| labels.next())
        .map(|label| label.offset())
        .unwrap_or_default();
    let mut problem = match file {
        Some(file) => locate_offset(file, offset, &diagnostic.to_string()),
        None => Problem {
            file: "<unknown>".to_owned(),
            line: 1,
            column: 1,
            message: one_line(&diagnostic.to_string()),
            help: None,
        },
    };
    problem.help = diagnostic.help().map(|h| one_line(&h.to_string()));
    problem
}

/// The validator reports one error per action a policy may apply to; at one
/// place, one message that names no particular action is enough.
fn dedupe(problems: &mut Vec<Problem>) {
    for problem in problems.iter_mut() {
        problem.message = without_action_mention(&problem.message);
    }
    let mut seen = HashSet::new();
    problems.retain(|p| seen.insert((p.file.clone(), p.line, p.column, p.message.clone())));
}

/// Removes ` for Action::"…"` from a validator message.
fn without_action_mention(message: &str) -> String {
    const MARK: &str = " for Action::\"";
    let Some(start) = message.find(MARK) else {
        return message.to_owned();
    };
    let after = message.get(start + MARK.len()..).unwrap_or_default();
    match after.find('"') {
        Some(end) => format!(
            "{}{}",
            message.get(..start).unwrap_or_default(),
            after.get(end + 1..).unwrap_or_default()
        ),
        None => message.to_owned(),
    }
}

fn locate_offset(file: &SourceFile, offset: usize, message: &str) -> Problem {
    let before = file.text.get(..offset).unwrap_or(&file.text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    Problem {
        file: file.name.clone(),
        line,
        column,
        message: one_line(message),
        help: None,
    }
}

/// An error and its causes, outermost first, joined by colons.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

fn one_line(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

fn version_of(sources: &PolicySources) -> String {
    let mut files: Vec<&SourceFile> = sources.policies.iter().collect();
    files.sort_by(|a, b| a.name.cmp(&b.name));
    let mut hash = Sha256::new();
    for file in files.into_iter().chain(sources.entities.as_ref()) {
        hash.update(file.name.as_bytes());
        hash.update([0]);
        hash.update(file.text.as_bytes());
        hash.update([0]);
    }
    let digest = hex::encode(hash.finalize());
    format!("sha256:{}", digest.get(..16).unwrap_or(&digest))
}
