//! The MCP server agents connect to.
//!
//! One [`Session`] value serves one agent session (the HTTP front end builds a
//! new one per MCP session; stdio has exactly one). A session is bound to the
//! first agent identity that uses it: a different identity presenting the
//! same session id is refused, so a stolen session id is useless without the
//! agent's own token.
//!
//! `tools/list` shows the verified agent only the exposed tools it may use.
//! `tools/call` goes through [`authorize::authorize`] and nothing else
//! forwards.

pub mod authorize;
mod identity_source;

pub use identity_source::{IdentityFile, IdentitySource};

use std::sync::{Arc, OnceLock};

use rmcp::model::{
    CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, Implementation, ListToolsResult,
    MetaObject, PaginatedRequestParams, ServerCapabilities, ServerConfig,
};
use rmcp::service::{NotificationContext, RequestContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::config::Config;
use crate::downstream::DownstreamSet;
use crate::identity::{IdentityError, IdentityVerifier, VerifiedAgent};
use authorize::{Decision, Refusal, authorize};

/// Handles shared by every session of one running gateway.
pub struct Shared {
    pub config: Config,
    pub downstreams: DownstreamSet,
    pub identity: Arc<IdentityVerifier>,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
}

/// The handler for one agent session.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    identity: IdentitySource,
    /// The agent id this session is bound to (set on first use).
    bound_to: Arc<OnceLock<String>>,
    calls: Arc<Semaphore>,
}

/// Upper bound on how long a request waits for servers on their first start.
const FIRST_START_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

const INSTRUCTIONS: &str = "This is jitgate, an authorization gateway. Tools are named `server__tool`. \
Each call is checked against your identity and the platform team's registration; a refused call returns \
isError with a reason code in _meta[\"jitgate/error\"] and a sentence saying what to do.";

impl Session {
    pub fn new(shared: Arc<Shared>, identity: IdentitySource) -> Self {
        let permits = shared.config.limits.max_concurrent_calls_per_session;
        Self { shared, identity, bound_to: Arc::new(OnceLock::new()), calls: Arc::new(Semaphore::new(permits)) }
    }

    /// How long a request may wait for servers still starting for the first time.
    fn first_start_wait(&self) -> std::time::Duration {
        self.shared.config.limits.startup_timeout.min(FIRST_START_WAIT)
    }

    /// The body of `tools/call`, run inside the call's span.
    async fn decide_and_forward(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
        span: tracing::Span,
    ) -> Result<CallToolResponse, ErrorData> {
        let agent = match self.identify(&ctx) {
            Ok(a) => a,
            Err(e) => {
                span.record("decision", "refused");
                tracing::warn!(code = e.code(), "identity refused");
                return Ok(refusal_result(e.code(), &e.to_string()).into());
            }
        };
        span.record("agent", agent.agent.name.as_str());
        self.shared.downstreams.wait_first_start(self.first_start_wait()).await;
        // Refuse rather than queue: a queue would hide a runaway agent and hold memory.
        let Ok(_permit) = self.calls.clone().try_acquire_owned() else {
            span.record("decision", "refused");
            let limit = self.shared.config.limits.max_concurrent_calls_per_session;
            return Ok(refusal_result(
                "too_many_concurrent_calls",
                &format!("this session already has {limit} calls in flight (limits.max_concurrent_calls_per_session); wait for one to finish"),
            )
            .into());
        };
        let authorized = match authorize(&self.shared.downstreams, &agent, &req.name, req.arguments.clone()) {
            Decision::Forward(a) => a,
            Decision::Refuse(Refusal { code, message, protocol_error }) => {
                span.record("decision", "refused");
                tracing::info!(code, "call refused");
                if protocol_error {
                    return Err(ErrorData::invalid_params(message, Some(serde_json::json!({ "code": code }))));
                }
                return Ok(refusal_result(code, &message).into());
            }
        };
        span.record("decision", "forwarded");
        Ok(forward(authorized, &ctx, &self.shared.shutdown).await.into())
    }

