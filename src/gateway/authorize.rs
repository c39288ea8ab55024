//! The single authorization point: every forwarded call is decided here.
//!
//! [`authorize`] returns a [`Decision`]. Only `Decision::Forward` carries an
//! [`Authorized`] value, which holds the consumed [`Capability`]; it can only
//! be built in this module, so the forwarding code cannot be reached without
//! passing every check below. Checks run cheapest first; any failure refuses,
//! and the refusal is the default branch of every match.
//!
//! Order: the tool is exposed (manifest, pin, server up); the agent may use
//! it; a capability token is present; the token parses (size, alg, typ) and
//! verifies (kid, signature, time, issuer, audience, session, agent, tool);
//! the store consumes it atomically (not revoked, task active, same phase,
//! exactly once); the arguments satisfy the token's constraints, the
//! server's schema and the manifest's tighter schema.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::Value;

use super::Shared;
use crate::downstream::{Downstream, DownstreamSet, ExposedTool, ServerState, WithheldReason};
use crate::identity::VerifiedAgent;
use crate::token::{ArgConstraints, CallContext, Capability, TokenError, UnverifiedToken};

/// The argument name that carries a token for clients that cannot set `_meta`.
pub const TOKEN_ARGUMENT: &str = "_jit_token";
/// The `_meta` key that carries a token.
pub const TOKEN_META_KEY: &str = "jitgate/capability";

/// Proof that a call passed the authorization point. Fields are private so
/// nothing outside this module can fabricate one.
pub struct Authorized {
    downstream: Arc<Downstream>,
    tool: ExposedTool,
    arguments: JsonObject,
    capability: Capability,
}

impl Authorized {
    /// Consume into the parts the forwarder needs.
    pub(crate) fn into_parts(self) -> (Arc<Downstream>, ExposedTool, JsonObject, Capability) {
        (self.downstream, self.tool, self.arguments, self.capability)
    }
}

/// Why a call was refused: a stable code, a sentence for the agent, and
/// whether it is a protocol-level error (unroutable request) rather than a
/// tool error the model should read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
    pub protocol_error: bool,
}

impl Refusal {
    fn tool(code: &'static str, message: String) -> Self {
        Self { code, message, protocol_error: false }
    }

    /// Say that the refused call used up its token, so the agent does not
    /// retry with the same one.
    fn token_spent(mut self) -> Self {
        self.message.push_str(". The token is used up (a token covers one attempt): ask again with jit_request, or jit_call, for the arguments you will send");
        self
    }
}

impl From<TokenError> for Refusal {
    fn from(e: TokenError) -> Self {
        Refusal::tool(e.code(), e.to_string())
    }
}

/// The outcome of the authorization point.
pub enum Decision {
    Forward(Box<Authorized>),
    Refuse(Refusal),
}

/// The token a call carries: `_meta["jitgate/capability"]` or the
/// `_jit_token` argument, which is removed from the arguments either way so
/// it never reaches the downstream server.
pub fn take_token(meta: &serde_json::Map<String, Value>, arguments: &mut JsonObject) -> Option<String> {
    let from_args = arguments.remove(TOKEN_ARGUMENT);
    let from_meta = meta.get(TOKEN_META_KEY).and_then(Value::as_str).map(str::to_owned);
    from_meta.or_else(|| from_args.and_then(|v| v.as_str().map(str::to_owned)))
}

