//! The streamable HTTP front end.
//!
//! `/mcp` is the MCP endpoint for both eras of the protocol: 2026-07-28
//! requests, each standing alone, and handshake-era sessions
//! (`initialize`, `Mcp-Session-Id`, SSE). Every request must carry
//! `Authorization: Bearer <identity JWT>`; the middleware verifies it before
//! rmcp sees the request and attaches the [`VerifiedAgent`] for the handler.
//! Every refusal of `/mcp` is a JSON-RPC error ([`mcp_refusal`]): a missing
//! or bad token (`401`, the reason also in `WWW-Authenticate`), a body too
//! large or too slow, a session that is not the agent's, a `Host` or
//! `Origin` that is not allowed, so that an MCP client shows the reason
//! code and the sentence where it shows any error. A request that names a
//! session must come from the session's own agent ([`sessions`]).
//! `/healthz` reports which downstream servers are ready (no secrets, no tool
//! names). `/approvals` and `/reviews` are the people's API ([`approvals`]),
//! authenticated with approver credentials, never agent identities.

mod approvals;
pub mod metrics;
/// People's sign-in to `/ui` (below the gateway, which holds it).
pub use crate::login;
pub mod sessions;
mod ui;

use std::net::SocketAddr;
use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use rmcp::transport::streamable_http_server::{StreamableHttpServerConfig, StreamableHttpService};

use crate::downstream::ServerState;
use crate::gateway::{IdentitySource, Session, Shared};
use crate::identity::IdentityError;
use sessions::{ReplicaSessions, SessionBindings, SessionCheck};

/// The handshake-era session header.
pub use crate::gateway::SESSION_HEADER;

/// Build the router for a running gateway listening on `local`.
pub fn router(shared: Arc<Shared>, local: SocketAddr, replica: Option<&str>) -> axum::Router {
    let (hosts, origins) = host_and_origin_allowlists(&shared.config.http, local.port());
    let config = StreamableHttpServerConfig::default()
        .with_cancellation_token(shared.shutdown.child_token())
        .with_max_request_body_bytes(shared.config.limits.max_message_bytes)
        .with_allowed_hosts(hosts)
        .with_allowed_origins(origins)
        .enforce_origin_validation()
        // A 2026-07-28 reply that is only its response goes back as JSON (rmcp
        // falls back to an event stream when the handler sends anything
        // first). As an event stream, the client stopped reading once it had
        // its response, so the connection could not be reused: every call
        // cost a new TCP connection and its accept.
        .with_json_response(true);
    let factory_shared = shared.clone();
    let session_manager = Arc::new(ReplicaSessions::new(replica));
    let bindings = Arc::new(SessionBindings::default());
    sessions::spawn_pruning(bindings.clone(), session_manager.clone(), shared.shutdown.clone());
    let manager = session_manager.clone();
    // rmcp builds one handler per handshake-era session, and one per request
    // for 2026-07-28 requests, which have no session.
    let mcp: StreamableHttpService<Session, ReplicaSessions> = StreamableHttpService::new(
        move || Ok(Session::new(factory_shared.clone(), IdentitySource::HttpBearer)),
        session_manager,
        config,
    );
    axum::Router::new()
        .nest_service("/mcp", mcp)
        .layer(middleware::from_fn_with_state((shared.clone(), bindings, manager), require_identity))
        .route("/healthz", get(healthz))
        .route("/livez", get(livez))
        .route("/readyz", get(readyz))
        .route("/.well-known/jwks.json", get(jwks))
        .route("/.well-known/oauth-protected-resource", get(protected_resource_metadata))
        .route("/.well-known/oauth-protected-resource/{*path}", get(protected_resource_metadata_at))
        .merge(approvals::routes())
        .merge(ui::routes())
        .with_state(shared)
}

