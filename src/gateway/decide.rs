//! Building the policy input for the meta-tools from what the gateway knows:
//! the verified agent, the tool's manifest, the task, the request.

use sha2::{Digest, Sha256};

use super::Shared;
use crate::identity::VerifiedAgent;
use crate::policy::{AgentFacts, EndUserFacts, TaskFacts, ToolFacts};
use crate::store::{Phase, Task};
use crate::token::ArgConstraints;

/// The agent as policy sees it.
pub fn agent_facts(agent: &VerifiedAgent, quarantined: bool) -> AgentFacts {
    AgentFacts { agent: (*agent.agent).clone(), issuer: agent.issuer.clone(), claims: (*agent.claims).clone(), quarantined }
}

/// Who would answer a question asked through the agent's client, as policy
/// sees it: a person only where the agent's file says so. The client's own
/// word (declaring elicitation) says nothing about who answers.
pub fn end_user_facts(shared: &Shared, agent: &VerifiedAgent) -> EndUserFacts {
    EndUserFacts { client_trusted: shared.identity.agents().end_user(&agent.agent.id).client_trusted }
}

/// A registered tool by exposed name, from its manifest (whether or not the
/// server is up: policy is about the registration, not the connection).
pub fn tool_facts(shared: &Shared, exposed: &str) -> Option<ToolFacts> {
    with_spec(shared, exposed, |server, spec| ToolFacts::new(server, spec))
}

/// Does a registered tool's manifest mark its output untrusted?
pub fn untrusted_output(shared: &Shared, exposed: &str) -> bool {
    with_spec(shared, exposed, |_, spec| spec.untrusted_output).unwrap_or(false)
}

/// Read a registered tool's manifest entry (by exposed name) in place.
fn with_spec<T>(shared: &Shared, exposed: &str, f: impl FnOnce(&str, &crate::manifest::ToolSpec) -> T) -> Option<T> {
    let (server, tool) = exposed.split_once(crate::manifest::NAMESPACE_SEPARATOR)?;
    let downstream = shared.downstreams.get(server)?;
    downstream.manifest.tools.get(tool).map(|spec| f(server, spec))
}

/// The task as a `Request` decision sees it.
pub fn task_facts(task: &Task, tool: &str) -> TaskFacts {
    let phase = task.phase();
    TaskFacts {
        id: task.id.clone(),
        objective: task.objective.clone(),
        phase: phase.map(|p| p.name.clone()).unwrap_or_default(),
        phase_index: task.current_phase,
        phase_count: task.phases.len(),
        in_phase_plan: phase.is_some_and(|p| p.tools.iter().any(|t| t == tool)),
        plan: plan_tools(&task.phases),
        after_untrusted_read: false,
        new_tools: Vec::new(),
    }
}

/// Every tool a plan names, once, sorted.
pub fn plan_tools(phases: &[Phase]) -> Vec<String> {
    crate::store::tools_of(phases)
}

/// The digest an approval is bound to: this agent, this tool, these
/// constraints in canonical form (`one_of: [x]` is `eq: x`; `one_of` lists
/// sorted and without repeats), so that an equivalent spelling is the same
/// request. The task is not part of it: a person's denial holds for the
/// agent in any task, while an approval is only used in the task it was
/// asked in (the approval record names that task).
pub fn request_digest(agent: &str, tool: &str, constraints: &ArgConstraints) -> String {
    let mut h = Sha256::new();
    for part in [agent, tool] {
        h.update(part.as_bytes());
        h.update([0]);
    }
    let constraints = serde_json::to_value(canonical(constraints)).unwrap_or_default();
    h.update(crate::canonical::json(&constraints).as_bytes());
    hex::encode(h.finalize())
}

/// Constraints in one spelling per meaning.
fn canonical(constraints: &ArgConstraints) -> ArgConstraints {
    use crate::token::Constraint;
    constraints
        .iter()
        .map(|(name, c)| {
            let c = match c {
                Constraint::OneOf(values) => {
                    let mut values: Vec<serde_json::Value> = values.clone();
                    values.sort_by_key(crate::canonical::json);
                    values.dedup();
                    match values.as_slice() {
                        [only] => Constraint::Eq(only.clone()),
                        _ => Constraint::OneOf(values),
                    }
                }
                other => other.clone(),
            };
            (name.clone(), c)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::token::Constraint;
    use serde_json::json;

    #[test]
    fn digest_changes_with_any_part_of_the_request() {
        let c = |v: serde_json::Value| ArgConstraints::from([("name".to_owned(), Constraint::Eq(v))]);
        let base = request_digest("a", "ws__delete", &c(json!("x")));
        assert_eq!(base, request_digest("a", "ws__delete", &c(json!("x"))));
        assert_ne!(base, request_digest("a", "ws__delete", &c(json!("y"))));
        assert_ne!(base, request_digest("b", "ws__delete", &c(json!("x"))));
        assert_ne!(base, request_digest("a", "ws__write", &c(json!("x"))));
        let prefix = ArgConstraints::from([("name".to_owned(), Constraint::Prefix("x".into()))]);
        assert_ne!(base, request_digest("a", "ws__delete", &prefix));
        // Equivalent spellings are the same request.
        let one_of = |v: Vec<serde_json::Value>| ArgConstraints::from([("name".to_owned(), Constraint::OneOf(v))]);
        assert_eq!(base, request_digest("a", "ws__delete", &one_of(vec![json!("x")])));
        assert_eq!(base, request_digest("a", "ws__delete", &one_of(vec![json!("x"), json!("x")])));
        assert_eq!(
            request_digest("a", "ws__delete", &one_of(vec![json!("x"), json!("y")])),
            request_digest("a", "ws__delete", &one_of(vec![json!("y"), json!("x")]))
        );
        // Objects inside values: key order is not a different request.
        let eq = |v: &str| ArgConstraints::from([("filter".to_owned(), Constraint::Eq(serde_json::from_str(v).unwrap()))]);
        assert_eq!(request_digest("a", "ws__find", &eq(r#"{"b":1,"a":2}"#)), request_digest("a", "ws__find", &eq(r#"{"a":2,"b":1}"#)));
    }
}
