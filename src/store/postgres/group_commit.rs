//! Group commit for the request path's writes on PostgreSQL.
//!
//! Every write of the request path (a grant, a call's consumption, an audit
//! record, a request count) appends to the one audit chain or counts in an
//! agent's window, so concurrent writes queue on the chain's head row, one
//! commit (one WAL flush) after another. Here one writer task per store
//! takes whatever writes are waiting when it is free (up to
//! [`MAX_BATCH`]; none is held back to wait for company, so a lone write
//! costs what it did) and commits them in one transaction, sent as one
//! pipelined flight: `BEGIN`, each unit's statement in arrival order, then
//! `COMMIT`. The chain's order is the batch's order, and each statement
//! hashes its records onto the head the one before left, as ever.
//!
//! Fail closed, and no unit pays for another: a caller hears of its unit
//! only once the batch's `COMMIT` has succeeded. When PostgreSQL refused a
//! statement of the batch, it rolled the whole transaction back (nothing of
//! it committed), and each unit then runs alone, so the unit that failed
//! fails on its own. When the connection broke instead, nobody can know
//! whether the batch committed: every unit in it fails, and none is run
//! again (a call whose consumption may have committed is not forwarded;
//! its token is spent).

use std::future::Future;
use std::pin::Pin;
use std::sync::Mutex;
use std::task::Poll;

use ::postgres::Row;
use ::postgres::types::ToSql;
use deadpool_postgres::Pool;
use futures::TryFutureExt as _;
use tokio::sync::{mpsc, oneshot};

use super::audit::AppendArgs;
use super::units::{self, ConsumeArgs, GrantArgs};
use super::Fail;
use crate::store::StoreError;

/// Most units in one transaction.
const MAX_BATCH: usize = 64;
/// Writes waiting for the writer before callers wait to hand theirs over.
const QUEUE: usize = 1024;

/// A unit of work to commit, with what its statement needs.
pub(super) enum Work {
    Grant(GrantArgs),
    Consume(ConsumeArgs),
    Append(AppendArgs),
    /// Count a request of this agent at this time.
    Count(String, i64),
}

impl Work {
    fn sql(&self) -> &'static str {
        match self {
            Work::Grant(a) => a.sql(),
            Work::Consume(_) => units::CONSUME.as_str(),
            Work::Append(_) => super::audit::APPEND.as_str(),
            Work::Count(..) => units::COUNT.as_str(),
        }
    }

    fn params(&self) -> Vec<&(dyn ToSql + Sync)> {
        match self {
            Work::Grant(a) => a.params(),
            Work::Consume(a) => a.params(),
            Work::Append(a) => a.params(),
            Work::Count(agent, now) => vec![agent as &(dyn ToSql + Sync), now],
        }
    }
}

struct Job {
    work: Work,
    done: oneshot::Sender<(Work, Result<Row, Fail>)>,
}

/// The store's writer: started on first use, on the runtime that uses it
/// (and again should that runtime have ended).
pub(super) struct GroupCommit {
    pool: Pool,
    writer: Mutex<Option<mpsc::Sender<Job>>>,
}

impl GroupCommit {
    pub(super) fn new(pool: Pool) -> Self {
        Self { pool, writer: Mutex::new(None) }
    }

    /// Commit `work` with whatever other writes are waiting: the work back
    /// and its statement's row, once the transaction has committed.
    pub(super) async fn commit(&self, work: Work) -> Result<(Work, Row), StoreError> {
        let (done, answer) = oneshot::channel();
        if self.sender().send(Job { work, done }).await.is_err() {
            return Err(StoreError::Backend("the PostgreSQL store's writer stopped; try again".into()));
        }
        match answer.await {
            Ok((work, outcome)) => Ok((work, outcome?)),
            // The writer ended with the job (its runtime shut down): the
            // unit's fate is unknown to this caller, which refuses.
            Err(_) => Err(StoreError::Backend("the PostgreSQL store's writer stopped before answering; the unit may or may not have been committed".into())),
        }
    }

    fn sender(&self) -> mpsc::Sender<Job> {
        // The slot holds a channel only: one a panicking thread left is usable.
        let mut slot = self.writer.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(sender) = slot.as_ref().filter(|s| !s.is_closed()) {
            return sender.clone();
        }
        let (sender, jobs) = mpsc::channel(QUEUE);
        tokio::spawn(write(self.pool.clone(), jobs));
        *slot = Some(sender.clone());
        sender
    }
}

