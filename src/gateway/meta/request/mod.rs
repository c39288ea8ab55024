//! `jit_request` (and `jit_call`'s request): the stages, in the order
//! [`request`] runs them: parse → load → invariants → taint → baseline →
//! decision → confirmation → outcome, one file each.

mod confirmation;
mod decision;
#[cfg(test)]
mod fixture;
mod invariants;
mod judge_baseline;
mod judge_taint;
mod load;
mod outcome;
mod parse;

#[allow(unused_imports)]
use super::*;
#[allow(unused_imports)]
pub(in crate::gateway::meta) use self::{confirmation::*, decision::*, invariants::*, judge_baseline::*, judge_taint::*, load::*, outcome::*, parse::*};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct Request {
    pub(in crate::gateway::meta) task: String,
    pub(in crate::gateway::meta) tool: String,
    pub(in crate::gateway::meta) arguments: Option<JsonObject>,
    pub(in crate::gateway::meta) constraints: Option<ArgConstraints>,
    pub(in crate::gateway::meta) purpose: String,
    pub(in crate::gateway::meta) follows: Option<String>,
    pub(in crate::gateway::meta) ttl_seconds: Option<u64>,
    pub(in crate::gateway::meta) break_glass: Option<BreakGlassRequest>,
    /// `jit_call`: where the grant leaves the call it already spent the
    /// token on (never part of the agent's input).
    #[serde(skip)]
    pub(in crate::gateway::meta) one_step: Option<Arc<OneStepCall>>,
}

/// A `jit_call`'s call, for the grant to spend its token on at once: the
/// exact arguments, and (filled by the grant) the spent token's claims.
#[derive(Debug)]
pub struct OneStepCall {
    pub(in crate::gateway::meta) arguments: JsonObject,
    pub(in crate::gateway::meta) spent: std::sync::Mutex<Option<CapabilityClaims>>,
}

/// What authorizing a `jit_call` gave.
pub enum OneStepGrant {
    /// The token was recorded as spent on this call together with the
    /// call's `call.forwarded` record: forward it.
    Spent(Box<CapabilityClaims>),
    /// A token to use as a call with the token in hand would (the grant did
    /// not spend it: the arguments failed a schema check, which the call
    /// path reports).
    Token { token: String, jti: String },
}

/// `jit_call`: a request for exact arguments, and the call.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OneStep {
    pub task: String,
    pub tool: String,
    pub arguments: JsonObject,
    pub purpose: String,
    pub follows: Option<String>,
}

impl OneStep {
    /// Parse `jit_call`'s arguments.
    pub fn parse(args: JsonObject) -> Result<Self, CallToolResult> {
        serde_json::from_value(Value::Object(args)).map_err(|e| bad_input(CALL, e))
    }

    /// The `jit_request` that authorizes it: these exact arguments.
    pub(in crate::gateway::meta) fn as_request(&self, call: Arc<OneStepCall>) -> Request {
        Request {
            task: self.task.clone(),
            tool: self.tool.clone(),
            arguments: Some(self.arguments.clone()),
            constraints: None,
            purpose: self.purpose.clone(),
            follows: self.follows.clone(),
            ttl_seconds: None,
            break_glass: None,
            one_step: Some(call),
        }
    }
}

