//! A task's life: begin (its plan decided), next phase, end.

#[allow(unused_imports)]
use super::*;

/// Bounds on a plan: it is stored, checked against policy tool by tool, and
/// shown to people, so its size must not be the agent's choice.
pub(in crate::gateway::meta) const MAX_TOOLS_PER_PHASE: usize = 32;

pub(in crate::gateway::meta) const MAX_TOOL_NAME_LEN: usize = 128;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct BeginTask {
    pub(in crate::gateway::meta) objective: String,
    pub(in crate::gateway::meta) phases: Vec<Phase>,
    pub(in crate::gateway::meta) ttl_seconds: Option<u64>,
    /// A delegation this agent was given (`jit_delegate`): the task is begun
    /// under it, its plan within it.
    pub(in crate::gateway::meta) delegation: Option<String>,
}

pub(in crate::gateway::meta) fn new_task_id() -> Result<String, CallToolResult> {
    token::new_jti().map(|j| format!("task_{j}")).map_err(|e| refusal_result(e.code(), &e.to_string()))
}

/// A plan's phases: named once each (1-64 of A-Z a-z 0-9 - _), each with
/// 1 to [`MAX_TOOLS_PER_PHASE`] tools of sane names (`jit_begin_task`'s plan,
/// `jit_delegate`'s share).
pub(in crate::gateway::meta) fn check_phases(tool: &str, phases: &[Phase]) -> Result<(), CallToolResult> {
    for (i, p) in phases.iter().enumerate() {
        if p.name.is_empty() || p.name.len() > 64 || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return Err(bad_input(tool, format!("phase name `{}` must be 1-64 of A-Z a-z 0-9 - _", p.name)));
        }
        if phases[..i].iter().any(|q| q.name == p.name) {
            return Err(bad_input(tool, format!("phase name `{}` is used twice", p.name)));
        }
        if p.tools.is_empty() {
            return Err(bad_input(tool, format!("phase `{}` lists no tools", p.name)));
        }
        if p.tools.len() > MAX_TOOLS_PER_PHASE {
            return Err(bad_input(tool, format!("phase `{}` lists {} tools; at most {MAX_TOOLS_PER_PHASE}", p.name, p.tools.len())));
        }
        if let Some(long) = p.tools.iter().find(|t| t.len() > MAX_TOOL_NAME_LEN) {
            return Err(bad_input(tool, format!("a tool name in phase `{}` is {} characters long; tool names have at most {MAX_TOOL_NAME_LEN}", p.name, long.len())));
        }
    }
    Ok(())
}

