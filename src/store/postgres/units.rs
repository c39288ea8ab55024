//! The PostgreSQL store's units of work on the request path, one statement
//! each, so that each is one round trip and (for writes) one commit:
//!
//! - [`read_request`]: everything a request is decided on, one snapshot;
//! - [`grant`]: an allowed request's request count, approval, token, intent
//!   and audit records (and, for `jit_call`, the call's consumption and its
//!   record), all or nothing;
//! - [`consume_for_call`]: a token's consumption and its call's record.
//!
//! Each write locks the audit chain's head row first (see
//! [`super::audit::chain_ctes`]): the statement's other locks (the task row
//! `FOR SHARE`, the token and approval rows they update) come after it, the
//! lock order of every other transaction of this store, and READ COMMITTED
//! re-reads each row it had to wait for, so the checks below see what the
//! previous holder committed, as the lock-and-read transactions did.

use std::collections::HashMap;
use std::sync::LazyLock;

use ::postgres::{GenericClient, Row};
use ::postgres::types::ToSql;
use serde::Deserialize;

use super::audit::{ChainArgs, HEAD_CTE, chain_ctes};
use super::{Fail, to_i64, to_usize};
use crate::taint::{Source, TaintLedger};
use crate::store::{Approval, ApprovalState, Call, Consumption, Grant, Granted, Phase, Quarantine, RequestRead, RequestState, StoreError, Task, TaskAt, TaskState, TokenRecord, TokenState};

use super::runtime::WINDOW_SECS;

/// Rows as `to_jsonb` gives them (column names as keys).
#[derive(Deserialize)]
struct TaskRow {
    id: String,
    agent: String,
    sid: String,
    objective: String,
    phases: String,
    current_phase: i64,
    state: String,
    created_at: i64,
    expires_at: i64,
    end_reason: Option<String>,
}

#[derive(Deserialize)]
struct TokenRow {
    jti: String,
    task: String,
    agent: String,
    sid: String,
    tool: String,
    phase: i64,
    state: String,
    issued_at: i64,
    expires_at: i64,
    changed_at: Option<i64>,
    reason: Option<String>,
}

#[derive(Deserialize)]
struct ApprovalRow {
    id: String,
    digest: String,
    agent: String,
    task: String,
    tool: String,
    constraints: String,
    purpose: String,
    grp: String,
    policies: String,
    state: String,
    created_at: i64,
    expires_at: i64,
    decided_at: Option<i64>,
    decided_by: Option<String>,
    note: Option<String>,
    used_jti: Option<String>,
}

#[derive(Deserialize)]
struct QuarantineRow {
    agent: String,
    reason: String,
    since: i64,
}

#[derive(Deserialize)]
struct CallRow {
    jti: String,
    task: String,
    tool: String,
    at: i64,
}

#[derive(Deserialize)]
struct TaintRow {
    value: String,
    call: String,
    tool: String,
    origin: String,
}

/// A row the statement gave as JSON text (`to_jsonb(...)::TEXT`).
fn json<T: serde::de::DeserializeOwned>(what: &str, v: Option<String>) -> Result<Option<T>, StoreError> {
    v.map(|v| serde_json::from_str(&v).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))).transpose()
}

