//! `GET /metrics` on the `[metrics] listen` address: the Prometheus text
//! format, with the gauges that describe the present (approvals waiting,
//! downstream servers' states) read at each scrape.

use std::sync::Arc;

use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;

use crate::downstream::ServerState;
use crate::gateway::Shared;

/// The store-derived gauges are read at most this often, however often
/// `/metrics` is scraped (each read is a few statements per agent).
const STORE_READ_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

fn store_read_due() -> bool {
    static LAST: std::sync::Mutex<Option<std::time::Instant>> = std::sync::Mutex::new(None);
    let mut last = LAST.lock().unwrap_or_else(|p| p.into_inner());
    let due = last.is_none_or(|at| at.elapsed() >= STORE_READ_EVERY);
    if due {
        *last = Some(std::time::Instant::now());
    }
    due
}

/// Pending approvals, the oldest one's age and the active tasks, from the store.
async fn read_store_gauges(shared: &Arc<Shared>, now: i64) {
    let m = crate::metrics::metrics();
    let agents: Vec<String> = shared.identity.agents().iter().map(|a| a.id.clone()).collect();
    let read = crate::store::run_blocking(&shared.store, move |s| {
        let active = agents.iter().map(|a| s.active_tasks_of(a).map(|t| t.len())).sum::<Result<usize, _>>()?;
        Ok::<_, crate::store::StoreError>((s.approvals(false, now)?, active))
    });
    match read.await.and_then(|r| r) {
        Ok((pending, active)) => {
            m.set_active_tasks(active);
            let oldest = pending.iter().map(|a| now.saturating_sub(a.created_at)).max().unwrap_or(0);
            m.set_pending(pending.len(), oldest);
        }
        // The store's own failures are counted; the scrape still answers.
        Err(e) => {
            tracing::warn!(error = %e, "metrics: the pending approvals and active tasks could not be read");
            m.store_operation("metrics_scrape", std::time::Duration::ZERO, true);
        }
    }
}

/// Serve `/metrics` on `listener` until the gateway shuts down.
pub async fn serve(shared: Arc<Shared>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    let shutdown = shared.shutdown.clone();
    let app = axum::Router::new().route("/metrics", get(scrape)).with_state(shared);
    axum::serve(listener, app).with_graceful_shutdown(shutdown.cancelled_owned()).await
}

async fn scrape(axum::extract::State(shared): axum::extract::State<Arc<Shared>>) -> Response {
    let m = crate::metrics::metrics();
    for ds in shared.downstreams.iter() {
        let state = match ds.state() {
            ServerState::Ready { .. } => "ready",
            ServerState::Starting { .. } => "starting",
            ServerState::Disabled => "disabled",
        };
        m.set_server_state(&ds.manifest.name, state);
    }
    let now = shared.clock.now_unix();
    if store_read_due() {
        read_store_gauges(&shared, now).await;
    }
    let sets = shared.remote_key_sets();
    for set in sets {
        let health = set.health(now);
        m.set_key_set_state(health["issuer"].as_str().unwrap_or_default(), health["status"].as_str().unwrap_or_default());
    }
    match m.encode() {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4; charset=utf-8")], text).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("metrics could not be encoded: {e}")).into_response(),
    }
}