/// Decide one `tools/call` request of `agent`, bound as `binding` says.
pub async fn authorize(
    shared: &Shared,
    agent: &VerifiedAgent,
    binding: super::Binding<'_>,
    tool_name: &str,
    token: Option<String>,
    arguments: JsonObject,
) -> Decision {
    let Some((downstream, tool)) = shared.downstreams.find(tool_name) else {
        return Decision::Refuse(explain_not_exposed(&shared.downstreams, agent, tool_name));
    };
    if !agent.agent.may_use(tool_name) {
        return Decision::Refuse(Refusal::tool(
            "tool_not_allowed",
            format!("agent `{}` is not allowed to use `{tool_name}`; ask the platform team to add it to the agent's allowed_tools", agent.agent.name),
        ));
    }
    let verified = match verify(shared, agent, binding, &tool, token) {
        Ok(v) => v,
        Err(e) => return Decision::Refuse(e.into()),
    };
    // The checks that need no store write come first; the token is spent
    // whatever they find, and a call they pass is consumed together with
    // its `call.forwarded` record (one unit of work), so that two uses of
    // one token can never both be forwarded and no call leaves unrecorded.
    let checked = check_call(shared, agent, tool_name, &tool, verified.claims(), &arguments).await;
    let now = shared.clock.now_unix();
    match checked {
        Ok(()) => {
            let event = super::forwarded_event(shared, verified.claims(), &tool.exposed_name, &arguments);
            let jti = verified.claims().jti.clone();
            let outcome = crate::store::units::consume_for_call(&shared.store, jti, event, now).await;
            match outcome {
                Ok(consumption) => match verified.consumed(consumption) {
                    Ok(capability) => Decision::Forward(Box::new(Authorized { downstream, tool, arguments, capability })),
                    Err(e) => Decision::Refuse(e.into()),
                },
                Err(e) => {
                    if matches!(e, crate::store::StoreError::Audit(_)) {
                        tracing::error!(error = %e, jti = %verified.claims().jti, "AUDIT WRITE FAILED: call refused, nothing forwarded");
                    }
                    Decision::Refuse(Refusal::tool(e.code(), format!("{e}; the call was not forwarded and its token not spent; try again later or tell the operator")))
                }
            }
        }
        Err(refusal) => match crate::store::run_blocking(&shared.store, move |s| verified.consume(s, now)).await {
            Ok(Ok(_spent)) => Decision::Refuse(refusal.token_spent()),
            // A replayed, revoked or otherwise dead token says so first, as
            // when consumption came before these checks.
            Ok(Err(e)) => Decision::Refuse(e.into()),
            Err(e) => Decision::Refuse(Refusal::tool(e.code(), e.to_string())),
        },
    }
}

/// A `jit_call` whose grant spent its token on this call (with the call's
/// record): the parts the forwarder needs.
pub fn spent_at_grant(shared: &Shared, claims: crate::token::CapabilityClaims, arguments: JsonObject) -> Result<Authorized, Refusal> {
    let Some((downstream, tool)) = shared.downstreams.find(&claims.tool) else {
        return Err(Refusal::tool("server_unavailable", format!("`{}` is no longer exposed; its token is spent, ask again", claims.tool)));
    };
    Ok(Authorized { downstream, tool, arguments, capability: crate::token::Capability::spent_at_grant(claims) })
}

/// The checks before the token is spent: its constraints, the schemas and
/// taint.
async fn check_call(shared: &Shared, agent: &VerifiedAgent, tool_name: &str, tool: &ExposedTool, claims: &crate::token::CapabilityClaims, arguments: &JsonObject) -> Result<(), Refusal> {
    // A task begun under a delegation: every delegation above it holds now
    // (its parent may have ended since the token was granted).
    let now = shared.clock.now_unix();
    if let Err(r) = super::delegation::chain_holds(shared, &claims.task, Some(tool_name), Some(arguments.clone()), now).await {
        return Err(Refusal::tool(r.code, r.message));
    }
    check_arguments_off_runtime(tool_name, tool, &claims.args, arguments).await?;
    check_taint_at_call(shared, agent, tool, claims, arguments).await
}

/// The token's constraints, the server's input schema and the manifest's
/// `args_schema`, on the blocking pool: schema evaluation is CPU work whose
/// cost the token's holder partly chooses (a `schema` constraint), and a
/// runtime worker busy with it stalls every other agent's requests (issue 23).
pub(super) async fn check_arguments_off_runtime(tool_name: &str, tool: &ExposedTool, constraints: &ArgConstraints, arguments: &JsonObject) -> Result<(), Refusal> {
    let constraints = constraints.clone();
    let (input, manifest) = (Arc::clone(&tool.input_validator), tool.manifest_validator.clone());
    let (tool_name, arguments) = (tool_name.to_owned(), arguments.clone());
    tokio::task::spawn_blocking(move || check_arguments(&tool_name, &constraints, &input, manifest.as_deref(), arguments))
        .await
        .unwrap_or_else(|e| Err(Refusal::tool("internal", format!("the argument check did not finish ({e}); try again with a new token"))))
}

