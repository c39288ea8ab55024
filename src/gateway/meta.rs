//! The meta-tools every agent sees next to the wrapped tools:
//! `jit_begin_task`, `jit_request`, `jit_next_phase`, `jit_end_task`.
//!
//! They are the agent's side of just-in-time authority: declare a task and
//! its phases, ask for a token per call with a purpose, move phase by phase,
//! and end. Every answer is JSON text (and structured content) that says
//! what to do next; every refusal has a reason code.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolResult, ContentBlock, JsonObject, Tool};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authorize::{TOKEN_ARGUMENT, TOKEN_META_KEY, schema_problems};
use super::{Session, refusal_result};
use crate::clock::rfc3339;
use crate::identity::VerifiedAgent;
use crate::policy::invariants::{self as policy, Verdict};
use crate::store::{Phase, Store, Task, TaskState, TokenRecord, TokenState};
use crate::token::{self, ArgConstraints, CapabilityClaims, Constraint};

pub const BEGIN_TASK: &str = "jit_begin_task";
pub const REQUEST: &str = "jit_request";
pub const NEXT_PHASE: &str = "jit_next_phase";
pub const END_TASK: &str = "jit_end_task";

fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

/// The meta-tool definitions.
pub fn definitions() -> Vec<Tool> {
    vec![
        Tool::new(
            BEGIN_TASK,
            "Start a task before using any other tool. Give one objective and an ordered plan of phases; each phase lists the \
             tools (exact names from tools/list) it will use. Returns a task id. Then, for every tool call, first call jit_request.",
            schema(json!({
                "type": "object",
                "properties": {
                    "objective": {"type": "string", "minLength": 1, "maxLength": 2000, "description": "What the task is for, in one sentence."},
                    "phases": {
                        "type": "array", "minItems": 1, "maxItems": 20,
                        "description": "Ordered phases, e.g. [{\"name\":\"read\",\"tools\":[\"workspace__read_inbox\"]},{\"name\":\"reply\",\"tools\":[\"workspace__send_message\"]}].",
                        "items": {
                            "type": "object",
                            "properties": {
                                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                                "tools": {"type": "array", "minItems": 1, "items": {"type": "string"}}
                            },
                            "required": ["name", "tools"],
                            "additionalProperties": false
                        }
                    },
                    "ttl_seconds": {"type": "integer", "minimum": 10, "description": "Optional task lifetime; the gateway caps it."}
                },
                "required": ["objective", "phases"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            REQUEST,
            "Ask for a one-time capability token for ONE call of a tool in the task's current phase. Give the exact arguments you \
             will call it with (or constraints on them) and why. On success you get a token: call the tool with exactly those \
             arguments plus \"_jit_token\": \"<token>\". A token works once, for that tool, these arguments, this session and \
             phase, and expires quickly. If the request is denied, the answer says why and what would be allowed.",
            schema(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "Task id from jit_begin_task."},
                    "tool": {"type": "string", "description": "Exact tool name from tools/list, e.g. workspace__read_note."},
                    "arguments": {"type": "object", "description": "The exact arguments of the call (without _jit_token)."},
                    "constraints": {
                        "type": "object",
                        "description": "Instead of exact arguments: per argument one of {\"eq\": value}, {\"prefix\": \"...\"}, {\"one_of\": [..]}, {\"range\": {\"min\": n, \"max\": n}}, {\"schema\": {JSON Schema}}. The call must carry exactly these arguments.",
                        "additionalProperties": {"type": "object"}
                    },
                    "purpose": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "Why this call is needed for the objective."},
                    "follows": {"type": "string", "description": "Optional: the token id (jti) of the earlier call whose output led to this request."},
                    "ttl_seconds": {"type": "integer", "minimum": 1, "description": "Optional: shorter token lifetime."}
                },
                "required": ["task", "tool", "purpose"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            NEXT_PHASE,
            "Move the task to the next phase of its plan (phases cannot be skipped or revisited). Every unused token of the phase \
             being left is revoked; request new tokens in the new phase.",
            schema(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string"},
                    "phase": {"type": "string", "description": "Name of the next phase in the plan."}
                },
                "required": ["task", "phase"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            END_TASK,
            "End the task when the objective is done (or abandoned). Revokes every token the task still holds.",
            schema(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string"},
                    "outcome": {"type": "string", "maxLength": 1000, "description": "e.g. \"done\", \"abandoned: reason\"."}
                },
                "required": ["task", "outcome"],
                "additionalProperties": false
            })),
        ),
    ]
}

/// Is `name` a meta-tool?
pub fn is_meta(name: &str) -> bool {
    matches!(name, BEGIN_TASK | REQUEST | NEXT_PHASE | END_TASK)
}

fn ok(v: Value) -> CallToolResult {
    let mut r = CallToolResult::success(vec![ContentBlock::text(serde_json::to_string_pretty(&v).unwrap_or_default())]);
    r.structured_content = Some(v);
    r
}

fn bad_input(tool: &str, e: impl std::fmt::Display) -> CallToolResult {
    refusal_result("invalid_arguments", &format!("{tool}: {e}; see the tool's input schema"))
}

fn denied(rule: &str, reason: &str) -> CallToolResult {
    refusal_result("request_denied", &format!("denied by rule `{rule}`: {reason}"))
}

/// Run a store operation; any store failure becomes the agent's refusal.
async fn store_op<T: Send + 'static>(
    store: &Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> Result<T, crate::store::StoreError> + Send + 'static,
) -> Result<T, CallToolResult> {
    crate::store::run_blocking(store, f).await.and_then(|r| r).map_err(|e| refusal_result("store_unavailable", &e.to_string()))
}

