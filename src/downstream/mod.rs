//! Supervised MCP clients to the downstream servers registered in manifests.
//!
//! Each registered server gets one supervisor task that owns its connection:
//! spawn (or connect), `initialize`, list tools, compare every listed tool
//! with its pin, publish the exposed set, then wait for the server to exit or
//! announce a tool-list change. A crash is followed by a restart with
//! exponential backoff. Callers never touch a connection directly; they read
//! the published [`ServerState`] and call [`Downstream::call`], which applies
//! the timeout and cancels downstream when the agent cancels.
//!
//! Trusts: the manifest (what to expose, pins, credentials). Does not trust:
//! anything the downstream server says about its tools beyond what the pins
//! vouch for.

mod connect;
mod exchange;
mod exposure;

pub use connect::{ConnectError, DownstreamClient, connect};
pub use exchange::TokenExchanger;
pub use exposure::{ExposedTool, Withheld, WithheldReason, expose};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use rmcp::model::{CallToolRequestParams, CallToolResponse, CallToolResult};
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

use crate::config::Limits;
use crate::manifest::Manifest;

/// The published state of one downstream server.
#[derive(Clone)]
pub enum ServerState {
    /// Not connected yet (first start or restarting).
    Starting { attempt: u32, last_error: Option<String> },
    /// Connected; these tools are exposed, these withheld.
    Ready { peer: rmcp::Peer<rmcp::RoleClient>, tools: Arc<Vec<ExposedTool>>, withheld: Arc<Vec<Withheld>> },
    /// Disabled in config.
    Disabled,
}

impl std::fmt::Debug for ServerState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ServerState::Starting { attempt, last_error } => {
                f.debug_struct("Starting").field("attempt", attempt).field("last_error", last_error).finish()
            }
            ServerState::Ready { tools, withheld, .. } => {
                f.debug_struct("Ready").field("tools", &tools.len()).field("withheld", &withheld.len()).finish()
            }
            ServerState::Disabled => f.write_str("Disabled"),
        }
    }
}

/// Why a forwarded call did not produce a downstream result.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("server `{server}` is not available ({reason}); jitgate is restarting it, try again shortly")]
    Unavailable { server: String, reason: String },
    #[error("server `{server}` did not answer within {} s; the call was cancelled downstream", after.as_secs_f64())]
    Timeout { server: String, after: Duration },
    #[error("server `{server}` stopped while handling the call ({detail}); jitgate is restarting it")]
    Crashed { server: String, detail: String },
    #[error("server `{server}` returned an error: {message}")]
    Downstream { server: String, message: String },
    #[error("the call was cancelled by the client")]
    Cancelled,
    #[error("no credential for the calling agent at server `{server}`: {reason}; the call was not forwarded. The server needs a credential exchanged for this agent at [token_exchange]: check that the authorization server accepts this agent's credential for that audience")]
    Credential { server: String, reason: String },
    #[error("server `{server}` returned a result of {bytes} bytes, over this gateway's limit of {max} bytes (limits.max_result_bytes); the result was dropped. Ask for less (a narrower query, a smaller page)")]
    ResultTooLarge { server: String, bytes: usize, max: usize },
}

impl CallError {
    /// Stable machine-readable reason code.
    pub fn code(&self) -> &'static str {
        match self {
            CallError::Unavailable { .. } => "downstream_unavailable",
            CallError::Timeout { .. } => "downstream_timeout",
            CallError::Crashed { .. } => "downstream_crashed",
            CallError::Downstream { .. } => "downstream_error",
            CallError::Cancelled => "cancelled",
            CallError::ResultTooLarge { .. } => "downstream_result_too_large",
            CallError::Credential { .. } => "downstream_credential",
        }
    }
}

/// Longest downstream error message relayed to an agent.
const MAX_ERROR_MESSAGE: usize = 2000;

/// The length of a value's JSON without building the JSON.
fn serialized_len(value: &impl serde::Serialize) -> usize {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0 += buf.len();
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut count = Count(0);
    match serde_json::to_writer(&mut count, value) {
        Ok(()) => count.0,
        // Not serializable means not relayable: count it as too large.
        Err(_) => usize::MAX,
    }
}

