//! Durable state: tasks, issued capability tokens, sessions, revocations.
//!
//! The [`Store`] trait is the only way the gateway reads or changes this
//! state, and it is the revocation authority: there is no cache in front of
//! it, so a revoked or consumed token fails on the next verification, after a
//! restart, and in any other process using the same store (the `jitgate
//! revoke` command writes straight into it).
//!
//! Methods are synchronous; async callers run them on the blocking pool.
//! Every error is a refusal for the caller (fail closed).

mod delegations;
mod human;
mod postgres;
mod sqlite;
pub mod units;

pub use delegations::{DELEGATED_TASK_PREFIX, Delegation};
pub use human::{Approval, ApprovalState, BreakGlassGrant, DecideOutcome, Intent, Quarantine};

pub use postgres::{PgTls, PostgresStore, direct_client as postgres_client};
pub use sqlite::{STORE_FILE, SqliteStore};

use serde::{Deserialize, Serialize};

/// A store failure. Callers refuse the operation that needed the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("state store error: {0}; the request was refused (fail closed)")]
    Backend(String),
    #[error("corrupt record in the state store: {0}")]
    Corrupt(String),
    #[error("the audit record could not be written ({0}); the request was refused (fail closed)")]
    Audit(String),
}

impl StoreError {
    /// Stable reason code for the refusal this error causes.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::Audit(_) => "audit_unavailable",
            _ => "store_unavailable",
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(e: rusqlite::Error) -> Self {
        StoreError::Backend(e.to_string())
    }
}

impl From<::postgres::Error> for StoreError {
    fn from(e: ::postgres::Error) -> Self {
        // The driver's own text is only "db error"; the cause is the
        // server's message (or the I/O error) underneath.
        let detail = match e.as_db_error() {
            Some(db) => Some(db.message().to_owned()),
            None => std::error::Error::source(&e).map(|s| s.to_string()),
        };
        StoreError::Backend(match detail {
            Some(d) => format!("{e}: {d}"),
            None => e.to_string(),
        })
    }
}

/// The audit record of a revocation. The store writes it in the
/// transaction that revokes, so one revocation is one record whichever
/// process made it (a gateway, `jitgate revoke` while none runs) and
/// however many gateways poll the revocation to cancel their in-flight
/// calls; a revocation whose record cannot be written does not happen.
pub fn revocation_event(scope: &Scope, reason: &str, tokens: u64, seq: i64) -> crate::audit::Event {
    let task = matches!(scope, Scope::Task(_) | Scope::Phase(_)).then(|| scope.target());
    let agent = matches!(scope, Scope::Agent(_)).then(|| scope.target());
    crate::audit::Event::new(
        "revocation",
        task,
        agent,
        serde_json::json!({"scope": scope.kind(), "target": scope.target(), "reason": reason, "tokens": tokens, "revocation_seq": seq}),
    )
}

/// Approvals end with their task. Every way a task ends (its end, its TTL,
/// a revocation of it, its agent or its session, a quarantine) ends its
/// pending and approved approvals in the same transaction: a pending one
/// stops waiting for a person and no longer counts against the agent's
/// `max_pending_approvals_per_agent`; an approved one can no longer be
/// spent. Their deadline becomes the task's end, so every binary, an older
/// replica's included, reads them as expired. This is the note they carry
/// (a pending approval has none of its own; a decided one keeps its
/// decider's).
pub fn approval_ended_with_task(reason: &str) -> String {
    format!("ended with its task ({reason})")
}

/// One phase of a task plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    /// Exposed tool names this phase expects to use.
    pub tools: Vec<String>,
}

/// Every tool a plan's phases name, once, sorted.
pub fn tools_of(phases: &[Phase]) -> Vec<String> {
    let mut v: Vec<String> = phases.iter().flat_map(|p| p.tools.iter().cloned()).collect();
    v.sort();
    v.dedup();
    v
}

/// Lifecycle of a task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TaskState {
    Active,
    Ended,
    Revoked,
    Expired,
}

impl TaskState {
    pub fn as_str(self) -> &'static str {
        match self {
            TaskState::Active => "active",
            TaskState::Ended => "ended",
            TaskState::Revoked => "revoked",
            TaskState::Expired => "expired",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "active" => TaskState::Active,
            "ended" => TaskState::Ended,
            "revoked" => TaskState::Revoked,
            "expired" => TaskState::Expired,
            other => return Err(StoreError::Corrupt(format!("task state {other}"))),
        })
    }
}

