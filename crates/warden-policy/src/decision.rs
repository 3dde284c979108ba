//! Requests and decisions: the values that go into and come out of the
//! policy decision point.

use std::fmt;

use serde_json::Value;

use crate::args::ArgumentsError;

/// Who acts.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Principal {
    /// An AI workload.
    Agent(String),
    /// A person acting directly.
    Human(String),
    /// A non-AI workload.
    ServiceAccount(String),
}

impl Principal {
    /// The Cedar entity type name.
    pub fn type_name(&self) -> &'static str {
        match self {
            Principal::Agent(_) => "Agent",
            Principal::Human(_) => "Human",
            Principal::ServiceAccount(_) => "ServiceAccount",
        }
    }

    /// The id within its type.
    pub fn id(&self) -> &str {
        match self {
            Principal::Agent(id) | Principal::Human(id) | Principal::ServiceAccount(id) => id,
        }
    }
}

impl fmt::Display for Principal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}::{:?}", self.type_name(), self.id())
    }
}

/// An authorizable action: one per MCP method that policy decides, plus
/// `Other` for methods Warden does not know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// `tools/call`.
    ToolsCall,
    /// `tools/list`.
    ToolsList,
    /// `resources/read`.
    ResourcesRead,
    /// `resources/subscribe`.
    ResourcesSubscribe,
    /// `resources/unsubscribe`.
    ResourcesUnsubscribe,
    /// `resources/list`.
    ResourcesList,
    /// `resources/templates/list`.
    ResourcesTemplatesList,
    /// `prompts/get`.
    PromptsGet,
    /// `prompts/list`.
    PromptsList,
    /// `completion/complete`.
    CompletionComplete,
    /// Any other method; `context.method` names it.
    Other,
}

impl Action {
    /// The action for an MCP method name.
    pub fn for_method(method: &str) -> Action {
        match method {
            "tools/call" => Action::ToolsCall,
            "tools/list" => Action::ToolsList,
            "resources/read" => Action::ResourcesRead,
            "resources/subscribe" => Action::ResourcesSubscribe,
            "resources/unsubscribe" => Action::ResourcesUnsubscribe,
            "resources/list" => Action::ResourcesList,
            "resources/templates/list" => Action::ResourcesTemplatesList,
            "prompts/get" => Action::PromptsGet,
            "prompts/list" => Action::PromptsList,
            "completion/complete" => Action::CompletionComplete,
            _ => Action::Other,
        }
    }

    /// The Cedar action id.
    pub fn as_str(self) -> &'static str {
        match self {
            Action::ToolsCall => "tools/call",
            Action::ToolsList => "tools/list",
            Action::ResourcesRead => "resources/read",
            Action::ResourcesSubscribe => "resources/subscribe",
            Action::ResourcesUnsubscribe => "resources/unsubscribe",
            Action::ResourcesList => "resources/list",
            Action::ResourcesTemplatesList => "resources/templates/list",
            Action::PromptsGet => "prompts/get",
            Action::PromptsList => "prompts/list",
            Action::CompletionComplete => "completion/complete",
            Action::Other => "other",
        }
    }
}

/// What is acted on.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Target {
    /// A server as a whole (lists, completions, other methods).
    Server {
        /// The server's configured name.
        server: String,
    },
    /// One tool of a server, named exactly as the server names it.
    Tool {
        /// The server's configured name.
        server: String,
        /// The tool name.
        name: String,
    },
    /// One resource of a server.
    Resource {
        /// The server's configured name.
        server: String,
        /// The resource URI.
        uri: String,
    },
    /// One prompt of a server.
    Prompt {
        /// The server's configured name.
        server: String,
        /// The prompt name.
        name: String,
    },
}

impl Target {
    /// The server the target belongs to.
    pub fn server(&self) -> &str {
        match self {
            Target::Server { server }
            | Target::Tool { server, .. }
            | Target::Resource { server, .. }
            | Target::Prompt { server, .. } => server,
        }
    }

    /// The tool, resource or prompt name, if the target is one.
    pub fn item(&self) -> Option<&str> {
        match self {
            Target::Server { .. } => None,
            Target::Tool { name, .. } | Target::Prompt { name, .. } => Some(name),
            Target::Resource { uri, .. } => Some(uri),
        }
    }
}

/// Facts about how the request arrived.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Environment {
    /// `stdio` or `http`.
    pub transport: String,
    /// The client's address; `local` over stdio.
    pub client_address: String,
    /// Arrival time in seconds since the Unix epoch.
    pub now: i64,
}

