//! Stage 8: what the decision means: a denial, a pending approval, a token.

#[allow(unused_imports)]
use super::*;

/// Stage 7: what the decision means for the agent: a denial (and, for a
/// forbid annotated `@quarantine`, quarantine), a pending approval, or a
/// token. Every outcome is on the audit record.
#[allow(clippy::too_many_arguments)]
pub(in crate::gateway::meta) async fn respond(
    session: &Session,
    agent: &VerifiedAgent,
    binding: Binding<'_>,
    asked: &Asked,
    checked: &Checked,
    taint: &crate::taint::TaintVerdict,
    assessment: &profile::Assessment,
    engine: &crate::policy::PolicyEngine,
    action: Action,
    decision: crate::policy::Decision,
) -> CallToolResult {
    let shared = &session.shared;
    let (task, constraints, now) = (&checked.task, &checked.constraints, asked.now);
    let policies = decision.policy_ids();
    let mut intent = json!({
        "tool": asked.tool,
        "action": action.as_str(),
        "phase": task.phase().map(|p| p.name.clone()),
        "purpose": asked.purpose,
        "arguments_digest": crate::audit::digest(&json!(constraints)),
        "follows": asked.follows,
        "policies": policies,
        "baseline": {"score": assessment.score, "transition_known": assessment.transition_known, "explanation": assessment.explanation},
        "taint": {"tainted": taint.tainted, "sources": taint.sources.iter().map(|s| json!({"call": s.call, "tool": s.tool})).collect::<Vec<_>>()},
    });
    if shared.config.audit.content {
        intent["arguments"] = crate::audit::redact(&json!(constraints), &shared.config.audit.redact);
    }
    if let Some(j) = &asked.break_glass {
        intent["break_glass"] = json!({"justification": j});
    }
    if !decision.errors.is_empty() {
        tracing::warn!(errors = ?decision.errors, "policy evaluation errors");
    }
    let drift = assessment.drift.then(|| assessment.explanation.clone());
    let first_policy = policies.first().map(String::as_str);
    let outcome = match engine.verdict(drift.as_deref(), &decision) {
        crate::policy::Verdict::Quarantine { reason } => {
            crate::metrics::metrics().decided("quarantine", first_policy.or(Some("drift")));
            let why = profile::Assessment { explanation: reason, ..assessment.clone() };
            return quarantine_for_drift(session, agent, task, &asked.tool, &why).await;
        }
        crate::policy::Verdict::Outcome(o) => o,
    };
    let pending = match outcome {
        Outcome::Deny { policy, reason } => {
            crate::metrics::metrics().decided("deny", policy.as_deref());
            tracing::info!(task = %task.id, tool = %crate::telemetry::Clean(&asked.tool), action = action.as_str(), policy = policy.as_deref().unwrap_or("default-deny"), "intent denied by policy");
            let mut reason = reason;
            if taint.tainted {
                let from: Vec<String> = taint.sources.iter().map(|s| format!("call {} of {}", s.call, s.tool)).collect();
                let args: Vec<String> = taint.findings.iter().map(|(arg, _)| format!("`{arg}`")).collect();
                reason = format!("{reason} [taint: {} carries a value from the output of {}]", args.join(", "), from.join(", "));
            }
            intent["decision"] = json!("deny");
            intent["denied_by"] = json!(policy);
            intent["reason"] = json!(reason);
            crate::gateway::record_or_log(shared, Event::new("intent", Some(&task.id), Some(&agent.agent.id), intent)).await;
            return policy_denied(policy.as_deref(), &reason);
        }
        // Reaching here, a confirmation could not be asked: its group decides.
        Outcome::NeedsApproval { group } | Outcome::NeedsConfirmation { fallback: group } => Some(group),
        Outcome::Allow => None,
    };
    if let Some(group) = pending {
        // Counted once its outcome is known: a cap on pending approvals refuses instead.
        let first_policy = first_policy.map(str::to_owned);
        let (answer, recorded) =
            pending_approval(session, agent, task, &asked.tool, constraints, &asked.purpose, checked.digest.clone(), group, policies, checked.existing.clone(), &intent).await;
        let outcome = if answer.is_error == Some(true) { "deny" } else { "pending_approval" };
        crate::metrics::metrics().decided(outcome, first_policy.as_deref());
        if recorded {
            return answer;
        }
        intent["decision"] = json!("pending_approval");
        intent["approval"] = answer.structured_content.as_ref().map(|v| v["approval"].clone()).unwrap_or_default();
        if answer.is_error == Some(true) {
            intent["decision"] = json!("deny");
            intent["reason"] = json!(text_of_result(&answer));
        }
        let event = Event::new("intent", Some(&task.id), Some(&agent.agent.id), intent);
        if let Err(e) = crate::store::units::append_audit(&shared.store, event, now).await {
            return store_refusal(e);
        }
        return answer;
    }
    crate::metrics::metrics().decided("allow", first_policy);
    grant_token(session, agent, binding, asked, checked, &decision, policies, intent, assessment.rate_within).await
}