pub(in crate::gateway::meta) async fn begin_task(session: &Session, agent: &VerifiedAgent, sid: Option<&str>, req: BeginTask) -> CallToolResult {
    let objective = req.objective.trim();
    if objective.is_empty() || objective.len() > 2000 {
        return bad_input(BEGIN_TASK, "objective must be 1-2000 characters");
    }
    if req.phases.is_empty() || req.phases.len() > 20 {
        return bad_input(BEGIN_TASK, "give 1-20 phases");
    }
    if req.ttl_seconds.is_some_and(|t| t < 10) {
        return bad_input(BEGIN_TASK, "ttl_seconds must be at least 10 (leave it out for the default)");
    }
    if let Err(r) = check_phases(BEGIN_TASK, &req.phases) {
        return r;
    }
    let shared = &session.shared;
    let registered = |t: &str| {
        t.split_once(crate::manifest::NAMESPACE_SEPARATOR)
            .and_then(|(s, tool)| shared.downstreams.get(s).map(|d| d.manifest.tools.contains_key(tool)))
            .unwrap_or(false)
    };
    if let Verdict::Deny { rule, reason } = policy::decide_begin_task(&agent.agent, &req.phases, registered) {
        tracing::info!(rule, "task refused");
        return denied(rule, &reason);
    }
    let settings = shared.config.tokens;
    let mut ttl = req.ttl_seconds.map(Duration::from_secs).unwrap_or(settings.task_ttl).min(settings.max_task_ttl);
    let now = shared.clock.now_unix();
    let delegation = match &req.delegation {
        Some(d) => match delegation_for_plan(shared, agent, d, &req.phases, now).await {
            Ok(d) => Some(d),
            Err(r) => return r,
        },
        None => None,
    };
    let id = match (new_task_id(), &delegation) {
        // A delegated task says so in its id: its requests walk the chain.
        (Ok(id), Some(_)) => format!("{}{}", crate::store::DELEGATED_TASK_PREFIX, id.trim_start_matches("task_")),
        (Ok(id), None) => id,
        (Err(r), _) => return r,
    };
    if let Some(d) = &delegation {
        // No longer than the delegation.
        ttl = ttl.min(Duration::from_secs(u64::try_from(d.expires_at.saturating_sub(now)).unwrap_or(0)));
    }
    let history = match plan_history(shared, agent).await {
        Ok(h) => h,
        Err(r) => return r,
    };
    if let Err(r) = decide_plan(shared, agent, &id, objective, &req.phases, &history, now) {
        return r;
    }
    let task = Task {
        id: id.clone(),
        agent: agent.agent.id.clone(),
        sid: sid.unwrap_or_default().to_owned(),
        objective: objective.to_owned(),
        phases: req.phases.clone(),
        current_phase: 0,
        state: TaskState::Active,
        created_at: now,
        expires_at: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        end_reason: None,
    };
    let expires_at = task.expires_at;
    let session_id = sid.map(str::to_owned);
    let instance = shared.instance.clone();
    let audit_begin = Event::new(
        "task.begin",
        Some(&id),
        Some(&agent.agent.id),
        json!({"objective": objective, "phases": req.phases, "sid": sid, "instance": shared.instance, "expires_at": expires_at, "agent_name": agent.agent.name, "after_untrusted_read": history.after_untrusted_read, "delegation": delegation.as_ref().map(|d| &d.id), "parent_task": delegation.as_ref().map(|d| &d.parent_task)}),
    );
    let max_tasks = shared.config.limits.max_active_tasks_per_agent;
    // One transaction: a quarantined agent opens nothing, the cap holds under
    // concurrency, and no task exists without its record.
    let delegation_id = delegation.as_ref().map(|d| d.id.clone());
    let created = store_op(&shared.store, move |s| {
        let session = session_id.as_deref().map(|sid| (sid, instance.as_str()));
        // Under a delegation, bound to it in the same transaction: one
        // task per delegation, whoever races for it, and a loser writes nothing.
        match &delegation_id {
            Some(id) => s.begin_delegated_task(&task, session, &audit_begin, max_tasks, id, now),
            None => s.begin_task(&task, session, &audit_begin, max_tasks, now),
        }
    })
    .await;
    match created {
        Ok(crate::store::BeginTask::Created) => {}
        Ok(crate::store::BeginTask::Quarantined(reason)) => {
            tracing::warn!("task refused: agent quarantined");
            return refusal_result("agent_quarantined", &quarantine_message(&reason));
        }
        Ok(crate::store::BeginTask::DelegationUsed) => {
            let id = delegation.as_ref().map(|d| d.id.as_str()).unwrap_or_default();
            return refusal_result("delegation_used", &format!("delegation {id} already has its task"));
        }
        Ok(crate::store::BeginTask::TooMany(active)) => {
            return refusal_result(
                "too_many_tasks",
                &format!("this agent already has {active} active tasks (limits.max_active_tasks_per_agent); end finished ones with {END_TASK}"),
            );
        }
        Err(r) => return r,
    }
    if sid.is_some() {
        session.state.mark_used();
    }
    tracing::info!(task = %id, phases = req.phases.len(), delegated = delegation.is_some(), "task begun");
    let first = &req.phases[0];
    ok(json!({
        "task": id,
        "delegation": delegation.as_ref().map(|d| &d.id),
        "phase": first.name,
        "phase_tools": first.tools,
        "phases": req.phases.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "expires_at": rfc3339(expires_at),
        "next": format!("call {REQUEST} for each call of a tool in phase `{}`", first.name),
    }))
}

