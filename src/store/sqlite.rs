//! The SQLite store: one file in the state directory, WAL mode.
//!
//! Every state change runs in an `IMMEDIATE` transaction, so exactly one
//! writer at a time, across threads and processes, decides it: a token is
//! consumed once, and a revocation committed by `jitgate revoke` in another
//! process is seen by the next verification here.

mod audit;
mod human;
mod operations;
mod rows;
mod runtime;
mod schema;
mod units;

/// The file name of the store in the state directory.
pub use crate::config::STORE_FILE;
#[allow(unused_imports)]
use self::{schema::*, rows::*, operations::*};

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{Approval, BreakGlassGrant, DecideOutcome, Intent, Quarantine};
use super::{Consumption, Phase, Revocation, Scope, Store, StoreError, Task, TaskState, TokenRecord, TokenState};

/// Prepared statements kept per connection: more than the store has.
const STATEMENT_CACHE: usize = 256;

/// SQLite-backed [`Store`].
pub struct SqliteStore {
    conn: Mutex<Connection>,
}

impl SqliteStore {
    /// [`Store::begin_task`], bound to `delegation` when given.
    pub(in crate::store::sqlite) fn begin_task_under(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, delegation: Option<&str>, now: i64) -> Result<crate::store::BeginTask, StoreError> {
        let phases = serde_json::to_string(&t.phases).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(reason) = tx.query_row("SELECT reason FROM quarantine WHERE agent=?1", params![t.agent], |r| r.get::<_, String>(0)).optional()? {
            return Ok(crate::store::BeginTask::Quarantined(reason));
        }
        let active: i64 = tx.prepare_cached("SELECT COUNT(*) FROM tasks WHERE agent=?1 AND state='active'")?.query_row(params![t.agent], |r| r.get(0))?;
        let active = usize::try_from(active).unwrap_or(usize::MAX);
        if active >= max_active {
            return Ok(crate::store::BeginTask::TooMany(active));
        }
        if let Some(id) = delegation {
            let bound = tx.prepare_cached("UPDATE delegations SET child_task = ?1 WHERE id = ?2 AND child_task IS NULL AND expires_at > ?3")?.execute(params![t.id, id, now])?;
            if bound != 1 {
                return Ok(crate::store::BeginTask::DelegationUsed);
            }
        }
        audit::append_in(&tx, event, now)?;
        if let Some((sid, instance)) = session {
            tx.prepare_cached("INSERT OR IGNORE INTO sessions(sid, agent, opened_at, instance) VALUES (?1,?2,?3,?4)")?.execute(params![sid, t.agent, now, instance])?;
        }
        tx.prepare_cached("INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")?.execute(params![t.id, t.agent, t.sid, t.objective, phases, to_i64(t.current_phase), t.state.as_str(), t.created_at, t.expires_at])?;
        tx.commit()?;
        Ok(crate::store::BeginTask::Created)
    }

    /// Open (creating if needed) the store file.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        create_private_file(path).map_err(|e| StoreError::Backend(format!("cannot create {}: {e}", path.display())))?;
        let conn = Connection::open(path).map_err(|e| StoreError::Backend(format!("cannot open {}: {e}", path.display())))?;
        conn.busy_timeout(std::time::Duration::from_secs(5))?;
        // WAL lets readers in other processes proceed while the gateway
        // writes; synchronous=NORMAL keeps commits durable across a process
        // crash (not a power loss) without an fsync per token.
        conn.pragma_update(None, "journal_mode", "WAL")?;
        conn.pragma_update(None, "synchronous", "NORMAL")?;
        conn.pragma_update(None, "foreign_keys", "ON")?;
        migrate(&conn)?;
        Self::over(conn)
    }

    /// A private in-memory store (tests, benches).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        Self::over(conn)
    }

    /// The store over an opened, migrated connection, whose statements are
    /// parsed and planned once. Its cache holds every statement the store
    /// keeps (a request and its call alone run more than rusqlite's default
    /// of 16, which would evict them in turn). Query-planner stability
    /// (QPSG) keeps a plan when a bound value changes: with STAT4, which the
    /// bundled SQLite enables, a statement such as `digest = ?1` on an
    /// indexed column was otherwise prepared again on every request, about
    /// 13% of the gateway's CPU in a profile of `jit_call`s. The plans here
    /// never depend on a value (no `LIKE ?`, no partial index on a bound
    /// column).
    fn over(conn: Connection) -> Result<Self, StoreError> {
        conn.set_prepared_statement_cache_capacity(STATEMENT_CACHE);
        conn.set_db_config(rusqlite::config::DbConfig::SQLITE_DBCONFIG_ENABLE_QPSG, true)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock means a panic mid-operation; SQLite rolled the
        // transaction back, so the connection is consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The request path's statements are parsed and planned once per
    /// connection: kept in the cache across the statements between two
    /// requests, and not prepared again when a bound value changes (with
    /// STAT4, which the bundled SQLite enables, `digest = ?1` on an indexed
    /// column was, on every request, until the connection set QPSG).
    #[test]
    fn the_request_paths_statements_are_prepared_once() {
        let dir = tempfile::tempdir().unwrap();
        let s = SqliteStore::open(&dir.path().join("s.sqlite")).unwrap();
        let phases = vec![Phase { name: "p".into(), tools: vec!["x".into()] }];
        let t = Task { id: "t1".into(), agent: "a".into(), sid: "s".into(), objective: "o".into(), phases, current_phase: 0, state: TaskState::Active, created_at: 100, expires_at: 10_000, end_reason: None };
        s.create_task(&t).unwrap();
        const REQUESTS: i32 = 5;
        for i in 0..REQUESTS {
            let read = crate::store::RequestRead { agent: "a".into(), task: "t1".into(), follows: None, digest: Some(format!("digest-{i}")), probe: Default::default(), now: 120 + i64::from(i) };
            s.read_request(&read).unwrap();
            // Other statements between the requests, as a gateway runs them.
            s.append_audit(&crate::audit::Event::new("probe", Some("t1"), Some("a"), serde_json::json!({"i": i})), 120).unwrap();
            s.record_token(&TokenRecord { jti: format!("j{i}"), task: "t1".into(), agent: "a".into(), sid: "s".into(), tool: "x".into(), phase: 0, state: TokenState::Issued, issued_at: 120, expires_at: 180, changed_at: None, reason: None }).unwrap();
            s.consume(&format!("j{i}"), 121).unwrap();
            s.pending_approvals_of("a", 121).unwrap();
            s.active_tasks_of("a").unwrap();
            s.intents_of("a", 0, 10).unwrap();
            s.audit_of_task("t1").unwrap();
            s.end_user_declined("a", "d", 121).unwrap();
            s.delegation_of_task("t1").unwrap();
            s.taint_ledger("a").unwrap();
            s.revocations_since(0).unwrap();
        }
        let conn = s.conn();
        for sql in [human::approval_sql(human::FOR_REQUEST), rows::TASK_BY_ID.to_owned(), units::WINDOW_COUNT.to_owned()] {
            let statement = conn.prepare_cached(&sql).unwrap();
            let (runs, prepared_again) = (statement.get_status(rusqlite::StatementStatus::Run), statement.get_status(rusqlite::StatementStatus::RePrepare));
            assert_eq!(runs, REQUESTS, "not kept in the statement cache across requests (or its text changed): {sql}");
            assert_eq!(prepared_again, 0, "prepared again for new values: {sql}");
        }
    }
}
