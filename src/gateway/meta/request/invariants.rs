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
    /// For a delegated task: the tools the plans above it name.
    pub(in crate::gateway::meta) plan_above: Vec<String>,
    /// For a delegated task: the agents that delegated it, nearest first.
    pub(in crate::gateway::meta) agents_above: Vec<String>,
}

/// What the gateway knows of the requested tool, looked up before the
/// invariants run, so that the stage itself reads no gateway state.
pub(in crate::gateway::meta) struct ToolLookup {
    /// The exposed tool, or why this agent cannot use it (not offered,
    /// withheld, its server down).
    pub(in crate::gateway::meta) exposed: Result<crate::downstream::ExposedTool, crate::gateway::authorize::Refusal>,
    /// The tool's facts for policy; `None`: no manifest registers it.
    pub(in crate::gateway::meta) facts: Option<crate::policy::ToolFacts>,
}

impl ToolLookup {
    pub(in crate::gateway::meta) fn of(shared: &crate::gateway::Shared, agent: &VerifiedAgent, tool: &str) -> Self {
        let exposed = shared
            .downstreams
            .find(tool)
            .map(|(_, t)| t)
            .ok_or_else(|| crate::gateway::authorize::explain_not_exposed(&shared.downstreams, agent, tool));
        Self { exposed, facts: decide::tool_facts(shared, tool) }
    }
}

/// Stage 3 in the gateway: the tool looked up, then [`check_invariants`].
pub(in crate::gateway::meta) fn check_request(session: &Session, agent: &VerifiedAgent, asked: &Asked, loaded: Loaded) -> Result<Checked, CallToolResult> {
    let shared = &session.shared;
    let lookup = ToolLookup::of(shared, agent, &asked.tool);
    check_invariants(&agent.agent, shared.clock.now_unix(), asked, loaded, lookup)
}

/// Stage 3, for a task begun under a delegation: every delegation above it
/// holds, and delegates this tool, in a phase its parent has not left,
/// with these arguments (`parent_task_inactive`, `not_delegated`,
/// `parent_phase_left`, `outside_delegation`...). Whatever the child's own
/// agent file would allow.
pub(in crate::gateway::meta) async fn check_delegation(shared: &crate::gateway::Shared, asked: &Asked, checked: &mut Checked) -> Result<(), CallToolResult> {
    for above in delegation_chain(shared, asked, checked).await? {
        // The work's plan is the tree's: a chain from the parent's reads
        // into the child's tool is judged as one task's.
        checked.plan_above.extend(above.parent_plan);
        checked.agents_above.push(above.delegation.parent_agent);
    }
    if checked.agents_above.is_empty() {
        return Ok(());
    }
    // Taint flows with the work: what the delegating agents read counts
    // for this request too (one store trip for all of them).
    let (agents, probe, mut ledger) = (checked.agents_above.clone(), asked.probe.clone(), std::mem::take(&mut checked.ledger));
    checked.ledger = store_op(&shared.store, move |s| {
        crate::gateway::delegation::merge_ledgers_of(s, &agents, &probe, &mut ledger)?;
        Ok(ledger)
    })
    .await?;
    Ok(())
}

/// [`check_delegation`]'s chain check alone, again before a grant that
/// waited (for the end user's answer).
pub(in crate::gateway::meta) async fn delegation_still_holds(shared: &crate::gateway::Shared, asked: &Asked, checked: &Checked) -> Result<(), CallToolResult> {
    delegation_chain(shared, asked, checked).await.map(|_| ())
}

async fn delegation_chain(shared: &crate::gateway::Shared, asked: &Asked, checked: &Checked) -> Result<Vec<crate::gateway::delegation::Above>, CallToolResult> {
    // Exact arguments, when the request gave them (a constraint on a
    // delegated argument needs them).
    let exact: Option<JsonObject> = checked
        .constraints
        .iter()
        .map(|(name, c)| match c {
            Constraint::Eq(v) => Some((name.clone(), v.clone())),
            _ => None,
        })
        .collect();
    crate::gateway::delegation::chain_holds(shared, &checked.task.id, Some(&asked.tool), exact, asked.now).await.map_err(|r| {
        tracing::info!(task = %checked.task.id, tool = %crate::telemetry::Clean(&asked.tool), code = r.code, "request refused by its delegation");
        refusal_result(r.code, &r.message)
    })
}