/// Policy decides `BeginTask` once for every tool the plan names; any denial
/// refuses the plan, naming each denied tool with its policy and the tools
/// that would be allowed.
/// What the agent did just before planning: a new plan right after it read
/// third-party content, adding tools its last plan did not name, is how a
/// hijacked agent widens its tools; policy sees both facts.
pub(in crate::gateway::meta) struct PlanHistory {
    pub(in crate::gateway::meta) after_untrusted_read: bool,
    /// The plan of the task of the agent's last call; None before its first call.
    pub(in crate::gateway::meta) previous_plan: Option<Vec<String>>,
}

pub(in crate::gateway::meta) async fn plan_history(shared: &crate::gateway::Shared, agent: &VerifiedAgent) -> Result<PlanHistory, CallToolResult> {
    let agent_id = agent.agent.id.clone();
    let (last, previous_task) = store_op(&shared.store, move |s| {
        let last = s.last_call_of(&agent_id)?;
        let task = match &last {
            Some(c) => s.task(&c.task)?,
            None => None,
        };
        Ok((last, task))
    })
    .await?;
    Ok(PlanHistory {
        after_untrusted_read: last.as_ref().is_some_and(|c| decide::untrusted_output(shared, &c.tool)),
        previous_plan: previous_task.map(|t| decide::plan_tools(&t.phases)),
    })
}

pub(in crate::gateway::meta) fn decide_plan(shared: &crate::gateway::Shared, agent: &VerifiedAgent, id: &str, objective: &str, phases: &[Phase], history: &PlanHistory, now: i64) -> Result<(), CallToolResult> {
    let plan = decide::plan_tools(phases);
    let new_tools: Vec<String> = plan.iter().filter(|t| !history.previous_plan.as_ref().is_some_and(|p| p.contains(t))).cloned().collect();
    let engine = shared.policy();
    let agent_facts = decide::agent_facts(agent, false);
    let (mut denied_tools, mut allowed) = (Vec::new(), Vec::new());
    for tool in &plan {
        let Some(tool_facts) = decide::tool_facts(shared, tool) else {
            return Err(refusal_result("unknown_tool", &format!("`{tool}` is not registered")));
        };
        let (index, phase) = phases.iter().enumerate().find(|(_, p)| p.tools.contains(tool)).map(|(i, p)| (i, p.name.clone())).unwrap_or_default();
        let task = crate::policy::TaskFacts {
            id: id.to_owned(),
            objective: objective.to_owned(),
            phase,
            phase_index: index,
            phase_count: phases.len(),
            in_phase_plan: true,
            plan: plan.clone(),
            after_untrusted_read: history.after_untrusted_read,
            new_tools: new_tools.clone(),
        };
        let d = engine.decide(&DecisionInput { action: Action::BeginTask, agent: &agent_facts, tool: &tool_facts, time: TimeFacts::at(now), task: &task, request: None, delegation: None });
        match d.outcome {
            Outcome::Deny { policy, reason } => {
                tracing::info!(tool = %tool, policy = policy.as_deref().unwrap_or("default-deny"), "task plan denied by policy");
                let why = match policy {
                    Some(id) => format!("`{tool}` (policy `{id}`: {reason})"),
                    None => format!("`{tool}` ({reason})"),
                };
                denied_tools.push(why);
            }
            Outcome::Allow | Outcome::NeedsApproval { .. } | Outcome::NeedsConfirmation { .. } => allowed.push(tool.clone()),
        }
    }
    if !denied_tools.is_empty() {
        let allowed = if allowed.is_empty() { "none".to_owned() } else { allowed.join(", ") };
        return Err(refusal_result(
            "policy_denied",
            &format!("the plan may not include {}; tools of this plan that are allowed: {allowed}", denied_tools.join("; ")),
        ));
    }
    Ok(())
}

/// The task, if it is this agent's and active.
pub(in crate::gateway::meta) async fn own_active_task(session: &Session, agent: &VerifiedAgent, id: &str) -> Result<Task, CallToolResult> {
    let id = id.to_owned();
    let task = store_op(&session.shared.store, move |s| s.task(&id)).await?;
    check_own_task(session, agent, task)
}

