//! Observe mode (`mode = "observe"` in an agent file): the agent's plain
//! `tools/call` passes through without the just-in-time protocol, judged by
//! the request path's own stages as enforcement would have judged it.
//!
//! What still holds, as for every agent: its identity, its `allowed_tools`,
//! the tool's pin and schemas, a quarantine. What is judged and recorded
//! but not enforced: policy (which rule would deny, hold for a person or
//! ask the end user), taint and the baseline. Every observed call is one
//! `call.observed` record, written with the call's intent (baselines learn
//! from it) before the call is forwarded; nothing is minted. Its calls go
//! into the agent's observation task of the day, so traces and `/ui` show
//! them, each marked observed.

#[allow(unused_imports)]
use super::*;
use super::request::{Asked, Passes, ToolLookup, check_invariants, decide_request, judge_baseline, judge_taint, load_request_state, request_facts, taint_probe};

/// How an observation task is stored: ended, for the protocol's purposes.
const OBSERVATION_TASK_STATE: TaskState = TaskState::Ended;

/// What observing a call found: the decision enforcement would have made.
struct Would {
    /// allow, deny, pending_approval, end_user_question, quarantine.
    outcome: &'static str,
    policy: Option<String>,
    reason: String,
}

/// Observe, then forward, one plain call of an observed agent.
pub async fn observe_call(
    session: &Session,
    agent: &VerifiedAgent,
    binding: Binding<'_>,
    tool_name: &str,
    arguments: JsonObject,
    ctx: &rmcp::service::RequestContext<rmcp::RoleServer>,
    arrived: std::time::Instant,
) -> CallToolResult {
    let shared = &session.shared;
    let Some((downstream, tool)) = shared.downstreams.find(tool_name) else {
        let r = crate::gateway::authorize::explain_not_exposed(&shared.downstreams, agent, tool_name);
        return refusal_result(r.code, &r.message);
    };
    if !agent.agent.may_use(tool_name) {
        return refusal_result(
            "tool_not_allowed",
            &format!("agent `{}` is not allowed to use `{tool_name}`; ask the platform team to add it to the agent's allowed_tools", agent.agent.name),
        );
    }
    let value = Value::Object(arguments.clone());
    if request::carries_nul(&value) {
        return bad_input(tool_name, "the arguments carry a NUL character; jitgate accepts none: remove it");
    }
    // Schemas on the blocking pool, as for every request (however costly an
    // agent makes its arguments, the runtime's workers keep serving).
    let checked_schema = {
        let (tool, value) = (tool.clone(), value.clone());
        tokio::task::spawn_blocking(move || schema_problems(&tool.input_validator, &value).or_else(|| tool.manifest_validator.as_ref().and_then(|v| schema_problems(v, &value)))).await
    };
    match checked_schema {
        Ok(None) => {}
        Ok(Some(p)) => return refusal_result("invalid_arguments", &format!("the arguments do not match `{tool_name}`'s input schema: {p}")),
        Err(e) => return refusal_result("internal", &format!("the arguments could not be checked: {e}")),
    }
    let now = shared.clock.now_unix();
    let task = observation_task(shared, agent, binding, now);
    let asked = observed_request(agent, tool_name, &tool, &arguments, &task, now);
    let loaded = match load_request_state(&shared.store, &agent.agent.id, &asked).await {
        Ok(l) => l,
        Err(r) => return r,
    };
    if let Some(q) = &loaded.quarantined {
        return refusal_result("agent_quarantined", &quarantine_message(&q.reason));
    }
    let lookup = ToolLookup { exposed: Ok(tool.clone()), facts: decide::tool_facts(shared, tool_name) };
    // The agent's task of the day stands in for the task it never declared.
    let loaded = request::Loaded { task: Some(task.clone()), ..loaded };
    let checked = match check_invariants(&agent.agent, now, &asked, loaded, lookup) {
        Ok(c) => c,
        Err(r) => return r,
    };
    let taint = judge_taint(&checked.ledger, &checked.tool.spec, &checked.constraints, None);
    let untrusted_output = |t: &str| decide::untrusted_output(shared, t);
    let assessment = judge_baseline(&agent.agent, shared.learned.get(&agent.agent.id), &untrusted_output, &asked, &checked, taint.verdict.tainted);
    let mut facts = request_facts(&asked, &checked, &taint, &assessment);
    facts.end_user = decide::end_user_facts(shared, agent);
    let engine = shared.policy();
    let task_facts = crate::policy::TaskFacts {
        after_untrusted_read: checked.last_call.as_ref().is_some_and(|c| untrusted_output(&c.tool)) || !checked.ledger.is_empty(),
        ..decide::task_facts(&checked.task, tool_name)
    };
    let decision =
        decide_request(engine.clone(), Action::Request, decide::agent_facts(agent, false), checked.tool_facts.clone(), TimeFacts::at(now), task_facts, facts).await;
    let would = would_of(&engine, &decision, &assessment);
    crate::metrics::metrics().observed(would.outcome, would.policy.as_deref());
    tracing::info!(agent = %agent.agent.name, tool = %crate::telemetry::Clean(tool_name), would = would.outcome, policy = would.policy.as_deref().unwrap_or("none"), "call observed (not enforced)");

    let jti = match token::new_jti() {
        Ok(j) => format!("obs_{j}"),
        Err(e) => return refusal_result(e.code(), &e.to_string()),
    };
    let mut data = json!({
        "jti": jti,
        "tool": tool_name,
        "mode": "observe",
        "agent_name": agent.agent.name,
        "would": would.outcome,
        "policy": would.policy,
        "reason": would.reason,
        "policies": decision.policy_ids(),
        "arguments_digest": crate::audit::digest(&json!(checked.constraints)),
        "baseline": {"score": assessment.score, "transition_known": assessment.transition_known, "explanation": assessment.explanation},
        "taint": {
            "tainted": taint.verdict.tainted,
            "destination_in_text": taint.destination_in_text,
            "text_from_third_party": taint.text_from_third_party,
            "arguments": taint.verdict.findings.iter().map(|(a, _)| a.clone()).collect::<Vec<_>>(),
            "sources": taint.verdict.sources.iter().map(|s| json!({"call": s.call, "tool": s.tool})).collect::<Vec<_>>(),
        },
    });
    if shared.config.audit.content {
        data["arguments"] = crate::audit::redact(&value, &shared.config.audit.redact);
    }
    let intent = Intent { jti: jti.clone(), agent: agent.agent.id.clone(), task: task.id.clone(), tool: tool_name.to_owned(), shape: profile::shape_of(&checked.constraints), at: now };
    let record = Event::new("call.observed", Some(&task.id), Some(&agent.agent.id), data);
    // No call leaves unrecorded: the record first, then the call.
    let stored = Task { state: OBSERVATION_TASK_STATE, end_reason: Some("observe mode: observed calls only, never a task for requests".into()), ..task };
    if let Err(r) = store_op(&shared.store, move |s| s.record_observed(&stored, &intent, &record, now)).await {
        return r;
    }
    // Counted in the agent's request rate, as a request would be.
    if let Err(e) = crate::store::units::count_request(&shared.store, agent.agent.id.clone(), now).await {
        tracing::warn!(error = %e, "the observed call could not be counted in the agent's request rate");
    }
    let call = crate::gateway::forward::CallRef { jti, task: checked.task.id.clone(), agent: agent.agent.id.clone() };
    crate::gateway::forward::call_and_record(shared, &downstream, &tool, arguments, agent, &call, binding.session.unwrap_or_default(), ctx, arrived, None).await
}