/// The allowed outcome: spend the approval that allowed it (once), mint and
/// record the token, and record a break-glass grant for review.
#[allow(clippy::too_many_arguments)]
pub(in crate::gateway::meta) async fn grant_token(
    session: &Session,
    agent: &VerifiedAgent,
    binding: Binding<'_>,
    asked: &Asked,
    checked: &Checked,
    decision: &crate::policy::Decision,
    policies: Vec<String>,
    mut intent: Value,
    rate_within: Option<u32>,
) -> CallToolResult {
    let shared = &session.shared;
    let (task, tool, now) = (&checked.task, &checked.tool, asked.now);
    let mut ttl = shared.config.tokens.default_ttl;
    if asked.break_glass.is_some() {
        ttl = shared.config.approvals.break_glass_max_ttl;
    }
    if let Some(max) = tool.spec.max_ttl {
        ttl = ttl.min(max);
    }
    if let Some(wanted) = asked.ttl_seconds {
        ttl = ttl.min(Duration::from_secs(wanted));
    }
    let jti = match token::new_jti() {
        Ok(j) => j,
        Err(e) => return refusal_result(e.code(), &e.to_string()),
    };
    // An approval is spent on exactly one token, before the token exists.
    // An approval that granted the request is spent on this token, whether
    // its rule asked for the group's approval or for the end user's
    // confirmation with the group as fallback.
    let used_approval = checked.granted.as_ref().filter(|a| decision.determining.iter().any(|p| p.approvable_by(&a.group)));
    intent["decision"] = json!(if asked.break_glass.is_some() { "allow_break_glass" } else { "allow" });
    intent["jti"] = json!(jti);
    if let Some(a) = used_approval {
        intent["approval"] = json!({"id": a.id, "approved_by": a.decided_by, "group": a.group});
    }
    // jit_call: the token is spent on its call in the grant's own
    // transaction, once the arguments pass the schemas the call path checks.
    let one_step = match &asked.one_step {
        Some(call) if asked.break_glass.is_none() => {
            match crate::gateway::authorize::check_arguments_off_runtime(&asked.tool, tool, &checked.constraints, &call.arguments).await {
                Ok(()) => Some(call.clone()),
                // Left to the call path, which refuses it and spends the token.
                Err(_) => None,
            }
        }
        _ => None,
    };
    let mint = Mint { tool: &asked.tool, audience: tool.server.clone(), constraints: checked.constraints.clone(), purpose: &asked.purpose, follows: asked.follows.clone(), ttl, jti };
    // The grant counts the request whatever it finds (a store failure
    // aside), once: a second decision of it (see `request`) does not.
    let count = !asked.passes.counted.load(std::sync::atomic::Ordering::Relaxed);
    let rate = RateCheck { count, within: rate_within.filter(|_| count), counted: &asked.passes.counted, exceeded: &asked.passes.rate_at_grant };
    let issued = match issue_token(session, agent, binding, task, mint, used_approval.map(|a| a.id.as_str()), one_step.as_deref(), rate, now, intent).await {
        Ok(i) => i,
        Err(r) => return r,
    };
    if let Some(a) = used_approval {
        tracing::info!(approval = %a.id, jti = %issued.claims.jti, "approval spent");
    }
    if let Some(call) = one_step {
        *call.spent.lock().unwrap_or_else(|p| p.into_inner()) = Some(issued.claims.clone());
    }
    let mut answer = json!({
        "decision": "allow",
        "token": issued.signed,
        "jti": issued.claims.jti,
        "task": task.id,
        "phase": issued.claims.phase,
        "tool": asked.tool,
        "allows": issued.claims.args,
        "expires_at": rfc3339(issued.claims.exp),
        "expires_in_seconds": issued.claims.exp - now,
        "policies": policies,
        "use": format!(
            "call {} once, with exactly the allowed arguments plus \"{TOKEN_ARGUMENT}\": \"<token>\" (or the token in _meta[\"{TOKEN_META_KEY}\"])",
            asked.tool
        ),
    });
    if let Some(a) = used_approval {
        answer["approval"] = json!({"id": a.id, "approved_by": a.decided_by, "group": a.group});
    }
    if let Some(justification) = asked.break_glass.clone() {
        let grant = BreakGlassGrant {
            id: format!("bg_{}", issued.claims.jti),
            agent: agent.agent.id.clone(),
            task: task.id.clone(),
            tool: asked.tool.clone(),
            constraints: serde_json::to_string(&issued.claims.args).unwrap_or_default(),
            justification,
            jti: issued.claims.jti.clone(),
            policies: policies.clone(),
            granted_at: now,
            expires_at: issued.claims.exp,
            reviewed_at: None,
            reviewed_by: None,
            note: None,
        };
        let id = grant.id.clone();
        let jti = grant.jti.clone();
        // The grant must be on record for review; if it cannot be, the token dies.
        if let Err(r) = store_op(&shared.store, move |s| s.record_break_glass(&grant)).await {
            let _ = store_op(&shared.store, move |s| s.revoke(&crate::store::Scope::Token(jti), "break-glass grant could not be recorded", now)).await;
            return r;
        }
        tracing::warn!(break_glass = %id, agent = %agent.agent.name, task = %task.id, tool = %crate::telemetry::Clean(&asked.tool), policies = ?policies, "BREAK-GLASS GRANTED: token issued outside the normal rules; open for review (jitgate review list)");
        answer["decision"] = json!("allow_break_glass");
        answer["break_glass"] = json!({"id": id, "review": "recorded; a person must review it (jitgate review ack)"});
    }
    ok(answer)
}