/// A task belongs to the agent that began it, whatever request (session,
/// sessionless, other gateway process) it comes back in; someone else's task
/// looks exactly like a task that does not exist.
pub(in crate::gateway::meta) fn check_own_task(session: &Session, agent: &VerifiedAgent, task: Option<Task>) -> Result<Task, CallToolResult> {
    own_task(&agent.agent.id, session.shared.clock.now_unix(), task)
}

/// `task`, if it is `agent`'s and active at `now`: another agent's task is
/// reported as not found (its existence is not confirmed).
pub(in crate::gateway::meta) fn own_task(agent: &str, now: i64, task: Option<Task>) -> Result<Task, CallToolResult> {
    let Some(task) = task.filter(|t| crate::jws::constant_time_eq(t.agent.as_bytes(), agent.as_bytes())) else {
        return Err(refusal_result("task_not_found", "no such task for this agent; start one with jit_begin_task"));
    };
    if task.state != TaskState::Active || task.expires_at <= now {
        let state = if task.state == TaskState::Active { "expired" } else { task.state.as_str() };
        return Err(refusal_result(
            "task_inactive",
            &format!("task {} is {state} ({}); start a new one with jit_begin_task", task.id, task.end_reason.clone().unwrap_or_else(|| "TTL reached".into())),
        ));
    }
    Ok(task)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct NextPhase {
    pub(in crate::gateway::meta) task: String,
    pub(in crate::gateway::meta) phase: String,
}

pub(in crate::gateway::meta) async fn next_phase(session: &Session, agent: &VerifiedAgent, req: NextPhase) -> CallToolResult {
    let task = match own_active_task(session, agent, &req.task).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let current = task.current_phase;
    let Some(next) = task.phases.get(current + 1) else {
        return refusal_result("phase_order", &format!("task {} is in its last phase; call {END_TASK} when done", task.id));
    };
    if next.name != req.phase {
        let why = match task.phases.iter().position(|p| p.name == req.phase) {
            Some(i) if i <= current => "phases cannot be revisited",
            Some(_) => "phases cannot be skipped",
            None => "there is no such phase in the plan",
        };
        return refusal_result("phase_order", &format!("cannot move to `{}`: {why}; the next phase is `{}`", req.phase, next.name));
    }
    let now = session.shared.clock.now_unix();
    let id = task.id.clone();
    let event = Event::new("task.phase", Some(&task.id), Some(&agent.agent.id), json!({"from": task.phases.get(current).map(|p| &p.name), "to": next.name}));
    match store_op(&session.shared.store, move |s| {
        s.append_audit(&event, now)?;
        s.advance_phase(&id, current, now)
    })
    .await
    {
        Ok(true) => {}
        Ok(false) => return refusal_result("phase_order", "the task changed meanwhile; read its state and try again"),
        Err(r) => return r,
    }
    tracing::info!(task = %task.id, phase = %next.name, "phase advanced; tokens of the previous phase revoked");
    ok(json!({ "task": task.id, "phase": next.name, "phase_tools": next.tools, "previous_phase_tokens": "revoked" }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct EndTask {
    pub(in crate::gateway::meta) task: String,
    pub(in crate::gateway::meta) outcome: String,
}

pub(in crate::gateway::meta) async fn end_task(session: &Session, agent: &VerifiedAgent, req: EndTask) -> CallToolResult {
    let task = match own_active_task(session, agent, &req.task).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = session.shared.clock.now_unix();
    let id = task.id.clone();
    let outcome: String = req.outcome.chars().take(1000).collect();
    let outcome2 = outcome.clone();
    let event = Event::new("task.end", Some(&task.id), Some(&agent.agent.id), json!({"outcome": outcome}));
    if let Err(r) = store_op(&session.shared.store, move |s| {
        s.append_audit(&event, now)?;
        s.end_task(&id, &outcome2, now)
    })
    .await
    {
        return r;
    }
    tracing::info!(task = %task.id, outcome = %crate::telemetry::Clean(&outcome), "task ended; all its tokens revoked");
    // What it delegated ends with it, now rather than at the next sweep.
    crate::gateway::maintenance::end_orphaned_delegations(&session.shared).await;
    ok(json!({ "task": task.id, "state": "ended", "outcome": outcome, "tokens": "revoked" }))
}
