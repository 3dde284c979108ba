//! Building decision records from what the relay saw and decided.
//!
//! This module owns what a record says about a request: who, what, the
//! argument digest and redacted view, the decision. Where records are kept
//! is the store's business.

use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use time::format_description::well_known::Rfc3339;
use time::OffsetDateTime;
use warden_policy::{Decision, Effect};
use warden_store::{DecisionRecord, RecordKind};

/// Who is acting, and through which Warden process: the facts every record
/// of one relay shares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    /// The principal, as a Cedar entity reference.
    pub principal: String,
    /// The human the agent acts for.
    pub acting_for: Option<String>,
    /// The server's configured name.
    pub server: String,
    /// The Warden instance id.
    pub instance: String,
}

/// What a request names, for its records.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Subject {
    /// The MCP method (or a placeholder when none could be read).
    pub method: String,
    /// The tool, resource URI or prompt.
    pub tool: Option<String>,
    /// The call's arguments.
    pub arguments: Option<Value>,
}

/// A new decision id: time-ordered, unique.
pub fn new_decision_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

/// The current time as RFC 3339 UTC.
pub fn now_rfc3339() -> String {
    OffsetDateTime::now_utc()
        .format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".to_owned())
}

/// A record of a policy decision.
pub fn decision_record(
    origin: &Origin,
    subject: &Subject,
    decision_id: &str,
    decision: &Decision,
    latency_us: u64,
) -> DecisionRecord {
    let mut record = base(origin, subject, decision_id, RecordKind::Decision);
    record.decision = Some(decision.effect.to_string());
    record.reason = decision.reason.label().to_owned();
    record.message = decision.explain();
    record.policy_ids = decision.policy_ids.clone();
    record.errors = decision
        .errors
        .iter()
        .map(|e| format!("{}: {}", e.policy_id, e.message))
        .collect();
    record.policy_version = Some(decision.policy_version.clone());
    record.latency_us = Some(latency_us);
    record.outcome = match decision.effect {
        Effect::Allow => "allowed",
        Effect::Deny => "denied",
        Effect::ApprovalRequired => "approval_required",
    }
    .to_owned();
    record
}

/// A record of a refusal made before any policy was asked (malformed input,
/// unknown tool, …): a deny decision with `reason`.
pub fn refusal_record(
    origin: &Origin,
    subject: &Subject,
    decision_id: &str,
    reason: &str,
    message: &str,
    policy_version: Option<&str>,
) -> DecisionRecord {
    let mut record = base(origin, subject, decision_id, RecordKind::Decision);
    record.decision = Some("deny".to_owned());
    record.reason = reason.to_owned();
    record.message = message.to_owned();
    record.policy_version = policy_version.map(str::to_owned);
    record.outcome = "rejected".to_owned();
    record
}

/// A record of what became of an allowed request.
pub fn outcome_record(
    origin: &Origin,
    subject: &Subject,
    decision_id: &str,
    outcome: &str,
    message: &str,
    latency_us: u64,
) -> DecisionRecord {
    let mut record = base(origin, subject, decision_id, RecordKind::Outcome);
    record.reason = outcome.to_owned();
    record.message = message.to_owned();
    record.latency_us = Some(latency_us);
    record.outcome = outcome.to_owned();
    record
}

fn base(origin: &Origin, subject: &Subject, decision_id: &str, kind: RecordKind) -> DecisionRecord {
    DecisionRecord {
        seq: 0,
        decision_id: decision_id.to_owned(),
        kind,
        time: now_rfc3339(),
        principal: origin.principal.clone(),
        acting_for: origin.acting_for.clone(),
        method: subject.method.clone(),
        server: origin.server.clone(),
        tool: subject.tool.clone(),
        args_digest: subject.arguments.as_ref().map(digest),
        args_redacted: subject.arguments.as_ref().map(redact),
        decision: None,
        reason: String::new(),
        message: String::new(),
        policy_ids: Vec::new(),
        errors: Vec::new(),
        policy_version: None,
        latency_us: None,
        outcome: String::new(),
        instance: origin.instance.clone(),
    }
}

/// SHA-256 of the canonical JSON of `value`: object keys sorted, no
/// whitespace. `1` and `"1"` differ; `null` and an absent key differ.
pub fn digest(value: &Value) -> String {
    let mut canonical = String::new();
    canonicalize(value, &mut canonical);
    format!(
        "sha256:{}",
        hex::encode(Sha256::digest(canonical.as_bytes()))
    )
}

fn canonicalize(value: &Value, out: &mut String) {
    match value {
        Value::Object(map) => {
            let mut keys: Vec<&String> = map.keys().collect();
            keys.sort();
            out.push('{');
            for (index, key) in keys.into_iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                out.push_str(&Value::String(key.clone()).to_string());
                out.push(':');
                if let Some(child) = map.get(key) {
                    canonicalize(child, out);
                }
            }
            out.push('}');
        }
        Value::Array(items) => {
            out.push('[');
            for (index, item) in items.iter().enumerate() {
                if index > 0 {
                    out.push(',');
                }
                canonicalize(item, out);
            }
            out.push(']');
        }
        leaf => out.push_str(&leaf.to_string()),
    }
}

/// The shape of `value` without its contents: keys and nesting stay,
/// every value becomes its type (strings with their length). Secrets in
/// arguments never reach the log.
pub fn redact(value: &Value) -> Value {
    match value {
        Value::Object(map) => Value::Object(
            map.iter()
                .map(|(k, v)| (k.clone(), redact(v)))
                .collect::<Map<String, Value>>(),
        ),
        Value::Array(items) => Value::Array(items.iter().map(redact).collect()),
        Value::String(s) => Value::String(format!("<string:{}>", s.chars().count())),
        Value::Number(_) => Value::String("<number>".to_owned()),
        Value::Bool(_) => Value::String("<bool>".to_owned()),
        Value::Null => Value::Null,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn digest_sorts_keys_and_keeps_types() {
        assert_eq!(
            digest(&json!({"a": 1, "b": 2})),
            digest(&json!({"b": 2, "a": 1}))
        );
        assert_ne!(digest(&json!({"a": 1})), digest(&json!({"a": "1"})));
        assert_ne!(digest(&json!({"a": null})), digest(&json!({})));
    }

    #[test]
    fn redaction_keeps_no_value() {
        let redacted = redact(&json!({"token": "sk-secret", "n": 5, "list": ["x"]}));
        assert_eq!(
            redacted,
            json!({"token": "<string:9>", "n": "<number>", "list": ["<string:1>"]})
        );
        assert!(!redacted.to_string().contains("secret"));
    }
}
