//! `jit_delegate`: hand part of an active task to another registered agent,
//! with authority that can only shrink: a subset of what remains of the
//! plan, no longer than the task, optionally narrower arguments, to an agent
//! the delegating agent's file names, within the depth limit, as policy
//! (`Delegate`) allows for every tool. The child begins its own task under
//! it (`jit_begin_task` with `delegation`).

#[allow(unused_imports)]
use super::*;

/// Delegations one task may make: each is a row, a record and a share the
/// sweep watches, so their number is not the agent's choice.
pub(in crate::gateway::meta) const MAX_DELEGATIONS_PER_TASK: usize = 32;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct Delegate {
    pub(in crate::gateway::meta) task: String,
    /// The child agent's name (its agent file's `name`).
    pub(in crate::gateway::meta) agent: String,
    pub(in crate::gateway::meta) objective: String,
    pub(in crate::gateway::meta) phases: Vec<Phase>,
    pub(in crate::gateway::meta) ttl_seconds: Option<u64>,
    /// Per delegated tool, constraints on the arguments it names.
    pub(in crate::gateway::meta) constraints: Option<std::collections::BTreeMap<String, ArgConstraints>>,
}

pub(in crate::gateway::meta) async fn delegate(session: &Session, agent: &VerifiedAgent, req: Delegate) -> CallToolResult {
    let shared = &session.shared;
    let objective = req.objective.trim().to_owned();
    if objective.is_empty() || objective.len() > 2000 {
        return bad_input(DELEGATE, "objective must be 1-2000 characters: say what the child agent is to do");
    }
    if req.phases.is_empty() || req.phases.len() > 20 {
        return bad_input(DELEGATE, "give 1-20 phases");
    }
    if let Err(r) = check_phases(DELEGATE, &req.phases) {
        return r;
    }
    let task = match own_active_task(session, agent, &req.task).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = shared.clock.now_unix();
    // A delegated task delegates only within what it holds.
    let above = match crate::gateway::delegation::chain_holds(shared, &task.id, None, None, now).await {
        Ok(chain) => chain,
        Err(r) => return refusal_result(r.code, &r.message),
    };
    let depth = above.first().map_or(1, |a| a.delegation.depth.saturating_add(1));
    let max_depth = shared.config.limits.max_delegation_depth;
    if usize::try_from(depth).unwrap_or(usize::MAX) > max_depth {
        return refusal_result("delegation_too_deep", &format!("this would be a delegation {depth} deep; limits.max_delegation_depth is {max_depth}"));
    }
    let agents = shared.identity.agents();
    let Some(child) = agents.by_name(&req.agent).cloned() else {
        return refusal_result("unknown_agent", &format!("no agent named `{}` is registered; delegate to an agent by its agent file's name", req.agent));
    };
    if child.id == agent.agent.id {
        return bad_input(DELEGATE, "an agent cannot delegate to itself; plan the work as phases of your own task");
    }
    // Observe mode passes plain calls without the protocol: no delegation
    // could hold an observed agent, nor an observed agent hand one on.
    if agents.mode(&agent.agent.id) != crate::agent::AgentMode::Enforce || agents.mode(&child.id) != crate::agent::AgentMode::Enforce {
        return refusal_result("delegation_not_allowed", "agents in observe mode neither delegate nor are delegated to; switch both to enforce first");
    }
    if !agents.may_delegate(&agent.agent.id, &child.name) {
        return refusal_result(
            "delegation_not_allowed",
            &format!("agent `{}` may not delegate to `{}`: its agent file's delegates_to does not name it; ask the platform team", agent.agent.name, child.name),
        );
    }
    // Authority only shrinks: every tool in what remains of this task's plan.
    let remaining: Vec<String> = decide::plan_tools(task.phases.get(task.current_phase..).unwrap_or_default());
    let delegated: Vec<String> = decide::plan_tools(&req.phases);
    if let Some(wider) = delegated.iter().find(|t| !remaining.contains(t)) {
        return refusal_result(
            "delegation_widens",
            &format!("`{wider}` is not in what remains of task {}'s plan ({}): a delegation hands over part of it, never more", task.id, remaining.join(", ")),
        );
    }
    if let Some(not_yours) = delegated.iter().find(|t| !agent.agent.may_use(t)) {
        return refusal_result("delegation_widens", &format!("your agent file no longer allows `{not_yours}`: it cannot be delegated"));
    }
    if let Some(not_theirs) = delegated.iter().find(|t| !child.may_use(t)) {
        return refusal_result("delegation_widens", &format!("agent `{}` may not use `{not_theirs}` (its allowed_tools): it cannot be delegated to it", child.name));
    }
    let constraints = req.constraints.unwrap_or_default();
    for (tool, args) in &constraints {
        if !delegated.contains(tool) {
            return bad_input(DELEGATE, format!("constraints name `{tool}`, which the delegation's phases do not"));
        }
        if let Some(e) = args.iter().find_map(|(n, c)| c.validate(n).err()) {
            return bad_input(DELEGATE, e);
        }
    }
    let remaining_secs = task.expires_at.saturating_sub(now);
    let ttl = req.ttl_seconds.map_or(remaining_secs, |t| i64::try_from(t).unwrap_or(i64::MAX).min(remaining_secs));
    if ttl < 10 {
        return bad_input(DELEGATE, "the delegation would live under 10 s (the task is about to expire, or ttl_seconds is too short)");
    }
    // Policy decides every delegated tool, knowing whether the delegating
    // agent has read untrusted content (a hijacked parent's delegation).
    let after_untrusted_read = {
        let id = agent.agent.id.clone();
        let read = store_op(&shared.store, move |s| Ok((s.last_call_of(&id)?, s.taint_lookup(&id, &crate::taint::TaintProbe::default())?))).await;
        match read {
            Ok((last, ledger)) => last.is_some_and(|c| decide::untrusted_output(shared, &c.tool)) || !ledger.is_empty(),
            Err(r) => return r,
        }
    };
    let engine = shared.policy();
    let facts = crate::policy::DelegationFacts { child: child.name.clone(), child_team: child.team.clone(), depth: i64::from(depth) };
    for tool in &delegated {
        let Some(tool_facts) = decide::tool_facts(shared, tool) else {
            return refusal_result("unknown_tool", &format!("`{tool}` is not registered"));
        };
        let d = engine.decide(&DecisionInput {
            action: Action::Delegate,
            agent: &decide::agent_facts(agent, false),
            tool: &tool_facts,
            time: TimeFacts::at(now),
            task: &crate::policy::TaskFacts { after_untrusted_read, ..decide::task_facts(&task, tool) },
            request: None,
            delegation: Some(&facts),
        });
        match d.outcome {
            Outcome::Allow => {}
            Outcome::Deny { policy, reason } => return policy_denied(policy.as_deref(), &reason),
            Outcome::NeedsApproval { .. } | Outcome::NeedsConfirmation { .. } => {
                return refusal_result("delegation_needs_a_person", &format!("policy puts delegating `{tool}` to a person; jitgate does not hold delegations for approval: do that part yourself"));
            }
        }
    }
    let id = match token::new_jti() {
        Ok(j) => format!("dlg_{j}"),
        Err(e) => return refusal_result(e.code(), &e.to_string()),
    };
    let constraints_text = serde_json::to_string(&constraints).unwrap_or_else(|_| "{}".into());
    let delegation = crate::store::Delegation {
        id: id.clone(),
        parent_task: task.id.clone(),
        parent_agent: agent.agent.id.clone(),
        child_agent: child.id.clone(),
        objective: objective.clone(),
        phases: req.phases.clone(),
        constraints: constraints_text,
        depth,
        created_at: now,
        expires_at: now.saturating_add(ttl),
        child_task: None,
    };
    let record = Event::new(
        "delegation.granted",
        Some(&task.id),
        Some(&agent.agent.id),
        json!({"delegation": id, "child": child.id, "child_name": child.name, "objective": objective, "tools": delegated, "depth": depth, "constrained": constraints.keys().collect::<Vec<_>>(), "expires_at": delegation.expires_at}),
    );
    let expires_at = delegation.expires_at;
    match store_op(&shared.store, move |s| s.create_delegation(&delegation, &record, MAX_DELEGATIONS_PER_TASK, now)).await {
        Ok(true) => {}
        Ok(false) => {
            return refusal_result("too_many_delegations", &format!("task {} already made {MAX_DELEGATIONS_PER_TASK} delegations; begin a new task for more", task.id));
        }
        Err(r) => return r,
    }
    tracing::info!(task = %task.id, delegation = %id, child = %child.name, depth, tools = ?delegated, "delegated");
    ok(json!({
        "delegation": id,
        "agent": child.name,
        "phases": req.phases,
        "expires_at": rfc3339(expires_at),
        "next": format!("agent `{}` begins its task with {BEGIN_TASK} and \"delegation\": \"{id}\"; its plan may use only these tools", child.name),
    }))
}