/// The `Host` and `Origin` values `/mcp` accepts: the configured ones, else
/// the loopback names on exactly the port jitgate listens on (a name without
/// a port would accept any port), and loopback browser origins.
fn host_and_origin_allowlists(http: &crate::config::HttpConfig, port: u16) -> (Vec<String>, Vec<String>) {
    let hosts = if http.allowed_hosts.is_empty() {
        vec![format!("localhost:{port}"), format!("127.0.0.1:{port}"), format!("[::1]:{port}")]
    } else {
        http.allowed_hosts.clone()
    };
    let origins = if http.allowed_origins.is_empty() {
        vec!["http://localhost:*".into(), "http://127.0.0.1:*".into(), "http://[::1]:*".into()]
    } else {
        http.allowed_origins.clone()
    };
    (hosts, origins)
}

/// An accepted connection sends each response at once: a response is
/// written in more than one piece, and with Nagle's algorithm the second
/// waits for the client's ACK of the first, which a client that delays its
/// ACKs (many Python clients) sends only after about 40 ms.
fn prepare_accepted(stream: &tokio::net::TcpStream) {
    if let Err(e) = stream.set_nodelay(true) {
        tracing::debug!(error = %e, "cannot set TCP_NODELAY");
    }
}

/// Serve until `shared.shutdown` is cancelled.
///
/// Each connection: `TCP_NODELAY` (see [`prepare_accepted`]),
/// `limits.header_read_timeout` (slow-header clients would otherwise hold a
/// connection and its memory forever), HTTP/1.1, and a graceful end on
/// shutdown.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener, replica: Option<&str>) -> std::io::Result<()> {
    let shutdown = shared.shutdown.clone();
    let header_timeout = shared.config.limits.header_read_timeout;
    let app = router(shared, listener.local_addr()?, replica);
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    loop {
        let (stream, _peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(c) => c,
                Err(e) => {
                    // Out of file descriptors and the like: back off, keep serving.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = shutdown.cancelled() => break,
        };
        prepare_accepted(&stream);
        let service = hyper_util::service::TowerToHyperService::new(app.clone());
        let mut builder = hyper::server::conn::http1::Builder::new();
        builder.timer(hyper_util::rt::TokioTimer::new()).header_read_timeout(header_timeout);
        let conn = builder.serve_connection(hyper_util::rt::TokioIo::new(stream), service);
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            if let Err(e) = conn.await {
                tracing::debug!(error = %e, "connection ended with an error");
            }
        });
    }
    // Let requests in flight finish, bounded.
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(std::time::Duration::from_secs(5)) => tracing::warn!("some connections were still open at shutdown"),
    }
    Ok(())
}

/// Read a request's body within `within` (a client dripping a body byte by
/// byte is cut off) and at most `limit` bytes, then hand the request on with
/// the body in memory.
async fn read_body_in_time(req: Request, limit: usize, within: std::time::Duration) -> Result<Request, Response> {
    let (parts, body) = req.into_parts();
    match tokio::time::timeout(within, axum::body::to_bytes(body, limit)).await {
        Ok(Ok(bytes)) => Ok(Request::from_parts(parts, axum::body::Body::from(bytes))),
        Ok(Err(_)) => Err(mcp_refusal(
            StatusCode::PAYLOAD_TOO_LARGE,
            "message_too_large",
            &format!("the request body is over {limit} bytes (limits.max_message_bytes)"),
        )),
        Err(_) => Err(mcp_refusal(
            StatusCode::REQUEST_TIMEOUT,
            "request_timeout",
            &format!("the request body did not arrive within {} s (limits.body_read_timeout)", within.as_secs()),
        )),
    }
}

/// Answer a request refused before its body was read, once the body has
/// arrived (bounded as every body is): a connection closed with the
/// client's body still on its way is reset, and the client may then lose
/// the refusal itself ("server disconnected without sending a response").
async fn after_reading_body(shared: &Shared, req: Request, refusal: Response) -> Response {
    let limits = &shared.config.limits;
    // Too large or too slow: the refusal goes out all the same.
    let _ = read_body_in_time(req, limits.max_message_bytes, limits.body_read_timeout).await;
    refusal
}

