//! State that earlier versions kept in process memory and that must survive
//! a restart and be shared by every process on the store: gateway instances
//! and their leases, the taint ledger, and request-rate windows.

use rusqlite::{Connection, OptionalExtension as _, TransactionBehavior, params};

use super::{Revocation, Scope, StoreError, TaskState, revoke_in};
use std::collections::HashMap;

use crate::taint::{MAX_ORIGINS, Source, TaintEntry, TaintLedger, TaintProbe};

pub(super) fn register_instance(conn: &Connection, id: &str, kind: &str, now: i64, lease_until: i64) -> Result<(), StoreError> {
    conn.prepare_cached("INSERT INTO instances(id, kind, pid, started_at, lease_until) VALUES (?1, ?2, ?3, ?4, ?5)")?.execute(params![id, kind, i64::from(std::process::id()), now, lease_until])?;
    Ok(())
}

pub(super) fn renew_instance(conn: &Connection, id: &str, lease_until: i64) -> Result<bool, StoreError> {
    let live = conn
        .prepare_cached("UPDATE instances SET lease_until=?2 WHERE id=?1 AND stopped_at IS NULL")?
        .execute(params![id, lease_until])?;
    if live == 1 {
        return Ok(true);
    }
    // The lease had lapsed (the process was paused) and another process
    // revoked what its sessions held. It is serving again: its lease is live
    // again, so that what its sessions hold from now on is revoked when it
    // stops or its lease lapses once more.
    conn.prepare_cached("UPDATE instances SET lease_until=?2, stopped_at=NULL WHERE id=?1")?.execute(params![id, lease_until])?;
    Ok(false)
}

/// Sessions of `instance` that still hold an active task or an issued token.
const SESSIONS_HOLDING_AUTHORITY: &str = "SELECT sid FROM sessions s WHERE s.instance=?1 AND s.sid <> '' AND (
    EXISTS (SELECT 1 FROM tasks t WHERE t.sid = s.sid AND t.state='active')
    OR EXISTS (SELECT 1 FROM tokens k WHERE k.sid = s.sid AND k.state='issued'))";

pub(super) fn end_instance(conn: &mut Connection, id: &str, reason: &str, now: i64) -> Result<Vec<Revocation>, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    tx.prepare_cached("UPDATE instances SET stopped_at=?2 WHERE id=?1 AND stopped_at IS NULL")?.execute(params![id, now])?;
    let sids: Vec<String> = {
        let mut stmt = tx.prepare(SESSIONS_HOLDING_AUTHORITY)?;
        let rows = stmt.query_map(params![id], |r| r.get(0))?;
        rows.collect::<Result<_, _>>()?
    };
    let mut out = Vec::new();
    for sid in sids {
        let scope = Scope::Session(sid);
        let (tokens, seq) = revoke_in(&tx, &scope, reason, now, TaskState::Revoked)?;
        out.push(Revocation { seq, scope, reason: reason.to_owned(), at: now, tokens });
    }
    tx.commit()?;
    Ok(out)
}

pub(super) fn lapsed_instances(conn: &Connection, now: i64) -> Result<Vec<String>, StoreError> {
    let mut stmt = conn.prepare("SELECT id FROM instances WHERE stopped_at IS NULL AND lease_until < ?1")?;
    let mut ids: Vec<String> = stmt.query_map(params![now], |r| r.get(0))?.collect::<Result<_, _>>()?;
    // Sessions recorded by versions before instances existed belong to no
    // live process: their owner is the empty instance id.
    let legacy: Option<String> = conn.prepare_cached(&format!("{SESSIONS_HOLDING_AUTHORITY} LIMIT 1"))?.query_row(params![""], |r| r.get(0)).optional()?;
    if legacy.is_some() {
        ids.push(String::new());
    }
    Ok(ids)
}

pub(super) fn record_taint(conn: &mut Connection, agent: &str, entries: &[TaintEntry], source: &Source, now: i64, max: usize) -> Result<(), StoreError> {
    if entries.is_empty() {
        return Ok(());
    }
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let mut held: i64 = tx.prepare_cached("SELECT count(*) FROM taint WHERE agent=?1")?.query_row(params![agent], |r| r.get(0))?;
    let max = i64::try_from(max).unwrap_or(i64::MAX);
    let mut overflowed = false;
    {
        // A value seen again keeps its first source, is kept longer and
        // gains this read's origin (a line of its own, up to MAX_ORIGINS).
        let mut refresh = tx.prepare_cached(
            "UPDATE taint SET at=?3, origin = CASE
                 WHEN ?4 = '' OR instr(char(10) || origin || char(10), char(10) || ?4 || char(10)) > 0 THEN origin
                 WHEN origin = '' THEN ?4
                 WHEN length(origin) - length(replace(origin, char(10), '')) + 1 >= ?5 THEN origin
                 ELSE origin || char(10) || ?4 END
             WHERE agent=?1 AND value=?2",
        )?;
        let mut insert = tx.prepare_cached("INSERT INTO taint(agent, value, call, tool, at, fts, origin) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)")?;
        let mut index = tx.prepare_cached("INSERT INTO taint_fts(value) VALUES (?1)")?;
        let most = i64::try_from(MAX_ORIGINS).unwrap_or(i64::MAX);
        for entry in entries {
            let (value, origin) = (&entry.value, entry.origin(source));
            if refresh.execute(params![agent, value, now, origin, most])? == 1 {
                continue;
            }
            if held >= max {
                overflowed = true;
                continue;
            }
            // A passage goes into the full-text index too, so that a request
            // finds the passages holding its phrases without reading the rest.
            let fts = if is_passage(value) { Some(index.insert(params![value])?) } else { None };
            insert.execute(params![agent, value, source.call, source.tool, now, fts, origin])?;
            held += 1;
        }
    }
    if overflowed {
        tx.prepare_cached("INSERT INTO taint_overflow(agent, at) VALUES (?1, ?2) ON CONFLICT(agent) DO UPDATE SET at=excluded.at")?.execute(params![agent, now])?;
    }
    tx.commit()?;
    Ok(())
}

