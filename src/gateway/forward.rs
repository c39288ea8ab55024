//! After authorization: the call forwarded downstream, and what is recorded
//! of it (the forward, the result, the taint its output carries, refusals).

#[allow(unused_imports)]
use super::*;

/// Forward an authorized call. Through [`call_and_record`], with observe
/// mode, the only callers of [`crate::downstream::Downstream::call`].
/// `arrived`: when the agent's `tools/call` came in (the gateway's share of
/// the call's time is measured from there).
pub(in crate::gateway) async fn forward(
    shared: &Shared,
    authorized: authorize::Authorized,
    agent: &VerifiedAgent,
    ctx: &RequestContext<RoleServer>,
    arrived: std::time::Instant,
) -> CallToolResult {
    let (downstream, tool, arguments, capability) = authorized.into_parts();
    let claims = capability.claims();
    // No call leaves without its audit record (fail closed): it was written
    // with the token's consumption (`consume_for_call`, or the `jit_call`
    // grant), in the same transaction.
    let call = CallRef::of(claims);
    call_and_record(shared, &downstream, &tool, arguments, agent, &call, &claims.sid, ctx, arrived, Some(claims)).await
}

/// The call, and what is recorded of what came back (result, taint). A
/// failure of a token's call revokes what its server's manifest says.
/// Observe mode calls it with no `token`: its `call.observed` record (with
/// its intent) is written, and a failure revokes nothing.
#[allow(clippy::too_many_arguments)]
pub(in crate::gateway) async fn call_and_record(
    shared: &Shared,
    downstream: &Arc<crate::downstream::Downstream>,
    tool: &crate::downstream::ExposedTool,
    arguments: rmcp::model::JsonObject,
    agent: &VerifiedAgent,
    call: &CallRef,
    sid: &str,
    ctx: &RequestContext<RoleServer>,
    arrived: std::time::Instant,
    token: Option<&crate::token::CapabilityClaims>,
) -> CallToolResult {
    let mut params = CallToolRequestParams::new(tool.downstream_name.clone());
    params.arguments = Some(arguments);
    // Agent cancellation, gateway shutdown and revocation of the task, agent,
    // session or token all cancel the downstream call.
    let cancel = ctx.ct.child_token();
    let _registered = shared.inflight.register(&call.task, &call.agent, sid, &call.jti, cancel.clone());
    let shutdown_link = {
        let (cancel, shutdown) = (cancel.clone(), shared.shutdown.clone());
        tokio::spawn(async move {
            shutdown.cancelled().await;
            cancel.cancel();
        })
        .abort_handle()
    };
    let args_value = serde_json::Value::Object(params.arguments.clone().unwrap_or_default());
    let started = std::time::Instant::now();
    tracing::debug!(server = %tool.server, jti = %call.jti, "forwarding");
    let outcome = downstream.call(params, agent, shared.clock.now_unix(), &cancel).await;
    shutdown_link.abort();
    let downstream_took = started.elapsed();
    let ms = downstream_took.as_secs_f64() * 1000.0;
    record_result(shared, call, &tool.exposed_name, &outcome, ms).await;
    crate::metrics::metrics().call(&tool.server, arrived.elapsed(), downstream_took);
    match outcome {
        Ok(result) => {
            tracing::info!(server = %tool.server, jti = %call.jti, duration_ms = ms, is_error = result.is_error.unwrap_or(false), "forwarded");
            // What an untrusted tool returned may steer the agent: remember its
            // values for the agent's later requests (in any of its tasks, so an
            // attack split across tasks is still traced).
            if tool.spec.untrusted_output {
                record_taint(shared, call, tool, &args_value, &result).await;
            }
            relayed(result)
        }
        Err(e) => {
            tracing::warn!(server = %tool.server, jti = %call.jti, duration_ms = ms, code = e.code(), error = %crate::telemetry::Clean(&e.to_string()), "forward failed");
            // A server's error message reaches the agent too: from an
            // untrusted tool it is third-party text like any result.
            if let (true, CallError::Downstream { message, .. }) = (tool.spec.untrusted_output, &e) {
                record_taint(shared, call, tool, &args_value, &CallToolResult::error(vec![rmcp::model::ContentBlock::text(message.clone())])).await;
            }
            if let Some(claims) = token.filter(|_| matches!(e, CallError::Crashed { .. } | CallError::Timeout { .. } | CallError::Downstream { .. })) {
                revoke_after_failure(shared, claims, &e).await;
            }
            refusal_result(e.code(), &e.to_string())
        }
    }
}