/// [`read_request`]'s statement, built once. Its taint entries are the
/// union of three lookups, each of which has one way to an index whatever
/// the planner believes of the table: by value hash (joined on the primary
/// key), by the passages' full-text index
/// ([`super::runtime::passages_holding`]), and every passage when `$8`
/// asks for it. No branch may depend on a parameter's value to find its
/// index (the async pool plans each statement once): one `OR` of the three
/// could only be answered by reading every passage.
pub(super) static READ_REQUEST: LazyLock<String> = LazyLock::new(|| {
    format!(
        "
SELECT
  (SELECT to_jsonb(t)::TEXT FROM tasks t WHERE t.id = $1),
  (SELECT to_jsonb(q)::TEXT FROM quarantine q WHERE q.agent = $2),
  (SELECT to_jsonb(k)::TEXT FROM tokens k WHERE k.jti = $3::TEXT),
  (SELECT to_jsonb(a)::TEXT FROM approvals a WHERE digest = $4::TEXT {DECIDING_APPROVAL}),
  (SELECT to_jsonb(c)::TEXT FROM (SELECT jti, task, tool, at FROM calls WHERE agent = $2 AND (task NOT LIKE 'obs\\_%' OR $1::TEXT LIKE 'obs\\_%') ORDER BY seq DESC LIMIT 1) c),
  {WINDOW_SUM},
  ARRAY({TOOLS_READ_FROM}),
  EXISTS (SELECT 1 FROM taint_overflow WHERE agent = $2),
  (SELECT jsonb_agg(jsonb_build_object('value', convert_from(x.value, 'UTF8'), 'call', x.call, 'tool', x.tool, 'origin', x.origin))::TEXT FROM (
       SELECT t.value_hash, t.value, t.call, t.tool, t.origin FROM unnest($6::BYTEA[]) AS h(value_hash) JOIN taint t ON t.agent = $2 AND t.value_hash = h.value_hash
       UNION {PASSAGES_HOLDING}
       UNION SELECT value_hash, value, call, tool, origin FROM taint WHERE $8 AND agent = $2 AND passage IS NOT NULL) x)
",
        DECIDING_APPROVAL = super::human::DECIDING_APPROVAL,
        WINDOW_SUM = window_sum("$2", "$5"),
        TOOLS_READ_FROM = super::runtime::tools_read_from("$2"),
        PASSAGES_HOLDING = super::runtime::passages_holding("$2", "$7"),
    )
});

/// The requests in `agent`'s last minute as the statement's snapshot has
/// them: the window ending at `since` + a minute or at the agent's latest
/// counted second, whichever is later (as SQLite's `window_count`: a request
/// of second T committing after requests of T+1 sees them).
fn window_sum(agent: &str, since: &str) -> String {
    format!(
        "(SELECT COALESCE(sum(e.value::BIGINT), 0)::BIGINT FROM request_windows w, jsonb_each_text(w.counts) AS e,
            LATERAL (SELECT GREATEST({since}::BIGINT + {WINDOW_SECS}, (SELECT max(k::BIGINT) FROM jsonb_object_keys(w.counts) AS k)) AS top) AS t
          WHERE w.agent = {agent}::TEXT AND e.key::BIGINT > t.top - {WINDOW_SECS} AND e.key::BIGINT <= t.top)"
    )
}

/// A data-modifying CTE body that counts a request of `agent` at `now` in
/// its window row (when `when` holds) and returns the window's `total`,
/// this request included. Concurrent counts of one agent queue on the row,
/// and each updates the row as the previous one committed it (READ
/// COMMITTED re-reads a row it waited for): the totals are exact, 1, 2,
/// 3..., across processes. Seconds that left the window are dropped.
fn count_cte(agent: &str, now: &str, when: &str) -> String {
    format!(
        "INSERT INTO request_windows AS w (agent, counts) SELECT {agent}::TEXT, jsonb_build_object({now}::BIGINT::TEXT, 1) WHERE {when}
         ON CONFLICT (agent) DO UPDATE SET counts =
           COALESCE((SELECT jsonb_object_agg(e.key, e.value) FROM jsonb_each(w.counts) AS e
                     WHERE e.key::BIGINT > {now}::BIGINT - {WINDOW_SECS} AND e.key <> {now}::BIGINT::TEXT), '{{}}'::JSONB)
           || jsonb_build_object({now}::BIGINT::TEXT, COALESCE((w.counts ->> ({now}::BIGINT::TEXT))::BIGINT, 0) + 1)
         RETURNING (SELECT COALESCE(sum(e.value::BIGINT), 0) FROM jsonb_each_text(w.counts) AS e,
                      LATERAL (SELECT GREATEST({now}::BIGINT, (SELECT max(k::BIGINT) FROM jsonb_object_keys(w.counts) AS k)) AS top) AS t
                    WHERE e.key::BIGINT > t.top - {WINDOW_SECS} AND e.key::BIGINT <= t.top)::BIGINT AS total"
    )
}

