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
