//! The MCP server agents connect to.
//!
//! Authority belongs to the verified agent, not to a connection. Identity is
//! verified on every request; a task belongs to the agent that began it and
//! is found by its id from any request of that agent, on any gateway process
//! sharing the store; a capability token binds agent, task, phase, tool and
//! arguments.
//!
//! Two eras of MCP are served side by side. A 2026-07-28 request stands alone
//! (no handshake, no session): the HTTP front end builds a [`Session`] value
//! for that one request, and what it is granted is bound to no session. A
//! handshake-era session (HTTP with `Mcp-Session-Id`, or stdio, which is one
//! agent per process in either era) gets one [`Session`] value for its
//! lifetime, bound to the first agent identity that uses it; its tokens also
//! bind the session's own random id, and what it holds is revoked when it
//! ends or when the process that owns it stops. How the end user can be
//! asked follows the request's era, not the session: a 2026-07-28 request
//! over stdio declares its client's capabilities in its own `_meta`, as over
//! HTTP (see [`Binding`]).
//!
//! `tools/list` shows the meta-tools and the exposed tools the agent may use,
//! each with a `_jit_token` argument added. `tools/call` of a wrapped tool
//! goes through [`authorize::authorize`], and nothing else forwards.

pub mod authorize;
pub mod confirm;
mod decide;
pub mod delegation;
mod forward;
mod identity_source;
pub mod inflight;
pub mod maintenance;
pub mod meta;
pub mod streams;

#[allow(unused_imports)]
use self::forward::*;
pub(crate) use self::forward::{forwarded_event, record_or_log};

pub use identity_source::{IdentityFile, IdentitySource};

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};

use rmcp::model::{
    CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, ContentBlock, ErrorCode, Implementation, ListToolsResult,
    MetaObject, PaginatedRequestParams, ResultType, ServerCapabilities, ServerConfig,
};
use rmcp::model::SubscriptionFilter;
use rmcp::service::{NotificationContext, RequestContext, SubscriptionContext};
use rmcp::{ErrorData, RoleServer, ServerHandler};
use tokio::sync::{Semaphore, watch};
use tokio_util::sync::CancellationToken;
use tracing::Instrument as _;

use crate::clock::Clock;
use crate::config::{Config, OnDownstreamFailure};
use crate::downstream::{CallError, DownstreamSet};
use crate::identity::{IdentityError, IdentityVerifier, VerifiedAgent};
use crate::store::{Scope, Store};
use crate::approver::ApproverVerifier;
use crate::policy::PolicyEngine;
use crate::token::Keyring;
use authorize::{Decision, Refusal, authorize};

/// The handshake era's session header (MCP streamable HTTP).
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Handles shared by every session of one running gateway.
pub struct Shared {
    pub config: Config,
    pub downstreams: DownstreamSet,
    pub identity: Arc<IdentityVerifier>,
    pub store: Arc<dyn Store>,
    /// Capability signing keys; replaced when `keys rotate` adds one.
    pub keyring: watch::Sender<Arc<Keyring>>,
    pub clock: Arc<dyn Clock>,
    pub inflight: inflight::Inflight,
    /// Cancelled when the gateway shuts down.
    pub shutdown: CancellationToken,
    /// The policy set in force; replaced only by a set that validated.
    pub policy: watch::Sender<Arc<PolicyEngine>>,
    /// Verifies approvers' credentials (HTTP approvals API).
    pub approvers: Arc<ApproverVerifier>,
    /// Verifies reviewers' credentials (the /ui pages).
    pub reviewers: Arc<ApproverVerifier>,
    /// People's OpenID Connect sign-in to /ui (`[ui.oidc]`), if configured.
    pub login: Option<Arc<crate::login::PeopleLogin>>,
    /// Learned baselines by agent id (`NAME.baseline.toml`, read at start).
    pub learned: std::collections::HashMap<String, crate::baseline::profile::LearnedProfile>,
    /// This process's instance id: it owns only the handshake-era sessions
    /// it served, and revokes only those when it stops.
    pub instance: String,
    /// Open `subscriptions/listen` streams, per agent (bounded by
    /// `limits.max_listen_streams_per_agent`).
    pub listen_streams: streams::ListenStreams,
    /// Concurrency permits of sessionless requests, per agent (resource
    /// limits, not authority: losing them on a restart loses nothing).
    pub agent_calls: std::sync::Mutex<std::collections::HashMap<String, Arc<Semaphore>>>,
    /// Identity credentials already recorded as accepted by sessionless
    /// requests (bounded), so that the audit trail gets one record per
    /// credential rather than one per request.
    pub seen_identities: std::sync::Mutex<std::collections::HashSet<String>>,
    /// HTTP requests refused before any agent was known (401), counted by
    /// reason and written to the audit trail as one record per interval, so
    /// that unauthenticated traffic cannot fill the store.
    pub identity_refusals: std::sync::Mutex<std::collections::BTreeMap<&'static str, u64>>,
}

