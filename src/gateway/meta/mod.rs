//! The meta-tools every agent sees next to the wrapped tools:
//! `jit_begin_task`, `jit_request`, `jit_next_phase`, `jit_end_task`.
//!
//! They are the agent's side of just-in-time authority: declare a task and
//! its phases, ask for a token per call with a purpose, move phase by phase,
//! and end. Every answer is JSON text (and structured content) that says
//! what to do next; every refusal has a reason code.

use std::sync::Arc;
use std::time::Duration;

use rmcp::model::{CallToolResponse, CallToolResult, ContentBlock, JsonObject, Tool};
use serde::Deserialize;
use serde_json::{Value, json};

use super::authorize::{TOKEN_ARGUMENT, TOKEN_META_KEY, schema_problems};
use super::{Binding, Session, refusal_result};
use crate::clock::rfc3339;
use crate::identity::VerifiedAgent;
use crate::policy::invariants::{self as policy, Verdict};
use super::decide;
use crate::audit::Event;
use crate::baseline::profile;
use crate::taint::TaintProbe;
use crate::policy::{Action, ApprovalFacts, BaselineFacts, DecisionInput, Outcome, RequestFacts, TaintFacts, TimeFacts};
use crate::store::{Approval, ApprovalState, BreakGlassGrant, Intent, Phase, Store, Task, TaskState, TokenRecord, TokenState};
use crate::token::{self, ArgConstraints, CapabilityClaims, Constraint};

mod definitions;
mod delegate;
mod observe;
mod request;
mod status;
mod task;

#[allow(unused_imports)]
use self::{delegate::*, request::*, status::*, task::*};
pub use self::definitions::definitions;
pub use self::observe::observe_call;
pub use self::request::{OneStep, OneStepCall, OneStepGrant, authorize_one_step};

pub const BEGIN_TASK: &str = "jit_begin_task";

pub const REQUEST: &str = "jit_request";

pub const NEXT_PHASE: &str = "jit_next_phase";

pub const END_TASK: &str = "jit_end_task";

pub const APPROVAL_STATUS: &str = "jit_approval_status";

/// Hand part of a task to another agent.
pub const DELEGATE: &str = "jit_delegate";

/// `jit_request` and the call in one round trip.
pub const CALL: &str = "jit_call";

/// Is `name` a meta-tool?
pub fn is_meta(name: &str) -> bool {
    matches!(name, BEGIN_TASK | REQUEST | CALL | NEXT_PHASE | END_TASK | APPROVAL_STATUS | DELEGATE)
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
    crate::store::run_blocking(store, f).await.and_then(|r| r).map_err(store_refusal)
}

/// A store failure as the agent's refusal.
fn store_refusal(e: crate::store::StoreError) -> CallToolResult {
    if matches!(e, crate::store::StoreError::Audit(_)) {
        tracing::error!(error = %e, "AUDIT WRITE FAILED: request refused");
    }
    refusal_result(e.code(), &e.to_string())
}

/// Handle a meta-tool call.
///
/// `binding` says what the request's authority is bound to besides its
/// agent: the handshake-era session it came in (a task begun there is
/// revoked when the session ends), and the DPoP key it proved; tokens minted
/// for it bind both.
pub async fn handle(session: &Session, agent: &VerifiedAgent, binding: Binding<'_>, name: &str, args: JsonObject) -> CallToolResponse {
    let args = Value::Object(args);
    let result = match name {
        BEGIN_TASK => match serde_json::from_value(args) {
            Ok(req) => begin_task(session, agent, binding.session, req).await,
            Err(e) => bad_input(name, e),
        },
        // The only meta-tool that may ask the end user (an input-required result).
        REQUEST => {
            return match serde_json::from_value(args) {
                Ok(req) => request(session, agent, binding, req).await,
                Err(e) => bad_input(name, e).into(),
            };
        }
        NEXT_PHASE => match serde_json::from_value(args) {
            Ok(req) => next_phase(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        END_TASK => match serde_json::from_value(args) {
            Ok(req) => end_task(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        APPROVAL_STATUS => match serde_json::from_value(args) {
            Ok(req) => approval_status(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        DELEGATE => match serde_json::from_value(args) {
            Ok(req) => delegate(session, agent, req).await,
            Err(e) => bad_input(name, e),
        },
        other => refusal_result("unknown_tool", &format!("unknown meta-tool `{other}`")),
    };
    result.into()
}

/// Deserialize a meta-tool's arguments the way [`handle`] does, without
/// acting on them (fuzzing).
#[doc(hidden)]
pub fn parse_arguments(name: &str, args: Value) -> bool {
    match name {
        BEGIN_TASK => serde_json::from_value::<BeginTask>(args).is_ok(),
        REQUEST => serde_json::from_value::<Request>(args).is_ok(),
        CALL => serde_json::from_value::<OneStep>(args).is_ok(),
        NEXT_PHASE => serde_json::from_value::<NextPhase>(args).is_ok(),
        END_TASK => serde_json::from_value::<EndTask>(args).is_ok(),
        APPROVAL_STATUS => serde_json::from_value::<ApprovalStatus>(args).is_ok(),
        DELEGATE => serde_json::from_value::<Delegate>(args).is_ok(),
        _ => false,
    }
}