/// One question for the policy decision point.
#[derive(Debug, Clone, PartialEq)]
pub struct DecisionRequest<'a> {
    /// Who acts.
    pub principal: &'a Principal,
    /// The human the agent acts for, if any.
    pub acting_for: Option<&'a str>,
    /// The action.
    pub action: Action,
    /// The MCP method as received (differs from the action only for `Other`).
    pub method: &'a str,
    /// What is acted on.
    pub target: Target,
    /// The call's arguments (tool or prompt arguments), if any.
    pub arguments: Option<&'a Value>,
    /// How the request arrived.
    pub environment: &'a Environment,
}

/// Allow, deny, or allow only once a human approves.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Effect {
    /// The request may proceed.
    Allow,
    /// The request is refused.
    Deny,
    /// The request may proceed only with the approval its decision's
    /// [`Approval`] names; until then it does not.
    ApprovalRequired,
}

impl fmt::Display for Effect {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Effect::Allow => "allow",
            Effect::Deny => "deny",
            Effect::ApprovalRequired => "approval_required",
        })
    }
}

/// The approval a decision requires: from a member of any of `groups`,
/// within `ttl_secs` of the request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Approval {
    /// The groups (`Group::"…"`) whose members may approve, in name order.
    pub groups: Vec<String>,
    /// How long the approval may take, in seconds: the shortest that the
    /// determining policies name.
    pub ttl_secs: u64,
}

/// Why the decision is what it is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reason {
    /// At least one permit applied, no forbid did and nothing erred.
    Permitted,
    /// A forbid applied.
    Forbidden,
    /// No permit applied (Cedar's default deny).
    NoPermit,
    /// A policy could not be evaluated; Warden denies rather than skip it.
    EvaluationError,
    /// Every permit that applied asks for a human's approval, and no forbid
    /// applied.
    ApprovalRequired,
    /// The arguments were refused before evaluation.
    InvalidArguments(ArgumentsError),
    /// The request could not be put to the engine (for example an entity id
    /// the schema refuses).
    InvalidRequest(String),
}

impl Reason {
    /// A stable, lowercase label for logs, metrics and the decision log.
    pub fn label(&self) -> &'static str {
        match self {
            Reason::Permitted => "permitted",
            Reason::Forbidden => "forbidden",
            Reason::NoPermit => "no_permit",
            Reason::EvaluationError => "evaluation_error",
            Reason::ApprovalRequired => "approval_required",
            Reason::InvalidArguments(_) => "invalid_arguments",
            Reason::InvalidRequest(_) => "invalid_request",
        }
    }
}

/// A policy whose evaluation failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EvaluationError {
    /// The policy's id.
    pub policy_id: String,
    /// What went wrong.
    pub message: String,
}

/// The answer to a [`DecisionRequest`]. A decision is always a value: the
/// decision point never fails and never panics.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision {
    /// Allow or deny.
    pub effect: Effect,
    /// Why.
    pub reason: Reason,
    /// The policies that determined the decision: the satisfied permits of
    /// an allow, the satisfied forbids of a deny.
    pub policy_ids: Vec<String>,
    /// Policies that failed to evaluate. Any entry makes the decision a deny.
    pub errors: Vec<EvaluationError>,
    /// The version of the policy set that decided.
    pub policy_version: String,
    /// For [`Effect::ApprovalRequired`], whose approval.
    pub approval: Option<Approval>,
}

impl Decision {
    /// Whether the request may proceed.
    pub fn is_allowed(&self) -> bool {
        self.effect == Effect::Allow
    }

    /// One sentence for the denied client and the decision log.
    pub fn explain(&self) -> String {
        let ids = |ids: &[String]| {
            ids.iter()
                .map(|id| format!("`{id}`"))
                .collect::<Vec<_>>()
                .join(", ")
        };
        match &self.reason {
            Reason::Permitted => format!("permitted by policy {}", ids(&self.policy_ids)),
            Reason::Forbidden => format!("forbidden by policy {}", ids(&self.policy_ids)),
            Reason::NoPermit => "no policy permits this request".to_owned(),
            Reason::EvaluationError => {
                let failed: Vec<String> = self.errors.iter().map(|e| e.policy_id.clone()).collect();
                let noun = if failed.len() == 1 {
                    "policy"
                } else {
                    "policies"
                };
                format!(
                    "{noun} {} could not be evaluated, so the request is denied",
                    ids(&failed)
                )
            }
            Reason::ApprovalRequired => {
                let groups = self
                    .approval
                    .as_ref()
                    .map(|a| ids(&a.groups))
                    .unwrap_or_default();
                format!(
                    "policy {} permits this request only with the approval of a member of {groups}",
                    ids(&self.policy_ids)
                )
            }
            Reason::InvalidArguments(e) => format!("arguments refused: {e}"),
            Reason::InvalidRequest(e) => format!("request refused: {e}"),
        }
    }
}