/// The credential an `Authorization` header carries: `Bearer` or `DPoP`
/// (RFC 9449 §7.1), schemes matched without regard to case.
fn credential(headers: &axum::http::HeaderMap) -> Option<(bool, &str)> {
    let value = headers.get(header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let dpop = if scheme.eq_ignore_ascii_case("bearer") {
        false
    } else if scheme.eq_ignore_ascii_case("dpop") {
        true
    } else {
        return None;
    };
    Some((dpop, token.trim()))
}

type FrontState = (Arc<Shared>, Arc<SessionBindings>, Arc<ReplicaSessions>);

async fn require_identity(State((shared, bindings, manager)): State<FrontState>, mut req: Request, next: Next) -> Response {
    if !req.uri().path().starts_with("/mcp") {
        return next.run(req).await;
    }
    let credential = credential(req.headers());
    let verified = match credential {
        None => Err(IdentityError::Missing),
        Some((_, t)) => shared.identity.verify_refreshing(t).await,
    };
    let agent = match verified {
        Ok(agent) => agent,
        Err(e) => {
            tracing::warn!(code = e.code(), token = %credential.map(|c| crate::jws::fingerprint(c.1)).unwrap_or_default(), "identity refused");
            shared.count_identity_refusal(e.code());
            let refused = unauthorized(&e, shared.config.oauth.as_ref());
            return after_reading_body(&shared, req, refused).await;
        }
    };
    let (dpop_scheme, token) = credential.unwrap_or_default();
    let (dpop_scheme, token) = (dpop_scheme, token.to_owned());
    let request = DpopRequest::of(&req);
    match proven_key(&shared, request, dpop_scheme, &token, &agent).await {
        Ok(Some(key)) => {
            req.extensions_mut().insert(key);
        }
        Ok(None) => {}
        Err(e) => {
            tracing::warn!(code = e.code(), agent = %agent.agent.name, error = %e, "DPoP proof refused");
            shared.count_identity_refusal(e.code());
            return after_reading_body(&shared, req, dpop_refused(&e)).await;
        }
    }
    tracing::debug!(agent = %agent.agent.name, issuer = %agent.issuer, "identity verified");
    let agent_id = agent.agent.id.clone();
    let session = req.headers().get(SESSION_HEADER).map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
    if let Some(sid) = &session {
        if bindings.check(sid, &agent_id) != SessionCheck::Owner {
            shared.count_identity_refusal("session_not_found");
            return session_not_found();
        }
    }
    let is_delete = req.method() == axum::http::Method::DELETE;
    if req.method() == axum::http::Method::POST {
        req = match read_body_in_time(req, shared.config.limits.max_message_bytes, shared.config.limits.body_read_timeout).await {
            Ok(r) => r,
            Err(resp) => return resp,
        };
    }
    req.extensions_mut().insert(agent);
    let host = req.headers().get(header::HOST).map(|h| String::from_utf8_lossy(h.as_bytes()).into_owned());
    let mut resp = as_mcp_refusal(next.run(req).await, host.as_deref()).await;
    match &session {
        // A response that hands out a session id answers `initialize`:
        // the session belongs to the agent that opened it, from now on.
        None => {
            if let Some(issued) = resp.headers().get(SESSION_HEADER).and_then(|v| v.to_str().ok()).map(str::to_owned) {
                let max = shared.config.limits.max_sessions_per_agent;
                if !bindings.bind(&issued, &agent_id, max) {
                    use rmcp::transport::streamable_http_server::session::SessionManager as _;
                    let _ = manager.close_session(&Arc::<str>::from(issued.as_str())).await;
                    return too_many_sessions(max);
                }
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

/// What a DPoP proof is checked against, taken from the request.
struct DpopRequest {
    /// Every `DPoP` header value (there must be at most one).
    proofs: Vec<Option<String>>,
    method: String,
    /// `host[:port]/path` as received.
    uri: String,
}

impl DpopRequest {
    fn of(req: &Request) -> Self {
        let host = req.headers().get(header::HOST).and_then(|h| h.to_str().ok()).unwrap_or_default();
        Self {
            proofs: req.headers().get_all(crate::dpop::HEADER).iter().map(|v| v.to_str().ok().map(str::to_owned)).collect(),
            method: req.method().as_str().to_owned(),
            uri: format!("{host}{}", req.uri().path()),
        }
    }
}

/// The DPoP key this request proves, if it sends a proof. The `DPoP` scheme
/// needs a proof; an identity token bound to a key (`cnf.jkt`) needs a proof
/// of that key; a proof is used once, across every process on the store.
async fn proven_key(
    shared: &Arc<Shared>,
    req: DpopRequest,
    dpop_scheme: bool,
    token: &str,
    agent: &crate::identity::VerifiedAgent,
) -> Result<Option<crate::dpop::ProvenKey>, crate::dpop::DpopError> {
    use crate::dpop::DpopError;
    if req.proofs.len() > 1 {
        return Err(DpopError::Malformed("more than one DPoP header".into()));
    }
    let proof = match req.proofs.into_iter().next() {
        Some(Some(p)) => Some(p),
        Some(None) => return Err(DpopError::Malformed("the DPoP header is not text".into())),
        None => None,
    };
    let bound = crate::dpop::bound_key(&agent.claims)?;
    let Some(proof) = proof else {
        if dpop_scheme {
            return Err(DpopError::Malformed("the DPoP authorization scheme needs a DPoP proof header".into()));
        }
        return if bound.is_some() { Err(DpopError::KeyMismatch) } else { Ok(None) };
    };
    let now = shared.clock.now_unix();
    let proof = crate::dpop::verify(&proof, &req.method, &req.uri, token, now)?;
    if bound.as_deref().is_some_and(|b| !crate::jws::constant_time_eq(b.as_bytes(), proof.jkt.as_bytes())) {
        return Err(DpopError::KeyMismatch);
    }
    let (jkt, jti) = (proof.jkt.clone(), proof.jti.clone());
    let until = proof.iat.saturating_add(2 * crate::dpop::MAX_AGE_SECS);
    let first = crate::store::run_blocking(&shared.store, move |s| s.dpop_proof_first_use(&jkt, &jti, until, now))
        .await
        .and_then(|r| r)
        // The replay check cannot be made: refuse (fail closed).
        .map_err(|e| DpopError::Malformed(format!("the proof could not be checked for replay ({e})")))?;
    if !first {
        return Err(DpopError::Replayed);
    }
    Ok(Some(crate::dpop::ProvenKey(proof.jkt)))
}

fn dpop_refused(e: &crate::dpop::DpopError) -> Response {
    let challenge = format!("DPoP error=\"invalid_dpop_proof\", error_description=\"{}\", algs=\"ES256 ES384 RS256 PS256 EdDSA\"", e.code());
    with_challenge(mcp_refusal(StatusCode::UNAUTHORIZED, e.code(), &e.to_string()), &challenge)
}

fn too_many_sessions(max: usize) -> Response {
    let message = format!("this agent already holds {max} sessions on this gateway (limits.max_sessions_per_agent); close one (DELETE) or send 2026-07-28 requests, which need no session");
    mcp_refusal(StatusCode::TOO_MANY_REQUESTS, "too_many_sessions", &message)
}

/// Another agent's session looks exactly like one that does not exist.
fn session_not_found() -> Response {
    let message = "session not found: this Mcp-Session-Id is unknown, expired or not yours; start a new session (initialize) or send 2026-07-28 requests without a session";
    mcp_refusal(StatusCode::NOT_FOUND, "session_not_found", message)
}

/// A refusal of `/mcp`, as a JSON-RPC error: MCP clients show a JSON-RPC
/// error's message where they show any error (the Python SDK turns any
/// other body of a 4xx into "Server returned an error response"), so the
/// message carries the reason code as well as the sentence; `data.code`
/// is the code alone, as in a refused call's `_meta`, and over stdio.
fn mcp_refusal(status: StatusCode, code: &str, message: &str) -> Response {
    let text = format!("jitgate refused the request [{code}]: {message}");
    let body = serde_json::json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32600, "message": text, "data": {"code": code}}});
    (status, axum::Json(body)).into_response()
}

/// rmcp answers some requests itself, before any handler, with a plain-text
/// error (a `Host` or `Origin` not allowed, a missing `Accept`): those
/// become [`mcp_refusal`]s like every other refusal of `/mcp`. `host` is
/// the request's `Host`, named in the refusal of it.
async fn as_mcp_refusal(resp: Response, host: Option<&str>) -> Response {
    let status = resp.status();
    let json = resp.headers().get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.starts_with("application/json") || v.starts_with("text/event-stream"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = axum::body::to_bytes(body, 4096).await.map(|b| String::from_utf8_lossy(&b).trim().to_owned()).unwrap_or_default();
    let (code, message) = match (status, text.as_str()) {
        (StatusCode::FORBIDDEN, t) if t.contains("Host") => (
            "host_not_allowed",
            format!(
                "this gateway does not answer to the Host `{}`; reach it by a name in [http] allowed_hosts, or add this one there (default: the loopback names on the port it listens on)",
                crate::telemetry::Clean(host.unwrap_or("(none)"))
            ),
        ),
        (StatusCode::FORBIDDEN, t) if t.contains("Origin") => {
            ("origin_not_allowed", "a browser request from an Origin not in [http] allowed_origins; add the page's origin there to allow it".to_owned())
        }
        (StatusCode::BAD_REQUEST, t) => ("bad_request", t.to_owned()),
        (StatusCode::NOT_FOUND, t) => ("not_found", t.to_owned()),
        (StatusCode::METHOD_NOT_ALLOWED, t) => ("method_not_allowed", t.to_owned()),
        (StatusCode::NOT_ACCEPTABLE, t) => ("not_acceptable", t.to_owned()),
        (StatusCode::PAYLOAD_TOO_LARGE, t) => ("message_too_large", t.to_owned()),
        (StatusCode::UNSUPPORTED_MEDIA_TYPE, t) => ("unsupported_media_type", t.to_owned()),
        (_, t) => ("http_error", t.to_owned()),
    };
    let mut refusal = mcp_refusal(status, code, &message);
    // Headers rmcp set (Allow on a 405, say) stay; the body is now JSON.
    for (name, value) in &parts.headers {
        if name != header::CONTENT_TYPE && name != header::CONTENT_LENGTH {
            refusal.headers_mut().insert(name.clone(), value.clone());
        }
    }
    refusal
}

/// A refusal as `{"error": {"code", "message"}}`.
fn error_response(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "error": { "code": code, "message": message } }))).into_response()
}

