//! The PostgreSQL store: several gateway replicas (and the CLI) share one
//! database, with the same behaviour as the SQLite store.
//!
//! What this module trusts: the database to keep committed rows and to run
//! transactions at READ COMMITTED, its default. What it does not trust: that
//! two replicas never act at the same moment. Every state change is one
//! transaction, and each is written so that it is correct under READ
//! COMMITTED however many connections race:
//!
//! - **Conditional updates** decide "exactly once" (consume a token, use an
//!   approval, advance a phase, take an end user's answer): `UPDATE ... WHERE
//!   state = '<expected>'`. A second updater of the same row waits for the
//!   first to commit, then PostgreSQL re-checks the `WHERE` on the committed
//!   row and finds it no longer matches, so exactly one caller changes it.
//! - **Row locks** where a decision reads one row to change another:
//!   `consume` holds its task's row `FOR SHARE` (so the task cannot advance,
//!   end or be revoked while the token is judged against it) and the token
//!   `FOR UPDATE`. Rows are always locked task first, then its tokens, as
//!   every update of tasks does, so these never deadlock with each other.
//! - **Advisory transaction locks** serialise what no single row can: the
//!   audit chain head (one chain, no forks), the order in which revocations
//!   commit (pollers on other replicas never skip one), `begin_task`'s
//!   active-task cap, and an agent's request-rate window and taint ledger.
//!   A transaction takes every advisory lock it needs first, before any row
//!   lock, and always in the order audit, revocations, per-agent; nothing
//!   that holds a row lock ever waits for an advisory lock, so there is no
//!   cycle. Each lock is released when its transaction ends, and each
//!   statement after it (READ COMMITTED takes a fresh snapshot per
//!   statement) sees everything the previous holder committed.
//! - A deadlock or serialization failure (SQLSTATE 40P01/40001), which
//!   PostgreSQL reports only after rolling the transaction back, is retried
//!   a few times; every other error is a refusal (fail closed). A transaction
//!   cut off by a lost connection is never retried: it may have committed.
//!
//! Time comes from the callers (unix seconds); the database clock decides
//! nothing.
//!
//! The schema is versioned (`jitgate_schema_version`, one row) and migrated
//! by [`PostgresStore::connect`] under an advisory lock, so replicas starting
//! together migrate once. A binary refuses a schema newer than it knows.
//!
//! Connections: an r2d2 pool that tests each connection as it is checked
//! out, so that after the database restarts the dead connections are
//! replaced instead of failing calls forever.
//!
//! TLS: rustls (ring), verifying the server's certificate against the
//! platform's roots or the configured CA file. The URL's `sslmode` decides
//! whether TLS is required (`require`), tried (`prefer`) or off (`disable`);
//! without one, TLS is required unless every `host` and every `hostaddr` is
//! a loopback address or a Unix socket, where it is tried. A certificate that does not verify
//! is never accepted, whatever the mode.

mod async_units;
mod audit;
mod connect;
mod group_commit;
mod human;
mod open;
mod operations;
mod pool;
mod rows;
mod runtime;
mod schema;
mod tokens;
mod units;

#[allow(unused_imports)]
use self::{connect::*, open::*, operations::*, rows::*, tokens::*};
pub use self::connect::{PgTls, direct_client};

use std::time::Duration;

use ::postgres::error::SqlState;
use ::postgres::types::ToSql;
use ::postgres::{Client, GenericClient, Row, Transaction};
/// The driver's connection settings (the async client's type; the
/// synchronous client's wraps it).
use deadpool_postgres::tokio_postgres::Config as PgConfig;

use schema::{LATEST, MIGRATIONS};
use super::{Approval, BeginTask, BreakGlassGrant, DecideOutcome, Intent, Quarantine};
use super::{Call, Consumption, Phase, Revocation, Scope, Store, StoreError, Task, TaskState, TokenRecord, TokenState};

/// Advisory lock keys (`pg_advisory_xact_lock(bigint)`), fixed for every
/// jitgate version: replicas of different versions must agree on them.
/// Migrations run one at a time.
const MIGRATION_LOCK: i64 = 0x6a69_7467_6174_6501;

/// The audit chain head: one appender at a time, so no two records chain
/// onto the same previous one.
const AUDIT_LOCK: i64 = 0x6a69_7467_6174_6502;

/// Revocations commit one at a time, in seq order (see [`revoke_in`]).
const REVOCATION_LOCK: i64 = 0x6a69_7467_6174_6503;