/// [`read_request`]'s parameters, owned (the async client holds them
/// across its round trip).
pub(super) struct ReadArgs {
    task: String,
    agent: String,
    follows: Option<String>,
    digest: Option<String>,
    window: i64,
    hashes: Vec<Vec<u8>>,
    phrases: Vec<String>,
    every_passage: bool,
}

impl ReadArgs {
    pub(super) fn of(r: &RequestRead) -> Self {
        let hashes = r.probe.keys.iter().map(|k| super::runtime::value_hash(k)).collect();
        let phrases: Vec<String> = r.probe.phrases.iter().map(|p| p.trim().to_owned()).collect();
        // A word too long for the full-text index: every passage is a
        // candidate (as `runtime::taint_lookup` does).
        let every_passage = phrases.iter().any(|p| p.split(' ').any(|w| w.len() > super::runtime::MAX_INDEXED_WORD));
        Self {
            task: r.task.clone(),
            agent: r.agent.clone(),
            follows: r.follows.clone(),
            digest: r.digest.clone(),
            window: r.now - WINDOW_SECS,
            hashes,
            phrases,
            every_passage,
        }
    }

    pub(super) fn params(&self) -> [&(dyn ToSql + Sync); 8] {
        [&self.task, &self.agent, &self.follows, &self.digest, &self.window, &self.hashes, &self.phrases, &self.every_passage]
    }
}

pub(super) fn read_request(c: &mut impl GenericClient, r: &RequestRead) -> Result<RequestState, Fail> {
    let args = ReadArgs::of(r);
    let row = c.query_one(READ_REQUEST.as_str(), &args.params())?;
    decode_read(&row, r.now)
}

/// What [`READ_REQUEST`] gave, as the request's state.
pub(super) fn decode_read(row: &Row, now: i64) -> Result<RequestState, Fail> {
    let task = json::<TaskRow>("task", row.try_get(0)?)?
        .map(|t| -> Result<Task, StoreError> {
            Ok(Task {
                id: t.id,
                agent: t.agent,
                sid: t.sid,
                objective: t.objective,
                phases: serde_json::from_str::<Vec<Phase>>(&t.phases).unwrap_or_default(),
                current_phase: to_usize(t.current_phase),
                state: TaskState::parse(&t.state)?,
                created_at: t.created_at,
                expires_at: t.expires_at,
                end_reason: t.end_reason,
            })
        })
        .transpose()?;
    let quarantined = json::<QuarantineRow>("quarantine", row.try_get(1)?)?.map(|q| Quarantine { agent: q.agent, reason: q.reason, since: q.since });
    let parent = json::<TokenRow>("token", row.try_get(2)?)?
        .map(|t| -> Result<TokenRecord, StoreError> {
            Ok(TokenRecord {
                jti: t.jti,
                task: t.task,
                agent: t.agent,
                sid: t.sid,
                tool: t.tool,
                phase: to_usize(t.phase),
                state: TokenState::parse(&t.state)?,
                issued_at: t.issued_at,
                expires_at: t.expires_at,
                changed_at: t.changed_at,
                reason: t.reason,
            })
        })
        .transpose()?;
    let approval = json::<ApprovalRow>("approval", row.try_get(3)?)?
        .map(|a| -> Result<Approval, StoreError> {
            Ok(super::human::lapse(
                Approval {
                    id: a.id,
                    digest: a.digest,
                    agent: a.agent,
                    task: a.task,
                    tool: a.tool,
                    constraints: a.constraints,
                    purpose: a.purpose,
                    group: a.grp,
                    policies: serde_json::from_str(&a.policies).unwrap_or_default(),
                    state: ApprovalState::parse(&a.state)?,
                    created_at: a.created_at,
                    expires_at: a.expires_at,
                    decided_at: a.decided_at,
                    decided_by: a.decided_by,
                    note: a.note,
                    used_jti: a.used_jti,
                },
                now,
            ))
        })
        .transpose()?;
    let last_call = json::<CallRow>("call", row.try_get(4)?)?.map(|c| Call { jti: c.jti, task: c.task, tool: c.tool, at: c.at });
    let counted: i64 = row.try_get(5)?;
    let tools: Vec<String> = row.try_get(6)?;
    let overflowed: bool = row.try_get(7)?;
    let entries: Vec<TaintRow> = json("taint", row.try_get(8)?)?.unwrap_or_default();
    let entries: HashMap<String, Source> = entries.into_iter().map(|e| (e.value, Source { call: e.call, tool: e.tool, origin: e.origin })).collect();
    Ok(RequestState {
        task,
        quarantined,
        parent,
        approval,
        last_call,
        ledger: TaintLedger::from_lookup(entries, tools, overflowed),
        rate: u32::try_from(counted.saturating_add(1)).unwrap_or(u32::MAX),
    })
}