/// Stage 3: the invariants no policy widens, in this order: the agent's own
/// active task (`task_not_found`, `task_inactive`), not quarantined
/// (`agent_quarantined`), the tool in the current phase and the agent's
/// allowed tools (`request_denied`), a registered and exposed tool (the
/// lookup's refusal), well-formed constraints (their refusal), `follows`
/// naming a call of this task (`invalid_arguments`).
pub(in crate::gateway::meta) fn check_invariants(
    agent: &crate::agent::Agent,
    now: i64,
    asked: &Asked,
    loaded: Loaded,
    lookup: ToolLookup,
) -> Result<Checked, CallToolResult> {
    let task = own_task(&agent.id, now, loaded.task)?;
    if let Some(q) = &loaded.quarantined {
        tracing::warn!(task = %task.id, tool = %crate::telemetry::Clean(&asked.tool), "request refused: agent quarantined");
        return Err(refusal_result("agent_quarantined", &quarantine_message(&q.reason)));
    }
    if let Verdict::Deny { rule, reason } = policy::decide_request(agent, &task, &asked.tool) {
        tracing::info!(task = %task.id, tool = %crate::telemetry::Clean(&asked.tool), rule, "intent denied");
        return Err(denied(rule, &reason));
    }
    let tool = match lookup.exposed {
        Ok(t) => t,
        Err(r) => return Err(refusal_result(r.code, &r.message)),
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
    let Some(tool_facts) = lookup.facts else {
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
        plan_above: Vec::new(),
        agents_above: Vec::new(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::request::fixture::{self, AGENT, NOW, READ, SEND, agent, asked, code_of, loaded, offered, task};

    fn check(asked: &Asked, loaded: Loaded, lookup: ToolLookup) -> Result<Checked, CallToolResult> {
        check_invariants(&agent(), NOW, asked, loaded, lookup)
    }

    fn refused(r: Result<Checked, CallToolResult>) -> String {
        match r {
            Ok(c) => panic!("expected a refusal, the request passed for `{}`", c.tool.exposed_name),
            Err(r) => code_of(&r),
        }
    }

    #[test]
    fn a_request_in_the_current_phase_passes_with_its_facts() {
        let r = asked(READ, json!({"folder": "inbox"}));
        let checked = check(&r, loaded(Some(task(0))), offered(READ)).unwrap_or_else(|e| panic!("{}", fixture::text_of(&e)));
        assert_eq!(checked.task.id, "task_1");
        assert_eq!(checked.tool_facts.exposed, READ);
        assert_eq!(checked.digest, r.digest.clone().unwrap_or_default());
        assert!(checked.granted.is_none());
    }

    #[test]
    fn another_agents_task_looks_like_no_task() {
        let mut theirs = task(0);
        theirs.agent = "spiffe://example.test/agent/other".into();
        assert_eq!(refused(check(&asked(READ, json!({})), loaded(Some(theirs)), offered(READ))), "task_not_found");
        assert_eq!(refused(check(&asked(READ, json!({})), loaded(None), offered(READ))), "task_not_found");
    }

    #[test]
    fn an_ended_or_expired_task_is_inactive() {
        let mut ended = task(0);
        ended.state = TaskState::Ended;
        assert_eq!(refused(check(&asked(READ, json!({})), loaded(Some(ended)), offered(READ))), "task_inactive");
        let mut expired = task(0);
        expired.expires_at = NOW;
        assert_eq!(refused(check(&asked(READ, json!({})), loaded(Some(expired)), offered(READ))), "task_inactive");
    }

    #[test]
    fn a_quarantined_agent_is_refused_before_anything_else() {
        let mut state = loaded(Some(task(0)));
        state.quarantined = Some(crate::store::Quarantine { agent: AGENT.into(), reason: "drift".into(), since: NOW - 5 });
        // Even a request that would fail later (tool not offered) says quarantined.
        assert_eq!(refused(check(&asked(READ, json!({})), state, fixture::not_offered(READ))), "agent_quarantined");
    }

    #[test]
    fn a_tool_of_a_later_phase_or_outside_the_agent_is_denied() {
        assert_eq!(refused(check(&asked(SEND, json!({"to": "a@example.test"})), loaded(Some(task(0))), offered(SEND))), "request_denied");
        assert_eq!(refused(check(&asked("ws__delete_all", json!({})), loaded(Some(task(0))), offered("ws__delete_all"))), "request_denied");
        // The same send passes in its own phase.
        assert!(check(&asked(SEND, json!({"to": "a@example.test"})), loaded(Some(task(1))), offered(SEND)).is_ok());
    }

    #[test]
    fn a_tool_no_server_offers_gets_the_lookups_refusal() {
        assert_eq!(refused(check(&asked(READ, json!({})), loaded(Some(task(0))), fixture::not_offered(READ))), "unknown_tool");
    }

    #[test]
    fn refused_constraints_are_reported_after_the_task_checks() {
        let mut r = asked(READ, json!({}));
        r.constraints = Err(refusal_result("invalid_arguments", "bad constraint"));
        assert_eq!(refused(check(&r, loaded(Some(task(0))), offered(READ))), "invalid_arguments");
        // With no task, the task is what the agent hears about first.
        assert_eq!(refused(check(&r, loaded(None), offered(READ))), "task_not_found");
    }

    #[test]
    fn follows_must_name_a_call_of_this_task() {
        let mut r = asked(READ, json!({}));
        r.follows = Some("jti_elsewhere".into());
        let mut state = loaded(Some(task(0)));
        let parent = |task: &str| TokenRecord {
            jti: "jti_elsewhere".into(),
            task: task.into(),
            agent: AGENT.into(),
            sid: "s1".into(),
            tool: READ.into(),
            phase: 0,
            issued_at: NOW - 10,
            expires_at: NOW + 50,
            state: TokenState::Consumed,
            changed_at: Some(NOW - 9),
            reason: None,
        };
        state.parent = Some(parent("task_other"));
        let text = match check(&r, state, offered(READ)) {
            Err(e) => fixture::text_of(&e),
            Ok(_) => panic!("a call of another task was accepted as `follows`"),
        };
        assert!(text.contains("not a call of this task"), "{text}");
        let mut state = loaded(Some(task(0)));
        state.parent = Some(parent("task_1"));
        assert!(check(&r, state, offered(READ)).is_ok());
    }

    #[test]
    fn an_unregistered_tool_is_refused() {
        let mut lookup = offered(READ);
        lookup.facts = None;
        assert_eq!(refused(check(&asked(READ, json!({})), loaded(Some(task(0))), lookup)), "unknown_tool");
    }
}
