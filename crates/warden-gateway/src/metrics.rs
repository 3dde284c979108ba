//! Prometheus metrics of the gateway. Every label has a small, fixed set of
//! values: no tool name, argument, agent id or session id ever becomes a
//! label.

use prometheus_client::encoding::text::encode;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;
use warden_store::{DecisionRecord, RecordKind};

/// Reason labels the relay and the gateway write; anything else is counted
/// as `other`, so a label can never grow without bound.
const REASONS: &[&str] = &[
    "permitted",
    "forbidden",
    "no_permit",
    "evaluation_error",
    "invalid_arguments",
    "rejected_input",
    "invalid_message",
    "unreadable",
    "unknown_tool",
    "invalid_tool_name",
    "notification_with_id",
    "duplicate_id",
    "too_many_in_flight",
    "record_failed",
    "completed",
    "upstream_error",
    "upstream_exited",
    "timeout",
    "cancelled",
    "client_closed",
    "upstream_too_large",
    "tool_error",
    "missing_id",
    "invalid_params",
    "session_mismatch",
];

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct DecisionLabels {
    kind: &'static str,
    outcome: String,
    reason: &'static str,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct HttpLabels {
    method: &'static str,
    status: u16,
}

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
struct ReasonLabel {
    reason: &'static str,
}

/// The gateway's counters, gauges and histograms.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    decisions: Family<DecisionLabels, Counter>,
    record_failures: Counter,
    http_requests: Family<HttpLabels, Counter>,
    http_latency: Histogram,
    auth_failures: Family<ReasonLabel, Counter>,
    upstream_errors: Family<ReasonLabel, Counter>,
    sessions: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}

impl Metrics {
    /// A fresh set of metrics.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("warden");
        let decisions = Family::<DecisionLabels, Counter>::default();
        registry.register(
            "decision_records",
            "Decision log records written, by kind, outcome and reason",
            decisions.clone(),
        );
        let record_failures = Counter::default();
        registry.register(
            "decision_record_failures",
            "Decision records that could not be written (their calls were refused)",
            record_failures.clone(),
        );
        let http_requests = Family::<HttpLabels, Counter>::default();
        registry.register(
            "http_requests",
            "HTTP requests to MCP endpoints, by method and status",
            http_requests.clone(),
        );
        let http_latency = Histogram::new(exponential_buckets(0.0001, 2.0, 18));
        registry.register(
            "http_request_duration_seconds",
            "Time to answer an MCP POST (to the first byte of the answer)",
            http_latency.clone(),
        );
        let auth_failures = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "authentication_failures",
            "Requests refused with 401, by reason",
            auth_failures.clone(),
        );
        let upstream_errors = Family::<ReasonLabel, Counter>::default();
        registry.register(
            "upstream_errors",
            "Upstream failures, by reason",
            upstream_errors.clone(),
        );
        let sessions = Gauge::default();
        registry.register("sessions", "Open MCP sessions", sessions.clone());
        Metrics {
            registry,
            decisions,
            record_failures,
            http_requests,
            http_latency,
            auth_failures,
            upstream_errors,
            sessions,
        }
    }

    /// Counts a record written to the decision log.
    pub fn record(&self, record: &DecisionRecord) {
        let reason = bounded(&record.reason);
        let kind = match record.kind {
            RecordKind::Decision => "decision",
            RecordKind::Outcome => "outcome",
        };
        let outcome = if REASONS.contains(&record.outcome.as_str())
            || ["allowed", "denied", "rejected", "unanswered"].contains(&record.outcome.as_str())
        {
            record.outcome.clone()
        } else {
            "other".to_owned()
        };
        self.decisions
            .get_or_create(&DecisionLabels {
                kind,
                outcome,
                reason,
            })
            .inc();
        if matches!(reason, "upstream_error" | "upstream_exited" | "timeout") {
            self.upstream_error(reason);
        }
    }

    /// Counts a record that could not be written.
    pub fn record_failed(&self) {
        self.record_failures.inc();
    }

    /// Counts an answered HTTP request and how long it took.
    pub fn http(&self, method: &'static str, status: u16, seconds: f64) {
        self.http_requests
            .get_or_create(&HttpLabels { method, status })
            .inc();
        self.http_latency.observe(seconds);
    }

    /// Counts a refused credential.
    pub fn auth_failure(&self, reason: &'static str) {
        self.auth_failures
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Counts an upstream failure.
    pub fn upstream_error(&self, reason: &'static str) {
        self.upstream_errors
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// Sets the number of open sessions.
    pub fn set_sessions(&self, n: usize) {
        self.sessions.set(i64::try_from(n).unwrap_or(i64::MAX));
    }

    /// The metrics in the Prometheus text format.
    pub fn render(&self) -> String {
        let mut text = String::new();
        if encode(&mut text, &self.registry).is_err() {
            text.clear();
        }
        text
    }
}

fn bounded(reason: &str) -> &'static str {
    REASONS
        .iter()
        .find(|known| **known == reason)
        .copied()
        .unwrap_or("other")
}