/// An allowed request, one statement ([`grant_sql`]).
/// [`grant`]'s statements, built once: with the `intent` record, and with
/// the `call.forwarded` record too (`jit_call`).
static GRANT: [LazyLock<String>; 2] = [LazyLock::new(|| grant_sql(1)), LazyLock::new(|| grant_sql(2))];

/// Parameters: `$1` now (the records' time too), then the audit records'
/// (five each, from `$2`), then the grant's own, numbered after those.
/// `go`: the task is active in the token's phase, the agent is not
/// quarantined, and the approval (if any) was spent by this statement.
fn grant_sql(records: usize) -> String {
    let base = 2 + 5 * records;
    let p = |i: usize| format!("${}", base + i);
    format!(
        "WITH {HEAD_CTE},
         counted AS ({count}),
         over AS (SELECT {limit}::BIGINT IS NOT NULL
                         AND COALESCE((SELECT total FROM counted), {window}) > {limit}::BIGINT AS over),
         ok AS (SELECT 1 FROM tasks t WHERE t.id = {task}::TEXT AND t.state = 'active' AND t.current_phase = {phase}::BIGINT AND t.expires_at > $1::BIGINT
                AND EXISTS (SELECT 1 FROM audit_head_locked)
                AND NOT EXISTS (SELECT 1 FROM quarantine q WHERE q.agent = {agent}::TEXT) FOR SHARE OF t),
         allowed AS (SELECT 1 FROM ok WHERE NOT (SELECT over FROM over)),
         spent AS (UPDATE approvals SET state = 'used', used_jti = {jti}::TEXT
                   WHERE {approval}::TEXT IS NOT NULL AND id = {approval}::TEXT AND state = 'approved' AND expires_at > $1::BIGINT AND EXISTS (SELECT 1 FROM allowed)
                   RETURNING 1),
         go AS (SELECT 1 FROM allowed WHERE {approval}::TEXT IS NULL OR EXISTS (SELECT 1 FROM spent)),
         tok AS (INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at, changed_at)
                 SELECT {jti}::TEXT, {task}::TEXT, {agent}::TEXT, {sid}::TEXT, {tool}::TEXT, {phase}::BIGINT, {state}::TEXT, {issued}::BIGINT, {expires}::BIGINT, {changed}::BIGINT FROM go
                 RETURNING 1),
         intent AS (INSERT INTO intents(jti, agent, task, tool, shape, at) SELECT {jti}::TEXT, {agent}::TEXT, {task}::TEXT, {tool}::TEXT, {shape}::TEXT, {intent_at}::BIGINT FROM go),
         called AS (INSERT INTO calls(agent, task, tool, jti, at) SELECT {agent}::TEXT, {task}::TEXT, {tool}::TEXT, {jti}::TEXT, $1::BIGINT FROM go WHERE {consumed}::BOOLEAN),
         {chain}
         SELECT EXISTS (SELECT 1 FROM tok), EXISTS (SELECT 1 FROM ok),
                EXISTS (SELECT 1 FROM quarantine WHERE agent = {agent}::TEXT),
                (SELECT to_jsonb(t)::TEXT FROM tasks t WHERE t.id = {task}::TEXT),
                (SELECT over FROM over), COALESCE((SELECT total FROM counted), {window})",
        chain = chain_ctes(records, 2, "EXISTS (SELECT 1 FROM go)"),
        // After the head, as every other lock of the statement.
        count = count_cte(&p(2), "$1", &format!("{}::BOOLEAN AND EXISTS (SELECT 1 FROM audit_head_locked)", p(14))),
        window = window_sum(&p(2), &format!("$1::BIGINT - {WINDOW_SECS}")),
        limit = p(15),
        jti = p(0),
        task = p(1),
        agent = p(2),
        sid = p(3),
        tool = p(4),
        phase = p(5),
        state = p(6),
        issued = p(7),
        expires = p(8),
        changed = p(9),
        shape = p(10),
        intent_at = p(11),
        approval = p(12),
        consumed = p(13),
    )
}