/// A task as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Task {
    pub id: String,
    pub agent: String,
    pub sid: String,
    pub objective: String,
    pub phases: Vec<Phase>,
    pub current_phase: usize,
    pub state: TaskState,
    pub created_at: i64,
    pub expires_at: i64,
    pub end_reason: Option<String>,
}

impl Task {
    /// The phase the task is in.
    pub fn phase(&self) -> Option<&Phase> {
        self.phases.get(self.current_phase)
    }
}

/// Lifecycle of a capability token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenState {
    Issued,
    Consumed,
    Revoked,
}

impl TokenState {
    pub fn as_str(self) -> &'static str {
        match self {
            TokenState::Issued => "issued",
            TokenState::Consumed => "consumed",
            TokenState::Revoked => "revoked",
        }
    }
    fn parse(s: &str) -> Result<Self, StoreError> {
        Ok(match s {
            "issued" => TokenState::Issued,
            "consumed" => TokenState::Consumed,
            "revoked" => TokenState::Revoked,
            other => return Err(StoreError::Corrupt(format!("token state {other}"))),
        })
    }
}

/// A token as recorded when it was minted (never the token itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenRecord {
    pub jti: String,
    pub task: String,
    pub agent: String,
    pub sid: String,
    pub tool: String,
    pub phase: usize,
    pub state: TokenState,
    pub issued_at: i64,
    pub expires_at: i64,
    pub changed_at: Option<i64>,
    pub reason: Option<String>,
}

/// The result of trying to consume a token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Consumption {
    /// This call consumed it; it is dead for everyone else.
    Consumed,
    /// Someone already used it (replay).
    AlreadyConsumed { at: i64 },
    /// Revoked, with the reason.
    Revoked { reason: String },
    /// Its task is no longer active (ended, revoked, expired).
    TaskInactive { state: TaskState, reason: Option<String> },
    /// Its task moved to another phase.
    PhaseOver { token_phase: usize, current_phase: usize },
    /// No such token was ever issued by this store.
    Unknown,
}

/// A task as a use (or a grant) of one of its tokens is judged against it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TaskAt {
    pub state: TaskState,
    pub current_phase: usize,
    pub expires_at: i64,
    pub end_reason: Option<String>,
}

impl TaskAt {
    /// Why this task admits no token of `token_phase` at `now` (`None`: it
    /// does): expired, in another phase, or no longer active. Both stores
    /// judge consumption and grants by this one rule.
    pub(crate) fn refuses(self, token_phase: usize, now: i64) -> Option<Consumption> {
        match self.state {
            TaskState::Active if self.expires_at <= now => Some(Consumption::TaskInactive { state: TaskState::Expired, reason: Some("task TTL expired".into()) }),
            TaskState::Active if token_phase != self.current_phase => Some(Consumption::PhaseOver { token_phase, current_phase: self.current_phase }),
            TaskState::Active => None,
            state => Some(Consumption::TaskInactive { state, reason: self.end_reason }),
        }
    }
}

/// Why a token cannot be consumed now (`None`: it can), from its state (with
/// when it changed and why) and its task's.
pub(crate) fn consumption_refusal(state: TokenState, changed_at: Option<i64>, reason: Option<String>, token_phase: usize, task: TaskAt, now: i64) -> Option<Consumption> {
    match state {
        TokenState::Consumed => Some(Consumption::AlreadyConsumed { at: changed_at.unwrap_or(0) }),
        TokenState::Revoked => Some(Consumption::Revoked { reason: reason.unwrap_or_default() }),
        TokenState::Issued => task.refuses(token_phase, now),
    }
}

/// What a revocation applies to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    Token(String),
    Task(String),
    /// The live tokens of a task's phase that just ended (the task goes on).
    Phase(String),
    Agent(String),
    Session(String),
}

impl Scope {
    pub fn kind(&self) -> &'static str {
        match self {
            Scope::Token(_) => "token",
            Scope::Task(_) => "task",
            Scope::Phase(_) => "phase",
            Scope::Agent(_) => "agent",
            Scope::Session(_) => "session",
        }
    }
    pub fn target(&self) -> &str {
        match self {
            Scope::Token(t) | Scope::Task(t) | Scope::Phase(t) | Scope::Agent(t) | Scope::Session(t) => t,
        }
    }
}