impl Shared {
    /// The current keyring.
    pub fn keyring(&self) -> Arc<Keyring> {
        self.keyring.borrow().clone()
    }

    /// Every remote issuer key set: agents', approvers' and reviewers'.
    pub fn remote_key_sets(&self) -> Vec<Arc<crate::issuer_keys::RemoteKeys>> {
        let mut sets = self.identity.remote_key_sets();
        sets.extend(self.approvers.remote_key_sets());
        sets.extend(self.reviewers.remote_key_sets());
        sets
    }

    /// The policy set in force.
    pub fn policy(&self) -> Arc<PolicyEngine> {
        self.policy.borrow().clone()
    }

    /// The call permits of one agent's sessionless requests.
    fn agent_permits(&self, agent: &str) -> Arc<Semaphore> {
        let mut map = self.agent_calls.lock().unwrap_or_else(|p| p.into_inner());
        map.entry(agent.to_owned()).or_insert_with(|| Arc::new(Semaphore::new(self.config.limits.max_concurrent_calls_per_session))).clone()
    }

    /// Count an identity refusal for the next aggregate audit record.
    pub fn count_identity_refusal(&self, code: &'static str) {
        let mut counts = self.identity_refusals.lock().unwrap_or_else(|p| p.into_inner());
        let n = counts.entry(code).or_default();
        *n = n.saturating_add(1);
    }

    /// The identity refusals counted since the last call.
    pub fn take_identity_refusals(&self) -> std::collections::BTreeMap<&'static str, u64> {
        std::mem::take(&mut *self.identity_refusals.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// True the first time this process sees an identity credential (by its id).
    fn first_sight_of(&self, identity_jti: &str) -> bool {
        const REMEMBERED: usize = 10_000;
        let mut seen = self.seen_identities.lock().unwrap_or_else(|p| p.into_inner());
        if seen.len() >= REMEMBERED {
            seen.clear();
        }
        seen.insert(identity_jti.to_owned())
    }
}

/// What a request's authority is bound to besides its verified agent.
#[derive(Debug, Clone, Copy, Default)]
pub struct Binding<'a> {
    /// The handshake-era session it came in, if any.
    pub session: Option<&'a str>,
    /// The thumbprint of the DPoP key it proved possession of, if any.
    pub dpop_key: Option<&'a str>,
    /// How its end user can be asked to confirm a request.
    pub end_user: confirm::EndUser<'a>,
}