/// Per-agent locks (`pg_advisory_xact_lock(int, hashtext(agent))`; the
/// two-key form has its own key space). A hash collision only makes two
/// agents wait for each other. (`0x6a67_0001` was the rate window's
/// until schema 6 made the window a row; not to be reused while replicas
/// of schema 5 may run.)
const TAINT_LOCK: i32 = 0x6a67_0002;

/// How long connecting may take before the store counts as down (unless
/// the URL sets `connect_timeout`), and how long a call waits for a pooled
/// connection.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

/// Attempts of a transaction that PostgreSQL rolled back for a deadlock or
/// a serialization failure.
const MAX_ATTEMPTS: u32 = 5;

use pool::Manager;

/// Why a statement failed inside this module. The driver's error is kept
/// as it is until the end, so that its SQLSTATE decides whether to retry.
enum Fail {
    Pg(::postgres::Error),
    Store(StoreError),
}

impl From<::postgres::Error> for Fail {
    fn from(e: ::postgres::Error) -> Self {
        Fail::Pg(e)
    }
}

impl From<StoreError> for Fail {
    fn from(e: StoreError) -> Self {
        Fail::Store(e)
    }
}

impl From<Fail> for StoreError {
    fn from(f: Fail) -> Self {
        match f {
            Fail::Pg(e) => StoreError::from(e),
            Fail::Store(e) => e,
        }
    }
}

/// Did PostgreSQL roll the transaction back so that running it again is safe?
fn retryable(f: &Fail) -> bool {
    let Fail::Pg(e) = f else { return false };
    e.code().is_some_and(|c| *c == SqlState::T_R_SERIALIZATION_FAILURE || *c == SqlState::T_R_DEADLOCK_DETECTED)
}

/// PostgreSQL-backed [`Store`], shared by any number of processes.
pub struct PostgresStore {
    /// Always `Some` until dropped (taken in `Drop`, see there).
    pool: Option<r2d2::Pool<Manager>>,
    /// The request path's units of work ([`async_units`]): the async
    /// client's pool and its group-committing writer.
    async_parts: Option<async_units::AsyncParts>,
}

/// Run `f`, which may block on the synchronous PostgreSQL client, from
/// whatever thread calls the store. The client drives each request with a
/// runtime of its own, and tokio forbids starting a runtime on a thread that
/// is already driving one (a worker, or inside `block_on`): there it would
/// panic. On a multi-threaded runtime `block_in_place` gives the thread up
/// for the duration; on a current-thread runtime (where that is not allowed)
/// the work runs on a scoped thread of its own. Blocking-pool threads and
/// plain threads run it directly.
fn blocking<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    use tokio::runtime::{Handle, RuntimeFlavor};
    match Handle::try_current() {
        Ok(h) if h.runtime_flavor() == RuntimeFlavor::CurrentThread => {
            std::thread::scope(|s| s.spawn(f).join()).unwrap_or_else(|panic| std::panic::resume_unwind(panic))
        }
        Ok(_) => tokio::task::block_in_place(f),
        Err(_) => f(),
    }
}

impl Drop for PostgresStore {
    fn drop(&mut self) {
        // Closing the pooled connections blocks on the client's runtime too.
        if let Some(pool) = self.pool.take() {
            blocking(move || drop(pool));
        }
    }
}

/// Take an advisory lock until the transaction ends. Re-entrant: taking a
/// lock the transaction holds is a no-op in effect.
fn lock(tx: &mut Transaction<'_>, key: i64) -> Result<(), Fail> {
    if key == AUDIT_LOCK {
        // The audit chain's head row (schema v5), which every appender locks
        // first, the request path's single-statement units of work too
        // (`units`): a row lock, since those cannot take an advisory lock
        // before their first row lock within one statement.
        tx.execute("SELECT 1 FROM audit_head FOR UPDATE", &[])?;
        return Ok(());
    }
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&key])?;
    Ok(())
}

/// Take an agent's advisory lock of one kind until the transaction ends.
fn lock_agent(tx: &mut Transaction<'_>, kind: i32, agent: &str) -> Result<(), Fail> {
    tx.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", &[&kind, &agent])?;
    Ok(())
}