/// One registered downstream server and its supervisor's published state.
pub struct Downstream {
    pub manifest: Arc<Manifest>,
    call_timeout: Duration,
    startup_timeout: Duration,
    max_result_bytes: usize,
    state: watch::Sender<ServerState>,
    /// Servers that must know who calls: a connection per agent.
    callers: Option<exchange::CallerConnections>,
}

impl Downstream {
    /// The current state (cheap clone of handles).
    pub fn state(&self) -> ServerState {
        self.state.borrow().clone()
    }

    /// Wait until the server is ready or `deadline` passes (tests, `check`).
    pub async fn wait_ready(&self, deadline: Duration) -> ServerState {
        let mut rx = self.state.subscribe();
        let _ = tokio::time::timeout(deadline, rx.wait_for(|s| matches!(s, ServerState::Ready { .. }))).await;
        self.state()
    }

    /// Forget what this server holds for an agent (its authority ended).
    pub fn forget_caller(&self, agent: &str) {
        if let Some(c) = &self.callers {
            c.forget(agent);
        }
    }

    /// Forward one call for `caller`. `params.name` must already be the
    /// downstream tool name.
    pub async fn call(&self, params: CallToolRequestParams, caller: &crate::identity::VerifiedAgent, now_unix: i64, cancel: &CancellationToken) -> Result<CallToolResult, CallError> {
        let server = self.manifest.name.clone();
        let peer = match self.state() {
            ServerState::Ready { peer, .. } => peer,
            ServerState::Starting { last_error, .. } => {
                return Err(CallError::Unavailable { server, reason: last_error.unwrap_or_else(|| "starting".into()) });
            }
            ServerState::Disabled => return Err(CallError::Unavailable { server, reason: "disabled in the gateway config".into() }),
        };
        // A server that must know the caller gets the call on the caller's
        // own connection, never on the shared one.
        let _caller_connection;
        let peer = match &self.callers {
            // Fail closed: never the shared connection for such a server.
            None if self.manifest.exchanged.is_some() => {
                return Err(CallError::Credential { server, reason: "the gateway has no [token_exchange] configured".into() });
            }
            None => peer,
            Some(callers) => {
                let connecting = callers.for_agent(&self.manifest, caller, now_unix);
                let service = tokio::select! {
                    r = tokio::time::timeout(self.startup_timeout, connecting) => match r {
                        Ok(Ok(s)) => s,
                        Ok(Err(reason)) => return Err(CallError::Credential { server, reason }),
                        Err(_) => return Err(CallError::Credential { server, reason: format!("no exchange and connection within {} s (limits.startup_timeout)", self.startup_timeout.as_secs()) }),
                    },
                    _ = cancel.cancelled() => return Err(CallError::Cancelled),
                };
                let peer = service.peer().clone();
                _caller_connection = service;
                peer
            }
        };
        let timeout = self.call_timeout;
        // Dropping the in-flight request future (timeout or agent cancel) makes
        // rmcp send notifications/cancelled downstream.
        let outcome = tokio::select! {
            r = tokio::time::timeout(timeout, peer.call_tool_once(params)) => r,
            _ = cancel.cancelled() => return Err(CallError::Cancelled),
        };
        match outcome {
            Err(_) => Err(CallError::Timeout { server, after: timeout }),
            Ok(Ok(CallToolResponse::Complete(result))) => {
                let bytes = serialized_len(&result);
                if bytes > self.max_result_bytes {
                    return Err(CallError::ResultTooLarge { server, bytes, max: self.max_result_bytes });
                }
                Ok(result)
            }
            Ok(Ok(_)) => Err(CallError::Downstream { server, message: "the server asked for client input or started a task, which jitgate does not relay".into() }),
            Ok(Err(rmcp::ServiceError::McpError(e))) => Err(CallError::Downstream { server, message: crate::telemetry::cut(&e.message, MAX_ERROR_MESSAGE) }),
            Ok(Err(e @ (rmcp::ServiceError::TransportClosed | rmcp::ServiceError::TransportSend(_)))) => {
                Err(CallError::Crashed { server, detail: e.to_string() })
            }
            Ok(Err(rmcp::ServiceError::Cancelled { reason })) => {
                Err(CallError::Crashed { server, detail: format!("request cancelled: {}", reason.unwrap_or_default()) })
            }
            Ok(Err(e)) => Err(CallError::Downstream { server, message: crate::telemetry::cut(&e.to_string(), MAX_ERROR_MESSAGE) }),
        }
    }
}

