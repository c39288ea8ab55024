//! The approvals and review HTTP API, for people (approver credentials from
//! `[[approvals.issuers]]`), never for agents: an agent identity presented
//! here is refused with `403 approver_is_agent`.
//!
//! - `GET  /approvals[?all=true]`, `GET /approvals/{id}`
//! - `POST /approvals/{id}/approve` `{"note": "…"}` (optional body)
//! - `POST /approvals/{id}/deny` `{"reason": "…"}`
//! - `GET  /reviews[?all=true]`, `POST /reviews/{id}/ack` `{"note": "…"}`
//!
//! Errors are `{"error": {"code", "message"}}` with a fitting status.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Value, json};

use crate::approver::{ApproverError, VerifiedApprover};
use crate::gateway::Shared;
use crate::policy::approvals::{ApprovalActionError, decide};
use crate::store::run_blocking;

/// The routes, to be merged into the gateway's router.
pub fn routes() -> axum::Router<Arc<Shared>> {
    axum::Router::new()
        .route("/approvals", get(list_approvals))
        .route("/approvals/{id}", get(show_approval))
        .route("/approvals/{id}/approve", post(approve))
        .route("/approvals/{id}/deny", post(deny))
        .route("/reviews", get(list_reviews))
        .route("/reviews/{id}/ack", post(ack_review))
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (status, axum::Json(json!({"error": {"code": code, "message": message}}))).into_response()
}

async fn person(shared: &Shared, headers: &HeaderMap) -> Result<VerifiedApprover, Response> {
    let token = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer ").or_else(|| v.strip_prefix("bearer ")))
        .unwrap_or("");
    shared.approvers.verify_refreshing(token).await.map_err(|e| {
        tracing::warn!(code = e.code(), "approvals API: credential refused");
        let status = match e {
            ApproverError::AgentIdentity(_) | ApproverError::SubjectIsAgent(_) => StatusCode::FORBIDDEN,
            ApproverError::KeysUnavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            _ => StatusCode::UNAUTHORIZED,
        };
        error(status, e.code(), &e.to_string())
    })
}

fn all(q: &Option<String>) -> bool {
    q.as_deref().is_some_and(|q| q.split('&').any(|p| p == "all=true" || p == "all=1"))
}

/// A JSON body's string field, or "" (an empty body is an empty object).
fn field(body: &Bytes, name: &str) -> Result<String, Response> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(String::new());
    }
    let v: Value = serde_json::from_slice(body).map_err(|e| error(StatusCode::BAD_REQUEST, "bad_body", &format!("the body must be a JSON object: {e}")))?;
    Ok(v.get(name).and_then(Value::as_str).unwrap_or("").to_owned())
}

fn store_failed(e: impl std::fmt::Display) -> Response {
    error(StatusCode::SERVICE_UNAVAILABLE, "store_unavailable", &e.to_string())
}

async fn list_approvals(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if let Err(r) = person(&shared, &headers).await {
        return r;
    }
    let now = shared.clock.now_unix();
    let all = all(&q);
    match run_blocking(&shared.store, move |s| s.approvals(all, now)).await.and_then(|r| r) {
        Ok(list) => axum::Json(json!({"approvals": list})).into_response(),
        Err(e) => store_failed(e),
    }
}

async fn show_approval(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>) -> Response {
    if let Err(r) = person(&shared, &headers).await {
        return r;
    }
    let now = shared.clock.now_unix();
    let wanted = id.clone();
    match run_blocking(&shared.store, move |s| s.approval(&wanted, now)).await.and_then(|r| r) {
        Ok(Some(a)) => axum::Json(json!(a)).into_response(),
        Ok(None) => error(StatusCode::NOT_FOUND, "approval_not_found", &format!("no approval `{id}`")),
        Err(e) => store_failed(e),
    }
}

async fn act(shared: Arc<Shared>, headers: HeaderMap, id: String, approve: bool, note: String) -> Response {
    let approver = match person(&shared, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let now = shared.clock.now_unix();
    let ttl = shared.config.approvals.use_ttl;
    let result = run_blocking(&shared.store, move |s| decide(s, &approver, &id, approve, &note, now, ttl)).await;
    match result {
        Ok(Ok(a)) => axum::Json(json!(a)).into_response(),
        Ok(Err(e)) => {
            let status = match e {
                ApprovalActionError::NotFound(_) => StatusCode::NOT_FOUND,
                ApprovalActionError::NotInGroup { .. } => StatusCode::FORBIDDEN,
                ApprovalActionError::NotPending { .. } => StatusCode::CONFLICT,
                ApprovalActionError::ReasonRequired => StatusCode::BAD_REQUEST,
                ApprovalActionError::Store(_) => StatusCode::SERVICE_UNAVAILABLE,
            };
            error(status, e.code(), &e.to_string())
        }
        Err(e) => store_failed(e),
    }
}

async fn approve(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    match field(&body, "note") {
        Ok(note) => act(shared, headers, id, true, note).await,
        Err(r) => r,
    }
}

async fn deny(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    match field(&body, "reason") {
        Ok(reason) => act(shared, headers, id, false, reason).await,
        Err(r) => r,
    }
}

async fn list_reviews(State(shared): State<Arc<Shared>>, headers: HeaderMap, RawQuery(q): RawQuery) -> Response {
    if let Err(r) = person(&shared, &headers).await {
        return r;
    }
    let all = all(&q);
    match run_blocking(&shared.store, move |s| s.break_glass_grants(all)).await.and_then(|r| r) {
        Ok(list) => axum::Json(json!({"break_glass": list})).into_response(),
        Err(e) => store_failed(e),
    }
}

async fn ack_review(State(shared): State<Arc<Shared>>, headers: HeaderMap, Path(id): Path<String>, body: Bytes) -> Response {
    let approver = match person(&shared, &headers).await {
        Ok(p) => p,
        Err(r) => return r,
    };
    let note = match field(&body, "note") {
        Ok(n) if !n.trim().is_empty() => n,
        Ok(_) => return error(StatusCode::BAD_REQUEST, "note_required", "a review needs a note saying what was checked"),
        Err(r) => return r,
    };
    let now = shared.clock.now_unix();
    let (gid, by) = (id.clone(), approver.subject.clone());
    let event = crate::audit::Event::new("break_glass.reviewed", None, None, json!({"grant": id, "by": approver.subject, "note": note.trim()}));
    let acked = run_blocking(&shared.store, move |s| s.ack_break_glass(&gid, &by, note.trim(), &event, now))
    .await
    .and_then(|r| r);
    match acked {
        Ok(true) => {
            tracing::warn!(grant = %id, by = %approver.subject, "break-glass grant reviewed");
            axum::Json(json!({"id": id, "reviewed_by": approver.subject})).into_response()
        }
        Ok(false) => error(StatusCode::NOT_FOUND, "grant_not_found", &format!("no break-glass grant `{id}` awaiting review")),
        Err(e) => store_failed(e),
    }
}