/// The `call.forwarded` record of a call about to be forwarded: written in
/// the transaction that consumes its token, so that no call leaves without
/// it and no record claims a call whose token another use consumed.
pub(crate) fn forwarded_event(shared: &Shared, claims: &crate::token::CapabilityClaims, exposed_name: &str, arguments: &rmcp::model::JsonObject) -> crate::audit::Event {
    let args_value = serde_json::Value::Object(arguments.clone());
    let mut data = serde_json::json!({
        "jti": claims.jti,
        "tool": exposed_name,
        "phase": claims.phase,
        "arguments_digest": crate::audit::digest(&args_value),
        "argument_bytes": args_value.to_string().len(),
    });
    if shared.config.audit.content {
        data["arguments"] = crate::audit::redact(&args_value, &shared.config.audit.redact);
    }
    crate::audit::Event::new("call.forwarded", Some(&claims.task), Some(&claims.sub), data)
}

/// A downstream result as the agent's revision needs it: a handshake-era
/// server sends no `resultType`, which 2026-07-28 requires (rmcp removes it
/// again for handshake-era agents).
pub(in crate::gateway) fn relayed(mut result: CallToolResult) -> CallToolResult {
    result.result_type = Some(ResultType::COMPLETE);
    result
}

/// Remember the values an untrusted tool returned, in the store, so that a
/// restart or another process still traces them. When they cannot be
/// recorded the agent's later sensitive requests would go unchecked, so its
/// authority ends instead (fail closed).
/// A forwarded call, as its records name it: its token's (or observation's)
/// id, its task and its agent.
pub(in crate::gateway) struct CallRef {
    pub(in crate::gateway) jti: String,
    pub(in crate::gateway) task: String,
    pub(in crate::gateway) agent: String,
}

impl CallRef {
    pub(in crate::gateway) fn of(claims: &crate::token::CapabilityClaims) -> Self {
        Self { jti: claims.jti.clone(), task: claims.task.clone(), agent: claims.sub.clone() }
    }
}

pub(in crate::gateway) async fn record_taint(shared: &Shared, claims: &CallRef, tool: &crate::downstream::ExposedTool, arguments: &serde_json::Value, result: &CallToolResult) {
    let trusted = &tool.spec.trusted_fields;
    let scan = crate::taint::scan_output(result, trusted);
    if !trusted.is_empty() && !scan.trusted_seen {
        tracing::warn!(
            tool = %tool.exposed_name,
            trusted_fields = ?trusted,
            "trusted_fields matched nothing in this result: the server did not return JSON with those keys (text or YAML?), so every value in it counts as third-party and replies to its senders are tainted; trusted_fields work only for JSON results"
        );
    }
    // The values and the passages (for names), as one list of ledger entries.
    let (values, flooded) = crate::taint::ledger_entries(scan);
    if flooded {
        tracing::warn!(
            tool = %tool.exposed_name,
            jti = %claims.jti,
            "this untrusted result holds more than {} file names and identifiers: only its destinations, amounts and text are kept (the rest is matched word for word in the text), so that one page cannot flood the agent's taint ledger",
            crate::taint::MAX_VALUES_PER_RESULT
        );
    }
    // Where it was read, in words the end user knows (the file, the page's
    // address, the channel), for the question that may follow.
    // Redacted as the audit trail redacts arguments: the store keeps it.
    let shown = crate::audit::redact(arguments, &shared.config.audit.redact);
    let no_args = serde_json::Map::new();
    let origin = crate::taint::call_origin(&tool.exposed_name, shown.as_object().unwrap_or(&no_args));
    let source = crate::taint::Source { call: claims.jti.clone(), tool: tool.exposed_name.clone(), origin };
    let (agent, now) = (claims.agent.clone(), shared.clock.now_unix());
    let max = crate::taint::MAX_VALUES_PER_AGENT;
    // Taint flows with the work: what a delegated task's agent read counts
    // for every agent that delegated it, up the chain.
    let task = claims.task.clone();
    let recorded = crate::store::run_blocking(&shared.store, move |s| {
        s.record_taint(&agent, &values, &source, now, max)?;
        for above in crate::gateway::delegation::agents_above(s, &task)? {
            s.record_taint(&above, &values, &source, now, max)?;
        }
        Ok(())
    })
    .await
    .and_then(|r| r);
    if let Err(e) = recorded {
        tracing::error!(error = %e, jti = %claims.jti, "TAINT NOT RECORDED: revoking the agent's task so that nothing it read goes unchecked");
        // An observed call's task stands for nothing: what the agent holds goes.
        let scope = if claims.task.starts_with(crate::store::OBSERVATION_TASK_PREFIX) { Scope::Agent(claims.agent.clone()) } else { Scope::Task(claims.task.clone()) };
        let now = shared.clock.now_unix();
        if let Err(e) = crate::store::run_blocking(&shared.store, move |s| s.revoke(&scope, "taint could not be recorded", now)).await.and_then(|r| r) {
            tracing::error!(error = %e, "could not revoke after a taint write failure");
        }
    }
}