/// [`grant`]'s statement and parameters, owned.
pub(super) struct GrantArgs {
    records: usize,
    now: i64,
    chain: ChainArgs,
    jti: String,
    task: String,
    agent: String,
    sid: String,
    tool: String,
    phase: i64,
    state: &'static str,
    issued_at: i64,
    expires_at: i64,
    changed: Option<i64>,
    shape: String,
    intent_at: i64,
    approval: Option<String>,
    consumed: bool,
    count: bool,
    limit: Option<i64>,
    /// For the outcome: the token's phase.
    token_phase: usize,
}

impl GrantArgs {
    pub(super) fn of(g: &Grant<'_>) -> Self {
        let events: Vec<&crate::audit::Event> = std::iter::once(g.record).chain(g.forwarded).collect();
        let t = g.token;
        let consumed = g.forwarded.is_some();
        Self {
            records: events.len(),
            now: g.now,
            chain: ChainArgs::of(&events, g.now),
            jti: t.jti.clone(),
            task: t.task.clone(),
            agent: t.agent.clone(),
            sid: t.sid.clone(),
            tool: t.tool.clone(),
            phase: to_i64(t.phase),
            state: if consumed { "consumed" } else { "issued" },
            issued_at: t.issued_at,
            expires_at: t.expires_at,
            changed: consumed.then_some(g.now),
            shape: g.intent.shape.clone(),
            intent_at: g.intent.at,
            approval: g.approval.map(str::to_owned),
            consumed,
            count: g.count,
            limit: g.rate_within.map(i64::from),
            token_phase: t.phase,
        }
    }

    pub(super) fn sql(&self) -> &'static str {
        GRANT[self.records - 1].as_str()
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.now];
        self.chain.push_params(&mut params);
        params.extend([
            &self.jti as &(dyn ToSql + Sync),
            &self.task,
            &self.agent,
            &self.sid,
            &self.tool,
            &self.phase,
            &self.state,
            &self.issued_at,
            &self.expires_at,
            &self.changed,
            &self.shape,
            &self.intent_at,
            &self.approval,
            &self.consumed,
            &self.count,
            &self.limit,
        ]);
        params
    }

    /// What the statement's row says the grant did.
    pub(super) fn outcome(&self, row: &Row) -> Result<Granted, Fail> {
        let (written, task_ok, quarantined): (bool, bool, bool) = (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?);
        let (over, rate): (bool, i64) = (row.try_get(4)?, row.try_get(5)?);
        if written {
            return Ok(Granted::Recorded);
        }
        if quarantined {
            return Ok(Granted::Quarantined);
        }
        if task_ok && over {
            return Ok(Granted::RateExceeded(u32::try_from(rate).unwrap_or(u32::MAX)));
        }
        if task_ok {
            return Ok(Granted::ApprovalUsed);
        }
        let task = json::<TaskRow>("task", row.try_get(3)?)?;
        Ok(Granted::TaskChanged(match task {
            None => Consumption::Unknown,
            Some(task) => {
                let current_phase = to_usize(task.current_phase);
                let at = TaskAt { state: TaskState::parse(&task.state)?, current_phase, expires_at: task.expires_at, end_reason: task.end_reason };
                // Active, in the token's phase, yet not granted: the
                // statement read the task before a change it then waited for.
                at.refuses(self.token_phase, self.now).unwrap_or(Consumption::PhaseOver { token_phase: self.token_phase, current_phase })
            }
        }))
    }
}

