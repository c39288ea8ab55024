//! The streamable HTTP front end.
//!
//! `/mcp` is the MCP endpoint for both eras of the protocol: 2026-07-28
//! requests, each standing alone, and handshake-era sessions
//! (`initialize`, `Mcp-Session-Id`, SSE). Every request must carry
//! `Authorization: Bearer <identity JWT>`; the middleware verifies it before
//! rmcp sees the request and attaches the [`VerifiedAgent`] for the handler.
//! A missing or bad token gets `401` with a JSON body naming the reason. A
//! request that names a session must come from the session's own agent
//! ([`sessions`]).
//! `/healthz` reports which downstream servers are ready (no secrets, no tool
//! names). `/approvals` and `/reviews` are the people's API ([`approvals`]),
//! authenticated with approver credentials, never agent identities.

mod approvals;
pub mod sessions;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::session::local::LocalSessionManager;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::downstream::ServerState;
use crate::gateway::{IdentitySource, Session, Shared};
use crate::identity::IdentityError;
use sessions::{SessionBindings, SessionCheck};

/// The handshake-era session header.
pub const SESSION_HEADER: &str = "mcp-session-id";

/// Build the router for a running gateway.
pub fn router(shared: Arc<Shared>) -> axum::Router {
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shared.shutdown.child_token())
        .with_max_request_body_bytes(shared.config.limits.max_message_bytes);
    let factory_shared = shared.clone();
    let session_manager = Arc::new(LocalSessionManager::default());
    let bindings = Arc::new(SessionBindings::default());
    sessions::spawn_pruning(bindings.clone(), session_manager.clone(), shared.shutdown.clone());
    // rmcp builds one handler per handshake-era session, and one per request
    // for 2026-07-28 requests, which have no session.
    let mcp: StreamableHttpService<Session, LocalSessionManager> = StreamableHttpService::new(
        move || Ok(Session::new(factory_shared.clone(), IdentitySource::HttpBearer)),
        session_manager,
        config,
    );
    axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state((shared.clone(), bindings), require_identity))
        .route("/healthz", get(healthz))
        .route("/.well-known/jwks.json", get(jwks))
        .merge(approvals::routes())
        .merge(ui::routes())
        .with_state(shared)
}

/// Serve until `shared.shutdown` is cancelled.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let shutdown = shared.shutdown.clone();
    let app = router(shared);
    axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
        .with_graceful_shutdown(async move { shutdown.cancelled().await })
        .await
}

async fn require_identity(State((shared, bindings)): State<(Arc<Shared>, Arc<SessionBindings>)>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/mcp") {
        return next.run(req).await;
    }
    let token = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .map(str::trim);
    let verified = match token {
        None => Err(IdentityError::Missing),
        Some(t) => shared.identity.verify(t),
    };
    match verified {
        Ok(agent) => {
            tracing::debug!(agent = %agent.agent.name, issuer = %agent.issuer, "identity verified");
            let agent_id = agent.agent.id.clone();
            let session = req.headers().get(SESSION_HEADER).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
            if let Some(sid) = &session {
                if bindings.check(sid, &agent_id) != SessionCheck::Owner {
                    return session_not_found();
                }
            }
            let is_delete = req.method() == axum::http::Method::DELETE;
            req.extensions_mut().insert(agent);
            let mut resp = next.run(req).await;
            match &session {
                // A response that hands out a session id answers `initialize`:
                // the session belongs to the agent that opened it, from now on.
                None => {
                    if let Some(issued) = resp.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()) {
                        bindings.bind(issued, &agent_id);
                    }
                }
                Some(sid) if is_delete && resp.status().is_success() => {
                    bindings.unbind(sid);
                    // The SDKs expect 200 or 204 for a terminated session.
                    *resp.status_mut() = StatusCode::NO_CONTENT;
                }
                Some(_) => {}
            }
            resp
        }
        Err(e) => {
            tracing::warn!(code = e.code(), token = %token.map(crate::jws::fingerprint).unwrap_or_default(), "identity refused");
            unauthorized(&e)
        }
    }
}

/// Another agent's session looks exactly like one that does not exist.
fn session_not_found() -> Response {
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": "session not found: this Mcp-Session-Id is unknown, expired or not yours; start a new session (initialize) or send 2026-07-28 requests without a session", "data": {"code": "session_not_found"}}});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}

fn unauthorized(e: &IdentityError) -> Response {
    let body = serde_json::json!({ "error": { "code": e.code(), "message": e.to_string() } });
    let mut resp = (StatusCode::UNAUTHORIZED, axum::Json(body)).into_response();
    // RFC 6750: tell the client what kind of credential is expected.
    let challenge = format!("Bearer error=\"invalid_token\", error_description=\"{}\"", e.code());
    if let Ok(v) = HeaderValue::from_str(&challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// Public keys of capability tokens, for downstream servers that verify
/// tokens themselves (defence in depth). Includes rotated-out keys whose
/// tokens may still be live.
async fn jwks(State(shared): State<Arc<Shared>>) -> Response {
    axum::Json(crate::keys::jwks(shared.keyring().public_keys())).into_response()
}

async fn healthz(State(shared): State<Arc<Shared>>) -> Response {
    let servers: serde_json::Map<String, serde_json::Value> = shared
        .downstreams
        .iter()
        .map(|ds| {
            let state = match ds.state() {
                ServerState::Ready { .. } => "ready",
                ServerState::Starting { .. } => "unavailable",
                ServerState::Disabled => "disabled",
            };
            (ds.manifest.name.clone(), serde_json::Value::from(state))
        })
        .collect();
    axum::Json(serde_json::json!({ "status": "ok", "servers": servers })).into_response()
}