pub(super) fn taint_ledger(conn: &Connection, agent: &str) -> Result<TaintLedger, StoreError> {
    let mut stmt = conn.prepare_cached("SELECT value, call, tool, origin FROM taint WHERE agent=?1")?;
    let rows = stmt.query_map(params![agent], |r| Ok((r.get::<_, String>(0)?, Source { call: r.get(1)?, tool: r.get(2)?, origin: r.get(3)? })))?;
    let values = rows.collect::<Result<_, _>>()?;
    Ok(TaintLedger::new(values, overflowed(conn, agent)?))
}

pub(super) fn forget_taint(conn: &Connection, before: i64) -> Result<u64, StoreError> {
    conn.prepare_cached("DELETE FROM taint_fts WHERE rowid IN (SELECT fts FROM taint WHERE at < ?1 AND fts IS NOT NULL)")?.execute(params![before])?;
    let n = conn.prepare_cached("DELETE FROM taint WHERE at < ?1")?.execute(params![before])?;
    conn.prepare_cached("DELETE FROM taint_overflow WHERE at < ?1")?.execute(params![before])?;
    Ok(n as u64)
}

/// A ledger entry that is a passage of text (see `crate::taint`).
pub(super) fn is_passage(value: &str) -> bool {
    value.starts_with(' ')
}

/// The entries of an agent's ledger that a request's probe can match, by
/// index: its keys by the primary key, its phrases through the full-text
/// index of passages. The cost follows the request, not how much the agent
/// has read.
pub(super) fn taint_lookup(conn: &Connection, agent: &str, probe: &TaintProbe) -> Result<TaintLedger, StoreError> {
    let mut entries: HashMap<String, Source> = HashMap::new();
    {
        let mut by_key = conn.prepare_cached("SELECT call, tool, origin FROM taint WHERE agent=?1 AND value=?2")?;
        for key in &probe.keys {
            if let Some(source) = by_key.query_row(params![agent, key], |r| Ok(Source { call: r.get(0)?, tool: r.get(1)?, origin: r.get(2)? })).optional()? {
                entries.insert(key.clone(), source);
            }
        }
    }
    if !probe.phrases.is_empty() {
        // Each phrase quoted: FTS5 reads everything inside quotes as words.
        let query = probe.phrases.iter().map(|p| format!("\"{}\"", p.trim().replace('"', "\"\""))).collect::<Vec<_>>().join(" OR ");
        let mut stmt = conn.prepare_cached(
            "SELECT t.value, t.call, t.tool, t.origin FROM taint_fts f CROSS JOIN taint t ON t.fts = f.rowid WHERE taint_fts MATCH ?2 AND t.agent = ?1",
        )?;
        let rows = stmt.query_map(params![agent, query], |r| Ok((r.get::<_, String>(0)?, Source { call: r.get(1)?, tool: r.get(2)?, origin: r.get(3)? })))?;
        for row in rows {
            let (value, source) = row?;
            entries.insert(value, source);
        }
    }
    // The tools it read from, one index seek per tool (a plain DISTINCT
    // would scan every entry of a full ledger on every request).
    let tools = conn
        .prepare_cached(
            "WITH RECURSIVE read_from(tool) AS (
                 SELECT min(tool) FROM taint WHERE agent=?1
                 UNION ALL
                 SELECT (SELECT min(tool) FROM taint WHERE agent=?1 AND tool > read_from.tool) FROM read_from WHERE read_from.tool IS NOT NULL)
             SELECT tool FROM read_from WHERE tool IS NOT NULL ORDER BY tool",
        )?
        .query_map(params![agent], |r| r.get::<_, String>(0))?
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TaintLedger::from_lookup(entries, tools, overflowed(conn, agent)?))
}

fn overflowed(conn: &Connection, agent: &str) -> Result<bool, StoreError> {
    Ok(conn.prepare_cached("SELECT 1 FROM taint_overflow WHERE agent=?1")?.query_row(params![agent], |_| Ok(())).optional()?.is_some())
}

/// The rate window: requests in the last 60 s.
pub(super) const WINDOW_SECS: i64 = 60;

pub(super) fn count_request(conn: &mut Connection, agent: &str, now: i64) -> Result<u32, StoreError> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    super::units::bump_request_count(&tx, agent, now)?;
    let n = super::units::window_count(&tx, agent, now)?;
    tx.commit()?;
    Ok(n)
}

pub(super) fn dpop_proof_first_use(conn: &Connection, jkt: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
    conn.prepare_cached("DELETE FROM dpop_proofs WHERE expires_at < ?1")?.execute(params![now])?;
    let inserted = conn
        .prepare_cached("INSERT OR IGNORE INTO dpop_proofs(jkt, jti, expires_at) VALUES (?1, ?2, ?3)")?
        .execute(params![jkt, jti, expires_at])?;
    Ok(inserted == 1)
}
