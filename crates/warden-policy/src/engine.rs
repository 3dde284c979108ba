//! The policy decision point: one function from a request to a decision.
//!
//! This module owns the semantics Warden adds on top of Cedar: any
//! evaluation error denies (Cedar alone would skip an erroring `forbid`),
//! arguments are bounded before evaluation, and list filtering asks the same
//! policies whether a call *could* be allowed.

use std::collections::{HashMap, HashSet};
use std::str::FromStr;

use cedar_policy::{
    Authorizer, Context, Decision as CedarDecision, Entities, Entity, EntityId, EntityTypeName,
    EntityUid, Request, RequestBuilder, RestrictedExpression,
};

use crate::args::{Arguments, Limits};
use crate::decision::{
    Approval, Decision, DecisionRequest, Effect, EvaluationError, Principal, Reason, Target,
};
use crate::load::Policies;

/// Decides requests against one loaded policy set.
#[derive(Debug, Clone)]
pub struct Pdp {
    policies: Policies,
    limits: Limits,
    authorizer: Authorizer,
}

impl Pdp {
    /// A decision point for `policies`, bounding arguments by `limits`.
    pub fn new(policies: Policies, limits: Limits) -> Self {
        Pdp {
            policies,
            limits,
            authorizer: Authorizer::new(),
        }
    }

    /// The policy set in force.
    pub fn policies(&self) -> &Policies {
        &self.policies
    }

    /// Decides `request`. Never fails: every problem is a deny with a reason.
    pub fn decide(&self, request: &DecisionRequest<'_>) -> Decision {
        let arguments = match Arguments::from_json(request.arguments, &self.limits) {
            Ok(arguments) => arguments,
            Err(e) => return self.refuse(Reason::InvalidArguments(e)),
        };
        let cedar_request = match self.build(request, &arguments) {
            Ok(built) => built,
            Err(message) => return self.refuse(Reason::InvalidRequest(message)),
        };
        let (query, entities) = cedar_request;
        let response = self
            .authorizer
            .is_authorized(&query, &self.policies.set, &entities);

        let mut errors: Vec<EvaluationError> = response
            .diagnostics()
            .errors()
            .map(|e| EvaluationError {
                policy_id: policy_id_of(e),
                message: e.to_string(),
            })
            .collect();
        // Sorted: Cedar gives them as a set, and a record must read the same
        // for the same decision.
        let mut policy_ids: Vec<String> = response
            .diagnostics()
            .reason()
            .map(ToString::to_string)
            .collect();
        policy_ids.sort();
        errors.sort_by(|a, b| (&a.policy_id, &a.message).cmp(&(&b.policy_id, &b.message)));

        // INVARIANT: an evaluation error always denies. Cedar skips a policy
        // whose condition errs, so an erroring `forbid` would otherwise let
        // a blanket `permit` through (failure case C26).
        let (effect, reason) = if !errors.is_empty() {
            (Effect::Deny, Reason::EvaluationError)
        } else {
            match response.decision() {
                CedarDecision::Allow => (Effect::Allow, Reason::Permitted),
                CedarDecision::Deny if policy_ids.is_empty() => (Effect::Deny, Reason::NoPermit),
                CedarDecision::Deny => (Effect::Deny, Reason::Forbidden),
            }
        };
        // An allow needs approval only when every permit that gave it asks
        // for one: a permit that asks for none is enough on its own.
        let approval = match effect {
            Effect::Allow => self.approval_of(&policy_ids),
            _ => None,
        };
        let (effect, reason) = match approval {
            Some(_) => (Effect::ApprovalRequired, Reason::ApprovalRequired),
            None => (effect, reason),
        };
        let policy_ids = if reason == Reason::EvaluationError {
            Vec::new()
        } else {
            policy_ids
        };
        Decision {
            effect,
            reason,
            policy_ids,
            errors,
            approval,
            policy_version: self.policies.version().to_owned(),
        }
    }

    /// Whether some arguments could make `request` allowed: the question
    /// list filtering asks for each tool, resource and prompt.
    ///
    /// The arguments are left unknown and Cedar evaluates partially; only a
    /// definite deny hides the item. So an item hidden from a list is denied
    /// for every possible call to it (the converse need not hold: a listed
    /// tool may still be denied for particular arguments).
    pub fn may_allow(&self, request: &DecisionRequest<'_>) -> bool {
        let Ok((principal, resource, mut entities, context_pairs)) = self.parts(request) else {
            return false;
        };
        let Ok(action) = action_uid(request) else {
            return false;
        };
        let mut pairs = context_pairs;
        pairs.push(("args".to_owned(), RestrictedExpression::new_unknown("args")));
        let Ok(context) = Context::from_pairs(pairs) else {
            return false;
        };
        let query = RequestBuilder::default()
            .principal(principal)
            .action(action)
            .resource(resource)
            .context(context)
            .build();
        entities = entities.partial();
        let response = self
            .authorizer
            .is_authorized_partial(&query, &self.policies.set, &entities);
        response.decision() != Some(CedarDecision::Deny)
    }