/// The argument checks themselves, in order: constraints, server schema,
/// manifest schema. Blocking; see [`check_arguments_off_runtime`].
fn check_arguments(tool_name: &str, constraints: &ArgConstraints, input: &jsonschema::Validator, manifest: Option<&jsonschema::Validator>, arguments: JsonObject) -> Result<(), Refusal> {
    crate::constraints::check_arguments(constraints, &arguments).map_err(TokenError::Arguments)?;
    let args_value = Value::Object(arguments);
    if let Some(problem) = schema_problems(input, &args_value) {
        return Err(Refusal::tool(
            "invalid_arguments",
            format!("arguments for `{tool_name}` do not match its input schema: {problem}; see the schema in tools/list"),
        ));
    }
    if let Some(problem) = manifest.and_then(|v| schema_problems(v, &args_value)) {
        return Err(Refusal::tool(
            "arguments_outside_policy",
            format!("arguments for `{tool_name}` are outside what this gateway allows for the tool: {problem}"),
        ));
    }
    Ok(())
}

fn verify(shared: &Shared, agent: &VerifiedAgent, binding: super::Binding<'_>, tool: &ExposedTool, token: Option<String>) -> Result<crate::token::Verified, TokenError> {
    let token = token.ok_or(TokenError::Missing)?;
    let unverified = UnverifiedToken::parse(&token)?;
    let keyring = shared.keyring();
    let now = shared.clock.now_unix();
    let call = CallContext {
        gateway_id: &shared.config.gateway_id,
        sid: binding.session.unwrap_or_default(),
        dpop_jkt: binding.dpop_key,
        agent_id: &agent.agent.id,
        tool: &tool.exposed_name,
        server: &tool.server,
    };
    unverified.verify(&keyring, &call, now)
}

/// A sensitive argument the token admitted by an open constraint (prefix,
/// range, schema) is judged on the value that really reaches the tool:
/// carrying a value from untrusted output refuses the call. Exact values
/// were judged when the token was granted.
async fn check_taint_at_call(shared: &Shared, agent: &VerifiedAgent, tool: &ExposedTool, claims: &crate::token::CapabilityClaims, arguments: &JsonObject) -> Result<(), Refusal> {
    use crate::taint::{TaintProbe, open_text_at_call, reached_at_call};
    let granted = &claims.args;
    let sensitive = &tool.spec.sensitive_args;
    let open = sensitive.iter().any(|a| granted.get(a).is_some_and(|c| !matches!(c, crate::token::Constraint::Eq(_) | crate::token::Constraint::OneOf(_))));
    // A sink's body admitted by an open constraint: the links and addresses
    // in what really reaches the tool (issue 24).
    let in_text = if tool.spec.tags.iter().any(|t| t == "sink") { open_text_at_call(sensitive, granted, arguments) } else { Default::default() };
    if !open && in_text.is_empty() {
        return Ok(());
    }
    let agent_id = agent.agent.id.clone();
    let in_text_names: Vec<String> = in_text.keys().cloned().collect();
    let probe = TaintProbe::of(sensitive, &reached_at_call(sensitive, granted, arguments)).and(TaintProbe::of(&in_text_names, &in_text));
    // A delegated task's call sees what the agents above it read too.
    let task = claims.task.clone();
    let ledger = crate::store::run_blocking(&shared.store, move |s| {
        let mut ledger = s.taint_lookup(&agent_id, &probe)?;
        super::delegation::merge_ledgers_of(s, &super::delegation::agents_above(s, &task)?, &probe, &mut ledger)?;
        Ok::<_, crate::store::StoreError>(ledger)
    })
    .await
    .and_then(|r| r)
    .map_err(|e| Refusal::tool(e.code(), e.to_string()))?;
    let mut verdict = ledger.check_call(sensitive, granted, arguments);
    let text = ledger.check(&in_text_names, &[], &in_text);
    verdict.tainted |= text.tainted;
    verdict.absorb(text);
    if !verdict.tainted {
        return Ok(());
    }
    let args: Vec<String> = verdict.findings.iter().map(|(a, _)| format!("`{a}`")).collect();
    let from: Vec<String> = verdict.sources.iter().map(|s| format!("call {} of {}", s.call, s.tool)).collect();
    tracing::warn!(tool = %tool.exposed_name, findings = ?verdict.findings, "call refused: an open constraint let a value from untrusted output through");
    Err(Refusal::tool(
        "tainted_argument",
        format!(
            "{} carries a value from the output of {}; the token's open constraint does not cover values read from untrusted content. Request a token for the exact value instead, so that policy can judge it",
            args.join(", "),
            if from.is_empty() { "an untrusted tool".to_owned() } else { from.join(", ") }
        ),
    ))
}