/// `jit_begin_task` with `delegation`: the delegation is the child's, unused,
/// unexpired, with every delegation above it holding, and the plan within
/// it. The task's expiry, the delegation's at most.
pub(in crate::gateway::meta) async fn delegation_for_plan(
    shared: &crate::gateway::Shared,
    agent: &VerifiedAgent,
    id: &str,
    phases: &[Phase],
    now: i64,
) -> Result<crate::store::Delegation, CallToolResult> {
    let lookup = id.to_owned();
    let found = store_op(&shared.store, move |s| s.delegation(&lookup)).await?;
    let Some(d) = found.filter(|d| crate::jws::constant_time_eq(d.child_agent.as_bytes(), agent.agent.id.as_bytes())) else {
        return Err(refusal_result("delegation_not_found", "no such delegation for this agent; the delegating agent gets its id from jit_delegate"));
    };
    if d.child_task.is_some() {
        return Err(refusal_result("delegation_used", &format!("delegation {} already has its task; ask the delegating agent for a new one", d.id)));
    }
    if let Err(r) = crate::gateway::delegation::chain_holds(shared, &d.parent_task, None, None, now).await {
        return Err(refusal_result(r.code, &r.message));
    }
    let parent = store_op(&shared.store, {
        let p = d.parent_task.clone();
        move |s| s.task(&p)
    })
    .await?;
    if d.expires_at <= now || !parent.is_some_and(|p| p.state == TaskState::Active && p.expires_at > now) {
        return Err(refusal_result("parent_task_inactive", "the delegating task is no longer active (or the delegation expired): nothing can be begun under it"));
    }
    let allowed = d.tools();
    if let Some(wider) = decide::plan_tools(phases).into_iter().find(|t| !allowed.contains(t)) {
        return Err(refusal_result("not_delegated", &format!("`{wider}` is not in delegation {} (only {}): plan within what was delegated", d.id, allowed.join(", "))));
    }
    Ok(d)
}
