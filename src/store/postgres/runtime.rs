//! State shared by every replica that earlier versions kept in process
//! memory: gateway instances and their leases, the taint ledger, the
//! request-rate windows and used DPoP proofs.

use std::collections::{HashMap, HashSet};

use ::postgres::{GenericClient, Row, Transaction};
use sha2::{Digest as _, Sha256};

use super::{AUDIT_LOCK, Fail, REVOCATION_LOCK, TAINT_LOCK, lock, lock_agent, revoke_in};
use crate::taint::{MAX_ORIGINS, Source, TaintEntry, TaintLedger, TaintProbe};
use crate::store::{Revocation, Scope, StoreError, TaskState};

pub(super) fn register_instance(c: &mut impl GenericClient, id: &str, kind: &str, now: i64, lease_until: i64) -> Result<(), Fail> {
    c.execute(
        "INSERT INTO instances(id, kind, pid, started_at, lease_until) VALUES ($1, $2, $3, $4, $5)",
        &[&id, &kind, &i64::from(std::process::id()), &now, &lease_until],
    )?;
    Ok(())
}

pub(super) fn renew_instance(c: &mut impl GenericClient, id: &str, lease_until: i64) -> Result<bool, Fail> {
    let live = c.execute("UPDATE instances SET lease_until=$2 WHERE id=$1 AND stopped_at IS NULL", &[&id, &lease_until])?;
    if live == 1 {
        return Ok(true);
    }
    // The lease had lapsed (the process was paused) and another process
    // revoked what its sessions held. It is serving again: its lease is live
    // again, so that what its sessions hold from now on is revoked when it
    // stops or its lease lapses once more.
    c.execute("UPDATE instances SET lease_until=$2, stopped_at=NULL WHERE id=$1", &[&id, &lease_until])?;
    Ok(false)
}

/// Sessions of `instance` that still hold an active task or an issued token.
const SESSIONS_HOLDING_AUTHORITY: &str = "SELECT sid FROM sessions s WHERE s.instance=$1 AND s.sid <> '' AND (
    EXISTS (SELECT 1 FROM tasks t WHERE t.sid = s.sid AND t.state='active')
    OR EXISTS (SELECT 1 FROM tokens k WHERE k.sid = s.sid AND k.state='issued'))";

pub(super) fn end_instance(tx: &mut Transaction<'_>, id: &str, reason: &str, now: i64) -> Result<Vec<Revocation>, Fail> {
    // Before any row lock (the module's lock order); it also means that two
    // replicas ending the same lapsed instance take turns, and the second
    // finds nothing left to revoke. The audit lock first: each revocation
    // writes its record.
    lock(tx, AUDIT_LOCK)?;
    lock(tx, REVOCATION_LOCK)?;
    tx.execute("UPDATE instances SET stopped_at=$2 WHERE id=$1 AND stopped_at IS NULL", &[&id, &now])?;
    let sids: Vec<String> = tx.query(&format!("{SESSIONS_HOLDING_AUTHORITY} ORDER BY sid"), &[&id])?.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?;
    let mut out = Vec::with_capacity(sids.len());
    for sid in sids {
        let scope = Scope::Session(sid);
        let (tokens, seq) = revoke_in(tx, &scope, reason, now, TaskState::Revoked)?;
        out.push(Revocation { seq, scope, reason: reason.to_owned(), at: now, tokens });
    }
    Ok(out)
}

pub(super) fn lapsed_instances(c: &mut impl GenericClient, now: i64) -> Result<Vec<String>, Fail> {
    let mut ids: Vec<String> = c
        .query("SELECT id FROM instances WHERE stopped_at IS NULL AND lease_until < $1 ORDER BY started_at, id", &[&now])?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    // Sessions recorded by versions before instances existed belong to no
    // live process: their owner is the empty instance id.
    let legacy = c.query_opt(&format!("{SESSIONS_HOLDING_AUTHORITY} LIMIT 1"), &[&""])?;
    if legacy.is_some() {
        ids.push(String::new());
    }
    Ok(ids)
}

pub(super) fn value_hash(value: &str) -> Vec<u8> {
    Sha256::digest(value.as_bytes()).to_vec()
}