/// How this request's end user can be asked, from the era of the request
/// itself rather than from its transport. A 2026-07-28 request declares its
/// client's capabilities in its own `_meta`
/// (`io.modelcontextprotocol/clientCapabilities`), over HTTP and over stdio
/// alike: its client never sends `initialize`, so a stdio process (one
/// session, for binding) has no handshake to read, and may not send it
/// requests of its own either; it is asked with an input-required result.
/// Only a handshake-era request in a session falls back to what the
/// handshake declared, and is asked with `elicitation/create`.
fn end_user_of<'a>(req: &'a CallToolRequestParams, ctx: &'a RequestContext<RoleServer>, in_session: bool) -> confirm::EndUser<'a> {
    if in_session && !is_modern(ctx) {
        let can_ask = ctx.peer.peer_info().is_some_and(|i| i.capabilities.elicitation.is_some());
        return confirm::EndUser::Session { can_ask, peer: &ctx.peer };
    }
    let can_ask = ctx.meta.client_capabilities().is_some_and(|c| c.elicitation.is_some());
    confirm::EndUser::Stateless { can_ask, responses: req.input_responses.as_ref(), state: req.request_state.as_deref() }
}

/// Is the request served statelessly (2026-07-28 lifecycle)? The same test
/// rmcp routes by: its `_meta` carries every per-request key that revision
/// requires, whatever version it names.
fn is_modern(ctx: &RequestContext<RoleServer>) -> bool {
    ctx.meta.missing_required_keys(&rmcp::model::ProtocolVersion::V_2026_07_28).is_empty()
}

/// The DPoP key the HTTP front end verified for this request.
fn proven_key(ctx: &RequestContext<RoleServer>) -> Option<&str> {
    ctx.extensions.get::<http::request::Parts>().and_then(|p| p.extensions.get::<crate::dpop::ProvenKey>()).map(|k| k.0.as_str())
}

/// Why a process's sessions end when it stops.
pub const INSTANCE_STOPPED: &str = "the gateway process serving the session stopped";

/// A new instance id for a `jitgate serve` process.
pub fn new_instance_id() -> String {
    crate::token::new_jti().map(|j| format!("inst_{j}")).unwrap_or_else(|_| format!("inst_pid{}", std::process::id()))
}

/// Per-session state shared by the handler's clones; revokes the session's
/// authority when the last clone goes (the session ended).
struct SessionState {
    sid: String,
    shared: Arc<Shared>,
    used: AtomicBool,
    /// Cancelled when the session ends, so its background tasks end with it.
    closed: CancellationToken,
}

impl SessionState {
    fn mark_used(&self) {
        self.used.store(true, Ordering::Relaxed);
    }
}

impl Drop for SessionState {
    fn drop(&mut self) {
        crate::metrics::metrics().session_closed();
        self.closed.cancel();
        if !self.used.load(Ordering::Relaxed) {
            return;
        }
        let now = self.shared.clock.now_unix();
        let reason = if self.shared.shutdown.is_cancelled() { INSTANCE_STOPPED } else { "session ended" };
        let (store, sid) = (self.shared.store.clone(), self.sid.clone());
        let revoke = move || match store.revoke(&Scope::Session(sid.clone()), reason, now) {
            Ok(r) => tracing::info!(sid = %sid, tokens = r.tokens, "session ended; its tasks and tokens revoked"),
            Err(e) => tracing::error!(sid = %sid, error = %e, "could not record session-end revocation; the process's stop or lease lapse revokes it"),
        };
        // Store work never runs on the runtime's workers (a session ends on one).
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => drop(handle.spawn_blocking(revoke)),
            Err(_) => revoke(),
        }
    }
}

/// The handler for one agent session.
#[derive(Clone)]
pub struct Session {
    shared: Arc<Shared>,
    identity: IdentitySource,
    /// The agent id this session is bound to (set on first use).
    bound_to: Arc<OnceLock<String>>,
    calls: Arc<Semaphore>,
    state: Arc<SessionState>,
}

/// Upper bound on how long a request waits for servers on their first start.
const FIRST_START_WAIT: std::time::Duration = std::time::Duration::from_secs(20);

