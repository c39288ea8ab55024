//! The meta-tools' definitions, as `tools/list` shows them.

#[allow(unused_imports)]
use super::*;

pub(in crate::gateway::meta) fn schema(v: Value) -> Arc<JsonObject> {
    Arc::new(v.as_object().cloned().unwrap_or_default())
}

/// A plan's phases, as `jit_begin_task` and `jit_delegate` take them.
fn phases_schema(description: &str) -> Value {
    json!({
        "type": "array", "minItems": 1, "maxItems": 20,
        "description": description,
        "items": {
            "type": "object",
            "properties": {
                "name": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,64}$"},
                "tools": {"type": "array", "minItems": 1, "items": {"type": "string"}}
            },
            "required": ["name", "tools"],
            "additionalProperties": false
        }
    })
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
                    "phases": phases_schema("Ordered phases, e.g. [{\"name\":\"read\",\"tools\":[\"workspace__read_inbox\"]},{\"name\":\"reply\",\"tools\":[\"workspace__send_message\"]}]."),
                    "ttl_seconds": {"type": "integer", "minimum": 10, "description": "Optional task lifetime; the gateway caps it."},
                    "delegation": {"type": "string", "description": "Optional: a delegation id another agent gave you (jit_delegate); your plan must stay within it."}
                },
                "required": ["objective", "phases"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            REQUEST,
            "Ask for a one-time capability token for ONE call of a tool in the task's current phase. Give the exact arguments you \
             will call it with (or constraints on them) and why. On success you get a token: call the tool with exactly those \
             arguments plus \"_jit_token\": \"<token>\". A token works once, for that tool, these arguments, this agent, task and \
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
                    "ttl_seconds": {"type": "integer", "minimum": 1, "description": "Optional: shorter token lifetime."},
                    "break_glass": {
                        "type": "object",
                        "description": "EMERGENCY ONLY: ask for a token outside the normal rules. Needs a justification; only works where policy allows it, is short-lived, and a person reviews every use.",
                        "properties": {"justification": {"type": "string", "minLength": 1, "maxLength": 2000}},
                        "required": ["justification"],
                        "additionalProperties": false
                    }
                },
                "required": ["task", "tool", "purpose"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            CALL,
            "Make ONE call of a tool in the task's current phase, authorized in the same step: give the task, the tool, its \
             exact arguments and why. The gateway decides exactly as jit_request would (policy, plan, baseline, approvals, end-user \
             confirmation), mints a one-time token for this call, uses it at once and returns the tool's result; the token id is in \
             the result's _meta[\"jitgate/token\"]. If the request is denied or waits for a person, the answer says so and nothing \
             is called. Use jit_request instead only when you need a token for constraints rather than exact arguments.",
            schema(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "Task id from jit_begin_task."},
                    "tool": {"type": "string", "description": "Exact tool name from tools/list, e.g. workspace__read_note."},
                    "arguments": {"type": "object", "description": "The exact arguments of the call."},
                    "purpose": {"type": "string", "minLength": 1, "maxLength": 1000, "description": "Why this call is needed for the objective."},
                    "follows": {"type": "string", "description": "Optional: the token id (jti) of the earlier call whose output led to this call."}
                },
                "required": ["task", "tool", "arguments", "purpose"],
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
        Tool::new(
            DELEGATE,
            "Hand part of your active task to another agent (a reviewer, a searcher): give the task, the agent's name, an \
             objective and its phases, whose tools must come from what remains of your plan. The other agent begins its own task \
             with the returned delegation id and can never do more than you delegated; its authority ends when your task ends.",
            schema(json!({
                "type": "object",
                "properties": {
                    "task": {"type": "string", "description": "Your task id."},
                    "agent": {"type": "string", "description": "The other agent's name."},
                    "objective": {"type": "string", "minLength": 1, "maxLength": 2000},
                    "phases": phases_schema("The share's phases: their tools come from what remains of your plan."),
                    "ttl_seconds": {"type": "integer", "minimum": 10, "description": "Optional; never longer than your task."},
                    "constraints": {
                        "type": "object",
                        "description": "Optional: per tool, constraints on the arguments it names, e.g. {\"workspace__send_message\": {\"to\": {\"eq\": \"alice@example.org\"}}}.",
                        "additionalProperties": {"type": "object"}
                    }
                },
                "required": ["task", "agent", "objective", "phases"],
                "additionalProperties": false
            })),
        ),
        Tool::new(
            APPROVAL_STATUS,
            "Check a pending approval that jit_request returned (decision \"pending_approval\"). When it is approved, call \
             jit_request again with exactly the same request to get the token.",
            schema(json!({
                "type": "object",
                "properties": {"approval": {"type": "string", "description": "The approval id from jit_request."}},
                "required": ["approval"],
                "additionalProperties": false
            })),
        ),
    ]
}
