//! The request path's units of work, called from async code.
//!
//! A store whose client is async (PostgreSQL) runs them as futures on the
//! runtime, each one statement prepared once per connection
//! ([`AsyncUnits`]); any other store (SQLite, whose I/O blocks) runs its
//! synchronous [`Store`] method on the blocking pool, as every other store
//! operation does. The helpers below choose, so the gateway calls one
//! function per unit whatever the backend.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::{Consumption, Grant, Granted, Intent, RequestRead, RequestState, Store, StoreError, TokenRecord, run_blocking};
use crate::audit::Event;

/// The units of work as futures. Each has the meaning of the [`Store`]
/// method of the same name, and the same all-or-nothing guarantees.
pub trait AsyncUnits: Send + Sync {
    fn read_request<'a>(&'a self, read: &'a RequestRead) -> BoxFuture<'a, Result<RequestState, StoreError>>;
    fn grant<'a>(&'a self, grant: &'a Grant<'a>) -> BoxFuture<'a, Result<Granted, StoreError>>;
    /// Consume and record in one unit: true when consumed; false when the
    /// token was not consumable, and nothing was written (the caller asks
    /// [`Store::consume_for_call`] why).
    fn try_consume_for_call<'a>(&'a self, jti: &'a str, forwarded: &'a Event, now: i64) -> BoxFuture<'a, Result<bool, StoreError>>;
    fn count_request<'a>(&'a self, agent: &'a str, now: i64) -> BoxFuture<'a, Result<u32, StoreError>>;
    fn append_audit<'a>(&'a self, event: &'a Event, now: i64) -> BoxFuture<'a, Result<i64, StoreError>>;
}

/// Run one unit of work, timed and counted in the metrics by `operation`.
async fn timed<T>(operation: &'static str, unit: impl std::future::Future<Output = Result<T, StoreError>>) -> Result<T, StoreError> {
    let started = std::time::Instant::now();
    let done = unit.await;
    crate::metrics::metrics().store_operation(operation, started.elapsed(), done.is_err());
    done
}

/// [`Store::read_request`].
pub async fn read_request(store: &Arc<dyn Store>, read: RequestRead) -> Result<RequestState, StoreError> {
    timed("read_request", async move {
        match store.units() {
            Some(units) => units.read_request(&read).await,
            None => run_blocking(store, move |s| s.read_request(&read)).await?,
        }
    })
    .await
}

/// What [`Store::grant`] borrows, owned, so that it can move to the
/// blocking pool.
#[derive(Debug, Clone)]
pub struct OwnedGrant {
    pub token: TokenRecord,
    pub intent: Intent,
    pub record: Event,
    pub approval: Option<String>,
    pub forwarded: Option<Event>,
    pub count: bool,
    pub rate_within: Option<u32>,
    pub now: i64,
}

impl OwnedGrant {
    pub fn as_grant(&self) -> Grant<'_> {
        Grant {
            token: &self.token,
            intent: &self.intent,
            record: &self.record,
            approval: self.approval.as_deref(),
            forwarded: self.forwarded.as_ref(),
            count: self.count,
            rate_within: self.rate_within,
            now: self.now,
        }
    }
}

/// [`Store::grant`].
pub async fn grant(store: &Arc<dyn Store>, grant: OwnedGrant) -> Result<Granted, StoreError> {
    timed("grant", async move {
        match store.units() {
            Some(units) => units.grant(&grant.as_grant()).await,
            None => run_blocking(store, move |s| s.grant(&grant.as_grant())).await?,
        }
    })
    .await
}

/// [`Store::consume_for_call`].
pub async fn consume_for_call(store: &Arc<dyn Store>, jti: String, forwarded: Event, now: i64) -> Result<Consumption, StoreError> {
    timed("consume_for_call", async move {
        if let Some(units) = store.units() {
            if units.try_consume_for_call(&jti, &forwarded, now).await? {
                return Ok(Consumption::Consumed);
            }
            // Refused (a replay, a revoked token...): the synchronous unit says
            // why, and consumes after all should the token have become
            // consumable meanwhile.
        }
        run_blocking(store, move |s| s.consume_for_call(&jti, &forwarded, now)).await?
    })
    .await
}

/// [`Store::count_request`]: count a request that [`Store::grant`] did not
/// count (one refused, held or asked about), and the agent's exact window
/// with it.
pub async fn count_request(store: &Arc<dyn Store>, agent: String, now: i64) -> Result<u32, StoreError> {
    timed("count_request", async move {
        match store.units() {
            Some(units) => units.count_request(&agent, now).await,
            None => run_blocking(store, move |s| s.count_request(&agent, now)).await?,
        }
    })
    .await
}

/// [`Store::append_audit`].
pub async fn append_audit(store: &Arc<dyn Store>, event: Event, now: i64) -> Result<i64, StoreError> {
    timed("append_audit", async move {
        match store.units() {
            Some(units) => units.append_audit(&event, now).await,
            None => run_blocking(store, move |s| s.append_audit(&event, now)).await?,
        }
    })
    .await
}
