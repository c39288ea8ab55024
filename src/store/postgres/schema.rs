//! The PostgreSQL store's schema: its migrations, in order, and the
//! version this binary writes and reads.

/// Schema migrations, in order: migration `n` (1-based) brings the schema
/// from version `n - 1` to `n`. Never edit one that has shipped; append.
pub(super) const MIGRATIONS: &[&str] = &[SCHEMA_V1, SCHEMA_V2, SCHEMA_V3, SCHEMA_V4, SCHEMA_V5, SCHEMA_V6, SCHEMA_V7, SCHEMA_V8];

/// Version 8: the passages' full-text index is on a function whose cost the
/// planner sees, and its key holds the agent. On `to_tsvector` itself the
/// planner could not see what matching a passage costs (16 KB of text
/// stored out of line, parsed again for every row), so with a full ledger
/// it chose to read and parse every passage of the agent (1.3 s a request,
/// statistics or not) over the index. The agent is one more lexeme of each
/// passage's entry (`jitgateagent` and the agent's MD5), so a lookup asks
/// for its words *and* its agent and reads no other agent's passages. The
/// function names everything from `pg_catalog` (an index must not depend on
/// the search path). The old index goes: nothing chose it. The index is
/// built inside the migration's transaction: taint writes wait until it
/// commits.
const SCHEMA_V8: &str = "
CREATE OR REPLACE FUNCTION jitgate_passage_words(agent TEXT, passage TEXT) RETURNS TSVECTOR
    LANGUAGE plpgsql IMMUTABLE STRICT PARALLEL SAFE COST 10000
    AS $$ BEGIN
        RETURN pg_catalog.to_tsvector('pg_catalog.simple'::pg_catalog.regconfig, passage)
            || ('jitgateagent' || pg_catalog.md5(agent))::pg_catalog.tsvector;
    END $$;
CREATE INDEX IF NOT EXISTS taint_passage_words ON taint USING GIN (jitgate_passage_words(agent, passage)) WHERE passage IS NOT NULL;
DROP INDEX IF EXISTS taint_passages;
";

/// Version 7: delegations, a share of a parent task handed to another
/// agent (`jit_delegate`); a child task is bound to one once.
const SCHEMA_V7: &str = "
CREATE TABLE IF NOT EXISTS delegations (
    id TEXT PRIMARY KEY,
    parent_task TEXT NOT NULL,
    parent_agent TEXT NOT NULL,
    child_agent TEXT NOT NULL,
    objective TEXT NOT NULL,
    phases TEXT NOT NULL,
    constraints TEXT NOT NULL,
    depth BIGINT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    child_task TEXT UNIQUE
);
CREATE INDEX IF NOT EXISTS delegations_parent ON delegations(parent_task);
CREATE INDEX IF NOT EXISTS delegations_expiry ON delegations(expires_at);
";