/// The writer: a batch of whatever is waiting, committed, answered; again.
async fn write(pool: Pool, mut jobs: mpsc::Receiver<Job>) {
    let mut batch = Vec::with_capacity(MAX_BATCH);
    while jobs.recv_many(&mut batch, MAX_BATCH).await > 0 {
        let works: Vec<&Work> = batch.iter().map(|j| &j.work).collect();
        let outcomes = commit_batch(&pool, &works).await;
        for (job, outcome) in batch.drain(..).zip(outcomes) {
            // A caller that went away (its request was cancelled) is not
            // told; what committed stays committed.
            let _ = job.done.send((job.work, outcome));
        }
    }
}

/// One outcome per unit, in order.
async fn commit_batch(pool: &Pool, works: &[&Work]) -> Vec<Result<Row, Fail>> {
    if let [one] = works {
        return vec![alone(pool, one).await];
    }
    match together(pool, works).await {
        Together::Committed(rows) => rows.into_iter().map(Ok).collect(),
        Together::RolledBack => {
            let mut outcomes = Vec::with_capacity(works.len());
            for work in works {
                outcomes.push(alone(pool, work).await);
            }
            outcomes
        }
        Together::Unknown(why) => works.iter().map(|_| Err(Fail::Store(StoreError::Backend(why.clone())))).collect(),
    }
}

enum Together {
    Committed(Vec<Row>),
    /// PostgreSQL refused a statement (or the commit) and rolled the
    /// transaction back: nothing of it committed.
    RolledBack,
    /// The batch may or may not have committed (the connection broke), or
    /// never started: every unit fails with this.
    Unknown(String),
}

/// A request of the batch's flight: none, or the unit's row.
type Step<'a> = Pin<Box<dyn Future<Output = Result<Option<Row>, ::postgres::Error>> + Send + 'a>>;

async fn together(pool: &Pool, works: &[&Work]) -> Together {
    let client = match pool.get().await {
        Ok(c) => c,
        Err(e) => return Together::Unknown(super::async_units::pool_error(e).to_string()),
    };
    let mut statements = Vec::with_capacity(works.len());
    for work in works {
        match client.prepare_cached(work.sql()).await {
            Ok(s) => statements.push(s),
            Err(e) => return Together::Unknown(StoreError::from(e).to_string()),
        }
    }
    let params: Vec<Vec<&(dyn ToSql + Sync)>> = works.iter().map(|w| w.params()).collect();
    let mut steps: Vec<Step<'_>> = Vec::with_capacity(works.len() + 2);
    steps.push(Box::pin(client.batch_execute("BEGIN").map_ok(|()| None)));
    for (statement, params) in statements.iter().zip(&params) {
        steps.push(Box::pin(client.query_one(statement, params).map_ok(Some)));
    }
    steps.push(Box::pin(client.batch_execute("COMMIT").map_ok(|()| None)));
    // The client sends a request when its future is first polled: polled
    // once each, in order, the whole batch leaves in one flight and in this
    // order; then the answers are awaited.
    let mut outcomes = Vec::with_capacity(steps.len());
    for step in &mut steps {
        outcomes.push(match futures::poll!(step.as_mut()) {
            Poll::Ready(r) => Some(r),
            Poll::Pending => None,
        });
    }
    let mut results = Vec::with_capacity(steps.len());
    for (step, outcome) in steps.into_iter().zip(outcomes) {
        results.push(match outcome {
            Some(r) => r,
            None => step.await,
        });
    }
    // A statement PostgreSQL refused aborts the transaction, and its COMMIT
    // then rolls back (answering ROLLBACK, not an error): any refusal means
    // nothing committed. An error that is not PostgreSQL's answer (the
    // connection broke) leaves it unknown.
    if let Some(broken) = results.iter().find_map(|r| r.as_ref().err().filter(|e| e.as_db_error().is_none())) {
        let detail = std::error::Error::source(broken).map_or_else(|| broken.to_string(), |cause| format!("{broken}: {cause}"));
        return Together::Unknown(format!("{detail}; whether the units committed with it were written is unknown"));
    }
    if results.iter().any(Result::is_err) {
        return Together::RolledBack;
    }
    Together::Committed(results.into_iter().filter_map(|r| r.ok().flatten()).collect())
}

/// One unit in a statement of its own (it commits on its own).
async fn alone(pool: &Pool, work: &Work) -> Result<Row, Fail> {
    super::async_units::run_one(pool, work.sql(), &work.params()).await
}
