//! The SQLite store: one file in the state directory, WAL mode.
//!
//! Every state change runs in an `IMMEDIATE` transaction, so exactly one
//! writer at a time, across threads and processes, decides it: a token is
//! consumed once, and a revocation committed by `jitgate revoke` in another
//! process is seen by the next verification here.

use std::path::Path;
use std::sync::{Mutex, MutexGuard};

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{Approval, BreakGlassGrant, DecideOutcome, Intent, Quarantine};
use super::{Consumption, Phase, Revocation, Scope, Store, StoreError, Task, TaskState, TokenRecord, TokenState};

const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS tasks (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    sid TEXT NOT NULL,
    objective TEXT NOT NULL,
    phases TEXT NOT NULL,
    current_phase INTEGER NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    ended_at INTEGER,
    end_reason TEXT
);
CREATE INDEX IF NOT EXISTS tasks_agent ON tasks(agent, state);
CREATE INDEX IF NOT EXISTS tasks_expiry ON tasks(state, expires_at);
CREATE INDEX IF NOT EXISTS tasks_sid ON tasks(sid, state);
CREATE INDEX IF NOT EXISTS tasks_created ON tasks(created_at, id);
CREATE TABLE IF NOT EXISTS tokens (
    jti TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    agent TEXT NOT NULL,
    sid TEXT NOT NULL,
    tool TEXT NOT NULL,
    phase INTEGER NOT NULL,
    state TEXT NOT NULL,
    issued_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    changed_at INTEGER,
    reason TEXT
);
CREATE INDEX IF NOT EXISTS tokens_task ON tokens(task, state);
CREATE INDEX IF NOT EXISTS tokens_agent ON tokens(agent, state);
CREATE INDEX IF NOT EXISTS tokens_sid ON tokens(sid, state);
CREATE TABLE IF NOT EXISTS sessions (
    sid TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    opened_at INTEGER NOT NULL,
    instance TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS instances (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    pid INTEGER NOT NULL,
    started_at INTEGER NOT NULL,
    lease_until INTEGER NOT NULL,
    stopped_at INTEGER
);
CREATE TABLE IF NOT EXISTS taint (
    agent TEXT NOT NULL,
    value TEXT NOT NULL,
    call TEXT NOT NULL,
    tool TEXT NOT NULL,
    at INTEGER NOT NULL,
    -- A passage's row in taint_fts (NULL for values).
    fts INTEGER,
    -- Where the agent read it, one line per read (see taint::Source::origin).
    origin TEXT NOT NULL DEFAULT '',
    PRIMARY KEY (agent, value)
);
CREATE INDEX IF NOT EXISTS taint_at ON taint(at);
CREATE INDEX IF NOT EXISTS taint_agent_tool ON taint(agent, tool);
-- From a full-text match to its row (a scan by agent would read every
-- passage the agent holds to reach this column).
CREATE INDEX IF NOT EXISTS taint_fts_row ON taint(fts) WHERE fts IS NOT NULL;
-- The passages' words, so that a request finds the passages holding its
-- phrases by index. Contentless (the text is in taint), its own stable
-- rowids (a VACUUM renumbers taint's implicit ones).
CREATE VIRTUAL TABLE IF NOT EXISTS taint_fts USING fts5(value, content='', contentless_delete=1);
CREATE TABLE IF NOT EXISTS taint_overflow (
    agent TEXT PRIMARY KEY,
    at INTEGER NOT NULL
);
-- Requests per agent and second, for the rate window: a request costs one
-- upsert and a sum over at most a window's worth of rows, however fast the
-- agent goes (a row per request made each count scan the whole window).
CREATE TABLE IF NOT EXISTS request_counts (
    agent TEXT NOT NULL,
    at INTEGER NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (agent, at)
);
-- Questions jitgate put to an agent's end user (MCP input-required results);
-- the answer comes back with the retried request and is taken once, for the
-- same agent, task and canonical request.
CREATE TABLE IF NOT EXISTS confirmations (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    digest TEXT NOT NULL,
    asked_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    answered_at INTEGER,
    declined INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS confirmations_agent ON confirmations(agent, digest);
-- Every consumed token is a call that happened, in order: the chain a
-- baseline judges is this, not what the agent says it follows.
CREATE TABLE IF NOT EXISTS calls (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    jti TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS calls_agent ON calls(agent, seq);
CREATE TRIGGER IF NOT EXISTS calls_on_consume AFTER UPDATE OF state ON tokens
WHEN NEW.state = 'consumed' AND OLD.state <> 'consumed'
BEGIN
    INSERT INTO calls(agent, task, tool, jti, at) VALUES (NEW.agent, NEW.task, NEW.tool, NEW.jti, COALESCE(NEW.changed_at, 0));
END;
CREATE TABLE IF NOT EXISTS dpop_proofs (
    jkt TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (jkt, jti)
);
CREATE INDEX IF NOT EXISTS dpop_proofs_expiry ON dpop_proofs(expires_at);
CREATE TABLE IF NOT EXISTS revocations (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at INTEGER NOT NULL,
    tokens INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS approvals (
    id TEXT PRIMARY KEY,
    digest TEXT NOT NULL,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    constraints TEXT NOT NULL,
    purpose TEXT NOT NULL,
    grp TEXT NOT NULL,
    policies TEXT NOT NULL,
    state TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    decided_at INTEGER,
    decided_by TEXT,
    note TEXT,
    used_jti TEXT
);
CREATE INDEX IF NOT EXISTS approvals_digest ON approvals(digest, created_at);
CREATE INDEX IF NOT EXISTS approvals_agent ON approvals(agent, state);
CREATE TABLE IF NOT EXISTS break_glass (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    constraints TEXT NOT NULL,
    justification TEXT NOT NULL,
    jti TEXT NOT NULL,
    policies TEXT NOT NULL,
    granted_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    reviewed_at INTEGER,
    reviewed_by TEXT,
    note TEXT
);
CREATE TABLE IF NOT EXISTS quarantine (
    agent TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS intents (
    jti TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    shape TEXT NOT NULL,
    at INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS intents_task ON intents(task, at);
CREATE INDEX IF NOT EXISTS intents_agent ON intents(agent, at);
CREATE TABLE IF NOT EXISTS audit (
    seq INTEGER PRIMARY KEY,
    at INTEGER NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    agent TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS audit_task ON audit(task, seq);
CREATE TABLE IF NOT EXISTS audit_checkpoints (
    seq INTEGER NOT NULL,
    hash TEXT NOT NULL,
    at INTEGER NOT NULL,
    jws TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS quarantine_releases (
    agent TEXT NOT NULL,
    reason TEXT NOT NULL,
    since INTEGER NOT NULL,
    released_at INTEGER NOT NULL,
    released_by TEXT NOT NULL,
    note TEXT NOT NULL
);
"#;

mod audit;
mod human;
mod runtime;
mod units;

/// Create the store file readable by its owner only, before SQLite opens it
/// (SQLite gives its -wal and -shm files the database file's permissions).
/// An existing file is made private too.
fn create_private_file(path: &Path) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.create(true).append(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
    }
    Ok(())
}

/// Create what is missing, and bring stores written by earlier versions up
/// to this schema (columns added since are added with their defaults).
///
/// It all happens in one write transaction, so that processes opening the
/// store at the same moment take turns and each finds the other's work done.
fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // Rolled back when dropped uncommitted (an error below).
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    migrate_in_transaction(&tx)?;
    tx.commit()?;
    Ok(())
}

fn migrate_in_transaction(conn: &Connection) -> Result<(), StoreError> {
    // A store from before instances: its sessions table lacks `instance`,
    // and CREATE TABLE IF NOT EXISTS leaves it as it is.
    let has_sessions: bool = conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type='table' AND name='sessions'", [], |r| r.get(0))?;
    if has_sessions {
        let has_instance: bool = conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('sessions') WHERE name='instance'", [], |r| r.get(0))?;
        if !has_instance {
            conn.execute_batch("ALTER TABLE sessions ADD COLUMN instance TEXT NOT NULL DEFAULT ''")?;
        }
    }
    // A store from before the full-text index of passages: its taint table
    // lacks `fts` (the index on it below needs the column).
    let has_taint: bool = conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type='table' AND name='taint'", [], |r| r.get(0))?;
    if has_taint {
        let has_fts: bool = conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('taint') WHERE name='fts'", [], |r| r.get(0))?;
        if !has_fts {
            conn.execute_batch("ALTER TABLE taint ADD COLUMN fts INTEGER")?;
        }
        // From before origins: entries read then have none to show.
        let has_origin: bool = conn.query_row("SELECT count(*) > 0 FROM pragma_table_info('taint') WHERE name='origin'", [], |r| r.get(0))?;
        if !has_origin {
            conn.execute_batch("ALTER TABLE taint ADD COLUMN origin TEXT NOT NULL DEFAULT ''")?;
        }
    }
    conn.execute_batch(SCHEMA)?;
    carry_over_rate_rows(conn)?;
    index_stored_passages(conn)
}

/// A store from before the full-text index: its passages are indexed
/// once (`user_version` 2 records it).
fn index_stored_passages(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 2 {
        let passages: Vec<(String, String)> = conn
            .prepare("SELECT agent, value FROM taint WHERE fts IS NULL AND substr(value, 1, 1) = ' '")?
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))?
            .collect::<Result<_, _>>()?;
        for (agent, value) in passages {
            conn.execute("INSERT INTO taint_fts(value) VALUES (?1)", params![value])?;
            let fts = conn.last_insert_rowid();
            conn.execute("UPDATE taint SET fts=?3 WHERE agent=?1 AND value=?2", params![agent, value, fts])?;
        }
        conn.execute_batch("PRAGMA user_version = 2")?;
    }
    Ok(())
}

/// A store from before per-second rate counts: carry the open window of the
/// old table (a row per request) over, once (`user_version` 1 records it).
/// The old table stays, so that a gateway of the previous version sharing
/// the store during an upgrade keeps working (its requests count in its own
/// table until it is replaced).
fn carry_over_rate_rows(conn: &Connection) -> Result<(), StoreError> {
    let version: i64 = conn.query_row("PRAGMA user_version", [], |r| r.get(0))?;
    if version < 1 {
        let legacy: bool = conn.query_row("SELECT count(*) > 0 FROM sqlite_master WHERE type='table' AND name='request_rate'", [], |r| r.get(0))?;
        if legacy {
            conn.execute_batch(
                "INSERT INTO request_counts(agent, at, n) SELECT agent, at, count(*) FROM request_rate WHERE true GROUP BY agent, at
                 ON CONFLICT(agent, at) DO UPDATE SET n = n + excluded.n",
            )?;
        }
        conn.execute_batch("PRAGMA user_version = 1")?;
    }
    Ok(())
}

/// The file name of the store in the state directory.
pub use crate::config::STORE_FILE;

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

fn task_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(Task, String)> {
    let phases: String = row.get("phases")?;
    let state: String = row.get("state")?;
    let current: i64 = row.get("current_phase")?;
    Ok((
        Task {
            id: row.get("id")?,
            agent: row.get("agent")?,
            sid: row.get("sid")?,
            objective: row.get("objective")?,
            phases: serde_json::from_str::<Vec<Phase>>(&phases).unwrap_or_default(),
            current_phase: usize::try_from(current).unwrap_or(usize::MAX),
            state: TaskState::Active,
            created_at: row.get("created_at")?,
            expires_at: row.get("expires_at")?,
            end_reason: row.get("end_reason")?,
        },
        state,
    ))
}

fn token_from_row(row: &rusqlite::Row<'_>) -> rusqlite::Result<(TokenRecord, String)> {
    let state: String = row.get("state")?;
    let phase: i64 = row.get("phase")?;
    Ok((
        TokenRecord {
            jti: row.get("jti")?,
            task: row.get("task")?,
            agent: row.get("agent")?,
            sid: row.get("sid")?,
            tool: row.get("tool")?,
            phase: usize::try_from(phase).unwrap_or(usize::MAX),
            state: TokenState::Issued,
            issued_at: row.get("issued_at")?,
            expires_at: row.get("expires_at")?,
            changed_at: row.get("changed_at")?,
            reason: row.get("reason")?,
        },
        state,
    ))
}

fn task_by_id(conn: &Connection, id: &str) -> Result<Option<Task>, StoreError> {
    let row = conn.prepare_cached("SELECT * FROM tasks WHERE id=?1")?.query_row(params![id], task_from_row).optional()?;
    row.map(|(mut t, state)| {
        t.state = TaskState::parse(&state)?;
        Ok(t)
    })
    .transpose()
}

fn token_by_jti(conn: &Connection, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
    let row = conn.prepare_cached("SELECT * FROM tokens WHERE jti=?1")?.query_row(params![jti], token_from_row).optional()?;
    row.map(|(mut t, state)| {
        t.state = TokenState::parse(&state)?;
        Ok(t)
    })
    .transpose()
}

fn quarantine_of(conn: &Connection, agent: &str) -> Result<Option<Quarantine>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT agent, reason, since FROM quarantine WHERE agent=?1")?
        .query_row(params![agent], |r| Ok(Quarantine { agent: r.get(0)?, reason: r.get(1)?, since: r.get(2)? }))
        .optional()?)
}

fn last_call_of(conn: &Connection, agent: &str) -> Result<Option<super::Call>, StoreError> {
    Ok(conn
        .prepare_cached("SELECT jti, task, tool, at FROM calls WHERE agent=?1 ORDER BY seq DESC LIMIT 1")?
        .query_row(params![agent], |r| Ok(super::Call { jti: r.get(0)?, task: r.get(1)?, tool: r.get(2)?, at: r.get(3)? }))
        .optional()?)
}

fn intent_from_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<Intent> {
    Ok(Intent { jti: r.get(0)?, agent: r.get(1)?, task: r.get(2)?, tool: r.get(3)?, shape: r.get(4)?, at: r.get(5)? })
}

fn to_i64(n: usize) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// Revoke within an open transaction; returns how many tokens died.
/// Revoke what `scope` covers and record the revocation (its row, polled by
/// every gateway, and its audit record); returns the tokens revoked and the
/// revocation's seq.
fn revoke_in(tx: &rusqlite::Transaction<'_>, scope: &Scope, reason: &str, now: i64, task_state: TaskState) -> Result<(u64, i64), StoreError> {
    let end_tasks = |sql: &str, target: &str| -> Result<(), StoreError> {
        tx.execute(sql, params![task_state.as_str(), now, reason, target])?;
        Ok(())
    };
    let kill = |sql: &str, target: &str| -> Result<u64, StoreError> {
        Ok(tx.execute(sql, params![now, reason, target])? as u64)
    };
    // Approvals end with their task (see [`super::approval_ended_with_task`]).
    let end_approvals = |tasks: &str, target: &str| -> Result<(), StoreError> {
        let sql = format!(
            "UPDATE approvals SET expires_at=?1, note=COALESCE(note, ?2) WHERE state IN ('pending','approved') AND expires_at > ?1 AND task IN ({tasks})"
        );
        tx.execute(&sql, params![now, super::approval_ended_with_task(reason), target])?;
        Ok(())
    };
    const TOKENS: &str = "UPDATE tokens SET state='revoked', changed_at=?1, reason=?2 WHERE state='issued' AND ";
    let n = match scope {
        Scope::Token(jti) => kill(&format!("{TOKENS} jti=?3"), jti)?,
        Scope::Phase(task) => kill(&format!("{TOKENS} task=?3"), task)?,
        Scope::Task(task) => {
            end_tasks("UPDATE tasks SET state=?1, ended_at=?2, end_reason=?3 WHERE state='active' AND id=?4", task)?;
            end_approvals("SELECT id FROM tasks WHERE id=?3", task)?;
            kill(&format!("{TOKENS} task=?3"), task)?
        }
        Scope::Agent(agent) => {
            end_tasks("UPDATE tasks SET state=?1, ended_at=?2, end_reason=?3 WHERE state='active' AND agent=?4", agent)?;
            end_approvals("SELECT id FROM tasks WHERE agent=?3", agent)?;
            kill(&format!("{TOKENS} agent=?3"), agent)?
        }
        // Sessionless (2026-07-28) authority has sid ''; it never belongs to a session.
        Scope::Session(sid) if sid.is_empty() => return Err(StoreError::Backend("refusing to revoke the empty session id".into())),
        Scope::Session(sid) => {
            end_tasks("UPDATE tasks SET state=?1, ended_at=?2, end_reason=?3 WHERE state='active' AND sid=?4", sid)?;
            end_approvals("SELECT id FROM tasks WHERE sid=?3", sid)?;
            kill(&format!("{TOKENS} sid=?3"), sid)?
        }
    };
    tx.execute(
        "INSERT INTO revocations(scope, target, reason, at, tokens) VALUES (?1, ?2, ?3, ?4, ?5)",
        params![scope.kind(), scope.target(), reason, now, i64::try_from(n).unwrap_or(i64::MAX)],
    )?;
    let seq = tx.last_insert_rowid();
    audit::append_in(tx, &super::revocation_event(scope, reason, n, seq), now)?;
    Ok((n, seq))
}

impl Store for SqliteStore {
    fn create_task(&self, t: &Task) -> Result<(), StoreError> {
        let phases = serde_json::to_string(&t.phases).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.conn().execute(
            "INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)",
            params![t.id, t.agent, t.sid, t.objective, phases, to_i64(t.current_phase), t.state.as_str(), t.created_at, t.expires_at],
        )?;
        Ok(())
    }

    fn begin_task(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, now: i64) -> Result<super::BeginTask, StoreError> {
        let phases = serde_json::to_string(&t.phases).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        if let Some(reason) = tx.query_row("SELECT reason FROM quarantine WHERE agent=?1", params![t.agent], |r| r.get::<_, String>(0)).optional()? {
            return Ok(super::BeginTask::Quarantined(reason));
        }
        let active: i64 = tx.query_row("SELECT COUNT(*) FROM tasks WHERE agent=?1 AND state='active'", params![t.agent], |r| r.get(0))?;
        let active = usize::try_from(active).unwrap_or(usize::MAX);
        if active >= max_active {
            return Ok(super::BeginTask::TooMany(active));
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
        Ok(super::BeginTask::Created)
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        task_by_id(&self.conn(), id)
    }

    fn advance_phase(&self, task: &str, from: usize, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let moved = tx.execute(
            "UPDATE tasks SET current_phase=current_phase+1 WHERE id=?1 AND state='active' AND current_phase=?2 AND expires_at>?3",
            params![task, to_i64(from), now],
        )?;
        if moved == 1 {
            revoke_in(&tx, &Scope::Phase(task.to_owned()), &format!("phase {} ended", from + 1), now, TaskState::Active)?;
        }
        tx.commit()?;
        Ok(moved == 1)
    }

    fn end_task(&self, task: &str, outcome: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active: bool = tx.query_row("SELECT state='active' FROM tasks WHERE id=?1", params![task], |r| r.get(0)).optional()?.unwrap_or(false);
        if active {
            revoke_in(&tx, &Scope::Task(task.to_owned()), &format!("task ended: {outcome}"), now, TaskState::Ended)?;
        }
        tx.commit()?;
        Ok(active)
    }

    fn record_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.conn().execute(
            "INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,'issued',?7,?8)",
            params![t.jti, t.task, t.agent, t.sid, t.tool, to_i64(t.phase), t.issued_at, t.expires_at],
        )?;
        Ok(())
    }

    fn token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        token_by_jti(&self.conn(), jti)
    }

    fn consume(&self, jti: &str, now: i64) -> Result<Consumption, StoreError> {
        let mut conn = self.conn();
        // Fast path: one statement that consumes only a live token of an
        // active, unexpired task still in the token's phase. A single UPDATE
        // is atomic on its own, so exactly one caller can change the row.
        let consumed = conn.prepare_cached(
            "UPDATE tokens SET state='consumed', changed_at=?1 WHERE jti=?2 AND state='issued' AND EXISTS (
                 SELECT 1 FROM tasks t WHERE t.id = tokens.task AND t.state='active' AND t.current_phase = tokens.phase AND t.expires_at > ?1)",
        )?
        .execute(params![now, jti])?;
        if consumed == 1 {
            return Ok(Consumption::Consumed);
        }
        // Slow path: say why not (or consume, should it have become
        // consumable in between), under the write lock.
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let outcome = units::consume_in(&tx, jti, now)?;
        tx.commit()?;
        Ok(outcome)
    }

    fn revoke(&self, scope: &Scope, reason: &str, now: i64) -> Result<Revocation, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let (tokens, seq) = revoke_in(&tx, scope, reason, now, TaskState::Revoked)?;
        tx.commit()?;
        Ok(Revocation { seq, scope: scope.clone(), reason: reason.to_owned(), at: now, tokens })
    }

    fn expire_tasks(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let ids: Vec<String> = {
            let mut stmt = tx.prepare("SELECT id FROM tasks WHERE state='active' AND expires_at<=?1")?;
            let rows = stmt.query_map(params![now], |r| r.get(0))?;
            rows.collect::<Result<_, _>>()?
        };
        for id in &ids {
            revoke_in(&tx, &Scope::Task(id.clone()), "task TTL expired", now, TaskState::Expired)?;
        }
        tx.commit()?;
        Ok(ids)
    }

    fn revocations_since(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT seq, scope, target, reason, at, tokens FROM revocations WHERE seq>?1 ORDER BY seq")?;
        let rows = stmt.query_map(params![seq], |r| {
            Ok((r.get::<_, i64>(0)?, r.get::<_, String>(1)?, r.get::<_, String>(2)?, r.get::<_, String>(3)?, r.get::<_, i64>(4)?, r.get::<_, i64>(5)?))
        })?;
        let mut out = Vec::new();
        for row in rows {
            let (seq, kind, target, reason, at, tokens) = row?;
            let scope = match kind.as_str() {
                "token" => Scope::Token(target),
                "task" => Scope::Task(target),
                "phase" => Scope::Phase(target),
                "agent" => Scope::Agent(target),
                "session" => Scope::Session(target),
                other => return Err(StoreError::Corrupt(format!("revocation scope {other}"))),
            };
            out.push(Revocation { seq, scope, reason, at, tokens: u64::try_from(tokens).unwrap_or(0) });
        }
        Ok(out)
    }

    fn active_tasks_of(&self, agent: &str) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT id FROM tasks WHERE agent=?1 AND state='active'")?;
        let rows = stmt.query_map(params![agent], |r| r.get(0))?;
        Ok(rows.collect::<Result<_, _>>()?)
    }

    fn recent_tasks(&self, agent: Option<&str>, since: i64, before: Option<(i64, String)>, limit: usize) -> Result<Vec<Task>, StoreError> {
        let conn = self.conn();
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        let mut stmt = conn.prepare_cached(
            "SELECT * FROM tasks WHERE created_at >= ?1 AND (?2 IS NULL OR agent = ?2)
             AND (created_at < ?3 OR (created_at = ?3 AND (?4 = '' OR id < ?4)))
             ORDER BY created_at DESC, id DESC LIMIT ?5",
        )?;
        let rows = stmt.query_map(params![since, agent, before_at, before_id, to_i64(limit)], task_from_row)?;
        let mut out = Vec::new();
        for row in rows {
            let (mut t, state) = row?;
            t.state = TaskState::parse(&state)?;
            out.push(t);
        }
        Ok(out)
    }

    fn session_opened(&self, sid: &str, agent: &str, instance: &str, now: i64) -> Result<(), StoreError> {
        self.conn().execute("INSERT OR IGNORE INTO sessions(sid, agent, opened_at, instance) VALUES (?1,?2,?3,?4)", params![sid, agent, now, instance])?;
        Ok(())
    }

    fn register_instance(&self, id: &str, kind: &str, now: i64, lease_until: i64) -> Result<(), StoreError> {
        runtime::register_instance(&self.conn(), id, kind, now, lease_until)
    }

    fn renew_instance(&self, id: &str, lease_until: i64) -> Result<bool, StoreError> {
        runtime::renew_instance(&self.conn(), id, lease_until)
    }

    fn end_instance(&self, id: &str, reason: &str, now: i64) -> Result<Vec<Revocation>, StoreError> {
        runtime::end_instance(&mut self.conn(), id, reason, now)
    }

    fn lapsed_instances(&self, now: i64) -> Result<Vec<String>, StoreError> {
        runtime::lapsed_instances(&self.conn(), now)
    }

    fn record_taint(&self, agent: &str, entries: &[crate::taint::TaintEntry], source: &crate::taint::Source, now: i64, max: usize) -> Result<(), StoreError> {
        runtime::record_taint(&mut self.conn(), agent, entries, source, now, max)
    }

    fn taint_ledger(&self, agent: &str) -> Result<crate::taint::TaintLedger, StoreError> {
        runtime::taint_ledger(&self.conn(), agent)
    }

    fn taint_lookup(&self, agent: &str, probe: &crate::taint::TaintProbe) -> Result<crate::taint::TaintLedger, StoreError> {
        runtime::taint_lookup(&self.conn(), agent, probe)
    }

    fn forget_taint(&self, before: i64) -> Result<u64, StoreError> {
        runtime::forget_taint(&self.conn(), before)
    }

    fn count_request(&self, agent: &str, now: i64) -> Result<u32, StoreError> {
        runtime::count_request(&mut self.conn(), agent, now)
    }


    fn read_request(&self, read: &super::RequestRead) -> Result<super::RequestState, StoreError> {
        units::read_request(&mut self.conn(), read)
    }

    fn grant(&self, grant: &super::Grant<'_>) -> Result<super::Granted, StoreError> {
        units::grant(&mut self.conn(), grant)
    }

    fn consume_for_call(&self, jti: &str, forwarded: &crate::audit::Event, now: i64) -> Result<Consumption, StoreError> {
        units::consume_for_call(&mut self.conn(), jti, forwarded, now)
    }

    fn dpop_proof_first_use(&self, jkt: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        runtime::dpop_proof_first_use(&self.conn(), jkt, jti, expires_at, now)
    }

    fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        human::create_approval(&self.conn(), a)
    }

    fn open_approval(&self, a: &Approval, max_pending: usize, record: &crate::audit::Event, now: i64) -> Result<Option<usize>, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        let pending = human::pending_of(&tx, &a.agent, now)?;
        if pending >= max_pending {
            return Ok(Some(pending));
        }
        human::create_approval(&tx, a)?;
        audit::append_in(&tx, record, now).map_err(units::audit_error)?;
        tx.commit()?;
        Ok(None)
    }

    fn pending_approvals_of(&self, agent: &str, now: i64) -> Result<usize, StoreError> {
        human::pending_of(&self.conn(), agent, now)
    }

    // Reads take no write lock (agents poll them): a lapsed approval is
    // reported as expired without rewriting the row; deciding rewrites it.
    fn approval(&self, id: &str, now: i64) -> Result<Option<Approval>, StoreError> {
        Ok(human::approval_where(&self.conn(), "id=?1", id)?.map(|a| human::lapse(a, now)))
    }

    fn approval_for_request(&self, digest: &str, now: i64) -> Result<Option<Approval>, StoreError> {
        human::approval_for_request(&self.conn(), digest, now)
    }

    fn approvals(&self, all: bool, now: i64) -> Result<Vec<Approval>, StoreError> {
        human::approvals(&self.conn(), all, now)
    }

    fn decide_approval(&self, id: &str, approve: bool, by: &str, note: &str, now: i64, use_until: i64, audit: &(dyn Fn(&Approval) -> crate::audit::Event + Sync)) -> Result<DecideOutcome, StoreError> {
        let mut conn = self.conn();
        human::expire_approvals(&conn, now)?;
        human::decide(&mut conn, id, approve, by, note, now, use_until, audit)
    }

    fn use_approval(&self, id: &str, jti: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            "UPDATE approvals SET state='used', used_jti=?2 WHERE id=?1 AND state='approved' AND expires_at > ?3",
            params![id, jti, now],
        )?;
        Ok(n == 1)
    }

    fn record_break_glass(&self, g: &BreakGlassGrant) -> Result<(), StoreError> {
        human::record_break_glass(&self.conn(), g)
    }

    fn break_glass_grants(&self, all: bool) -> Result<Vec<BreakGlassGrant>, StoreError> {
        human::break_glass_grants(&self.conn(), all)
    }

    fn ack_break_glass(&self, id: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "UPDATE break_glass SET reviewed_at=?2, reviewed_by=?3, note=?4 WHERE id=?1 AND reviewed_at IS NULL",
            params![id, now, by, note],
        )?;
        if n == 1 {
            audit::append_in(&tx, event, now)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    fn quarantine(&self, agent: &str, reason: &str, event: &crate::audit::Event, now: i64) -> Result<Revocation, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        audit::append_in(&tx, event, now)?;
        tx.execute("INSERT OR IGNORE INTO quarantine(agent, reason, since) VALUES (?1,?2,?3)", params![agent, reason, now])?;
        let scope = Scope::Agent(agent.to_owned());
        let why = format!("quarantined: {reason}");
        let (tokens, seq) = revoke_in(&tx, &scope, &why, now, TaskState::Revoked)?;
        tx.commit()?;
        Ok(Revocation { seq, scope, reason: why, at: now, tokens })
    }

    fn release(&self, agent: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.execute(
            "INSERT INTO quarantine_releases(agent, reason, since, released_at, released_by, note)
             SELECT agent, reason, since, ?2, ?3, ?4 FROM quarantine WHERE agent=?1",
            params![agent, now, by, note],
        )?;
        tx.execute("DELETE FROM quarantine WHERE agent=?1", params![agent])?;
        if n == 1 {
            // A person looked at the burst that quarantined it: its rate
            // window starts again, or the next request would drift at once.
            tx.execute("DELETE FROM request_counts WHERE agent=?1", params![agent])?;
            audit::append_in(&tx, event, now)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    fn ask_end_user(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64, expires_at: i64, record: &crate::audit::Event) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Questions and declines are kept until they expire.
        tx.execute("DELETE FROM confirmations WHERE expires_at <= ?1", params![now])?;
        tx.execute(
            "INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6)",
            params![id, agent, task, digest, now, expires_at],
        )?;
        audit::append_in(&tx, record, now).map_err(units::audit_error)?;
        tx.commit()?;
        Ok(())
    }

    fn take_end_user_answer(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.conn().execute(
            // A decline by the end user, or a person's denial, of the same
            // request closes every question about it, whichever came first.
            "UPDATE confirmations SET answered_at=?5 WHERE id=?1 AND agent=?2 AND task=?3 AND digest=?4 AND answered_at IS NULL AND expires_at > ?5
               AND NOT EXISTS (SELECT 1 FROM confirmations d WHERE d.agent=?2 AND d.digest=?4 AND d.declined=1 AND d.expires_at > ?5)
               AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.agent=?2 AND a.digest=?4 AND a.state='denied')",
            params![id, agent, task, digest, now],
        )?;
        Ok(n == 1)
    }

    fn record_end_user_decline(&self, agent: &str, task: &str, digest: &str, now: i64, until: i64) -> Result<(), StoreError> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.execute(
            "INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at, answered_at, declined) VALUES (?1,?2,?3,?4,?5,?6,?5,1)",
            params![format!("d_{}", hex::encode(id)), agent, task, digest, now, until],
        )?;
        // Every other open question about this request is closed with it.
        tx.execute("UPDATE confirmations SET answered_at=?3 WHERE agent=?1 AND digest=?2 AND answered_at IS NULL", params![agent, digest, now])?;
        tx.commit()?;
        Ok(())
    }

    fn end_user_declined(&self, agent: &str, digest: &str, now: i64) -> Result<bool, StoreError> {
        Ok(self
            .conn()
            .prepare_cached("SELECT 1 FROM confirmations WHERE agent=?1 AND digest=?2 AND declined=1 AND expires_at > ?3 LIMIT 1")?
            .query_row(params![agent, digest, now], |_| Ok(()))
            .optional()?
            .is_some())
    }

    fn record_token_and_intent(&self, t: &TokenRecord, i: &Intent) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction()?;
        tx.prepare_cached("INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,'issued',?7,?8)")?
            .execute(params![t.jti, t.task, t.agent, t.sid, t.tool, to_i64(t.phase), t.issued_at, t.expires_at])?;
        tx.prepare_cached("INSERT INTO intents(jti, agent, task, tool, shape, at) VALUES (?1,?2,?3,?4,?5,?6)")?
            .execute(params![i.jti, i.agent, i.task, i.tool, i.shape, i.at])?;
        tx.commit()?;
        Ok(())
    }

    fn last_call_of(&self, agent: &str) -> Result<Option<super::Call>, StoreError> {
        last_call_of(&self.conn(), agent)
    }

    fn intents_of(&self, agent: &str, since: i64, limit: usize) -> Result<Vec<Intent>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT jti, agent, task, tool, shape, at FROM intents WHERE agent=?1 AND at >= ?2 ORDER BY at, rowid LIMIT ?3")?;
        let rows = stmt.query_map(params![agent, since, to_i64(limit)], intent_from_row)?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    fn append_audit(&self, e: &crate::audit::Event, now: i64) -> Result<i64, StoreError> {
        audit::append(&mut self.conn(), e, now)
    }

    fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<crate::audit::Record>, StoreError> {
        audit::records(&self.conn(), "seq > ?1 ORDER BY seq LIMIT ?2", params![after, to_i64(limit)])
    }

    fn audit_of_task(&self, task: &str) -> Result<Vec<crate::audit::Record>, StoreError> {
        audit::records(&self.conn(), "task = ?1 ORDER BY seq", params![task])
    }

    fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        audit::head(&self.conn())
    }

    fn record_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError> {
        self.conn().execute("INSERT INTO audit_checkpoints(seq, hash, at, jws) VALUES (?1,?2,?3,?4)", params![c.seq, c.hash, c.at, c.jws])?;
        Ok(())
    }

    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare("SELECT seq, hash, at, jws FROM audit_checkpoints ORDER BY rowid")?;
        let rows = stmt.query_map([], |r| Ok(crate::audit::Checkpoint { seq: r.get(0)?, hash: r.get(1)?, at: r.get(2)?, jws: r.get(3)? }))?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    fn quarantined(&self, agent: &str) -> Result<Option<Quarantine>, StoreError> {
        quarantine_of(&self.conn(), agent)
    }
}