const INSTRUCTIONS: &str = "This is jitgate, a just-in-time authorization gateway. Tools are named `server__tool`. \
To use them: 1) jit_begin_task with your objective and phases; 2) before EACH call, jit_request with the tool, exact \
arguments and purpose; 3) call the tool with those arguments plus the returned token in `_jit_token`; 4) jit_next_phase \
to move on; 5) jit_end_task when done. A refused call returns isError with a reason code in _meta[\"jitgate/error\"] \
and a sentence saying what to do.";

/// A session id: random, never derived from anything the agent chose.
fn new_sid() -> String {
    crate::token::new_jti().map(|j| format!("sess_{j}")).unwrap_or_else(|_| format!("sess_{}", std::process::id()))
}

impl Session {
    pub fn new(shared: Arc<Shared>, identity: IdentitySource) -> Self {
        let permits = shared.config.limits.max_concurrent_calls_per_session;
        let state = Arc::new(SessionState { sid: new_sid(), shared: shared.clone(), used: AtomicBool::new(false), closed: CancellationToken::new() });
        crate::metrics::metrics().session_opened();
        Self { shared, identity, bound_to: Arc::new(OnceLock::new()), calls: Arc::new(Semaphore::new(permits)), state }
    }

    /// How long a request may wait for servers still starting for the first time.
    fn first_start_wait(&self) -> std::time::Duration {
        self.shared.config.limits.startup_timeout.min(FIRST_START_WAIT)
    }

    /// The handshake-era session this request belongs to, if any. Stdio is
    /// one session per process in both eras; over HTTP a request is in a
    /// session exactly when it carries `Mcp-Session-Id` (the front end has
    /// checked that the session is this agent's), and a 2026-07-28 request
    /// carries none.
    fn session_of(&self, ctx: &RequestContext<RoleServer>) -> Option<&str> {
        let in_session = match &self.identity {
            IdentitySource::File(_) => true,
            // A 2026-07-28 request (its `_meta` names the revision) has no
            // session even if it carries a stale session header: rmcp serves
            // it statelessly, with a handler that lives for this request only.
            IdentitySource::HttpBearer => {
                !is_modern(ctx)
                    && ctx.extensions.get::<http::request::Parts>().is_some_and(|p| p.headers.contains_key(SESSION_HEADER))
            }
        };
        in_session.then_some(self.state.sid.as_str())
    }