/// Add a `WWW-Authenticate` challenge (RFC 6750 / RFC 9449) to a 401.
fn with_challenge(mut resp: Response, challenge: &str) -> Response {
    if let Ok(v) = HeaderValue::from_str(challenge) {
        resp.headers_mut().insert(header::WWW_AUTHENTICATE, v);
    }
    resp
}

/// A refused identity, with the challenge the MCP authorization spec asks
/// for: where the protected resource metadata is (RFC 9728 §5.1) and which
/// scopes to ask for. No credential at all carries no error code (RFC 6750
/// §3.1); a token without the required scopes is `403 insufficient_scope`;
/// an issuer whose keys cannot be fetched now is the gateway's problem, 503.
fn unauthorized(e: &IdentityError, oauth: Option<&crate::config::OauthConfig>) -> Response {
    let mut params: Vec<String> = Vec::new();
    let status = match e {
        IdentityError::Missing => StatusCode::UNAUTHORIZED,
        IdentityError::InsufficientScope { wanted, .. } => {
            params.push("error=\"insufficient_scope\"".into());
            params.push(format!("scope=\"{wanted}\""));
            StatusCode::FORBIDDEN
        }
        IdentityError::KeysUnavailable(_) => {
            let mut resp = mcp_refusal(StatusCode::SERVICE_UNAVAILABLE, e.code(), &e.to_string());
            resp.headers_mut().insert(header::RETRY_AFTER, HeaderValue::from_static("10"));
            return resp;
        }
        other => {
            params.push("error=\"invalid_token\"".into());
            params.push(format!("error_description=\"{}\"", other.code()));
            StatusCode::UNAUTHORIZED
        }
    };
    if let Some(o) = oauth {
        params.push(format!("resource_metadata=\"{}\"", o.metadata_url()));
        if !o.scopes_supported.is_empty() && !params.iter().any(|p| p.starts_with("scope=")) {
            params.push(format!("scope=\"{}\"", o.scopes_supported.join(" ")));
        }
    }
    let challenge = if params.is_empty() { "Bearer".to_owned() } else { format!("Bearer {}", params.join(", ")) };
    with_challenge(mcp_refusal(status, e.code(), &e.to_string()), &challenge)
}