/// The request enforcement would have judged: these exact arguments, in
/// the agent's observation task.
fn observed_request(agent: &VerifiedAgent, tool_name: &str, tool: &crate::downstream::ExposedTool, arguments: &JsonObject, task: &Task, now: i64) -> Asked {
    let constraints = token::constraints::exact(arguments);
    Asked {
        task: task.id.clone(),
        tool: tool_name.to_owned(),
        purpose: "(observed call)".into(),
        follows: None,
        ttl_seconds: None,
        break_glass: None,
        digest: Some(decide::request_digest(&agent.agent.id, tool_name, &constraints)),
        probe: taint_probe(&tool.spec, &constraints, None),
        constraints: Ok(constraints),
        now,
        one_step: None,
        passes: Passes::default(),
    }
}

/// The agent's observation task of the (UTC) day: one phase, `observed`,
/// with the observed servers' tools the agent may use, so that a chain
/// within them is judged as a chain within a declared plan would be.
///
/// It is stored ended ([`OBSERVATION_TASK_STATE`]): the just-in-time
/// protocol never accepts it (`jit_request`, `jit_call` and the phase tools
/// refuse a task that is not active), so it can never stand for a plan no
/// `BeginTask` policy judged. The judgement here uses it as active.
fn observation_task(shared: &crate::gateway::Shared, agent: &VerifiedAgent, binding: Binding<'_>, now: i64) -> Task {
    let day = now.div_euclid(86_400);
    let who: String = <sha2::Sha256 as sha2::Digest>::digest(agent.agent.id.as_bytes()).iter().take(6).map(|b| format!("{b:02x}")).collect();
    // Only the tools this agent's calls are observed on: the plan is the
    // standard observed chains are judged against, never a grant.
    let mode = shared.identity.agents().mode(&agent.agent.id);
    let mut tools: Vec<String> =
        shared.downstreams.exposed_tools().into_iter().filter(|t| mode.observes(&t.server) && agent.agent.may_use(&t.exposed_name)).map(|t| t.exposed_name).collect();
    tools.sort();
    Task {
        id: format!("{}{who}_{day}", crate::store::OBSERVATION_TASK_PREFIX),
        agent: agent.agent.id.clone(),
        sid: binding.session.unwrap_or_default().to_owned(),
        objective: crate::trace::OBSERVED_OBJECTIVE.into(),
        phases: vec![Phase { name: "observed".into(), tools }],
        current_phase: 0,
        state: TaskState::Active,
        created_at: day * 86_400,
        expires_at: (day + 1) * 86_400,
        end_reason: None,
    }
}

/// What the gateway would have answered.
fn would_of(engine: &crate::policy::PolicyEngine, decision: &crate::policy::Decision, assessment: &profile::Assessment) -> Would {
    let first = decision.policy_ids().into_iter().next();
    let drift = assessment.drift.then(|| assessment.explanation.clone());
    match engine.verdict(drift.as_deref(), decision) {
        crate::policy::Verdict::Quarantine { reason } => Would { outcome: "quarantine", policy: first, reason },
        crate::policy::Verdict::Outcome(Outcome::Allow) => Would { outcome: "allow", policy: first, reason: String::new() },
        crate::policy::Verdict::Outcome(Outcome::Deny { policy, reason }) => Would { outcome: "deny", policy, reason },
        crate::policy::Verdict::Outcome(Outcome::NeedsApproval { group }) => {
            Would { outcome: "pending_approval", policy: first, reason: format!("a person of group `{group}` would have to approve") }
        }
        crate::policy::Verdict::Outcome(Outcome::NeedsConfirmation { fallback }) => Would {
            outcome: "end_user_question",
            policy: first,
            reason: format!("the end user would be asked to confirm (group `{fallback}` where the client cannot ask)"),
        },
    }
}