/// Version 3: passages are indexed for full-text phrase search, and the
/// tools an agent read from by agent, so that a request looks up only the
/// entries its values can match instead of reading the agent's whole
/// ledger. A trigger fills `passage` for every inserted passage, whichever
/// version of jitgate inserts it (a replica of the previous version during
/// a rolling upgrade does not know the column). Passages are normalized
/// words, never NUL, so their text is valid TEXT. Written to be run again
/// over its own result.
/// Version 4: where each taint entry was read (see
/// `crate::taint::Source::origin`), for the end user's question.
/// Entries from before have none; a replica of the previous version inserts
/// rows without it (the default). Written to be run again over its own result.
/// Version 5: the audit chain's head in a row of its own. Every appender
/// locks this row first (`FOR UPDATE`), so appends from every process take
/// turns and each reads the head as the previous one committed it, without
/// an advisory lock and a `SELECT ... ORDER BY seq DESC LIMIT 1` per record;
/// and a request's unit of work can append in the one statement that
/// commits it (the record's hash is computed there, see
/// `postgres::audit::chain_ctes`). Written to be run again over its own
/// result. The head follows every inserted record by trigger, whoever
/// inserts it: a replica of version 4, still running during a rolling
/// upgrade, appends by its advisory lock and `max(seq)` and does not know
/// this row, and the row must not fall behind its records (each append of
/// version 5 would then collide with an existing seq). The two versions'
/// appends still do not take turns with each other: one of two colliding
/// appends fails (the primary key on seq), none forks the chain.
/// Version 6: an agent's rate window in one row (`{"<second>": n}`), so
/// that counting a request and reading the window it makes is one row
/// update: concurrent counts of one agent queue on the row and each reads
/// the window as the one before committed it, inside the statement that
/// grants. (Per-second rows cannot give that in one statement: it reads the
/// other seconds' rows as they were when it began.) The open window is
/// carried over. `request_counts` stays for replicas of version 5 during a
/// rolling upgrade; until they are replaced, each version counts in its own
/// table, so an agent's window is split between them for that time.
/// And the audit head follows each inserting statement once, to its last
/// record, instead of once per record (a `jit_call`'s grant inserts two).
const SCHEMA_V6: &str = "
CREATE TABLE IF NOT EXISTS request_windows (
    agent TEXT PRIMARY KEY,
    counts JSONB NOT NULL
);
INSERT INTO request_windows(agent, counts)
SELECT agent, jsonb_object_agg(at::TEXT, n) FROM request_counts GROUP BY agent
ON CONFLICT (agent) DO NOTHING;
CREATE OR REPLACE FUNCTION jitgate_audit_head_after_statement() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head h SET seq = i.seq, hash = i.hash
    FROM (SELECT seq, hash FROM inserted ORDER BY seq DESC LIMIT 1) i
    WHERE h.seq < i.seq;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS audit_head_follows ON audit;
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit REFERENCING NEW TABLE AS inserted
    FOR EACH STATEMENT EXECUTE FUNCTION jitgate_audit_head_after_statement();
";
pub(super) const SCHEMA_V5: &str = "
CREATE TABLE IF NOT EXISTS audit_head (
    one BOOLEAN PRIMARY KEY DEFAULT true CHECK (one),
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL
);
INSERT INTO audit_head(one, seq, hash)
SELECT true, COALESCE((SELECT seq FROM audit ORDER BY seq DESC LIMIT 1), 0),
       COALESCE((SELECT hash FROM audit ORDER BY seq DESC LIMIT 1), '0000000000000000000000000000000000000000000000000000000000000000')
ON CONFLICT (one) DO NOTHING;
CREATE OR REPLACE FUNCTION jitgate_audit_head() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    UPDATE audit_head SET seq = NEW.seq, hash = NEW.hash WHERE seq < NEW.seq;
    RETURN NULL;
END
$$;
DROP TRIGGER IF EXISTS audit_head_follows ON audit;
CREATE TRIGGER audit_head_follows AFTER INSERT ON audit FOR EACH ROW EXECUTE FUNCTION jitgate_audit_head();
";
const SCHEMA_V4: &str = "
ALTER TABLE taint ADD COLUMN IF NOT EXISTS origin TEXT NOT NULL DEFAULT '';
";

const SCHEMA_V3: &str = r"
ALTER TABLE taint ADD COLUMN IF NOT EXISTS passage TEXT;
UPDATE taint SET passage = convert_from(value, 'UTF8') WHERE passage IS NULL AND substring(value from 1 for 1) = '\x20'::BYTEA;
CREATE OR REPLACE FUNCTION jitgate_taint_passage() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    IF substring(NEW.value from 1 for 1) = '\x20'::BYTEA THEN
        NEW.passage := convert_from(NEW.value, 'UTF8');
    END IF;
    RETURN NEW;
END
$$;
DROP TRIGGER IF EXISTS taint_passage ON taint;
CREATE TRIGGER taint_passage BEFORE INSERT ON taint FOR EACH ROW EXECUTE FUNCTION jitgate_taint_passage();
CREATE INDEX IF NOT EXISTS taint_passages ON taint USING GIN (to_tsvector('simple', passage)) WHERE passage IS NOT NULL;
CREATE INDEX IF NOT EXISTS taint_agent_tool ON taint(agent, tool);
";