pub(super) fn grant(c: &mut impl GenericClient, g: &Grant<'_>) -> Result<Granted, Fail> {
    let args = GrantArgs::of(g);
    let row = c.query_one(args.sql(), &args.params())?;
    args.outcome(&row)
}

/// [`consume_for_call`]'s statement, built once.
pub(super) static CONSUME: LazyLock<String> = LazyLock::new(|| {
    format!(
        "WITH {HEAD_CTE},
         live AS (SELECT k.jti FROM tokens k JOIN tasks t ON t.id = k.task
                  WHERE k.jti = $7::TEXT AND k.state = 'issued' AND t.state = 'active' AND t.current_phase = k.phase AND t.expires_at > $1::BIGINT
                    AND EXISTS (SELECT 1 FROM audit_head_locked)
                  FOR SHARE OF t),
         used AS (UPDATE tokens SET state = 'consumed', changed_at = $1::BIGINT WHERE jti IN (SELECT jti FROM live) AND state = 'issued' RETURNING jti),
         {chain}
         SELECT EXISTS (SELECT 1 FROM used)",
        chain = chain_ctes(1, 2, "EXISTS (SELECT 1 FROM used)"),
    )
});

/// [`consume_for_call`]'s parameters, owned.
pub(super) struct ConsumeArgs {
    now: i64,
    chain: ChainArgs,
    jti: String,
}

impl ConsumeArgs {
    pub(super) fn of(jti: &str, forwarded: &crate::audit::Event, now: i64) -> Self {
        Self { now, chain: ChainArgs::of(&[forwarded], now), jti: jti.to_owned() }
    }

    pub(super) fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        let mut params: Vec<&(dyn ToSql + Sync)> = vec![&self.now];
        self.chain.push_params(&mut params);
        params.push(&self.jti);
        params
    }
}

/// Consume and record, one statement; false when the token was not
/// consumable (the caller asks why).
pub(super) fn consume_for_call(c: &mut impl GenericClient, jti: &str, forwarded: &crate::audit::Event, now: i64) -> Result<bool, Fail> {
    let args = ConsumeArgs::of(jti, forwarded, now);
    Ok(c.query_one(CONSUME.as_str(), &args.params())?.try_get(0)?)
}


/// [`count_request`]'s statement, built once.
/// The head is locked first, as by every other write of this store: a count
/// committed in a batch with other units holds its window row until the
/// batch commits, and a window row taken before the head would deadlock
/// with a grant or a release of the same agent (head, then window row).
pub(super) static COUNT: LazyLock<String> = LazyLock::new(|| {
    format!("WITH {HEAD_CTE}, counted AS ({}) SELECT total FROM counted", count_cte("$1", "$2", "EXISTS (SELECT 1 FROM audit_head_locked)"))
});

/// Count a request and give the agent's window with it, one statement.
pub(super) fn count_request(c: &mut impl GenericClient, agent: &str, now: i64) -> Result<u32, Fail> {
    let total: i64 = c.query_one(COUNT.as_str(), &[&agent, &now])?.try_get(0)?;
    Ok(u32::try_from(total).unwrap_or(u32::MAX))
}