pub(in crate::gateway::meta) fn text_of_result(r: &CallToolResult) -> String {
    r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.clone())).collect::<Vec<_>>().join(" ")
}

/// A minted and recorded token.
pub(in crate::gateway::meta) struct Issued {
    pub(in crate::gateway::meta) signed: String,
    pub(in crate::gateway::meta) claims: CapabilityClaims,
}

/// How a grant treats the agent's request rate ([`crate::store::Grant::count`]
/// and [`crate::store::Grant::rate_within`]); the exact rate of a grant
/// refused for it goes to `exceeded`.
pub(in crate::gateway::meta) struct RateCheck<'a> {
    pub(in crate::gateway::meta) count: bool,
    pub(in crate::gateway::meta) within: Option<u32>,
    /// Set once the store answered the grant (it counted the request,
    /// whatever it found); a grant that failed counted nothing.
    pub(in crate::gateway::meta) counted: &'a std::sync::atomic::AtomicBool,
    pub(in crate::gateway::meta) exceeded: &'a std::sync::atomic::AtomicU32,
}

/// What a token is minted for.
pub(in crate::gateway::meta) struct Mint<'a> {
    pub(in crate::gateway::meta) tool: &'a str,
    pub(in crate::gateway::meta) audience: String,
    pub(in crate::gateway::meta) constraints: ArgConstraints,
    pub(in crate::gateway::meta) purpose: &'a str,
    pub(in crate::gateway::meta) follows: Option<String>,
    pub(in crate::gateway::meta) ttl: Duration,
    pub(in crate::gateway::meta) jti: String,
}

