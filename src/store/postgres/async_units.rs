//! The request path's units of work on the async client: tokio-postgres
//! through a deadpool pool, each statement prepared once per connection and
//! then one round trip per unit (bind and execute), on the runtime's own
//! workers instead of a blocking thread that drives the synchronous client's
//! runtime. The statements, their parameters and the reading of their rows
//! are the ones the synchronous methods use ([`super::units`]), so both
//! clients decide the same way.

use std::time::Duration;

use ::postgres::Row;
use ::postgres::types::ToSql;
use deadpool_postgres::{Manager, ManagerConfig, Pool, PoolError, RecyclingMethod, Runtime};
use futures::future::BoxFuture;

use super::audit::AppendArgs;
use super::units::{self, ConsumeArgs, GrantArgs, ReadArgs};
use super::group_commit::{GroupCommit, Work};
use super::{CONNECT_TIMEOUT, Fail, MAX_ATTEMPTS, PostgresStore, retryable};
use crate::audit::Event;
use crate::store::units::AsyncUnits;
use crate::store::{Grant, Granted, RequestRead, RequestState, StoreError};

/// The async pool: up to `size` connections, made on first use (by the
/// runtime that asks), each checked only for being closed when it is
/// handed out (a connection PostgreSQL dropped fails its one statement and
/// is then discarded, as with the synchronous pool).
pub(super) fn pool(config: super::PgConfig, tls: tokio_postgres_rustls::MakeRustlsConnect, size: u32) -> Result<Pool, StoreError> {
    let manager = Manager::from_config(config, tls, ManagerConfig { recycling_method: RecyclingMethod::Fast });
    Pool::builder(manager)
        .max_size(usize::try_from(size).unwrap_or(1))
        .runtime(Runtime::Tokio1)
        .wait_timeout(Some(CONNECT_TIMEOUT))
        .create_timeout(Some(CONNECT_TIMEOUT))
        .recycle_timeout(Some(CONNECT_TIMEOUT))
        .build()
        .map_err(|e| StoreError::Backend(format!("cannot set up the PostgreSQL connection pool: {e}")))
}

/// A pool failure in the words the synchronous pool uses: the server's
/// reason where it gave one.
pub(super) fn pool_error(e: PoolError) -> StoreError {
    let why = match e {
        PoolError::Backend(e) => super::pool::ConnectError::from(&e).to_string(),
        PoolError::Timeout(_) => "every connection of the pool was busy, or the store does not answer".to_owned(),
        PoolError::Closed => "the PostgreSQL store was closed".to_owned(),
        other => other.to_string(),
    };
    StoreError::Backend(format!("no connection to the PostgreSQL store within {} s ({why})", CONNECT_TIMEOUT.as_secs()))
}

/// Run one statement (it commits on its own), prepared once per
/// connection; retried, as the synchronous client's are, when PostgreSQL
/// rolled it back for a deadlock or a serialization failure.
pub(super) async fn run_one(pool: &Pool, sql: &str, params: &[&(dyn ToSql + Sync)]) -> Result<Row, Fail> {
    let mut attempt = 1;
    loop {
        let client = pool.get().await.map_err(|e| Fail::Store(pool_error(e)))?;
        let outcome = match client.prepare_cached(sql).await {
            Ok(statement) => client.query_one(&statement, params).await,
            Err(e) => Err(e),
        };
        match outcome.map_err(Fail::Pg) {
            Err(f) if attempt < MAX_ATTEMPTS && retryable(&f) => {
                tokio::time::sleep(Duration::from_millis(5 << attempt)).await;
                attempt += 1;
            }
            other => return other,
        }
    }
}

impl PostgresStore {
    fn async_parts(&self) -> Result<&AsyncParts, StoreError> {
        self.async_parts.as_ref().ok_or_else(|| StoreError::Backend("the PostgreSQL store was closed".into()))
    }

    /// A write of the request path, committed with the others waiting
    /// ([`GroupCommit`]).
    async fn commit(&self, work: Work) -> Result<(Work, Row), StoreError> {
        self.async_parts()?.writer.commit(work).await
    }
}

/// The async client's pool and the writer that group-commits on it.
pub(super) struct AsyncParts {
    pool: Pool,
    writer: GroupCommit,
}

impl AsyncParts {
    pub(super) fn new(pool: Pool) -> Self {
        Self { writer: GroupCommit::new(pool.clone()), pool }
    }
}

impl AsyncUnits for PostgresStore {
    fn read_request<'a>(&'a self, read: &'a RequestRead) -> BoxFuture<'a, Result<RequestState, StoreError>> {
        Box::pin(async move {
            let args = ReadArgs::of(read);
            let row = run_one(&self.async_parts()?.pool, units::READ_REQUEST.as_str(), &args.params()).await?;
            Ok(units::decode_read(&row, read.now)?)
        })
    }

    fn grant<'a>(&'a self, grant: &'a Grant<'a>) -> BoxFuture<'a, Result<Granted, StoreError>> {
        Box::pin(async move {
            let (work, row) = self.commit(Work::Grant(GrantArgs::of(grant))).await.map_err(super::audit_or_store)?;
            match work {
                Work::Grant(args) => Ok(args.outcome(&row)?),
                _ => Err(StoreError::Backend("the store's writer answered a grant with another unit".into())),
            }
        })
    }

    fn try_consume_for_call<'a>(&'a self, jti: &'a str, forwarded: &'a Event, now: i64) -> BoxFuture<'a, Result<bool, StoreError>> {
        Box::pin(async move {
            let (_, row) = self.commit(Work::Consume(ConsumeArgs::of(jti, forwarded, now))).await.map_err(super::audit_or_store)?;
            Ok(row.try_get(0).map_err(Fail::Pg)?)
        })
    }

    fn count_request<'a>(&'a self, agent: &'a str, now: i64) -> BoxFuture<'a, Result<u32, StoreError>> {
        Box::pin(async move {
            let (_, row) = self.commit(Work::Count(agent.to_owned(), now)).await?;
            let total: i64 = row.try_get(0).map_err(Fail::Pg)?;
            Ok(u32::try_from(total).unwrap_or(u32::MAX))
        })
    }

    fn append_audit<'a>(&'a self, event: &'a Event, now: i64) -> BoxFuture<'a, Result<i64, StoreError>> {
        Box::pin(async move {
            let (_, row) = self.commit(Work::Append(AppendArgs::of(event, now))).await.map_err(|e| match e {
                StoreError::Audit(m) => StoreError::Audit(m),
                other => StoreError::Audit(other.to_string()),
            })?;
            Ok(row.try_get(0).map_err(Fail::Pg)?)
        })
    }
}
