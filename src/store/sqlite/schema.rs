//! The file and its schema: created private, migrated in one transaction.

#[allow(unused_imports)]
use super::*;

pub(in crate::store::sqlite) const SCHEMA: &str = r#"
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
-- A share of a parent task handed to another agent (jit_delegate).
CREATE TABLE IF NOT EXISTS delegations (
    id TEXT PRIMARY KEY,
    parent_task TEXT NOT NULL,
    parent_agent TEXT NOT NULL,
    child_agent TEXT NOT NULL,
    objective TEXT NOT NULL,
    phases TEXT NOT NULL,
    constraints TEXT NOT NULL,
    depth INTEGER NOT NULL,
    created_at INTEGER NOT NULL,
    expires_at INTEGER NOT NULL,
    child_task TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS delegations_parent ON delegations(parent_task);
CREATE INDEX IF NOT EXISTS delegations_expiry ON delegations(expires_at);
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

/// Create the store file readable by its owner only, before SQLite opens it
/// (SQLite gives its -wal and -shm files the database file's permissions).
/// An existing file is made private too.
pub(in crate::store::sqlite) fn create_private_file(path: &Path) -> std::io::Result<()> {
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
pub(in crate::store::sqlite) fn migrate(conn: &Connection) -> Result<(), StoreError> {
    // Rolled back when dropped uncommitted (an error below).
    let tx = rusqlite::Transaction::new_unchecked(conn, TransactionBehavior::Immediate)?;
    migrate_in_transaction(&tx)?;
    tx.commit()?;
    Ok(())
}

pub(in crate::store::sqlite) fn migrate_in_transaction(conn: &Connection) -> Result<(), StoreError> {
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
pub(in crate::store::sqlite) fn index_stored_passages(conn: &Connection) -> Result<(), StoreError> {
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
pub(in crate::store::sqlite) fn carry_over_rate_rows(conn: &Connection) -> Result<(), StoreError> {
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
