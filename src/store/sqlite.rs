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
        let active: i64 = tx.query_row("SELECT COUNT(*) FROM tasks WHERE agent=?1 AND state='active'", params![t.agent], |r| r.get(0))?;
        let active = usize::try_from(active).unwrap_or(usize::MAX);
        if active >= max_active {
            return Ok(crate::store::BeginTask::TooMany(active));
        }
        if let Some(id) = delegation {
            let bound = tx.execute("UPDATE delegations SET child_task = ?1 WHERE id = ?2 AND child_task IS NULL AND expires_at > ?3", params![t.id, id, now])?;
            if bound != 1 {
                return Ok(crate::store::BeginTask::DelegationUsed);
            }
        }
        audit::append_in(&tx, event, now)?;
        if let Some((sid, instance)) = session {
            tx.execute("INSERT OR IGNORE INTO sessions(sid, agent, opened_at, instance) VALUES (?1,?2,?3,?4)", params![sid, t.agent, now, instance])?;
        }
        tx.execute(
            "INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            params![t.id, t.agent, t.sid, t.objective, phases, to_i64(t.current_phase), t.state.as_str(), t.created_at, t.expires_at],
        )?;
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
        Ok(Self { conn: Mutex::new(conn) })
    }

    /// A private in-memory store (tests, benches).
    pub fn in_memory() -> Result<Self, StoreError> {
        let conn = Connection::open_in_memory()?;
        migrate(&conn)?;
        Ok(Self { conn: Mutex::new(conn) })
    }

    fn conn(&self) -> MutexGuard<'_, Connection> {
        // A poisoned lock means a panic mid-operation; SQLite rolled the
        // transaction back, so the connection is consistent.
        self.conn.lock().unwrap_or_else(|p| p.into_inner())
    }
}