    /// The body of `tools/call`, run inside the call's span.
    async fn decide_and_forward(
        &self,
        req: CallToolRequestParams,
        ctx: RequestContext<RoleServer>,
        span: tracing::Span,
    ) -> Result<CallToolResponse, ErrorData> {
        let arrived = std::time::Instant::now();
        let sid = self.session_of(&ctx);
        let agent = match self.identify(&ctx, sid.is_some()) {
            Ok(a) => a,
            Err(e) => {
                span.record("decision", "refused");
                tracing::warn!(code = e.code(), "identity refused");
                let event = crate::audit::Event::new("identity.refused", None, self.bound_to.get().map(String::as_str), serde_json::json!({"code": e.code(), "sid": sid, "tool": req.name}));
                record_or_log(&self.shared, event).await;
                return Ok(refusal_result(e.code(), &e.to_string()).into());
            }
        };
        span.record("agent", agent.agent.name.as_str());
        tracing::debug!("call received");
        // Refuse rather than queue: a queue would hide a runaway agent and hold memory.
        let permits = if sid.is_some() { self.calls.clone() } else { self.shared.agent_permits(&agent.agent.id) };
        let Ok(_permit) = permits.try_acquire_owned() else {
            span.record("decision", "refused");
            tracing::info!(code = "too_many_concurrent_calls", "call refused");
            let limit = self.shared.config.limits.max_concurrent_calls_per_session;
            let whose = if sid.is_some() { "this session" } else { "this agent" };
            let message = format!("{whose} already has {limit} calls in flight (limits.max_concurrent_calls_per_session); wait for one to finish");
            record_refusal(&self.shared, &agent, sid, &req.name, None, "too_many_concurrent_calls", &message).await;
            return Ok(refusal_result("too_many_concurrent_calls", &message).into());
        };
        let mut arguments = req.arguments.clone().unwrap_or_default();
        // Plans and intents name tools too: wait (bounded) for servers still
        // on their first start, as a call does.
        self.shared.downstreams.wait_first_start(self.first_start_wait()).await;
        let end_user = end_user_of(&req, &ctx, sid.is_some());
        let binding = Binding { session: sid, dpop_key: proven_key(&ctx), end_user };
        if req.name == meta::CALL {
            return Ok(self.call_in_one_step(&agent, binding, arguments, &ctx, &span, arrived).await);
        }
        if meta::is_meta(&req.name) {
            let task = arguments.get("task").and_then(|t| t.as_str()).filter(|t| t.len() <= 64).map(str::to_owned);
            let result = match meta::handle(self, &agent, binding, &req.name, arguments).await {
                CallToolResponse::Complete(result) => result,
                asking => {
                    span.record("decision", "asking the end user");
                    return Ok(asking);
                }
            };
            span.record("decision", if result.is_error == Some(true) { "refused" } else { "ok" });
            if let Some((code, message)) = unaudited_refusal(&req.name, &result) {
                record_refusal(&self.shared, &agent, sid, &req.name, task.as_deref(), &code, &message).await;
            }
            return Ok(result.into());
        }
        let token = authorize::take_token(&ctx.meta, &mut arguments);
        // An agent in observe mode: a plain call passes through, judged and
        // recorded, not enforced (a call with a token is enforced as ever).
        let server = req.name.split_once(crate::manifest::NAMESPACE_SEPARATOR).map(|(s, _)| s);
        if token.is_none() && server.is_some_and(|s| self.shared.identity.agents().mode(&agent.agent.id).observes(s)) {
            let result = meta::observe_call(self, &agent, binding, &req.name, arguments, &ctx, arrived).await;
            span.record("decision", if result.is_error == Some(true) { "refused" } else { "observed" });
            if let Some((code, message)) = unaudited_refusal(&req.name, &result) {
                record_refusal(&self.shared, &agent, sid, &req.name, None, &code, &message).await;
            }
            return Ok(result.into());
        }
        let authorized = match authorize(&self.shared, &agent, binding, &req.name, token, arguments).await {
            Decision::Forward(a) => a,
            Decision::Refuse(Refusal { code, message, protocol_error }) => {
                span.record("decision", "refused");
                tracing::info!(code, "call refused");
                record_refusal(&self.shared, &agent, sid, &req.name, None, code, &message).await;
                if protocol_error {
                    return Err(ErrorData::invalid_params(message, Some(serde_json::json!({ "code": code }))));
                }
                return Ok(refusal_result(code, &message).into());
            }
        };
        span.record("decision", "forwarded");
        Ok(forward(&self.shared, *authorized, &agent, &ctx, arrived).await.into())
    }

