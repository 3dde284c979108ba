//! The decision record: one per decision and one per outcome.

use serde::{Deserialize, Serialize};

/// Whether a record states a decision or what became of an allowed call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordKind {
    /// The decision made on a request (allow or deny), or a refusal of input
    /// that never reached a decision.
    Decision,
    /// What happened to an allowed request: completed, upstream error,
    /// timeout, upstream exited.
    Outcome,
}

impl RecordKind {
    /// The stored label.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordKind::Decision => "decision",
            RecordKind::Outcome => "outcome",
        }
    }

    pub(crate) fn parse(label: &str) -> RecordKind {
        match label {
            "outcome" => RecordKind::Outcome,
            _ => RecordKind::Decision,
        }
    }
}

/// One entry of the decision log. Arguments are kept only as a digest and a
/// redacted view; secrets never reach the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DecisionRecord {
    /// Position in this store's log, assigned on append (0 before).
    pub seq: i64,
    /// The decision this record belongs to; an outcome shares its
    /// decision's id.
    pub decision_id: String,
    /// Decision or outcome.
    pub kind: RecordKind,
    /// When, as RFC 3339 UTC.
    pub time: String,
    /// The principal, as a Cedar entity reference (`Agent::"claude"`).
    pub principal: String,
    /// The human the agent acts for.
    pub acting_for: Option<String>,
    /// The MCP method.
    pub method: String,
    /// The server's configured name.
    pub server: String,
    /// The tool, resource URI or prompt the request names.
    pub tool: Option<String>,
    /// SHA-256 of the canonical arguments.
    pub args_digest: Option<String>,
    /// The arguments with every string value replaced by its length.
    pub args_redacted: Option<serde_json::Value>,
    /// `allow` or `deny`, on decision records.
    pub decision: Option<String>,
    /// A stable label: `permitted`, `forbidden`, `no_permit`,
    /// `evaluation_error`, `invalid_arguments`, `rejected_input`, …
    pub reason: String,
    /// A sentence for people.
    pub message: String,
    /// The determining policies.
    pub policy_ids: Vec<String>,
    /// Evaluation errors, each `policy id: message`.
    pub errors: Vec<String>,
    /// The policy-set version that decided.
    pub policy_version: Option<String>,
    /// Microseconds spent: deciding (decision) or upstream round trip
    /// (outcome).
    pub latency_us: Option<u64>,
    /// `allowed`, `denied`, `rejected`, `completed`, `upstream_error`,
    /// `upstream_exited`, `timeout`, `unanswered`.
    pub outcome: String,
    /// The Warden process that wrote the record.
    pub instance: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The decision record's JSON (what `warden audit tail --format json`
    /// prints) is an interface: a change to it must show up here.
    #[test]
    fn the_json_shape_of_a_record_is_stable() {
        let record = DecisionRecord {
            seq: 7,
            decision_id: "01a23d61-60fd-73b0-8b1d-1a85cbacb45d".into(),
            kind: RecordKind::Decision,
            time: "2026-12-03T19:28:41.725Z".into(),
            principal: "Agent::\"claude\"".into(),
            acting_for: Some("alice".into()),
            method: "tools/call".into(),
            server: "fs".into(),
            tool: Some("read_text_file".into()),
            args_digest: Some("sha256:ab".into()),
            args_redacted: Some(serde_json::json!({"path": "<string:12>"})),
            decision: Some("deny".into()),
            reason: "no_permit".into(),
            message: "no policy permits this request".into(),
            policy_ids: vec![],
            errors: vec![],
            policy_version: Some("sha256:e138060d8e161558".into()),
            latency_us: Some(42),
            outcome: "denied".into(),
            instance: "warden-proxy-1".into(),
        };
        let expected = concat!(
            r#"{"seq":7,"decision_id":"01a23d61-60fd-73b0-8b1d-1a85cbacb45d","kind":"decision","#,
            r#""time":"2026-12-03T19:28:41.725Z","principal":"Agent::\"claude\"","acting_for":"alice","#,
            r#""method":"tools/call","server":"fs","tool":"read_text_file","args_digest":"sha256:ab","#,
            r#""args_redacted":{"path":"<string:12>"},"decision":"deny","reason":"no_permit","#,
            r#""message":"no policy permits this request","policy_ids":[],"errors":[],"#,
            r#""policy_version":"sha256:e138060d8e161558","latency_us":42,"outcome":"denied","#,
            r#""instance":"warden-proxy-1"}"#
        );
        assert_eq!(serde_json::to_string(&record).unwrap(), expected);
    }
}