/// A call that happened: a token consumed, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Call {
    pub jti: String,
    pub task: String,
    pub tool: String,
    pub at: i64,
}

/// A recorded revocation event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Revocation {
    pub seq: i64,
    pub scope: Scope,
    pub reason: String,
    pub at: i64,
    /// Tokens this revocation killed.
    pub tokens: u64,
}

/// Run a store operation from async code, on the blocking thread pool so
/// that SQLite I/O never stalls the runtime's workers. (Measured: running it
/// in place with `block_in_place` was slower under 16 concurrent clients.)
pub async fn run_blocking<T: Send + 'static>(
    store: &std::sync::Arc<dyn Store>,
    f: impl FnOnce(&dyn Store) -> T + Send + 'static,
) -> Result<T, StoreError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || f(store.as_ref())).await.map_err(|e| StoreError::Backend(format!("store task failed: {e}")))
}

/// Every audit record in order, read in pages, at most `max`.
pub fn all_audit_records(store: &dyn Store, max: usize) -> Result<Vec<crate::audit::Record>, StoreError> {
    const PAGE: usize = 10_000;
    let mut out = Vec::new();
    let mut after = 0;
    while out.len() < max {
        let page = store.audit_records(after, PAGE.min(max - out.len()))?;
        let Some(last) = page.last().map(|r| r.seq) else { break };
        after = last;
        out.extend(page);
    }
    Ok(out)
}

/// What [`Store::begin_task`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BeginTask {
    Created,
    /// The agent is quarantined, for this reason.
    Quarantined(String),
    /// The agent already holds this many active tasks.
    TooMany(usize),
    /// The delegation already has its task (or expired): nothing was written.
    DelegationUsed,
}

/// The ids of observe mode's tasks begin so. Their calls are the agent's
/// history for observed calls only: the just-in-time protocol's reads (the
/// last call a request follows, the plan a new task is compared with) skip
/// them, so that an observed call never stands in for an enforced one.
pub const OBSERVATION_TASK_PREFIX: &str = "obs_";

/// What an intent request reads before it is decided (the first of its
/// two units of work): everything, in one snapshot.
#[derive(Debug, Clone)]
pub struct RequestRead {
    pub agent: String,
    pub task: String,
    /// The call the request says it follows (a token id), if any.
    pub follows: Option<String>,
    /// The request's digest, to find a person's decision on exactly it.
    pub digest: Option<String>,
    pub probe: crate::taint::TaintProbe,
    pub now: i64,
}

/// The state an intent request is decided on.
#[derive(Debug, Clone)]
pub struct RequestState {
    pub task: Option<Task>,
    pub quarantined: Option<Quarantine>,
    /// The token `follows` names.
    pub parent: Option<TokenRecord>,
    /// The approval that decides this exact request
    /// ([`Store::approval_for_request`]).
    pub approval: Option<Approval>,
    pub last_call: Option<Call>,
    /// The agent's taint entries this request's probe can match
    /// ([`Store::taint_lookup`]).
    pub ledger: crate::taint::TaintLedger,
    /// The agent's requests in the last minute, this one included (as
    /// committed: requests decided at the same moment are not in it yet;
    /// [`Grant::rate_within`] makes the grant exact).
    pub rate: u32,
}

/// Everything an allowed request commits (the second unit of work), in one
/// transaction: the agent's request count, the approval it spends, the
/// token, the intent, its audit record, and, for `jit_call`, the token's
/// consumption and the forwarded call's audit record.
#[derive(Debug, Clone, Copy)]
pub struct Grant<'a> {
    pub token: &'a TokenRecord,
    pub intent: &'a Intent,
    /// The `intent` audit record.
    pub record: &'a crate::audit::Event,
    /// The approval spent on this token (one token per approval).
    pub approval: Option<&'a str>,
    /// `jit_call`: the token is spent at once, on the call this
    /// `call.forwarded` record describes.
    pub forwarded: Option<&'a crate::audit::Event>,
    /// Count the request in the agent's rate window (false when an earlier
    /// grant of this same request counted it already).
    pub count: bool,
    /// The request was decided on a rate within this limit: grant nothing
    /// if, counted with every request committed before it (exactly, also
    /// across processes), the agent's window holds more. A burst decided
    /// in parallel cannot each read the rate before the others count.
    pub rate_within: Option<u32>,
    pub now: i64,
}