    /// `jit_call`: decide as `jit_request` would for exactly these
    /// arguments, then consume the token and forward the call, in one round
    /// trip. The token exists only inside this request; its id goes back in
    /// the result's `_meta["jitgate/token"]` for `follows` and the traces.
    async fn call_in_one_step(
        &self,
        agent: &VerifiedAgent,
        binding: Binding<'_>,
        arguments: rmcp::model::JsonObject,
        ctx: &RequestContext<RoleServer>,
        span: &tracing::Span,
        arrived: std::time::Instant,
    ) -> CallToolResponse {
        let sid = binding.session;
        let task = arguments.get("task").and_then(|t| t.as_str()).filter(|t| t.len() <= 64).map(str::to_owned);
        let one = match meta::OneStep::parse(arguments) {
            Ok(one) => one,
            Err(refusal) => {
                span.record("decision", "refused");
                if let Some((code, message)) = unaudited_refusal(meta::CALL, &refusal) {
                    record_refusal(&self.shared, agent, sid, meta::CALL, task.as_deref(), &code, &message).await;
                }
                return refusal.into();
            }
        };
        let granted = match meta::authorize_one_step(self, agent, binding, &one).await {
            Ok(granted) => granted,
            Err(CallToolResponse::Complete(answer)) => {
                span.record("decision", if answer.is_error == Some(true) { "refused" } else { "held" });
                if let Some((code, message)) = unaudited_refusal(meta::REQUEST, &answer) {
                    record_refusal(&self.shared, agent, sid, meta::CALL, task.as_deref(), &code, &message).await;
                }
                return answer.into();
            }
            Err(asking) => {
                span.record("decision", "asking the end user");
                return asking;
            }
        };
        let (decision, jti) = match granted {
            meta::OneStepGrant::Spent(claims) => {
                let jti = claims.jti.clone();
                match authorize::spent_at_grant(&self.shared, *claims, one.arguments) {
                    Ok(a) => (Decision::Forward(Box::new(a)), jti),
                    Err(r) => (Decision::Refuse(r), jti),
                }
            }
            meta::OneStepGrant::Token { token, jti } => (authorize(&self.shared, agent, binding, &one.tool, Some(token), one.arguments).await, jti),
        };
        let authorized = match decision {
            Decision::Forward(a) => a,
            Decision::Refuse(Refusal { code, message, .. }) => {
                span.record("decision", "refused");
                tracing::info!(code, "call refused");
                record_refusal(&self.shared, agent, sid, &one.tool, task.as_deref(), code, &message).await;
                return refusal_result(code, &message).into();
            }
        };
        span.record("decision", "forwarded");
        let mut result = forward(&self.shared, *authorized, agent, ctx, arrived).await;
        result.meta.get_or_insert_with(Default::default).0.insert("jitgate/token".into(), serde_json::Value::String(jti));
        result.into()
    }

    /// Record an accepted identity (in the background: the answer does not wait on it).
    fn record_accepted(&self, agent: &VerifiedAgent, sid: Option<&str>) {
        let event = crate::audit::Event::new(
            "identity.accepted",
            None,
            Some(&agent.agent.id),
            serde_json::json!({"sid": sid, "issuer": agent.issuer, "identity_jti": agent.token_id}),
        );
        let shared = self.shared.clone();
        tokio::spawn(async move { record_or_log(&shared, event).await });
    }

    /// Who is calling: the identity verified for this request, and, in a
    /// handshake-era session, bound to the session.
    fn identify(&self, ctx: &RequestContext<RoleServer>, in_session: bool) -> Result<VerifiedAgent, IdentityError> {
        let agent = self.identity.current(&self.shared.identity, &ctx.extensions)?;
        if !in_session {
            // A sessionless request: its credential is its only binding.
            if self.shared.first_sight_of(agent.token_id.as_deref().unwrap_or(&agent.agent.id)) {
                self.record_accepted(&agent, None);
            }
            return Ok(agent);
        }
        let mut first = false;
        let bound = self.bound_to.get_or_init(|| {
            first = true;
            agent.agent.id.clone()
        });
        if first {
            // The identity check that opened the session, once per session.
            self.record_accepted(&agent, Some(&self.state.sid));
        }
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
    crate::metrics::metrics().refused(code);
    let mut result = CallToolResult::error(vec![ContentBlock::text(format!("jitgate refused the call [{code}]: {message}"))]);
    let mut meta = serde_json::Map::new();
    meta.insert("jitgate/error".into(), serde_json::json!({ "code": code, "message": message }));
    result.meta = Some(MetaObject(meta));
    result
}

/// The list differs per agent and changes when a server goes down or a tool
/// is withheld: 2026-07-28 clients must neither share it across identities
/// nor keep it (ttlMs 0, cacheScope private).
fn private_list(mut list: ListToolsResult) -> ListToolsResult {
    list.ttl_ms = Some(0);
    list.cache_scope = Some(CacheScope::Private);
    list
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
        let in_session = self.session_of(&ctx).is_some();
        let agent = self.identify(&ctx, in_session).map_err(|e| identity_error(&e))?;
        self.shared.downstreams.wait_first_start(self.first_start_wait()).await;
        let mut tools = meta::definitions();
        tools.extend(
            self.shared
                .downstreams
                .exposed_tools()
                .into_iter()
                .filter(|t| agent.agent.may_use(&t.exposed_name))
                .map(|t| t.definition),
        );
        Ok(private_list(ListToolsResult::with_all_items(tools)))
    }