/// Version 2: requests per agent and second instead of a row per request,
/// so a count sums at most a window's worth of rows however fast the agent
/// goes; the open window is carried over. The old table stays for replicas
/// of the previous version during a rolling upgrade (they count in it until
/// they are replaced); a later migration drops it.
const SCHEMA_V2: &str = "
CREATE TABLE request_counts (
    agent TEXT NOT NULL,
    at BIGINT NOT NULL,
    n BIGINT NOT NULL,
    PRIMARY KEY (agent, at)
);
INSERT INTO request_counts(agent, at, n) SELECT agent, at, count(*) FROM request_rate GROUP BY agent, at;
";

/// The schema version this binary writes and reads.
pub(super) const LATEST: i64 = MIGRATIONS.len() as i64;

/// Version 1: the SQLite schema (src/store/sqlite.rs), ported. INTEGER is
/// BIGINT, AUTOINCREMENT is BIGSERIAL. Differences, each for a reason:
/// - `ord BIGSERIAL` in tables that SQLite orders by its hidden `rowid`
///   (insertion order), since PostgreSQL has none.
/// - `tasks.id` sorts bytewise (`COLLATE "C"`), as SQLite's TEXT does, so the
///   `recent_tasks` cursor pages the same way whatever the database locale.
/// - Taint values are keyed by their SHA-256 and stored as BYTEA: a btree
///   entry holds at most ~2.7 kB (passages are up to 16 kB), and TEXT cannot
///   hold the NUL characters an untrusted tool may return.
/// - `audit.data` is TEXT, never JSONB: the record hash covers the JSON text
///   as written, and JSONB would reorder keys and normalise numbers.
/// - `confirmations.declined` is a BOOLEAN.
const SCHEMA_V1: &str = r#"
CREATE TABLE tasks (
    id TEXT COLLATE "C" PRIMARY KEY,
    agent TEXT NOT NULL,
    sid TEXT NOT NULL,
    objective TEXT NOT NULL,
    phases TEXT NOT NULL,
    current_phase BIGINT NOT NULL,
    state TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    ended_at BIGINT,
    end_reason TEXT
);
CREATE INDEX tasks_agent ON tasks(agent, state);
CREATE INDEX tasks_expiry ON tasks(state, expires_at);
CREATE INDEX tasks_sid ON tasks(sid, state);
CREATE INDEX tasks_created ON tasks(created_at, id);
CREATE TABLE tokens (
    jti TEXT PRIMARY KEY,
    task TEXT NOT NULL,
    agent TEXT NOT NULL,
    sid TEXT NOT NULL,
    tool TEXT NOT NULL,
    phase BIGINT NOT NULL,
    state TEXT NOT NULL,
    issued_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    changed_at BIGINT,
    reason TEXT
);
CREATE INDEX tokens_task ON tokens(task, state);
CREATE INDEX tokens_agent ON tokens(agent, state);
CREATE INDEX tokens_sid ON tokens(sid, state);
CREATE TABLE sessions (
    sid TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    opened_at BIGINT NOT NULL,
    instance TEXT NOT NULL DEFAULT ''
);
CREATE TABLE instances (
    id TEXT PRIMARY KEY,
    kind TEXT NOT NULL,
    pid BIGINT NOT NULL,
    started_at BIGINT NOT NULL,
    lease_until BIGINT NOT NULL,
    stopped_at BIGINT
);
CREATE TABLE taint (
    agent TEXT NOT NULL,
    value_hash BYTEA NOT NULL,
    value BYTEA NOT NULL,
    call TEXT NOT NULL,
    tool TEXT NOT NULL,
    at BIGINT NOT NULL,
    PRIMARY KEY (agent, value_hash)
);
CREATE INDEX taint_at ON taint(at);
CREATE TABLE taint_overflow (
    agent TEXT PRIMARY KEY,
    at BIGINT NOT NULL
);
CREATE TABLE request_rate (
    agent TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX request_rate_agent ON request_rate(agent, at);
-- Questions jitgate put to an agent's end user (MCP input-required results);
-- the answer comes back with the retried request and is taken once, for the
-- same agent, task and canonical request.
CREATE TABLE confirmations (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    digest TEXT NOT NULL,
    asked_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    answered_at BIGINT,
    declined BOOLEAN NOT NULL DEFAULT false
);
CREATE INDEX confirmations_agent ON confirmations(agent, digest);
-- Every consumed token is a call that happened, in order: the chain a
-- baseline judges is this, not what the agent says it follows.
CREATE TABLE calls (
    seq BIGSERIAL PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    jti TEXT NOT NULL,
    at BIGINT NOT NULL
);
CREATE INDEX calls_agent ON calls(agent, seq);
-- A trigger, as in SQLite, so that no path that consumes a token can skip
-- its call record.
CREATE FUNCTION jitgate_calls_on_consume() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO calls(agent, task, tool, jti, at) VALUES (NEW.agent, NEW.task, NEW.tool, NEW.jti, COALESCE(NEW.changed_at, 0));
    RETURN NULL;
END
$$;
CREATE TRIGGER calls_on_consume AFTER UPDATE OF state ON tokens FOR EACH ROW
WHEN (NEW.state = 'consumed' AND OLD.state <> 'consumed')
EXECUTE FUNCTION jitgate_calls_on_consume();
CREATE TABLE dpop_proofs (
    jkt TEXT NOT NULL,
    jti TEXT NOT NULL,
    expires_at BIGINT NOT NULL,
    PRIMARY KEY (jkt, jti)
);
CREATE INDEX dpop_proofs_expiry ON dpop_proofs(expires_at);
CREATE TABLE revocations (
    seq BIGSERIAL PRIMARY KEY,
    scope TEXT NOT NULL,
    target TEXT NOT NULL,
    reason TEXT NOT NULL,
    at BIGINT NOT NULL,
    tokens BIGINT NOT NULL
);
CREATE TABLE approvals (
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
    created_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    decided_at BIGINT,
    decided_by TEXT,
    note TEXT,
    used_jti TEXT,
    ord BIGSERIAL NOT NULL
);
CREATE INDEX approvals_digest ON approvals(digest, created_at);
CREATE INDEX approvals_agent ON approvals(agent, state);
CREATE TABLE break_glass (
    id TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    constraints TEXT NOT NULL,
    justification TEXT NOT NULL,
    jti TEXT NOT NULL,
    policies TEXT NOT NULL,
    granted_at BIGINT NOT NULL,
    expires_at BIGINT NOT NULL,
    reviewed_at BIGINT,
    reviewed_by TEXT,
    note TEXT,
    ord BIGSERIAL NOT NULL
);
CREATE TABLE quarantine (
    agent TEXT PRIMARY KEY,
    reason TEXT NOT NULL,
    since BIGINT NOT NULL
);
CREATE TABLE intents (
    jti TEXT PRIMARY KEY,
    agent TEXT NOT NULL,
    task TEXT NOT NULL,
    tool TEXT NOT NULL,
    shape TEXT NOT NULL,
    at BIGINT NOT NULL,
    ord BIGSERIAL NOT NULL
);
CREATE INDEX intents_task ON intents(task, at);
CREATE INDEX intents_agent ON intents(agent, at);
CREATE TABLE audit (
    seq BIGINT PRIMARY KEY,
    at BIGINT NOT NULL,
    kind TEXT NOT NULL,
    task TEXT,
    agent TEXT,
    data TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL
);
CREATE INDEX audit_task ON audit(task, seq);
CREATE TABLE audit_checkpoints (
    seq BIGINT NOT NULL,
    hash TEXT NOT NULL,
    at BIGINT NOT NULL,
    jws TEXT NOT NULL,
    ord BIGSERIAL NOT NULL
);
CREATE TABLE quarantine_releases (
    agent TEXT NOT NULL,
    reason TEXT NOT NULL,
    since BIGINT NOT NULL,
    released_at BIGINT NOT NULL,
    released_by TEXT NOT NULL,
    note TEXT NOT NULL
);
"#;