/// RFC 9728 protected resource metadata: which resource this gateway is,
/// which authorization servers issue tokens for it, which scopes it takes.
/// Served at the root well-known path and at the one suffixed with the
/// resource's path (`/.well-known/oauth-protected-resource/mcp`), where MCP
/// clients look.
/// The path-suffixed form: only for this gateway's own resource path (the
/// document must name the resource its URL was built from, RFC 9728 §3.3).
async fn protected_resource_metadata_at(State(shared): State<Arc<Shared>>, axum::extract::Path(path): axum::extract::Path<String>) -> Response {
    let ours = shared.config.oauth.as_ref().is_some_and(|o| o.metadata_url().ends_with(&format!("/.well-known/oauth-protected-resource/{}", path.trim_matches('/'))));
    if !ours {
        return error_response(StatusCode::NOT_FOUND, "not_found", "no protected resource here; this gateway's resource is /mcp");
    }
    protected_resource_metadata(State(shared)).await
}

async fn protected_resource_metadata(State(shared): State<Arc<Shared>>) -> Response {
    let Some(o) = &shared.config.oauth else {
        return error_response(
            StatusCode::NOT_FOUND,
            "oauth_not_configured",
            "this gateway does not take OAuth access tokens ([oauth] is not configured); send an identity token from an approved issuer as `Authorization: Bearer` (`jitgate identity mint` for development)",
        );
    };
    axum::Json(serde_json::json!({
        "resource": o.resource,
        "authorization_servers": o.authorization_servers,
        "scopes_supported": o.scopes_supported,
        "bearer_methods_supported": ["header"],
        "resource_name": "jitgate",
        "dpop_signing_alg_values_supported": ["ES256", "ES384", "RS256", "PS256", "EdDSA"],
    }))
    .into_response()
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
    // Remote key sets: their state, never their keys.
    let now = shared.clock.now_unix();
    let sets = shared.remote_key_sets();
    let issuers: Vec<serde_json::Value> = sets.iter().map(|s| s.health(now)).collect();
    let failing = issuers.iter().any(|i| matches!(i["status"].as_str(), Some("unavailable" | "stale")));
    // An enabled server that is not up is a degraded gateway, even though
    // the others keep working.
    let server_down = servers.values().any(|s| s == "unavailable");
    let status = if failing || server_down { "degraded" } else { "ok" };
    axum::Json(serde_json::json!({ "status": status, "servers": servers, "issuer_keys": issuers })).into_response()
}

/// Liveness: the process answers HTTP. Restart it only when this fails.
async fn livez() -> Response {
    axum::Json(serde_json::json!({ "status": "alive" })).into_response()
}

/// Readiness: this process can authorize calls now: it is not shutting down
/// and its store answers. A load balancer sends it no traffic otherwise;
/// downstream servers that are down do not count (other servers work).
async fn readyz(State(shared): State<Arc<Shared>>) -> Response {
    if shared.shutdown.is_cancelled() {
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "stopping" }))).into_response();
    }
    match crate::store::run_blocking(&shared.store, |s| s.audit_head()).await.and_then(|r| r) {
        Ok(_) => axum::Json(serde_json::json!({ "status": "ready" })).into_response(),
        // The error can name internal hosts: it goes to the log only.
        Err(e) => {
            tracing::warn!(error = %e, "not ready: the store does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, axum::Json(serde_json::json!({ "status": "not_ready", "code": e.code() }))).into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn accepted_connections_send_without_waiting_for_acks() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let _client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (accepted, _) = listener.accept().await.unwrap();
        assert!(!accepted.nodelay().unwrap(), "the kernel's default is Nagle on");
        super::prepare_accepted(&accepted);
        assert!(accepted.nodelay().unwrap());
    }
}