    fn refuse(&self, reason: Reason) -> Decision {
        Decision {
            effect: Effect::Deny,
            reason,
            policy_ids: Vec::new(),
            errors: Vec::new(),
            policy_version: self.policies.version().to_owned(),
            approval: None,
        }
    }

    /// The approval the determining permits `policy_ids` require together:
    /// `None` when any of them requires none.
    fn approval_of(&self, policy_ids: &[String]) -> Option<Approval> {
        let mut groups = Vec::new();
        let mut ttl_secs = u64::MAX;
        for id in policy_ids {
            let asked = self.policies.approval(id)?;
            groups.push(asked.group.clone());
            ttl_secs = ttl_secs.min(asked.ttl_secs);
        }
        groups.sort();
        groups.dedup();
        (!groups.is_empty()).then_some(Approval { groups, ttl_secs })
    }

    /// The Cedar request and entities for a concrete decision.
    fn build(
        &self,
        request: &DecisionRequest<'_>,
        arguments: &Arguments,
    ) -> Result<(Request, Entities), String> {
        let (principal, resource, entities, mut pairs) = self.parts(request)?;
        let (args_uid, args_entities) = argument_entities(arguments)?;
        let entities = entities
            .add_entities(args_entities, Some(&self.policies.schema))
            .map_err(|e| e.to_string())?;
        pairs.push((
            "args".to_owned(),
            RestrictedExpression::new_entity_uid(args_uid),
        ));
        let context = Context::from_pairs(pairs).map_err(|e| e.to_string())?;
        let query = Request::new(
            principal,
            action_uid(request)?,
            resource,
            context,
            Some(&self.policies.schema),
        )
        .map_err(|e| e.to_string())?;
        Ok((query, entities))
    }

    /// Principal, resource, the entity store for this request (without the
    /// arguments), and every context pair except `args`.
    #[expect(
        clippy::type_complexity,
        reason = "a private tuple of the four request parts, used twice"
    )]
    fn parts(
        &self,
        request: &DecisionRequest<'_>,
    ) -> Result<
        (
            EntityUid,
            EntityUid,
            Entities,
            Vec<(String, RestrictedExpression)>,
        ),
        String,
    > {
        let base = &self.policies.entities;
        let mut extra: Vec<Entity> = Vec::new();

        let principal = principal_uid(request.principal)?;
        if base.get(&principal).is_none() {
            extra.push(Entity::new_no_attrs(principal.clone(), HashSet::new()));
        }
        let acting_for = match request.acting_for {
            Some(human) => {
                let uid = uid("Human", human)?;
                if base.get(&uid).is_none() && uid != principal {
                    extra.push(Entity::new_no_attrs(uid.clone(), HashSet::new()));
                }
                Some(uid)
            }
            None => None,
        };
        let (resource, mut target_entities) = target_entities(&request.target)?;
        extra.append(&mut target_entities);

        // LIMITATION: each decision copies the entities of `entities.json`, and
        // Cedar evaluates every policy; cost grows with both (no indexing yet).
        let entities = base
            .clone()
            .add_entities(extra, Some(&self.policies.schema))
            .map_err(|e| e.to_string())?;

        let env = request.environment;
        let mut pairs = vec![
            ("method".to_owned(), string(request.method)),
            ("transport".to_owned(), string(&env.transport)),
            ("client_address".to_owned(), string(&env.client_address)),
            ("now".to_owned(), RestrictedExpression::new_long(env.now)),
        ];
        if let Some(human) = acting_for {
            pairs.push((
                "acting_for".to_owned(),
                RestrictedExpression::new_entity_uid(human),
            ));
        }
        Ok((principal, resource, entities, pairs))
    }
}

fn string(s: &str) -> RestrictedExpression {
    RestrictedExpression::new_string(s.to_owned())
}

fn uid(type_name: &str, id: &str) -> Result<EntityUid, String> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|e| e.to_string())?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