/// Handle a meta-tool call.
pub async fn handle(session: &Session, agent: &VerifiedAgent, name: &str, args: JsonObject) -> CallToolResult {
    let args = Value::Object(args);
    match name {
        BEGIN_TASK => match serde_json::from_value(args) {
            Ok(req) => begin_task(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        REQUEST => match serde_json::from_value(args) {
            Ok(req) => request(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        NEXT_PHASE => match serde_json::from_value(args) {
            Ok(req) => next_phase(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        END_TASK => match serde_json::from_value(args) {
            Ok(req) => end_task(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        other => refusal_result("unknown_tool", &format!("unknown meta-tool `{other}`")),
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct BeginTask {
    objective: String,
    phases: Vec<Phase>,
    ttl_seconds: Option<u64>,
}

fn new_task_id() -> Result<String, CallToolResult> {
    token::new_jti().map(|j| format!("task_{j}")).map_err(|e| refusal_result(e.code(), &e.to_string()))
}

async fn begin_task(session: &Session, agent: &VerifiedAgent, req: BeginTask) -> CallToolResult {
    let objective = req.objective.trim();
    if objective.is_empty() || objective.len() > 2000 {
        return bad_input(BEGIN_TASK, "objective must be 1-2000 characters");
    }
    if req.phases.is_empty() || req.phases.len() > 20 {
        return bad_input(BEGIN_TASK, "give 1-20 phases");
    }
    for (i, p) in req.phases.iter().enumerate() {
        if p.name.is_empty() || p.name.len() > 64 || !p.name.chars().all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_') {
            return bad_input(BEGIN_TASK, format!("phase name `{}` must be 1-64 of A-Z a-z 0-9 - _", p.name));
        }
        if req.phases[..i].iter().any(|q| q.name == p.name) {
            return bad_input(BEGIN_TASK, format!("phase name `{}` is used twice", p.name));
        }
        if p.tools.is_empty() {
            return bad_input(BEGIN_TASK, format!("phase `{}` lists no tools", p.name));
        }
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
    let ttl = req.ttl_seconds.map(Duration::from_secs).unwrap_or(settings.task_ttl).min(settings.max_task_ttl);
    let now = shared.clock.now_unix();
    let id = match new_task_id() {
        Ok(id) => id,
        Err(r) => return r,
    };
    let task = Task {
        id: id.clone(),
        agent: agent.agent.id.clone(),
        sid: session.state.sid.clone(),
        objective: objective.to_owned(),
        phases: req.phases.clone(),
        current_phase: 0,
        state: TaskState::Active,
        created_at: now,
        expires_at: now + i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX / 2),
        end_reason: None,
    };
    let expires_at = task.expires_at;
    let sid = session.state.sid.clone();
    let agent_id = agent.agent.id.clone();
    if let Err(r) = store_op(&shared.store, move |s| s.session_opened(&sid, &agent_id, now).and_then(|_| s.create_task(&task))).await {
        return r;
    }
    session.state.mark_used();
    tracing::info!(task = %id, phases = req.phases.len(), "task begun");
    let first = &req.phases[0];
    ok(json!({
        "task": id,
        "phase": first.name,
        "phase_tools": first.tools,
        "phases": req.phases.iter().map(|p| &p.name).collect::<Vec<_>>(),
        "expires_at": rfc3339(expires_at),
        "next": format!("call {REQUEST} for each call of a tool in phase `{}`", first.name),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Request {
    task: String,
    tool: String,
    arguments: Option<JsonObject>,
    constraints: Option<ArgConstraints>,
    purpose: String,
    follows: Option<String>,
    ttl_seconds: Option<u64>,
}

/// The task, if it is this agent's, in this session, and active.
async fn own_active_task(session: &Session, agent: &VerifiedAgent, id: &str) -> Result<Task, CallToolResult> {
    let id = id.to_owned();
    let task = store_op(&session.shared.store, move |s| s.task(&id)).await?;
    // Someone else's task looks exactly like a task that does not exist.
    let Some(task) = task.filter(|t| t.agent == agent.agent.id && t.sid == session.state.sid) else {
        return Err(refusal_result("task_not_found", "no such task in this session; start one with jit_begin_task"));
    };
    let now = session.shared.clock.now_unix();
    if task.state != TaskState::Active || task.expires_at <= now {
        let state = if task.state == TaskState::Active { "expired" } else { task.state.as_str() };
        return Err(refusal_result(
            "task_inactive",
            &format!("task {} is {state} ({}); start a new one with jit_begin_task", task.id, task.end_reason.clone().unwrap_or_else(|| "TTL reached".into())),
        ));
    }
    Ok(task)
}

async fn request(session: &Session, agent: &VerifiedAgent, req: Request) -> CallToolResult {
    let shared = &session.shared;
    if req.purpose.trim().is_empty() || req.purpose.len() > 1000 {
        return bad_input(REQUEST, "purpose must be 1-1000 characters: say why the call is needed");
    }
    let task = match own_active_task(session, agent, &req.task).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    if let Verdict::Deny { rule, reason } = policy::decide_request(&agent.agent, &task, &req.tool) {
        tracing::info!(task = %task.id, tool = %req.tool, rule, "intent denied");
        return denied(rule, &reason);
    }
    let Some((_, tool)) = shared.downstreams.find(&req.tool) else {
        let r = super::authorize::explain_not_exposed(&shared.downstreams, agent, &req.tool);
        return refusal_result(r.code, &r.message);
    };
    let constraints = match (req.arguments, req.constraints) {
        (Some(mut a), None) => {
            a.remove(TOKEN_ARGUMENT);
            let value = Value::Object(a.clone());
            if let Some(p) = schema_problems(&tool.input_validator, &value) {
                return denied("tool-input-schema", &format!("the arguments do not match `{}`'s input schema: {p}", req.tool));
            }
            if let Some(p) = tool.manifest_validator.as_ref().and_then(|v| schema_problems(v, &value)) {
                return denied("manifest-args-schema", &format!("the arguments are outside what this gateway allows for `{}`: {p}", req.tool));
            }
            token::constraints::exact(&a)
        }
        (None, Some(c)) => {
            if let Some(e) = c.iter().find_map(|(n, c): (&String, &Constraint)| c.validate(n).err()) {
                return bad_input(REQUEST, e);
            }
            c
        }
        _ => return bad_input(REQUEST, "give exactly one of `arguments` (exact values; {} for none) or `constraints`"),
    };
    if let Some(parent) = &req.follows {
        let parent_id = parent.clone();
        let known = match store_op(&shared.store, move |s| s.token(&parent_id)).await {
            Ok(t) => t.is_some_and(|t| t.task == task.id),
            Err(r) => return r,
        };
        if !known {
            return bad_input(REQUEST, format!("`follows` names `{parent}`, which is not a call of this task"));
        }
    }
    let settings = shared.config.tokens;
    let mut ttl = settings.default_ttl;
    if let Some(max) = tool.spec.max_ttl {
        ttl = ttl.min(max);
    }
    if let Some(asked) = req.ttl_seconds {
        ttl = ttl.min(Duration::from_secs(asked));
    }
    let ttl_secs = i64::try_from(ttl.as_secs()).unwrap_or(60).max(1);
    let now = shared.clock.now_unix();
    let jti = match token::new_jti() {
        Ok(j) => j,
        Err(e) => return refusal_result(e.code(), &e.to_string()),
    };
    let phase_name = task.phase().map(|p| p.name.clone()).unwrap_or_default();
    let claims = CapabilityClaims {
        iss: shared.config.gateway_id.clone(),
        sub: agent.agent.id.clone(),
        aud: tool.server.clone(),
        jti: jti.clone(),
        iat: now,
        nbf: now,
        exp: now + ttl_secs,
        sid: session.state.sid.clone(),
        task: task.id.clone(),
        phase: phase_name.clone(),
        tool: req.tool.clone(),
        args: constraints,
        purpose: token::purpose_digest(req.purpose.trim()),
        parent: req.follows.clone(),
        uses: 1,
    };
    let signed = match token::mint(&shared.keyring(), &claims) {
        Ok(t) => t,
        Err(e) => return refusal_result(e.code(), &e.to_string()),
    };
    let record = TokenRecord {
        jti: jti.clone(),
        task: task.id.clone(),
        agent: agent.agent.id.clone(),
        sid: session.state.sid.clone(),
        tool: req.tool.clone(),
        phase: task.current_phase,
        state: TokenState::Issued,
        issued_at: now,
        expires_at: claims.exp,
        changed_at: None,
        reason: None,
    };
    // The token only exists once the store knows it: a store failure means no token.
    if let Err(r) = store_op(&shared.store, move |s| s.record_token(&record)).await {
        return r;
    }
    tracing::info!(task = %task.id, tool = %req.tool, jti = %jti, ttl_secs, "capability issued");
    ok(json!({
        "decision": "allow",
        "token": signed,
        "jti": jti,
        "task": task.id,
        "phase": phase_name,
        "tool": req.tool,
        "allows": claims.args,
        "expires_at": rfc3339(claims.exp),
        "expires_in_seconds": ttl_secs,
        "use": format!(
            "call {} once, with exactly the allowed arguments plus \"{TOKEN_ARGUMENT}\": \"<token>\" (or the token in _meta[\"{TOKEN_META_KEY}\"])",
            req.tool
        ),
    }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NextPhase {
    task: String,
    phase: String,
}

async fn next_phase(session: &Session, agent: &VerifiedAgent, req: NextPhase) -> CallToolResult {
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
    match store_op(&session.shared.store, move |s| s.advance_phase(&id, current, now)).await {
        Ok(true) => {}
        Ok(false) => return refusal_result("phase_order", "the task changed meanwhile; read its state and try again"),
        Err(r) => return r,
    }
    tracing::info!(task = %task.id, phase = %next.name, "phase advanced; tokens of the previous phase revoked");
    ok(json!({ "task": task.id, "phase": next.name, "phase_tools": next.tools, "previous_phase_tokens": "revoked" }))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EndTask {
    task: String,
    outcome: String,
}

async fn end_task(session: &Session, agent: &VerifiedAgent, req: EndTask) -> CallToolResult {
    let task = match own_active_task(session, agent, &req.task).await {
        Ok(t) => t,
        Err(r) => return r,
    };
    let now = session.shared.clock.now_unix();
    let id = task.id.clone();
    let outcome: String = req.outcome.chars().take(1000).collect();
    let outcome2 = outcome.clone();
    if let Err(r) = store_op(&session.shared.store, move |s| s.end_task(&id, &outcome2, now)).await {
        return r;
    }
    tracing::info!(task = %task.id, outcome = %outcome, "task ended; all its tokens revoked");
    ok(json!({ "task": task.id, "state": "ended", "outcome": outcome, "tokens": "revoked" }))
}