/// The call's result record: status, duration and size (content if configured).
pub(in crate::gateway) async fn record_result(shared: &Shared, claims: &CallRef, tool: &str, outcome: &Result<CallToolResult, CallError>, ms: f64) {
    let mut data = serde_json::json!({"jti": claims.jti, "tool": tool, "duration_ms": (ms * 1000.0).round() / 1000.0});
    match outcome {
        Ok(r) => {
            let text: String = r.content.iter().filter_map(|c| c.as_text().map(|t| t.text.as_str())).collect::<Vec<_>>().join("\n");
            data["status"] = serde_json::json!(if r.is_error == Some(true) { "tool_error" } else { "ok" });
            data["result_bytes"] = serde_json::json!(text.len());
            if shared.config.audit.content {
                data["result"] = crate::audit::recorded_content(r, &shared.config.audit.redact);
            }
        }
        Err(e) => {
            data["status"] = serde_json::json!(e.code());
            data["error"] = serde_json::json!(e.to_string());
        }
    }
    record_or_log(shared, crate::audit::Event::new("call.result", Some(&claims.task), Some(&claims.agent), data)).await;
}

/// A refused meta-tool call that no other record covers: the request
/// path records its policy denials as `intent` records itself.
pub(in crate::gateway) fn unaudited_refusal(tool: &str, result: &CallToolResult) -> Option<(String, String)> {
    if result.is_error != Some(true) {
        return None;
    }
    let error = result.meta.as_ref()?.0.get("jitgate/error")?;
    let code = error.get("code")?.as_str()?.to_owned();
    if tool == meta::REQUEST && code == "policy_denied" {
        return None;
    }
    Some((code, error.get("message").and_then(|m| m.as_str()).unwrap_or_default().to_owned()))
}

/// Every refusal of an identified agent goes to the audit trail: what was
/// asked, why it was refused (identity refusals over HTTP, which come before
/// any agent is known, are counted in aggregate records instead).
pub(in crate::gateway) async fn record_refusal(shared: &Shared, agent: &VerifiedAgent, sid: Option<&str>, tool: &str, task: Option<&str>, code: &str, message: &str) {
    let message: String = message.chars().take(1000).collect();
    let data = serde_json::json!({"tool": tool, "code": code, "message": message, "sid": sid});
    record_or_log(shared, crate::audit::Event::new("refusal", task, Some(&agent.agent.id), data)).await;
}

/// Append an audit record whose failure cannot change the answer (the event
/// already happened, or is a refusal); a failure is reported loudly.
pub(crate) async fn record_or_log(shared: &Shared, event: crate::audit::Event) {
    let now = shared.clock.now_unix();
    let kind = event.kind;
    if let Err(e) = crate::store::units::append_audit(&shared.store, event, now).await {
        tracing::error!(kind, error = %e, "AUDIT WRITE FAILED");
    }
}

/// A failed downstream call ends the authority it ran under (configurable:
/// the whole task, or only the call's token).
pub(in crate::gateway) async fn revoke_after_failure(shared: &Shared, claims: &crate::token::CapabilityClaims, e: &CallError) {
    let scope = match shared.config.tokens.on_downstream_failure {
        OnDownstreamFailure::RevokeTask => Scope::Task(claims.task.clone()),
        OnDownstreamFailure::RevokeToken => Scope::Token(claims.jti.clone()),
    };
    let reason = format!("downstream failure: {}", e.code());
    let now = shared.clock.now_unix();
    match crate::store::run_blocking(&shared.store, move |s| s.revoke(&scope, &reason, now)).await {
        Ok(Ok(r)) => tracing::warn!(scope = r.scope.kind(), target = %r.scope.target(), tokens = r.tokens, "revoked after downstream failure"),
        Ok(Err(err)) | Err(err) => tracing::error!(error = %err, "could not record revocation after downstream failure"),
    }
}