/// A failed write that carried audit records is an audit failure for the
/// caller (`audit_unavailable`), as a failed append is.
/// A record's failed append inside a transaction, reported as the audit
/// failure it is; a deadlock or serialization failure stays what it is, so
/// that the transaction is run again.
fn as_audit_failure(f: Fail) -> Fail {
    if retryable(&f) { f } else { Fail::Store(audit_or_store(StoreError::from(f))) }
}

fn audit_or_store(e: StoreError) -> StoreError {
    match e {
        StoreError::Backend(m) => StoreError::Audit(m),
        other => other,
    }
}

/// Parameters of a statement, as the driver takes them.
type Params<'a> = &'a [&'a (dyn ToSql + Sync)];

#[cfg(test)]
mod tests {
    use super::*;
    use ::postgres::config::SslMode;

    /// The TLS mode a store URL ends up with.
    #[test]
    fn the_audit_heads_first_row_starts_the_chain_at_genesis() {
        // Schema v5 writes the genesis hash as text; it must be the chain's.
        assert!(schema::SCHEMA_V5.contains(&format!("'{}'", crate::audit::GENESIS)));
    }

    #[test]
    fn request_path_connections_plan_once_and_by_index_unless_the_url_says_otherwise() {
        let options = |url: &str| {
            let mut config = client_config(url, None).unwrap();
            for_the_request_path(&mut config);
            config.get_options().map(str::to_owned)
        };
        assert_eq!(options("postgres://u@db.example/jit").as_deref(), Some("-c plan_cache_mode=force_generic_plan"));
        assert_eq!(
            options("postgres://u@db.example/jit?options=-c%20statement_timeout%3D5s").as_deref(),
            Some("-c statement_timeout=5s -c plan_cache_mode=force_generic_plan"),
            "the URL's own options are kept"
        );
        assert_eq!(options("postgres://u@db.example/jit?options=-c%20plan_cache_mode%3Dauto").as_deref(), Some("-c plan_cache_mode=auto"));
    }

    fn mode(url: &str) -> SslMode {
        let mut config = client_config(url, None).unwrap();
        default_ssl_mode(url, &mut config);
        config.get_ssl_mode()
    }

    #[test]
    fn sslmode_text_outside_a_parameter_name_leaves_tls_required() {
        for url in [
            "postgres://u@db.example/jit?application_name=sslmode%3Ddisable",
            "postgres://u@db.example/jit?application_name=sslmode=disable",
            "postgres://sslmode=disable@db.example/jit",
            "postgres://u@db.example/jit#sslmode=disable",
            "host=db.example user=u application_name='sslmode=disable'",
            "host=db.example user=sslmode=disable",
        ] {
            assert_eq!(mode(url), SslMode::Require, "{url}");
        }
    }

    #[test]
    fn a_remote_hostaddr_behind_a_loopback_host_needs_tls() {
        for url in [
            "host=127.0.0.1 hostaddr=10.0.0.5 user=u dbname=jit",
            "host=localhost hostaddr=10.0.0.5 user=u dbname=jit",
            "postgres://u@localhost/jit?hostaddr=203.0.113.9",
            "hostaddr=203.0.113.9 user=u dbname=jit",
        ] {
            assert_eq!(mode(url), SslMode::Require, "{url}");
        }
    }

    #[test]
    fn loopback_and_unix_sockets_stay_plain_and_an_explicit_sslmode_is_kept() {
        for url in [
            "postgres://u@localhost/jit",
            "postgres://u@127.0.0.1:5432/jit",
            "postgres://u@[::1]/jit",
            "postgres://u@localhost/jit?hostaddr=127.0.0.1",
            "host=localhost hostaddr=127.0.0.1 user=u dbname=jit",
            "postgres://u@%2Fvar%2Frun%2Fpostgresql/jit",
        ] {
            assert_eq!(mode(url), SslMode::Prefer, "{url}");
        }
        assert_eq!(mode("postgres://u@db.example/jit"), SslMode::Require);
        assert_eq!(mode("postgres://u@db.example/jit?sslmode=disable"), SslMode::Disable);
        // The driver decodes parameter names, so this one is sslmode too.
        assert_eq!(mode("postgres://u@db.example/jit?ssl%6Dode=disable"), SslMode::Disable);
        assert_eq!(mode("postgres://u@db.example/jit?application_name=x&sslmode=prefer"), SslMode::Prefer);
        assert_eq!(mode("host=db.example user=u sslmode='disable'"), SslMode::Disable);
        assert_eq!(mode("host=db.example application_name='a b\\' c' sslmode=prefer"), SslMode::Prefer);
    }
}