/// What [`Store::grant`] did. Anything but `Recorded` wrote nothing (the
/// request count aside).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Granted {
    Recorded,
    /// The approval was spent by another request, or expired, meanwhile.
    ApprovalUsed,
    /// The agent was quarantined while the request was decided.
    Quarantined,
    /// The task ended, expired or moved to another phase meanwhile.
    TaskChanged(Consumption),
    /// The agent's window, this request counted, holds this many requests,
    /// over [`Grant::rate_within`]: the request is to be decided again on it.
    RateExceeded(u32),
}

/// The gateway's durable state.
pub trait Store: Send + Sync + 'static {
    /// The request path's units of work as futures, where the store's
    /// client is async (see [`units`]); `None` runs them on the blocking pool.
    fn units(&self) -> Option<&dyn units::AsyncUnits> {
        None
    }
    /// Open a task in its first phase (no checks; tests and tools).
    fn create_task(&self, task: &Task) -> Result<(), StoreError>;
    /// Begin a task in one transaction: refused when the agent is quarantined
    /// or already holds `max_active` active tasks; otherwise the audit record,
    /// the session row (handshake era: session id and instance) and the task
    /// are written together, so none exists without the others and two
    /// concurrent requests cannot both pass the cap.
    fn begin_task(&self, task: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, now: i64) -> Result<BeginTask, StoreError>;
    fn task(&self, id: &str) -> Result<Option<Task>, StoreError>;
    /// Move `task` from phase `from` to `from + 1`, revoking every live token
    /// of the task. Returns false (and changes nothing) if the task is not
    /// active in phase `from`.
    fn advance_phase(&self, task: &str, from: usize, now: i64) -> Result<bool, StoreError>;
    /// End an active task (`Ended`) and revoke its live tokens; its
    /// approvals end with it ([`approval_ended_with_task`]).
    fn end_task(&self, task: &str, outcome: &str, now: i64) -> Result<bool, StoreError>;
    /// Record a freshly minted token as issued.
    fn record_token(&self, token: &TokenRecord) -> Result<(), StoreError>;
    fn token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError>;
    /// Atomically consume: succeeds for exactly one caller, and only while the
    /// token is issued, its task active, in the token's phase and not expired.
    fn consume(&self, jti: &str, now: i64) -> Result<Consumption, StoreError>;
    /// Revoke (and, for tasks, end) everything in scope, with its audit
    /// record ([`revocation_event`]) in the same transaction. The approvals
    /// of every task it ends end with it.
    fn revoke(&self, scope: &Scope, reason: &str, now: i64) -> Result<Revocation, StoreError>;
    /// Mark active tasks past their TTL expired and revoke their tokens.
    fn expire_tasks(&self, now: i64) -> Result<Vec<String>, StoreError>;
    /// Revocations recorded after `seq` (by this or any other process).
    fn revocations_since(&self, seq: i64) -> Result<Vec<Revocation>, StoreError>;
    /// Task ids of an agent's active tasks.
    fn active_tasks_of(&self, agent: &str) -> Result<Vec<String>, StoreError>;
    /// Tasks newest first, begun at or after `since` (and, for `agent`,
    /// only that agent's), before the cursor `(created_at, id)`, at most `limit`.
    fn recent_tasks(&self, agent: Option<&str>, since: i64, before: Option<(i64, String)>, limit: usize) -> Result<Vec<Task>, StoreError>;
    /// Note a handshake-era session of `instance` that holds authority.
    fn session_opened(&self, sid: &str, agent: &str, instance: &str, now: i64) -> Result<(), StoreError>;

    /// A gateway process (`jitgate serve`) starts, holding a lease until `lease_until`.
    fn register_instance(&self, id: &str, kind: &str, now: i64, lease_until: i64) -> Result<(), StoreError>;
    /// Extend a running instance's lease. False if it had been ended (its
    /// lease lapsed and another process revoked what it held); the instance
    /// is live again from now on.
    fn renew_instance(&self, id: &str, lease_until: i64) -> Result<bool, StoreError>;
    /// An instance stops (or was found dead): revoke the handshake-era
    /// sessions it owned, nothing else. Idempotent.
    fn end_instance(&self, id: &str, reason: &str, now: i64) -> Result<Vec<Revocation>, StoreError>;
    /// Instances whose lease ran out without a clean stop.
    fn lapsed_instances(&self, now: i64) -> Result<Vec<String>, StoreError>;

    /// Remember values an untrusted tool returned to `agent` (at most `max`
    /// per agent; past that the agent's ledger is marked overflowed), each
    /// with where it was read ([`crate::taint::TaintEntry::origin`]).
    /// A value held already keeps its source and gains this read's origin
    /// (up to [`crate::taint::MAX_ORIGINS`]).
    fn record_taint(&self, agent: &str, entries: &[crate::taint::TaintEntry], source: &crate::taint::Source, now: i64, max: usize) -> Result<(), StoreError>;
    /// The agent's taint ledger.
    fn taint_ledger(&self, agent: &str) -> Result<crate::taint::TaintLedger, StoreError>;
    /// The entries of the agent's ledger that a request's probe can match,
    /// found by index (the whole ledger is never read for a request), with
    /// the tools whose untrusted output the agent read and the overflow mark.
    fn taint_lookup(&self, agent: &str, probe: &crate::taint::TaintProbe) -> Result<crate::taint::TaintLedger, StoreError>;
    /// Forget taint recorded before `before`; returns how many values went.
    fn forget_taint(&self, before: i64) -> Result<u64, StoreError>;
    /// Count an intent request of `agent` at `now`; returns how many fell in the last 60 s.
    fn count_request(&self, agent: &str, now: i64) -> Result<u32, StoreError>;

    /// Unit of work: what an intent request is decided on, in one snapshot.
    fn read_request(&self, read: &RequestRead) -> Result<RequestState, StoreError>;
    /// Unit of work: commit an allowed request, all or nothing, and only
    /// while its task is active in the token's phase and its agent is not
    /// quarantined, and (with [`Grant::rate_within`]) the agent's exact
    /// rate stays within the limit the request was decided on. The request
    /// is counted whatever the outcome (unless [`Grant::count`] is false).
    fn grant(&self, grant: &Grant<'_>) -> Result<Granted, StoreError>;
    /// Unit of work: consume a token for a call and write the call's
    /// `call.forwarded` record, in one transaction; the record is written
    /// only if this call consumed the token.
    fn consume_for_call(&self, jti: &str, forwarded: &crate::audit::Event, now: i64) -> Result<Consumption, StoreError>;
    /// Record a DPoP proof (key thumbprint and `jti`) until `expires_at`;
    /// true for its first use only, in any process sharing the store.
    fn dpop_proof_first_use(&self, jkt: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, StoreError>;

    /// Record a new pending approval.
    fn create_approval(&self, approval: &Approval) -> Result<(), StoreError>;
    /// Unit of work: open a pending approval with the request's `intent`
    /// record, in one transaction, unless the agent already waits for
    /// `max_pending` approvals (then nothing is written and the count is
    /// returned). Concurrent requests cannot both pass the cap.
    fn open_approval(&self, approval: &Approval, max_pending: usize, record: &crate::audit::Event, now: i64) -> Result<Option<usize>, StoreError>;
    /// How many approvals of `agent` are pending and unexpired.
    fn pending_approvals_of(&self, agent: &str, now: i64) -> Result<usize, StoreError>;
    fn approval(&self, id: &str, now: i64) -> Result<Option<Approval>, StoreError>;
    /// The approval that decides this exact request (by digest): a person's
    /// denial if there is one, however many approvals were opened after it
    /// (a denial holds in every task), else the newest, any state.
    fn approval_for_request(&self, digest: &str, now: i64) -> Result<Option<Approval>, StoreError>;
    /// Approvals, newest first; only pending and approved ones unless `all`.
    fn approvals(&self, all: bool, now: i64) -> Result<Vec<Approval>, StoreError>;
    /// A person approves (`approve`) or denies a pending, unexpired approval.
    /// An approval is usable until `use_until`.
    /// The decision and its audit record (`audit` builds it from the decided
    /// approval) are one transaction: no decision without its record.
    fn decide_approval(&self, id: &str, approve: bool, by: &str, note: &str, now: i64, use_until: i64, audit: &(dyn Fn(&Approval) -> crate::audit::Event + Sync)) -> Result<DecideOutcome, StoreError>;
    /// Spend an approved approval on token `jti`; true for exactly one caller.
    fn use_approval(&self, id: &str, jti: &str, now: i64) -> Result<bool, StoreError>;
    fn record_break_glass(&self, grant: &BreakGlassGrant) -> Result<(), StoreError>;
    /// Break-glass grants, newest first; only unreviewed ones unless `all`.
    fn break_glass_grants(&self, all: bool) -> Result<Vec<BreakGlassGrant>, StoreError>;
    /// A person signs a grant off, with its audit record in the same
    /// transaction; false (and no record) if there is no such open grant.
    fn ack_break_glass(&self, id: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError>;
    /// Quarantine an agent (by SPIFFE id): the quarantine, the revocation of
    /// everything it holds and the audit record are one transaction.
    fn quarantine(&self, agent: &str, reason: &str, event: &crate::audit::Event, now: i64) -> Result<Revocation, StoreError>;
    /// Release an agent with its audit record in the same transaction (its
    /// request-rate window starts again); false
    /// (and no record) if it was not quarantined.
    fn release(&self, agent: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError>;
    fn quarantined(&self, agent: &str) -> Result<Option<Quarantine>, StoreError>;
    /// Remember a question put to the agent's end user about one canonical
    /// request (`digest`) of one task, answerable until `expires_at`, with
    /// its `confirmation.asked` record, in one transaction.
    fn ask_end_user(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64, expires_at: i64, record: &crate::audit::Event) -> Result<(), StoreError>;
    /// Take the answer to question `id`: true exactly once, and only for the
    /// agent, task and request it was asked about, before it expires.
    fn take_end_user_answer(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64) -> Result<bool, StoreError>;
    /// The end user declined the agent's request `digest` (asked in `task`);
    /// the decline stands until `until`.
    fn record_end_user_decline(&self, agent: &str, task: &str, digest: &str, now: i64, until: i64) -> Result<(), StoreError>;
    /// Does a decline of the agent's request `digest` stand at `now`?
    fn end_user_declined(&self, agent: &str, digest: &str, now: i64) -> Result<bool, StoreError>;
    /// Record a token together with the intent it was granted for.
    fn record_token_and_intent(&self, token: &TokenRecord, intent: &Intent) -> Result<(), StoreError>;
    /// Observe mode: an observed call's observation task (created if it is
    /// not there), its intent (baselines learn from it), the call (the
    /// agent's last call) and its `call.observed` record, in one
    /// transaction, before the call is forwarded.
    fn record_observed(&self, task: &Task, intent: &Intent, record: &crate::audit::Event, now: i64) -> Result<(), StoreError>;
    /// A delegation and its `delegation.granted` record, in one transaction,
    /// unless its parent task already made `max` (false).
    fn create_delegation(&self, delegation: &Delegation, record: &crate::audit::Event, max: usize, now: i64) -> Result<bool, StoreError>;
    fn delegation(&self, id: &str) -> Result<Option<Delegation>, StoreError>;
    /// The delegation a task was begun under, if any.
    fn delegation_of_task(&self, task: &str) -> Result<Option<Delegation>, StoreError>;
    /// Bind the child's task to its delegation: true once, for an unexpired
    /// delegation no task was bound to yet.
    fn claim_delegation(&self, id: &str, task: &str, now: i64) -> Result<bool, StoreError>;
    /// [`Store::begin_task`] for a task begun under `delegation`, bound to
    /// it in the same transaction: a delegation that already has its task
    /// (or expired) begins nothing (`DelegationUsed`).
    fn begin_delegated_task(&self, task: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, delegation: &str, now: i64) -> Result<BeginTask, StoreError>;
    /// Active tasks begun under a delegation whose parent task is no longer
    /// active (ended, revoked or expired): their authority ended from the top.
    fn orphaned_delegated_tasks(&self, now: i64) -> Result<Vec<String>, StoreError>;
    /// The agent's latest call (a consumed token), in any task.
    fn last_call_of(&self, agent: &str) -> Result<Option<Call>, StoreError>;
    /// An agent's intents since `since`, oldest first (at most `limit`).
    fn intents_of(&self, agent: &str, since: i64, limit: usize) -> Result<Vec<Intent>, StoreError>;

    /// Append an audit record to the hash chain; returns its seq.
    fn append_audit(&self, event: &crate::audit::Event, now: i64) -> Result<i64, StoreError>;
    /// Audit records with seq > `after`, in order (at most `limit`).
    fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<crate::audit::Record>, StoreError>;
    /// Audit records of one task, in order.
    fn audit_of_task(&self, task: &str) -> Result<Vec<crate::audit::Record>, StoreError>;
    /// The last record's seq and hash, if any.
    fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError>;
    fn record_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError>;
    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError>;
}