/// Mint a token for one call and commit the grant ([`Store::grant`]): the
/// token only exists once the store knows it, so a store failure means no
/// token. With `approval`, the grant spends it; with `one_step`, the token is
/// recorded as spent on that call, with the call's `call.forwarded` record.
#[allow(clippy::too_many_arguments)]
pub(in crate::gateway::meta) async fn issue_token(
    session: &Session,
    agent: &VerifiedAgent,
    binding: Binding<'_>,
    task: &Task,
    mint: Mint<'_>,
    approval: Option<&str>,
    one_step: Option<&OneStepCall>,
    rate: RateCheck<'_>,
    now: i64,
    mut audit_data: Value,
) -> Result<Issued, CallToolResult> {
    let shared = &session.shared;
    let Mint { tool, audience, constraints, purpose, follows, ttl, jti } = mint;
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(60).max(1);
    let claims = CapabilityClaims {
        iss: shared.config.gateway_id.clone(),
        sub: agent.agent.id.clone(),
        aud: audience,
        jti: jti.clone(),
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
        sid: binding.session.unwrap_or_default().to_owned(),
        cnf: binding.dpop_key.map(|jkt| token::Confirmation { jkt: jkt.to_owned() }),
        task: task.id.clone(),
        phase: task.phase().map(|p| p.name.clone()).unwrap_or_default(),
        tool: tool.to_owned(),
        args: constraints,
        purpose: token::purpose_digest(purpose),
        parent: follows,
        uses: 1,
    };
    let signed = token::mint(&shared.keyring(), &claims).map_err(|e| refusal_result(e.code(), &e.to_string()))?;
    let record = TokenRecord {
        jti: jti.clone(),
        task: task.id.clone(),
        agent: agent.agent.id.clone(),
        sid: binding.session.unwrap_or_default().to_owned(),
        tool: tool.to_owned(),
        phase: task.current_phase,
        state: TokenState::Issued,
        issued_at: now,
        expires_at: claims.exp,
        changed_at: None,
        reason: None,
    };
    let intent = Intent { jti: jti.clone(), agent: agent.agent.id.clone(), task: task.id.clone(), tool: tool.to_owned(), shape: profile::shape_of(&claims.args), at: now };
    audit_data["expires_at"] = json!(claims.exp);
    let event = Event::new("intent", Some(&task.id), Some(&agent.agent.id), audit_data);
    let forwarded = one_step.map(|call| crate::gateway::forwarded_event(shared, &claims, tool, &call.arguments));
    let approval = approval.map(str::to_owned);
    let (count, rate_within) = (rate.count, rate.within);
    // No token without its audit record: one unit of work.
    let grant = crate::store::units::OwnedGrant { token: record, intent, record: event, approval, forwarded, count, rate_within, now };
    let granted = crate::store::units::grant(&shared.store, grant).await.map_err(store_refusal)?;
    if count {
        rate.counted.store(true, std::sync::atomic::Ordering::Relaxed);
    }
    match granted {
        crate::store::Granted::Recorded => {}
        crate::store::Granted::ApprovalUsed => {
            return Err(refusal_result("approval_used", "the approval of this request was already used or expired; ask again"));
        }
        crate::store::Granted::Quarantined => {
            return Err(refusal_result("agent_quarantined", "the agent was quarantined while this request was decided; nothing was granted"));
        }
        crate::store::Granted::TaskChanged(why) => {
            let what = match why {
                crate::store::Consumption::PhaseOver { current_phase, .. } => format!("moved on to phase {}", current_phase + 1),
                crate::store::Consumption::TaskInactive { state, reason } => format!("is {} ({})", state.as_str(), reason.unwrap_or_else(|| "no reason recorded".into())),
                _ => "no longer exists".to_owned(),
            };
            return Err(refusal_result("task_inactive", &format!("task {} {what} while this request was decided; nothing was granted", task.id)));
        }
        crate::store::Granted::RateExceeded(exact) => {
            rate.exceeded.store(exact, std::sync::atomic::Ordering::Relaxed);
            tracing::info!(task = %task.id, tool, rate = exact, "requests decided at the same moment took the agent over its rate; deciding again");
            return Err(refusal_result("rate_exceeded", &format!("the agent's request rate ({exact} in the last minute) went over its limit while this request was decided; nothing was granted")));
        }
    }
    tracing::info!(task = %task.id, tool, jti = %jti, ttl_secs, spent = one_step.is_some(), "capability issued");
    Ok(Issued { signed, claims })
}