/// As the SQLite store does value by value: a value the agent already holds
/// keeps its first source and is kept longer; a new one is added while the
/// agent holds fewer than `max`; past that the ledger is marked overflowed.
/// Here in three statements rather than two per value (each is a round trip).
/// The agent's taint lock makes concurrent recorders for one agent take
/// turns, so the cap holds and two replicas adding the same value do not
/// collide on its key.
pub(super) fn record_taint(tx: &mut Transaction<'_>, agent: &str, entries: &[TaintEntry], source: &Source, now: i64, max: usize) -> Result<(), Fail> {
    lock_agent(tx, TAINT_LOCK, agent)?;
    // Each distinct value once, in the order given, with its origin.
    let mut seen = HashSet::new();
    let distinct: Vec<(&String, Vec<u8>, String)> =
        entries.iter().map(|e| (&e.value, value_hash(&e.value), e.origin(source))).filter(|(_, h, _)| seen.insert(h.clone())).collect();
    let hashes: Vec<Vec<u8>> = distinct.iter().map(|(_, h, _)| h.clone()).collect();
    let origins: Vec<&str> = distinct.iter().map(|(_, _, o)| o.as_str()).collect();
    let most = i64::try_from(MAX_ORIGINS).unwrap_or(i64::MAX);
    // A value held already keeps its source, is kept longer and gains this
    // read's origin (a line of its own, up to MAX_ORIGINS).
    let refreshed: HashSet<Vec<u8>> = tx
        .query(
            "UPDATE taint t SET at=$3, origin = CASE
                 WHEN u.o = '' OR strpos(chr(10) || t.origin || chr(10), chr(10) || u.o || chr(10)) > 0 THEN t.origin
                 WHEN t.origin = '' THEN u.o
                 WHEN length(t.origin) - length(replace(t.origin, chr(10), '')) + 1 >= $5::BIGINT THEN t.origin
                 ELSE t.origin || chr(10) || u.o END
             FROM unnest($2::BYTEA[], $4::TEXT[]) AS u(h, o)
             WHERE t.agent=$1 AND t.value_hash = u.h RETURNING t.value_hash",
            &[&agent, &hashes, &now, &origins, &most],
        )?
        .iter()
        .map(|r| r.try_get(0))
        .collect::<Result<_, _>>()?;
    let held: i64 = tx.query_one("SELECT count(*) FROM taint WHERE agent=$1", &[&agent])?.try_get(0)?;
    let room = usize::try_from(i64::try_from(max).unwrap_or(i64::MAX).saturating_sub(held)).unwrap_or(0);
    let fresh: Vec<&(&String, Vec<u8>, String)> = distinct.iter().filter(|(_, h, _)| !refreshed.contains(h)).collect();
    let overflowed = fresh.len() > room;
    let fresh: Vec<_> = fresh.into_iter().take(room).collect();
    let new_hashes: Vec<Vec<u8>> = fresh.iter().map(|(_, h, _)| h.clone()).collect();
    let new_values: Vec<Vec<u8>> = fresh.iter().map(|(v, _, _)| v.as_bytes().to_vec()).collect();
    let new_origins: Vec<&str> = fresh.iter().map(|(_, _, o)| o.as_str()).collect();
    if !new_hashes.is_empty() {
        tx.execute(
            "INSERT INTO taint(agent, value_hash, value, call, tool, at, origin) SELECT $1, h, v, $4, $5, $6, o FROM unnest($2::BYTEA[], $3::BYTEA[], $7::TEXT[]) AS u(h, v, o)",
            &[&agent, &new_hashes, &new_values, &source.call, &source.tool, &now, &new_origins],
        )?;
    }
    if overflowed {
        tx.execute("INSERT INTO taint_overflow(agent, at) VALUES ($1, $2) ON CONFLICT (agent) DO UPDATE SET at=excluded.at", &[&agent, &now])?;
    }
    Ok(())
}

pub(super) fn taint_ledger(c: &mut impl GenericClient, agent: &str) -> Result<TaintLedger, Fail> {
    let mut values = HashMap::new();
    for r in c.query("SELECT value, call, tool, origin FROM taint WHERE agent=$1", &[&agent])? {
        let value: Vec<u8> = r.try_get(0)?;
        let value = String::from_utf8(value).map_err(|_| StoreError::Corrupt(format!("a taint value of agent {agent} is not UTF-8")))?;
        values.insert(value, Source { call: r.try_get(1)?, tool: r.try_get(2)?, origin: r.try_get(3)? });
    }
    let overflowed = c.query_opt("SELECT 1 FROM taint_overflow WHERE agent=$1", &[&agent])?.is_some();
    Ok(TaintLedger::new(values, overflowed))
}

/// Longest word PostgreSQL's text search indexes (2,047 bytes); a phrase
/// with a longer one is looked for in all the agent's passages instead.
pub(super) const MAX_INDEXED_WORD: usize = 2000;

