//! Stage 3: what no policy widens (own active task, not quarantined, tool in
//! the current phase, `follows` of this task). Refuses with the invariant's code.

#[allow(unused_imports)]
use super::*;

/// A request that passed the invariants, with what later stages need.
pub(in crate::gateway::meta) struct Checked {
    pub(in crate::gateway::meta) task: Task,
    pub(in crate::gateway::meta) tool: crate::downstream::ExposedTool,
    pub(in crate::gateway::meta) tool_facts: crate::policy::ToolFacts,
    pub(in crate::gateway::meta) constraints: ArgConstraints,
    pub(in crate::gateway::meta) digest: String,
    /// The approved approval of exactly this request in this task, if any.
    pub(in crate::gateway::meta) granted: Option<Approval>,
    /// The newest approval of this request, any state (for the outcome).
    pub(in crate::gateway::meta) existing: Option<Approval>,
    pub(in crate::gateway::meta) last_call: Option<crate::store::Call>,
    pub(in crate::gateway::meta) ledger: crate::taint::TaintLedger,
    pub(in crate::gateway::meta) rate: u32,
}

/// Stage 3: the invariants no policy widens: the agent's own active task,
/// not quarantined, the tool in the current phase, a registered and exposed
/// tool, well-formed constraints, `follows` naming a call of this task.
pub(in crate::gateway::meta) fn check_request(session: &Session, agent: &VerifiedAgent, asked: &Asked, loaded: Loaded) -> Result<Checked, CallToolResult> {
    let shared = &session.shared;
    let task = check_own_task(session, agent, loaded.task)?;
    if let Some(q) = &loaded.quarantined {
        tracing::warn!(task = %task.id, tool = %crate::telemetry::Clean(&asked.tool), "request refused: agent quarantined");
        return Err(refusal_result("agent_quarantined", &quarantine_message(&q.reason)));
    }
    if let Verdict::Deny { rule, reason } = policy::decide_request(&agent.agent, &task, &asked.tool) {
        tracing::info!(task = %task.id, tool = %crate::telemetry::Clean(&asked.tool), rule, "intent denied");
        return Err(denied(rule, &reason));
    }
    let Some((_, tool)) = shared.downstreams.find(&asked.tool) else {
        let r = crate::gateway::authorize::explain_not_exposed(&shared.downstreams, agent, &asked.tool);
        return Err(refusal_result(r.code, &r.message));
    };
    let constraints = match &asked.constraints {
        Ok(c) => c.clone(),
        Err(r) => return Err(r.clone()),
    };
    let Some(digest) = asked.digest.clone() else {
        return Err(refusal_result("internal", "request digest missing"));
    };
    if let Some(named) = &asked.follows {
        if !loaded.parent.as_ref().is_some_and(|t| t.task == task.id) {
            return Err(bad_input(REQUEST, format!("`follows` names `{named}`, which is not a call of this task")));
        }
    }
    let Some(tool_facts) = decide::tool_facts(shared, &asked.tool) else {
        return Err(refusal_result("unknown_tool", &format!("`{}` is not registered", asked.tool)));
    };
    // An approval is used in the task it was asked in; a denial holds for
    // the agent in every task (see `pending_approval`).
    let granted = loaded.existing.clone().filter(|a| a.state == ApprovalState::Approved && a.task == task.id);
    Ok(Checked {
        task,
        tool,
        tool_facts,
        constraints,
        digest,
        granted,
        existing: loaded.existing,
        last_call: loaded.last_call,
        ledger: loaded.ledger,
        rate: loaded.rate,
    })
}