/// Policy wants a person to approve: reuse the pending approval of this
/// exact request, report a denial, or open a new one.
#[allow(clippy::too_many_arguments)]
pub(in crate::gateway::meta) async fn pending_approval(
    session: &Session,
    agent: &VerifiedAgent,
    task: &Task,
    tool: &str,
    constraints: &ArgConstraints,
    purpose: &str,
    digest: String,
    group: String,
    policies: Vec<String>,
    existing: Option<Approval>,
    intent: &Value,
) -> (CallToolResult, bool) {
    let shared = &session.shared;
    let now = shared.clock.now_unix();
    let mut recorded = false;
    let approval = match existing {
        Some(a) if a.state == ApprovalState::Pending && a.group == group && a.task == task.id => a,
        Some(a) if a.state == ApprovalState::Denied => {
            tracing::info!(approval = %a.id, "request denied by an approver earlier");
            return (approval_denied(&a), false);
        }
        _ => {
            let id = match token::new_jti() {
                Ok(j) => format!("apr_{j}"),
                Err(e) => return (refusal_result(e.code(), &e.to_string()), false),
            };
            let a = Approval {
                id,
                digest,
                agent: agent.agent.id.clone(),
                task: task.id.clone(),
                tool: tool.to_owned(),
                constraints: serde_json::to_string(constraints).unwrap_or_default(),
                purpose: purpose.to_owned(),
                group: group.clone(),
                policies: policies.clone(),
                state: ApprovalState::Pending,
                created_at: now,
                expires_at: now + i64::try_from(shared.config.approvals.pending_ttl.as_secs()).unwrap_or(900),
                decided_at: None,
                decided_by: None,
                note: None,
                used_jti: None,
            };
            let record = a.clone();
            let max = shared.config.limits.max_pending_approvals_per_agent;
            let mut data = intent.clone();
            data["decision"] = json!("pending_approval");
            data["approval"] = json!(a.id);
            let event = Event::new("intent", Some(&task.id), Some(&agent.agent.id), data);
            // The approval and the request's record: one unit of work, under
            // the agent's cap on pending approvals.
            let created = store_op(&shared.store, move |s| s.open_approval(&record, max, &event, now)).await;
            match created {
                Ok(None) => recorded = true,
                Ok(Some(pending)) => {
                    let refusal = refusal_result(
                        "too_many_pending_approvals",
                        &format!("this agent already waits for {pending} approvals (limits.max_pending_approvals_per_agent); wait for a person to decide them or let them expire"),
                    );
                    return (refusal, false);
                }
                Err(r) => return (r, false),
            }
            tracing::warn!(approval = %a.id, group = %group, agent = %agent.agent.name, task = %task.id, tool, policies = ?policies, "approval requested");
            a
        }
    };
    let answer = ok(json!({
        "decision": "pending_approval",
        "approval": approval.id,
        "group": approval.group,
        "policies": approval.policies,
        "expires_at": rfc3339(approval.expires_at),
        "next": format!(
            "a person of group `{}` must approve this exact request. Check with {APPROVAL_STATUS} {{\"approval\": \"{}\"}}; once approved, call {REQUEST} again with the same task, tool, arguments and purpose to get the token",
            approval.group, approval.id
        ),
    }));
    (answer, recorded)
}

/// Drift: revoke everything the agent holds and quarantine it until a person
/// releases it. The request that drifted is refused.
pub(in crate::gateway::meta) async fn quarantine_for_drift(session: &Session, agent: &VerifiedAgent, task: &Task, tool: &str, a: &profile::Assessment) -> CallToolResult {
    let shared = &session.shared;
    let now = shared.clock.now_unix();
    let reason = format!("drift (score {}): {}", a.score, a.explanation);
    let (id, why) = (agent.agent.id.clone(), reason.clone());
    let event = Event::new("quarantine", Some(&task.id), Some(&agent.agent.id), json!({"reason": reason, "score": a.score, "explanation": a.explanation, "tool": tool}));
    let done = store_op(&shared.store, move |s| s.quarantine(&id, &why, &event, now))
    .await;
    match done {
        Ok(r) => tracing::warn!(agent = %agent.agent.name, task = %task.id, tool, score = a.score, tokens = r.tokens, explanation = %crate::telemetry::Clean(&a.explanation), "AGENT QUARANTINED: baseline drift; all its tasks and tokens revoked"),
        Err(r) => return r,
    }
    refusal_result("agent_quarantined", &quarantine_message(&reason))
}

pub(in crate::gateway::meta) fn quarantine_message(reason: &str) -> String {
    format!("this agent is quarantined ({reason}); every request is refused until a person releases it with `jitgate agents release`")
}

pub(in crate::gateway::meta) fn policy_denied(policy: Option<&str>, reason: &str) -> CallToolResult {
    match policy {
        Some(id) => refusal_result("policy_denied", &format!("denied by policy `{id}`: {reason}")),
        None => refusal_result("policy_denied", &format!("{reason} (default deny); ask the platform team if this tool is needed for the objective")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::gateway::meta::request::fixture::{code_of, text_of};

    #[test]
    fn a_denial_names_the_deciding_policy_or_says_nothing_permitted() {
        let r = policy_denied(Some("no-sends-from-untrusted"), "values from a web page");
        assert_eq!(code_of(&r), "policy_denied");
        assert!(text_of(&r).contains("`no-sends-from-untrusted`") && text_of(&r).contains("values from a web page"));
        let r = policy_denied(None, "no policy permits this request");
        assert_eq!(code_of(&r), "policy_denied");
        assert!(text_of(&r).contains("default deny") && text_of(&r).contains("platform team"), "{}", text_of(&r));
    }

    #[test]
    fn a_quarantine_says_how_it_ends() {
        let m = quarantine_message("drift (score 90): never sent mail");
        assert!(m.contains("drift (score 90)") && m.contains("jitgate agents release"), "{m}");
    }
}