/// Up to three schema errors, each with the JSON pointer of the offending value.
pub fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Option<String> {
    let errors: Vec<String> = validator
        .iter_errors(value)
        .take(3)
        .map(|e| {
            let at = e.instance_path().to_string();
            if at.is_empty() { e.to_string() } else { format!("{at}: {e}") }
        })
        .collect();
    if errors.is_empty() { None } else { Some(errors.join("; ")) }
}

/// Tell apart "no such tool" from "withheld" and "server down", without
/// revealing tools the agent may not use.
pub fn explain_not_exposed(downstreams: &DownstreamSet, agent: &VerifiedAgent, tool_name: &str) -> Refusal {
    let unknown = Refusal {
        code: "unknown_tool",
        message: format!("unknown tool `{tool_name}`: it is not offered by this gateway; call tools/list to see the tools you may use"),
        protocol_error: true,
    };
    let Some((server, tool)) = tool_name.split_once(crate::manifest::NAMESPACE_SEPARATOR) else {
        return unknown;
    };
    let Some(ds) = downstreams.get(server) else { return unknown };
    if !ds.manifest.tools.contains_key(tool) || !agent.agent.may_use(tool_name) {
        return unknown;
    }
    match ds.state() {
        ServerState::Ready { withheld, .. } => match withheld.iter().find(|w| w.tool == tool) {
            Some(w) if matches!(w.reason, WithheldReason::PinMismatch { .. }) => Refusal::tool(
                "tool_withheld",
                format!("`{tool_name}` is withheld: its definition on the server changed since the platform team pinned it; it stays unavailable until they review and re-pin it"),
            ),
            Some(w) => Refusal::tool("tool_withheld", format!("`{tool_name}` is withheld: {}", w.reason)),
            None => unknown,
        },
        ServerState::Starting { last_error, .. } => Refusal::tool(
            "downstream_unavailable",
            format!(
                "server `{server}` is not available right now ({}); try again shortly",
                last_error.unwrap_or_else(|| "starting".into())
            ),
        ),
        ServerState::Disabled => Refusal::tool("downstream_unavailable", format!("server `{server}` is disabled on this gateway")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn token_is_taken_from_meta_or_argument_and_always_stripped() {
        let mut args = json!({"name": "a", "_jit_token": "from-arg"}).as_object().unwrap().clone();
        let meta = json!({"jitgate/capability": "from-meta"}).as_object().unwrap().clone();
        assert_eq!(take_token(&meta, &mut args).as_deref(), Some("from-meta"));
        assert!(!args.contains_key(TOKEN_ARGUMENT), "the token must never be forwarded");
        let mut args = json!({"_jit_token": "from-arg"}).as_object().unwrap().clone();
        assert_eq!(take_token(&serde_json::Map::new(), &mut args).as_deref(), Some("from-arg"));
        let mut args = json!({"name": "a"}).as_object().unwrap().clone();
        assert_eq!(take_token(&serde_json::Map::new(), &mut args), None);
    }
}