    /// Who is calling: verified identity, bound to this session.
    fn identify(&self, ctx: &RequestContext<RoleServer>) -> Result<VerifiedAgent, IdentityError> {
        let agent = self.identity.current(&self.shared.identity, &ctx.extensions)?;
        let bound = self.bound_to.get_or_init(|| agent.agent.id.clone());
        if *bound != agent.agent.id {
            tracing::warn!(bound = %bound, presented = %agent.agent.id, "session used by a different agent; refused");
            return Err(IdentityError::UnknownAgent(format!(
                "{} (this MCP session belongs to another agent; open your own session)",
                agent.agent.id
            )));
        }
        Ok(agent)
    }
}

/// A refused call as the agent sees it.
pub fn refusal_result(code: &str, message: &str) -> CallToolResult {
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("jitgate refused the call [{code}]: {message}"))]);
    let mut meta = serde_json::Map::new();
    meta.insert("jitgate/error".into(), serde_json::json!({ "code": code, "message": message }));
    result.meta = Some(MetaObject(meta));
    result
}

fn identity_error(e: &IdentityError) -> ErrorData {
    ErrorData::new(ErrorCode::INVALID_REQUEST, e.to_string(), Some(serde_json::json!({ "code": e.code() })))
}

impl ServerHandler for Session {
    fn get_info(&self) -> ServerConfig {
        ServerConfig::new(ServerCapabilities::builder().enable_tools().enable_tool_list_changed().build())
            .with_server_info(Implementation::new("jitgate", env!("CARGO_PKG_VERSION")))
            .with_instructions(INSTRUCTIONS)
    }

    async fn list_tools(
        &self,
        _req: Option<PaginatedRequestParams>,
        ctx: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, ErrorData> {
        let agent = self.identify(&ctx).map_err(|e| identity_error(&e))?;
        self.shared.downstreams.wait_first_start(self.first_start_wait()).await;
        let tools = self
            .shared
            .downstreams
            .exposed_tools()
            .into_iter()
            .filter(|t| agent.agent.may_use(&t.exposed_name))
            .map(|t| t.definition)
            .collect();
        Ok(ListToolsResult::with_all_items(tools))
    }

    async fn call_tool(&self, req: CallToolRequestParams, ctx: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let span = tracing::info_span!("call", tool = %req.name, agent = tracing::field::Empty, decision = tracing::field::Empty);
        self.decide_and_forward(req, ctx, span.clone()).instrument(span).await
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        // Tell this agent when the exposed tool set changes (server up or down,
        // a tool withheld after a pin mismatch). The task ends with the session.
        let mut changes = self.shared.downstreams.subscribe();
        let peer = ctx.peer.clone();
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    r = changes.changed() => if r.is_err() { return },
                    _ = shutdown.cancelled() => return,
                }
                if peer.is_transport_closed() || peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }
}

/// Forward an authorized call. The only caller of [`crate::downstream::Downstream::call`].
async fn forward(authorized: authorize::Authorized, ctx: &RequestContext<RoleServer>, shutdown: &CancellationToken) -> CallToolResult {
    let (downstream, tool, arguments) = authorized.into_parts();
    let mut params = CallToolRequestParams::new(tool.downstream_name.clone());
    params.arguments = arguments;
    // Agent cancellation and gateway shutdown both cancel the downstream call.
    let cancel = ctx.ct.child_token();
    let _guard = {
        let cancel = cancel.clone();
        let shutdown = shutdown.clone();
        tokio::spawn(async move {
            shutdown.cancelled().await;
            cancel.cancel();
        })
        .abort_handle()
    };
    let started = std::time::Instant::now();
    let outcome = downstream.call(params, &cancel).await;
    _guard.abort();
    let ms = started.elapsed().as_secs_f64() * 1000.0;
    match outcome {
        Ok(result) => {
            tracing::info!(server = %tool.server, tool = %tool.downstream_name, duration_ms = ms, is_error = result.is_error.unwrap_or(false), "forwarded");
            result
        }
        Err(e) => {
            tracing::warn!(server = %tool.server, tool = %tool.downstream_name, duration_ms = ms, code = e.code(), error = %e, "forward failed");
            refusal_result(e.code(), &e.to_string())
        }
    }
}