/// Authorize a `jit_call` exactly as `jit_request` would: the granted token
/// (and its id), or the answer to give instead (a refusal, a pending
/// approval, a question for the end user).
pub async fn authorize_one_step(session: &Session, agent: &VerifiedAgent, binding: Binding<'_>, call: &OneStep) -> Result<OneStepGrant, CallToolResponse> {
    let slot = Arc::new(OneStepCall { arguments: call.arguments.clone(), spent: std::sync::Mutex::new(None) });
    let answer = request(session, agent, binding, call.as_request(slot.clone())).await;
    let CallToolResponse::Complete(result) = answer else { return Err(answer) };
    if result.is_error != Some(true)
        && let Some(claims) = slot.spent.lock().unwrap_or_else(|p| p.into_inner()).take()
    {
        return Ok(OneStepGrant::Spent(Box::new(claims)));
    }
    let granted = result.structured_content.as_ref().filter(|_| result.is_error != Some(true)).and_then(|v| {
        let token = v.get("token")?.as_str()?.to_owned();
        let jti = v.get("jti")?.as_str()?.to_owned();
        Some(OneStepGrant::Token { token, jti })
    });
    granted.ok_or_else(|| result.into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::gateway::meta) struct BreakGlassRequest {
    pub(in crate::gateway::meta) justification: Option<String>,
}

/// One intent request, as a sequence of stages that each either refuse or
/// hand their facts to the next: parse → load state (one store trip) →
/// invariants → taint → baseline → policy → outcome (deny, pending
/// approval, or a token).
pub(in crate::gateway::meta) async fn request(session: &Session, agent: &VerifiedAgent, binding: Binding<'_>, req: Request) -> CallToolResponse {
    let shared = &session.shared;
    // Schemas (the tool's, the manifest's, an agent's constraint) are
    // evaluated on the blocking pool: however costly an agent makes its
    // request, the runtime's workers keep serving the other agents.
    let parsed = {
        let (shared, agent) = (shared.clone(), agent.clone());
        tokio::task::spawn_blocking(move || parse_request(&shared, &agent, req)).await
    };
    let asked = match parsed {
        Ok(Ok(a)) => a,
        Ok(Err(r)) => return r.into(),
        Err(e) => return refusal_result("internal", &format!("the request could not be checked: {e}")).into(),
    };
    let loaded = match load_request_state(&shared.store, &agent.agent.id, &asked).await {
        Ok(l) => l,
        Err(r) => return r.into(),
    };
    let mut answer = decide_loaded(session, agent, binding, &asked, loaded).await;
    // Requests decided at the same moment read the same committed rate: a
    // burst sent in parallel would each find itself within the agent's
    // limit. Counting is exact (the grant's, or the count below), and a
    // request whose exact count is over the limit it was decided within is
    // decided again on that count, once, so a parallel burst meets the
    // baseline as a burst.
    let exact = asked.passes.rate_at_grant.load(std::sync::atomic::Ordering::Relaxed);
    let again = if exact > 0 {
        // The grant wrote nothing; the request is decided whole again (its
        // grant neither counts it again nor holds it to the limit).
        Some((Pass::AfterGrant, exact))
    } else if !asked.passes.counted.load(std::sync::atomic::Ordering::Relaxed) {
        // Not granted (denied, held for a person, asked about): counted
        // here; only a quarantine for the burst replaces the answer.
        let (agent_id, now) = (agent.agent.id.clone(), asked.now);
        match crate::store::units::count_request(&shared.store, agent_id, now).await {
            Ok(total) => asked.decided_within().filter(|limit| total > *limit).map(|_| (Pass::BurstOnly, total)),
            Err(e) => {
                tracing::warn!(error = %e, "the request could not be counted in the agent's request rate");
                None
            }
        }
    } else {
        None
    };
    if let Some((pass, exact)) = again {
        asked.set_pass(pass);
        let mut loaded = match load_request_state(&shared.store, &agent.agent.id, &asked).await {
            Ok(l) => l,
            // The first answer is on record already: it stands.
            Err(_) if pass == Pass::BurstOnly => return answer,
            Err(r) => return r.into(),
        };
        // The read counts this request as one more, but it is counted.
        loaded.rate = loaded.rate.saturating_sub(1).max(exact);
        let second = decide_loaded(session, agent, binding, &asked, loaded).await;
        if pass == Pass::AfterGrant || asked.passes.quarantined_on_second_pass.load(std::sync::atomic::Ordering::Relaxed) {
            answer = second;
        }
    }
    answer
}

/// Stages 3 onwards, on the state the store gave.
pub(in crate::gateway::meta) async fn decide_loaded(session: &Session, agent: &VerifiedAgent, binding: Binding<'_>, asked: &Asked, loaded: Loaded) -> CallToolResponse {
    let shared = &session.shared;
    let mut checked = match check_request(session, agent, asked, loaded) {
        Ok(c) => c,
        Err(r) => return r.into(),
    };
    if let Err(r) = check_delegation(shared, asked, &mut checked).await {
        return r.into();
    }
    let taint = judge_taint(&checked.ledger, &checked.tool.spec, &checked.constraints, asked.break_glass.as_deref());
    if taint.verdict.tainted || taint.destination_in_text || taint.text_from_third_party {
        tracing::warn!(task = %checked.task.id, tool = %crate::telemetry::Clean(&asked.tool), findings = ?taint.verdict.findings, sources = ?taint.verdict.sources, "request carries values from untrusted output");
    }
    let untrusted_output = |tool: &str| decide::untrusted_output(shared, tool);
    let assessment = judge_baseline(&agent.agent, shared.learned.get(&agent.agent.id), &untrusted_output, &asked, &checked, taint.verdict.tainted);
    let pass = asked.pass();
    if pass == Pass::First {
        let within = assessment.rate_within.map_or(0, |l| u64::from(l) + 1);
        asked.passes.decided_within.store(within, std::sync::atomic::Ordering::Relaxed);
    }
    let mut facts = request_facts(&asked, &checked, &taint, &assessment);
    facts.end_user = decide::end_user_facts(shared, agent);
    if pass == Pass::First {
        match end_user_answer(shared, agent, binding, &asked, &checked).await {
            Ok(confirmed) => facts.confirmed_by_end_user = confirmed,
            Err(r) => return r.into(),
        }
    } else {
        // The first decision took the end user's answer (a stateless
        // answer is good once); it stands.
        facts.confirmed_by_end_user = asked.passes.confirmed.load(std::sync::atomic::Ordering::Relaxed);
    }
    let action = if asked.break_glass.is_some() { Action::BreakGlass } else { Action::Request };
    let engine = shared.policy();
    // The agent, then every agent that delegated its task (nearest first).
    let deciders: Vec<Option<crate::policy::AgentFacts>> = std::iter::once(Some(decide::agent_facts(agent, false)))
        .chain(checked.agents_above.iter().map(|id| {
            shared.identity.agents().by_subject(id).map(|a| crate::policy::AgentFacts {
                agent: a.clone(),
                issuer: agent.issuer.clone(),
                claims: Default::default(),
                quarantined: false,
            })
        }))
        .collect();
    let decide = |facts: RequestFacts| {
        decide_along_chain(
            engine.clone(),
            action,
            deciders.clone(),
            checked.tool_facts.clone(),
            TimeFacts::at(asked.now),
            crate::policy::TaskFacts {
                // Not only the last call: an untrusted read anywhere within
                // the taint horizon holds, so one harmless call in between
                // does not clear it.
                after_untrusted_read: checked.last_call.as_ref().is_some_and(|c| decide::untrusted_output(shared, &c.tool)) || !checked.ledger.is_empty(),
                ..decide::task_facts(&checked.task, &asked.tool)
            },
            facts,
        )
    };
    let mut decision = decide(facts.clone()).await;
    if facts.confirmed_by_end_user {
        asked.passes.confirmed.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    if pass == Pass::BurstOnly {
        // Judged for the burst only: no question, nothing written unless
        // the agent is quarantined.
        let drift = assessment.drift.then(|| assessment.explanation.clone());
        if let crate::policy::Verdict::Quarantine { reason } = engine.verdict(drift.as_deref(), &decision) {
            asked.passes.quarantined_on_second_pass.store(true, std::sync::atomic::Ordering::Relaxed);
            let why = profile::Assessment { explanation: reason, ..assessment.clone() };
            return quarantine_for_drift(session, agent, &checked.task, &asked.tool, &why).await.into();
        }
        return refusal_result("internal", "kept the first decision").into();
    }
    if let Outcome::NeedsConfirmation { fallback } = decision.outcome.clone() {
        // A person's denial of exactly this request is final, and an end
        // user who declined it is not asked again while the answer stands.
        if let Err(r) = question_still_open(&shared.store, &agent.agent.id, shared.clock.now_unix(), &asked.tool, &checked).await {
            return r.into();
        }
        crate::metrics::metrics().decided("end_user_question", decision.determining.first().map(|p| p.id.as_str()));
        match ask_end_user(shared, agent, binding, &asked, &checked, &taint.verdict).await {
            Asking::InputRequired(r) => return CallToolResponse::InputRequired(r),
            Asking::Confirmed => {
                // The answer took the user a while: a decline of the same
                // request elsewhere, or a person's denial, in the meantime wins.
                if let Err(r) = question_still_open(&shared.store, &agent.agent.id, shared.clock.now_unix(), &asked.tool, &checked).await {
                    return r.into();
                }
                // So does the end of a delegation above it, or its parent
                // moving on (a jit_call's grant calls at once).
                if let Err(r) = delegation_still_holds(shared, asked, &checked).await {
                    return r.into();
                }
                facts.confirmed_by_end_user = true;
                asked.passes.confirmed.store(true, std::sync::atomic::Ordering::Relaxed);
                decision = decide(facts).await;
            }
            Asking::Declined => {
                remember_decline(shared, agent, &checked, asked.now).await;
                return declined_by_end_user(&asked.tool).into();
            }
            Asking::Unreachable => decision.outcome = Outcome::NeedsApproval { group: fallback },
            Asking::Failed(r) => return r.into(),
        }
    }
    respond(session, agent, binding, &asked, &checked, &taint.verdict, &assessment, &engine, action, decision).await.into()
}

/// What the agent asked for, checked for shape (nothing from the store yet).
pub(in crate::gateway::meta) struct Asked {
    pub(in crate::gateway::meta) task: String,
    pub(in crate::gateway::meta) tool: String,
    pub(in crate::gateway::meta) purpose: String,
    pub(in crate::gateway::meta) follows: Option<String>,
    pub(in crate::gateway::meta) ttl_seconds: Option<u64>,
    pub(in crate::gateway::meta) break_glass: Option<String>,
    /// The constraints, or why they are refused; the refusal is reported
    /// after the task checks, in the order the agent would expect.
    pub(in crate::gateway::meta) constraints: Result<ArgConstraints, CallToolResult>,
    /// The approval digest of the (canonical) request.
    pub(in crate::gateway::meta) digest: Option<String>,
    /// The ledger entries the taint stage needs (see [`TaintProbe`]).
    pub(in crate::gateway::meta) probe: TaintProbe,
    pub(in crate::gateway::meta) now: i64,
    pub(in crate::gateway::meta) one_step: Option<Arc<OneStepCall>>,
    /// What the request's decisions learned as they ran (see [`Passes`]).
    pub(in crate::gateway::meta) passes: Passes,
}

/// What a request's decisions (see `request`) learn as they run, shared
/// by the first and a second decision; all zero when the request is parsed.
#[derive(Debug, Default)]
pub(in crate::gateway::meta) struct Passes {
    /// The request was counted in the agent's request rate (by the grant).
    pub(in crate::gateway::meta) counted: std::sync::atomic::AtomicBool,
    /// The grant found the agent's exact rate, this many, over the limit
    /// the request was decided within (0: it did not).
    pub(in crate::gateway::meta) rate_at_grant: std::sync::atomic::AtomicU32,
    /// Which decision of the request runs ([`Pass`]).
    pub(in crate::gateway::meta) pass: std::sync::atomic::AtomicU8,
    /// The first decision's rate was judged within this limit (+1; 0: none).
    pub(in crate::gateway::meta) decided_within: std::sync::atomic::AtomicU64,
    /// The end user confirmed the request in the first decision.
    pub(in crate::gateway::meta) confirmed: std::sync::atomic::AtomicBool,
    /// A [`Pass::BurstOnly`] decision quarantined the agent.
    pub(in crate::gateway::meta) quarantined_on_second_pass: std::sync::atomic::AtomicBool,
}

/// Which decision of a request this is (see `request`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(in crate::gateway::meta) enum Pass {
    First = 0,
    /// After the grant found the exact rate over the limit: decided whole
    /// again (the grant wrote nothing).
    AfterGrant = 1,
    /// After counting a request that was not granted found the exact rate
    /// over the limit: only judged for quarantine; anything else keeps the
    /// first answer and writes nothing.
    BurstOnly = 2,
}

impl Asked {
    pub(in crate::gateway::meta) fn pass(&self) -> Pass {
        match self.passes.pass.load(std::sync::atomic::Ordering::Relaxed) {
            1 => Pass::AfterGrant,
            2 => Pass::BurstOnly,
            _ => Pass::First,
        }
    }

    pub(in crate::gateway::meta) fn set_pass(&self, pass: Pass) {
        self.passes.pass.store(pass as u8, std::sync::atomic::Ordering::Relaxed);
    }

    pub(in crate::gateway::meta) fn decided_within(&self) -> Option<u32> {
        let v = self.passes.decided_within.load(std::sync::atomic::Ordering::Relaxed);
        v.checked_sub(1).and_then(|l| u32::try_from(l).ok())
    }
}