fn principal_uid(principal: &Principal) -> Result<EntityUid, String> {
    uid(principal.type_name(), principal.id())
}

fn action_uid(request: &DecisionRequest<'_>) -> Result<EntityUid, String> {
    uid("Action", request.action.as_str())
}

/// The resource uid of a target and the entities describing it.
fn target_entities(target: &Target) -> Result<(EntityUid, Vec<Entity>), String> {
    let server = uid("Server", target.server())?;
    let server_entity = Entity::new_no_attrs(server.clone(), HashSet::new());
    let server_attr = || string(target.server());
    let (type_name, key, value) = match target {
        Target::Server { .. } => return Ok((server, vec![server_entity])),
        Target::Tool { name, .. } => ("Tool", "name", name),
        Target::Resource { uri, .. } => ("Resource", "uri", uri),
        Target::Prompt { name, .. } => ("Prompt", "name", name),
    };
    let item = uid(type_name, &format!("{}/{}", target.server(), value))?;
    let attrs = HashMap::from([
        (key.to_owned(), string(value)),
        ("server".to_owned(), server_attr()),
    ]);
    let parents = HashSet::from([server]);
    let entity = Entity::new(item.clone(), attrs, parents).map_err(|e| e.to_string())?;
    Ok((item, vec![server_entity, entity]))
}

/// The `Arguments` entity of a call and its typed buckets.
fn argument_entities(arguments: &Arguments) -> Result<(EntityUid, Vec<Entity>), String> {
    fn bucket(
        type_name: &str,
        tags: impl Iterator<Item = (String, RestrictedExpression)>,
    ) -> Result<Entity, String> {
        let uid = uid(type_name, "call")?;
        Entity::new_with_tags(
            uid,
            HashMap::new(),
            HashSet::new(),
            tags.collect::<HashMap<_, _>>(),
        )
        .map_err(|e| e.to_string())
    }
    let strings = bucket(
        "StringArguments",
        arguments
            .strings
            .iter()
            .map(|(k, v)| (k.clone(), string(v))),
    )?;
    let numbers = bucket(
        "NumberArguments",
        arguments
            .numbers
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_long(*v))),
    )?;
    let decimals = bucket(
        "DecimalArguments",
        arguments
            .decimals
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_decimal(v.clone()))),
    )?;
    let bools = bucket(
        "BoolArguments",
        arguments
            .bools
            .iter()
            .map(|(k, v)| (k.clone(), RestrictedExpression::new_bool(*v))),
    )?;
    let sets = bucket(
        "SetArguments",
        arguments
            .sets
            .iter()
            .map(|(k, v)| (k.clone(), string_set(v.iter()))),
    )?;
    let paths = bucket(
        "PathArguments",
        arguments.paths.iter().map(|(k, v)| (k.clone(), string(v))),
    )?;

    let args_uid = uid("Arguments", "call")?;
    let count = |n: usize| RestrictedExpression::new_long(i64::try_from(n).unwrap_or(i64::MAX));
    let attrs = HashMap::from([
        (
            "strings".to_owned(),
            RestrictedExpression::new_entity_uid(strings.uid()),
        ),
        (
            "numbers".to_owned(),
            RestrictedExpression::new_entity_uid(numbers.uid()),
        ),
        (
            "decimals".to_owned(),
            RestrictedExpression::new_entity_uid(decimals.uid()),
        ),
        (
            "bools".to_owned(),
            RestrictedExpression::new_entity_uid(bools.uid()),
        ),
        (
            "sets".to_owned(),
            RestrictedExpression::new_entity_uid(sets.uid()),
        ),
        (
            "paths".to_owned(),
            RestrictedExpression::new_entity_uid(paths.uid()),
        ),
        (
            "paths_within".to_owned(),
            string_set(arguments.paths_within.iter()),
        ),
        ("path_count".to_owned(), count(arguments.path_count)),
        ("count".to_owned(), count(arguments.count)),
    ]);
    let args = Entity::new(args_uid.clone(), attrs, HashSet::new()).map_err(|e| e.to_string())?;
    Ok((
        args_uid,
        vec![args, strings, numbers, decimals, bools, sets, paths],
    ))
}

fn string_set<'a>(items: impl Iterator<Item = &'a String>) -> RestrictedExpression {
    RestrictedExpression::new_set(items.map(|s| string(s)))
}

fn policy_id_of(error: &cedar_policy::AuthorizationError) -> String {
    match error {
        cedar_policy::AuthorizationError::PolicyEvaluationError(e) => e.policy_id().to_string(),
    }
}
