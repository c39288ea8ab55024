//! Inputs for the stages' unit tests, built from plain values: no gateway,
//! no downstream server, no session. An agent `triage` allowed
//! `ws__read_inbox` and `ws__send_message`, a task whose phases are `read`
//! then `reply`, and the request as parsing would have left it.

#[allow(unused_imports)]
use super::*;
use crate::agent::{Agent, ToolPattern};

pub(super) const AGENT: &str = "spiffe://example.test/agent/triage";
pub(super) const NOW: i64 = 1_795_564_800;
pub(super) const READ: &str = "ws__read_inbox";
pub(super) const SEND: &str = "ws__send_message";

pub(super) fn agent() -> Agent {
    Agent {
        name: "triage".into(),
        id: AGENT.into(),
        team: "support".into(),
        environment: "development".into(),
        description: String::new(),
        allowed_tools: vec![ToolPattern::Exact(READ.into()), ToolPattern::Exact(SEND.into())],
        attributes: Default::default(),
        baseline: Default::default(),
        issuers: vec![],
        source: Default::default(),
    }
}

/// The agent's task, in phase `phase` (0: `read`, 1: `reply`).
pub(super) fn task(phase: usize) -> Task {
    Task {
        id: "task_1".into(),
        agent: AGENT.into(),
        sid: "s1".into(),
        objective: "answer the customer".into(),
        phases: vec![Phase { name: "read".into(), tools: vec![READ.into()] }, Phase { name: "reply".into(), tools: vec![SEND.into()] }],
        current_phase: phase,
        state: TaskState::Active,
        created_at: NOW - 60,
        expires_at: NOW + 600,
        end_reason: None,
    }
}

/// `jit_request` for `tool` with exact `arguments`, as stage 1 leaves it.
pub(super) fn asked(tool: &str, arguments: Value) -> Asked {
    let constraints = match arguments {
        Value::Object(a) => token::constraints::exact(&a),
        _ => ArgConstraints::new(),
    };
    Asked {
        task: "task_1".into(),
        tool: tool.into(),
        purpose: "answer the customer".into(),
        follows: None,
        ttl_seconds: None,
        break_glass: None,
        digest: Some(decide::request_digest(AGENT, tool, &constraints)),
        constraints: Ok(constraints),
        probe: TaintProbe::default(),
        now: NOW,
        one_step: None,
        passes: Passes::default(),
    }
}

/// What stage 2 reads for `task`, and nothing else on record.
pub(super) fn loaded(task: Option<Task>) -> Loaded {
    Loaded { task, quarantined: None, parent: None, existing: None, last_call: None, ledger: Default::default(), rate: 0 }
}

/// A manifest entry for `ws`'s tool `name`.
pub(super) fn spec(name: &str, sensitive: &[&str]) -> crate::manifest::ToolSpec {
    spec_with(name, sensitive, &[])
}

/// The same, with `open` sensitive arguments (`open_sensitive_args`).
pub(super) fn spec_with(name: &str, sensitive: &[&str], open: &[&str]) -> crate::manifest::ToolSpec {
    crate::manifest::ToolSpec {
        name: name.into(),
        risk: crate::manifest::Risk::High,
        resource_class: "mail".into(),
        environment: "development".into(),
        max_ttl: None,
        sensitive_args: sensitive.iter().map(|s| s.to_string()).collect(),
        open_sensitive_args: open.iter().map(|s| s.to_string()).collect(),
        untrusted_output: false,
        trusted_fields: vec![],
        tags: vec![],
        args_schema: None,
        pin: String::new(),
        line: 1,
    }
}

/// The gateway's lookup of `exposed` (`ws__NAME`) when its server offers it.
pub(super) fn offered(exposed: &str) -> ToolLookup {
    let name = exposed.trim_start_matches("ws__");
    let spec = spec(name, &["to"]);
    let schema = json!({"type": "object"});
    let Value::Object(schema_object) = schema.clone() else { unreachable!("an object") };
    let tool = crate::downstream::ExposedTool {
        exposed_name: exposed.into(),
        server: "ws".into(),
        downstream_name: name.into(),
        definition: Tool::new(exposed.to_owned(), "a tool", Arc::new(schema_object)),
        spec: Arc::new(spec.clone()),
        input_validator: Arc::new(jsonschema::options().build(&schema).unwrap_or_else(|e| panic!("{e}"))),
        manifest_validator: None,
    };
    ToolLookup { exposed: Ok(tool), facts: Some(crate::policy::ToolFacts::new("ws", &spec)) }
}

/// The gateway's lookup of a tool no server offers.
pub(super) fn not_offered(exposed: &str) -> ToolLookup {
    let refusal = crate::gateway::authorize::Refusal { code: "unknown_tool", message: format!("unknown tool `{exposed}`"), protocol_error: true };
    ToolLookup { exposed: Err(refusal), facts: None }
}

/// The refusal code of a stage's answer (`jitgate/error` in its `_meta`).
pub(super) fn code_of(r: &CallToolResult) -> String {
    let error = r.meta.as_ref().and_then(|m| m.0.get("jitgate/error"));
    error.and_then(|e| e.get("code")).and_then(Value::as_str).unwrap_or_default().to_owned()
}

/// The text of a stage's answer.
pub(super) fn text_of(r: &CallToolResult) -> String {
    outcome::text_of_result(r)
}

/// A request for `ws__send_message` that passed the invariants in the
/// task's `reply` phase.
pub(super) fn checked_send(arguments: Value) -> (Asked, Checked) {
    let request = asked(SEND, arguments);
    match check_invariants(&agent(), NOW, &request, loaded(Some(task(1))), offered(SEND)) {
        Ok(checked) => (request, checked),
        Err(e) => panic!("the fixture's send should pass the invariants: {}", text_of(&e)),
    }
}

/// An approval of `checked`'s exact request, decided `state` by `by`.
pub(super) fn approval(checked: &Checked, state: ApprovalState, by: &str) -> Approval {
    Approval {
        id: "apr_1".into(),
        digest: checked.digest.clone(),
        agent: AGENT.into(),
        task: checked.task.id.clone(),
        tool: SEND.into(),
        constraints: "{}".into(),
        purpose: "answer the customer".into(),
        group: "support-leads".into(),
        policies: vec!["sends-need-a-lead".into()],
        state,
        created_at: NOW - 100,
        expires_at: NOW + 100,
        decided_at: Some(NOW - 50),
        decided_by: Some(by.into()),
        note: Some("not this one".into()),
        used_jti: None,
    }
}