    async fn call_tool(&self, req: CallToolRequestParams, ctx: RequestContext<RoleServer>) -> Result<CallToolResponse, ErrorData> {
        let span = tracing::info_span!("call", tool = %crate::telemetry::Clean(&req.name), sid = %self.state.sid, agent = tracing::field::Empty, decision = tracing::field::Empty);
        self.decide_and_forward(req, ctx, span.clone()).instrument(span).await
    }

    async fn on_initialized(&self, ctx: NotificationContext<RoleServer>) {
        // A handshake-era session: tell this agent when the exposed tool set
        // changes (server up or down, a tool withheld after a pin mismatch)
        // on the session's own stream, for as long as the session lives.
        let peer = ctx.peer.clone();
        let mut changes = self.shared.downstreams.subscribe();
        // Ends with the gateway or with the session, whichever is first.
        let ended = self.state.closed.clone();
        let shutdown = self.shared.shutdown.clone();
        tokio::spawn(async move {
            while tokio::select! { more = wait_for_change(&mut changes, &shutdown) => more, _ = ended.cancelled() => false } {
                if peer.is_transport_closed() || peer.notify_tool_list_changed().await.is_err() {
                    return;
                }
            }
        });
    }

    /// 2026-07-28 clients learn of changes to the tool list by listening.
    fn accepted_subscription_filter(&self, requested: &SubscriptionFilter) -> Option<SubscriptionFilter> {
        let mut accepted = SubscriptionFilter::new();
        accepted.tools_list_changed = requested.tools_list_changed;
        Some(accepted)
    }

    async fn listen(&self, context: SubscriptionContext) -> Result<(), ErrorData> {
        // Only a verified agent may hold a stream open on this gateway.
        let in_session = self.session_of(context.request_context()).is_some();
        let agent = self.identify(context.request_context(), in_session).map_err(|e| identity_error(&e))?;
        let max = self.shared.config.limits.max_listen_streams_per_agent;
        // Held until this future ends, which is when the stream closes.
        let Some(_place) = self.shared.listen_streams.open(&agent.agent.id, max) else {
            tracing::warn!(agent = %agent.agent.name, max, "subscriptions/listen refused: too many streams");
            return Err(streams::too_many_streams(max));
        };
        // The stream ends with the credential that opened it.
        let lifetime = u64::try_from(agent.expires_at.saturating_sub(self.shared.clock.now_unix())).unwrap_or(0);
        let expiry = tokio::time::sleep(std::time::Duration::from_secs(lifetime));
        tokio::pin!(expiry);
        let mut changes = self.shared.downstreams.subscribe();
        let shutdown = self.shared.shutdown.clone();
        loop {
            tokio::select! {
                changed = wait_for_change(&mut changes, &shutdown) => if !changed { return Ok(()) },
                _ = context.cancelled() => return Ok(()),
                _ = &mut expiry => return Ok(()),
            }
            if context.sink().notify_tool_list_changed().await.is_err() {
                return Ok(());
            }
        }
    }
}

/// Wait until the exposed tool set changes; false when the gateway stops.
async fn wait_for_change(changes: &mut watch::Receiver<u64>, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        r = changes.changed() => r.is_ok(),
        _ = shutdown.cancelled() => false,
    }
}