/// All registered downstream servers.
#[derive(Clone)]
pub struct DownstreamSet {
    servers: Arc<BTreeMap<String, Arc<Downstream>>>,
    /// Bumped whenever any server's exposed tools change, so sessions can send
    /// `notifications/tools/list_changed` to their agents.
    changes: watch::Sender<u64>,
}

impl DownstreamSet {
    /// Start one supervisor per enabled server. Supervisors stop when `shutdown` is cancelled.
    pub fn start(manifests: Vec<(Manifest, bool)>, limits: &Limits, exchanger: Option<Arc<TokenExchanger>>, shutdown: &CancellationToken) -> Self {
        let (changes, _) = watch::channel(0u64);
        let mut servers = BTreeMap::new();
        for (manifest, enabled) in manifests {
            let initial = if enabled { ServerState::Starting { attempt: 0, last_error: None } } else { ServerState::Disabled };
            let (state, _) = watch::channel(initial);
            // Config loading refuses an exchanged credential without [token_exchange].
            let callers = match (&manifest.exchanged, &exchanger) {
                (Some(x), Some(e)) => Some(exchange::CallerConnections::new(e.clone(), x.clone())),
                _ => None,
            };
            let ds = Arc::new(Downstream {
                callers,
                call_timeout: manifest.call_timeout.unwrap_or(limits.call_timeout),
                max_result_bytes: limits.max_result_bytes,
                startup_timeout: limits.startup_timeout,
                manifest: Arc::new(manifest),
                state,
            });
            if enabled {
                tokio::spawn(supervise(ds.clone(), changes.clone(), shutdown.child_token()));
            }
            servers.insert(ds.manifest.name.clone(), ds);
        }
        Self { servers: Arc::new(servers), changes }
    }