/// As the SQLite store: the entries a request's probe can match, by index
/// (the keys by their hash, the phrases through the passages' full-text
/// index), never the whole ledger. A phrase's candidates are the passages
/// holding all its words (PostgreSQL's `simple` text search: no stemming,
/// no stop words), not its words in a row: a tsvector keeps at most 256
/// positions of a word, so a phrase after the 256th "hotel" of a page would
/// not match as a phrase. jitgate's own phrase match then decides.
pub(super) fn taint_lookup(c: &mut impl GenericClient, agent: &str, probe: &TaintProbe) -> Result<TaintLedger, Fail> {
    let mut values = HashMap::new();
    let mut keep = |r: &Row| -> Result<(), Fail> {
        let value: Vec<u8> = r.try_get(0)?;
        let value = String::from_utf8(value).map_err(|_| StoreError::Corrupt(format!("a taint value of agent {agent} is not UTF-8")))?;
        values.insert(value, Source { call: r.try_get(1)?, tool: r.try_get(2)?, origin: r.try_get(3)? });
        Ok(())
    };
    let hashes: Vec<Vec<u8>> = probe.keys.iter().map(|k| value_hash(k)).collect();
    for r in c.query("SELECT value, call, tool, origin FROM taint WHERE agent=$1 AND value_hash = ANY($2)", &[&agent, &hashes])? {
        keep(&r)?;
    }
    let phrases: Vec<&str> = probe.phrases.iter().map(|p| p.trim()).collect();
    if phrases.iter().any(|p| p.split(' ').any(|w| w.len() > MAX_INDEXED_WORD)) {
        for r in c.query("SELECT value, call, tool, origin FROM taint WHERE agent=$1 AND passage IS NOT NULL", &[&agent])? {
            keep(&r)?;
        }
    } else if !phrases.is_empty() {
        let rows = c.query(PASSAGES_HOLDING_PHRASES.as_str(), &[&agent, &phrases])?;
        for r in rows {
            keep(&r)?;
        }
    }
    let tools = c.query(&tools_read_from("$1"), &[&agent])?.iter().map(|r| r.try_get(0)).collect::<Result<Vec<String>, _>>()?;
    let overflowed = c.query_opt("SELECT 1 FROM taint_overflow WHERE agent=$1", &[&agent])?.is_some();
    Ok(TaintLedger::from_lookup(values, tools, overflowed))
}

/// [`taint_lookup`]'s passages holding any of the phrases `$2` (of `$1`).
static PASSAGES_HOLDING_PHRASES: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| format!("SELECT value, call, tool, origin FROM ({}) p", passages_holding("$1", "$2")));

/// The passages of `agent` holding any of the `phrases` (a text array), by
/// the full-text index of schema 8, whose entries are
/// `jitgate_passage_words(agent, passage)`: the passage's words and one for
/// its agent, asked for together, so no other agent's passages are read.
/// `OFFSET 0` keeps the agent's column condition (kept as a check) from
/// steering the planner to the agent's btree index, which read and parsed
/// every passage the agent held (1.3 s a request with a full ledger).
/// Columns: `value_hash, value, call, tool, origin`.
pub(super) fn passages_holding(agent: &str, phrases: &str) -> String {
    format!(
        "SELECT value_hash, value, call, tool, origin FROM (
           SELECT value_hash, value, call, tool, origin, agent FROM taint WHERE passage IS NOT NULL AND jitgate_passage_words(agent, passage) @@
             ((SELECT string_agg('(' || q::TEXT || ')', ' | ')::TSQUERY FROM unnest({phrases}::TEXT[]) AS p, plainto_tsquery('simple', p) AS q WHERE numnode(q) > 0)
              && ('jitgateagent' || md5({agent}))::TSQUERY)
           OFFSET 0) m WHERE m.agent = {agent}"
    )
}

/// The tools `agent` read untrusted output from, in order, one index seek
/// per tool: a plain DISTINCT would scan every entry of a full ledger on
/// every request.
pub(super) fn tools_read_from(agent: &str) -> String {
    format!(
        "WITH RECURSIVE read_from(tool) AS (
             SELECT min(tool) FROM taint WHERE agent = {agent}::TEXT
             UNION ALL
             SELECT (SELECT min(tool) FROM taint WHERE agent = {agent}::TEXT AND tool > read_from.tool) FROM read_from WHERE read_from.tool IS NOT NULL)
         SELECT tool FROM read_from WHERE tool IS NOT NULL ORDER BY tool"
    )
}

pub(super) fn forget_taint(c: &mut impl GenericClient, before: i64) -> Result<u64, Fail> {
    let n = c.execute("DELETE FROM taint WHERE at < $1", &[&before])?;
    c.execute("DELETE FROM taint_overflow WHERE at < $1", &[&before])?;
    Ok(n)
}

/// The rate window: requests in the last 60 s.
pub(super) const WINDOW_SECS: i64 = 60;

/// True for a proof's first use only: of concurrent inserts of one key, the
/// later ones wait for the first to commit and then insert nothing.
pub(super) fn dpop_proof_first_use(c: &mut impl GenericClient, jkt: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, Fail> {
    c.execute("DELETE FROM dpop_proofs WHERE expires_at < $1", &[&now])?;
    let inserted = c.execute("INSERT INTO dpop_proofs(jkt, jti, expires_at) VALUES ($1, $2, $3) ON CONFLICT (jkt, jti) DO NOTHING", &[&jkt, &jti, &expires_at])?;
    Ok(inserted == 1)
}
