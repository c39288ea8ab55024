//! The single authorization point: every forwarded call is decided here.
//!
//! [`authorize`] returns a [`Decision`]. Only `Decision::Forward` carries an
//! [`Authorized`] value, and [`Authorized`] can only be built in this module,
//! so the forwarding code cannot be reached without passing every check
//! below. Checks run cheapest first; any failure refuses.
//!
//! In this version the checks are: the tool is exposed (in a manifest, pin
//! matched, server ready), the verified agent may use it, and the arguments
//! satisfy the server's schema and the manifest's tighter schema.
//! Capability tokens (issue "per-call intent") extend this function.

use std::sync::Arc;

use rmcp::model::JsonObject;
use serde_json::Value;

use crate::downstream::{Downstream, DownstreamSet, ExposedTool, ServerState, WithheldReason};
use crate::identity::VerifiedAgent;

/// Proof that a call passed the authorization point. Fields are private so
/// nothing outside this module can fabricate one.
pub struct Authorized {
    downstream: Arc<Downstream>,
    tool: ExposedTool,
    arguments: Option<JsonObject>,
}

impl Authorized {
    pub fn downstream(&self) -> &Arc<Downstream> {
        &self.downstream
    }
    pub fn tool(&self) -> &ExposedTool {
        &self.tool
    }
    /// Consume into the parts the forwarder needs.
    pub(crate) fn into_parts(self) -> (Arc<Downstream>, ExposedTool, Option<JsonObject>) {
        (self.downstream, self.tool, self.arguments)
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
}

/// The outcome of the authorization point.
pub enum Decision {
    Forward(Authorized),
    Refuse(Refusal),
}

/// Decide one `tools/call` request.
pub fn authorize(downstreams: &DownstreamSet, agent: &VerifiedAgent, tool_name: &str, arguments: Option<JsonObject>) -> Decision {
    let Some((downstream, tool)) = downstreams.find(tool_name) else {
        return Decision::Refuse(explain_not_exposed(downstreams, agent, tool_name));
    };
    if !agent.agent.may_use(tool_name) {
        return Decision::Refuse(Refusal::tool(
            "tool_not_allowed",
            format!("agent `{}` is not allowed to use `{tool_name}`; ask the platform team to add it to the agent's allowed_tools", agent.agent.name),
        ));
    }
    let args_value = Value::Object(arguments.clone().unwrap_or_default());
    if let Some(problem) = schema_problems(&tool.input_validator, &args_value) {
        return Decision::Refuse(Refusal::tool(
            "invalid_arguments",
            format!("arguments for `{tool_name}` do not match its input schema: {problem}; see the schema in tools/list"),
        ));
    }
    if let Some(validator) = &tool.manifest_validator {
        if let Some(problem) = schema_problems(validator, &args_value) {
            return Decision::Refuse(Refusal::tool(
                "arguments_outside_policy",
                format!("arguments for `{tool_name}` are outside what this gateway allows for the tool: {problem}"),
            ));
        }
    }
    Decision::Forward(Authorized { downstream, tool, arguments })
}

/// Up to three schema errors, each with the JSON pointer of the offending value.
fn schema_problems(validator: &jsonschema::Validator, value: &Value) -> Option<String> {
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
fn explain_not_exposed(downstreams: &DownstreamSet, agent: &VerifiedAgent, tool_name: &str) -> Refusal {
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