    /// A server by namespace.
    pub fn get(&self, name: &str) -> Option<&Arc<Downstream>> {
        self.servers.get(name)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Arc<Downstream>> {
        self.servers.values()
    }

    /// Find an exposed tool by its namespaced name. `None` when the tool is not
    /// in a manifest, is withheld, or its server is not ready.
    pub fn find(&self, exposed: &str) -> Option<(Arc<Downstream>, ExposedTool)> {
        let (server, _) = exposed.split_once(crate::manifest::NAMESPACE_SEPARATOR)?;
        let ds = self.servers.get(server)?;
        match ds.state() {
            ServerState::Ready { tools, .. } => tools.iter().find(|t| t.exposed_name == exposed).map(|t| (ds.clone(), t.clone())),
            _ => None,
        }
    }

    /// Every exposed tool of every ready server.
    pub fn exposed_tools(&self) -> Vec<ExposedTool> {
        let mut out = Vec::new();
        for ds in self.servers.values() {
            if let ServerState::Ready { tools, .. } = ds.state() {
                out.extend(tools.iter().cloned());
            }
        }
        out
    }

    /// Wait, at most `limit`, until no server is still on its first start-up
    /// attempt. Agents usually list tools once, right after connecting; an
    /// answer given before the servers are up would hide their tools from
    /// such clients until they reconnect.
    pub async fn wait_first_start(&self, limit: Duration) {
        let first_start = |s: &ServerState| matches!(s, ServerState::Starting { attempt: 0, .. });
        let pending: Vec<_> = self.servers.values().filter(|d| first_start(&d.state())).cloned().collect();
        if pending.is_empty() {
            return;
        }
        let _ = tokio::time::timeout(limit, async {
            for ds in pending {
                let mut rx = ds.state.subscribe();
                let _ = rx.wait_for(|s| !first_start(s)).await;
            }
        })
        .await;
    }

    /// Subscribe to tool-set changes.
    pub fn subscribe(&self) -> watch::Receiver<u64> {
        self.changes.subscribe()
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A connection that stayed up this long resets the backoff.
const STABLE_AFTER: Duration = Duration::from_secs(30);

#[tracing::instrument(name = "downstream", skip_all, fields(server = %ds.manifest.name))]
async fn supervise(ds: Arc<Downstream>, changes: watch::Sender<u64>, shutdown: CancellationToken) {
    let mut backoff = MIN_BACKOFF;
    let mut attempt: u32 = 0;
    loop {
        attempt = attempt.saturating_add(1);
        let relist = Arc::new(Notify::new());
        let connected = tokio::select! {
            r = tokio::time::timeout(ds.startup_timeout, connect(&ds.manifest, relist.clone())) => r,
            _ = shutdown.cancelled() => return,
        };
        let error = match connected {
            Ok(Ok(running)) => {
                let up_since = Instant::now();
                let reason = run_connected(&ds, running, relist, &changes, &shutdown).await;
                if shutdown.is_cancelled() {
                    return;
                }
                if up_since.elapsed() >= STABLE_AFTER {
                    backoff = MIN_BACKOFF;
                }
                reason
            }
            Ok(Err(e)) => e.to_string(),
            Err(_) => format!("did not finish start-up within {} s (limits.startup_timeout)", ds.startup_timeout.as_secs()),
        };
        tracing::error!(attempt, error = %error, retry_in_ms = backoff.as_millis() as u64, "downstream server unavailable; other servers keep working");
        ds.state.send_replace(ServerState::Starting { attempt, last_error: Some(error) });
        changes.send_modify(|g| *g = g.wrapping_add(1));
        tokio::select! {
            _ = tokio::time::sleep(backoff) => {}
            _ = shutdown.cancelled() => return,
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// A 2026-07-28 server announces tool-list changes only to a client that
/// listens for them (a handshake-era server sends them on its own, to
/// [`DownstreamClient`]). The returned guard stops listening when dropped.
async fn listen_for_changes(peer: &rmcp::Peer<rmcp::RoleClient>, relist: Arc<Notify>) -> Option<AbortOnDrop> {
    let filter = rmcp::model::SubscriptionFilter::builder().tools_list_changed().build();
    let mut subscription = match peer.listen(filter).await {
        Ok(s) => s,
        Err(e) => {
            tracing::info!(error = %e, "the server does not take subscriptions/listen; its tool list is re-read only on reconnect");
            return None;
        }
    };
    let task = tokio::spawn(async move {
        while let Ok(Some(_)) = subscription.next().await {
            relist.notify_one();
        }
    });
    Some(AbortOnDrop(task.abort_handle()))
}

/// Ends a background task when its owner goes.
struct AbortOnDrop(tokio::task::AbortHandle);

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Publish the server's tools and keep them current until it exits.
/// Returns why the connection ended.
async fn run_connected(
    ds: &Downstream,
    running: rmcp::service::RunningService<rmcp::RoleClient, DownstreamClient>,
    relist: Arc<Notify>,
    changes: &watch::Sender<u64>,
    shutdown: &CancellationToken,
) -> String {
    let peer = running.peer().clone();
    let closed = running.cancellation_token();
    let protocol = peer.peer_info().map(|i| i.protocol_version.to_string()).unwrap_or_default();
    tracing::info!(protocol = %protocol, "downstream connected");
    let modern = peer.peer_info().is_some_and(|i| i.protocol_version >= rmcp::model::ProtocolVersion::V_2026_07_28);
    let _listening = if modern { listen_for_changes(&peer, relist.clone()).await } else { None };
    let mut waiting = std::pin::pin!(running.waiting());
    loop {
        match peer.list_all_tools().await {
            Ok(live) => {
                let (tools, withheld) = expose(&ds.manifest, live);
                for w in &withheld {
                    tracing::error!(tool = %w.tool, reason = %w.reason, "withholding downstream tool");
                }
                tracing::info!(exposed = tools.len(), withheld = withheld.len(), "downstream server ready");
                ds.state.send_replace(ServerState::Ready { peer: peer.clone(), tools: Arc::new(tools), withheld: Arc::new(withheld) });
                changes.send_modify(|g| *g = g.wrapping_add(1));
            }
            Err(e) => return format!("tools/list failed: {e}"),
        }
        tokio::select! {
            quit = &mut waiting => return format!("connection closed ({quit:?})"),
            _ = relist.notified() => tracing::info!("downstream announced a tool list change; re-checking pins"),
            _ = shutdown.cancelled() => {
                closed.cancel();
                return "gateway shutting down".into();
            }
        }
    }
}
