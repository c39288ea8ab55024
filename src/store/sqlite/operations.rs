//! The [`Store`] trait on SQLite: each operation is one `IMMEDIATE`
//! transaction. The request path's units of work are in `units`.

#[allow(unused_imports)]
use super::*;

impl Store for SqliteStore {
    fn create_task(&self, t: &Task) -> Result<(), StoreError> {
        let phases = serde_json::to_string(&t.phases).map_err(|e| StoreError::Backend(e.to_string()))?;
        self.conn().prepare_cached("INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")?.execute(params![t.id, t.agent, t.sid, t.objective, phases, to_i64(t.current_phase), t.state.as_str(), t.created_at, t.expires_at])?;
        Ok(())
    }

    fn begin_task(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, now: i64) -> Result<crate::store::BeginTask, StoreError> {
        self.begin_task_under(t, session, event, max_active, None, now)
    }

    fn begin_delegated_task(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, delegation: &str, now: i64) -> Result<crate::store::BeginTask, StoreError> {
        self.begin_task_under(t, session, event, max_active, Some(delegation), now)
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        task_by_id(&self.conn(), id)
    }

    fn advance_phase(&self, task: &str, from: usize, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let moved = tx.prepare_cached("UPDATE tasks SET current_phase=current_phase+1 WHERE id=?1 AND state='active' AND current_phase=?2 AND expires_at>?3")?.execute(params![task, to_i64(from), now])?;
        if moved == 1 {
            revoke_in(&tx, &Scope::Phase(task.to_owned()), &format!("phase {} ended", from + 1), now, TaskState::Active)?;
        }
        tx.commit()?;
        Ok(moved == 1)
    }

    fn end_task(&self, task: &str, outcome: &str, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let active: bool = tx.prepare_cached("SELECT state='active' FROM tasks WHERE id=?1")?.query_row(params![task], |r| r.get(0)).optional()?.unwrap_or(false);
        if active {
            revoke_in(&tx, &Scope::Task(task.to_owned()), &format!("task ended: {outcome}"), now, TaskState::Ended)?;
        }
        tx.commit()?;
        Ok(active)
    }

    fn record_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.conn().prepare_cached("INSERT INTO tokens(jti, task, agent, sid, tool, phase, state, issued_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,'issued',?7,?8)")?.execute(params![t.jti, t.task, t.agent, t.sid, t.tool, to_i64(t.phase), t.issued_at, t.expires_at])?;
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
        self.conn().prepare_cached("INSERT OR IGNORE INTO sessions(sid, agent, opened_at, instance) VALUES (?1,?2,?3,?4)")?.execute(params![sid, agent, now, instance])?;
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


    fn read_request(&self, read: &crate::store::RequestRead) -> Result<crate::store::RequestState, StoreError> {
        units::read_request(&mut self.conn(), read)
    }

    fn grant(&self, grant: &crate::store::Grant<'_>) -> Result<crate::store::Granted, StoreError> {
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
        let n = self.conn().prepare_cached("UPDATE approvals SET state='used', used_jti=?2 WHERE id=?1 AND state='approved' AND expires_at > ?3")?.execute(params![id, jti, now])?;
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
        let n = tx.prepare_cached("UPDATE break_glass SET reviewed_at=?2, reviewed_by=?3, note=?4 WHERE id=?1 AND reviewed_at IS NULL")?.execute(params![id, now, by, note])?;
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
        tx.prepare_cached("INSERT OR IGNORE INTO quarantine(agent, reason, since) VALUES (?1,?2,?3)")?.execute(params![agent, reason, now])?;
        let scope = Scope::Agent(agent.to_owned());
        let why = format!("quarantined: {reason}");
        let (tokens, seq) = revoke_in(&tx, &scope, &why, now, TaskState::Revoked)?;
        tx.commit()?;
        Ok(Revocation { seq, scope, reason: why, at: now, tokens })
    }

    fn release(&self, agent: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let n = tx.prepare_cached("INSERT INTO quarantine_releases(agent, reason, since, released_at, released_by, note)
             SELECT agent, reason, since, ?2, ?3, ?4 FROM quarantine WHERE agent=?1")?.execute(params![agent, now, by, note])?;
        tx.prepare_cached("DELETE FROM quarantine WHERE agent=?1")?.execute(params![agent])?;
        if n == 1 {
            // A person looked at the burst that quarantined it: its rate
            // window starts again, or the next request would drift at once.
            tx.prepare_cached("DELETE FROM request_counts WHERE agent=?1")?.execute(params![agent])?;
            audit::append_in(&tx, event, now)?;
        }
        tx.commit()?;
        Ok(n == 1)
    }

    fn ask_end_user(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64, expires_at: i64, record: &crate::audit::Event) -> Result<(), StoreError> {
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(rusqlite::TransactionBehavior::Immediate)?;
        // Questions and declines are kept until they expire.
        tx.prepare_cached("DELETE FROM confirmations WHERE expires_at <= ?1")?.execute(params![now])?;
        tx.prepare_cached("INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6)")?.execute(params![id, agent, task, digest, now, expires_at])?;
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
        tx.prepare_cached("INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at, answered_at, declined) VALUES (?1,?2,?3,?4,?5,?6,?5,1)")?.execute(params![format!("d_{}", hex::encode(id)), agent, task, digest, now, until])?;
        // Every other open question about this request is closed with it.
        tx.prepare_cached("UPDATE confirmations SET answered_at=?3 WHERE agent=?1 AND digest=?2 AND answered_at IS NULL")?.execute(params![agent, digest, now])?;
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

    fn record_observed(&self, t: &Task, i: &Intent, record: &crate::audit::Event, now: i64) -> Result<(), StoreError> {
        let phases = serde_json::to_string(&t.phases).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        tx.prepare_cached("INSERT OR IGNORE INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9)")?
            .execute(params![t.id, t.agent, t.sid, t.objective, phases, to_i64(t.current_phase), t.state.as_str(), t.created_at, t.expires_at])?;
        tx.prepare_cached("INSERT INTO intents(jti, agent, task, tool, shape, at) VALUES (?1,?2,?3,?4,?5,?6)")?
            .execute(params![i.jti, i.agent, i.task, i.tool, i.shape, i.at])?;
        tx.prepare_cached("INSERT INTO calls(agent, task, tool, jti, at) VALUES (?1,?2,?3,?4,?5)")?.execute(params![i.agent, i.task, i.tool, i.jti, now])?;
        audit::append_in(&tx, record, now).map_err(units::audit_error)?;
        tx.commit()?;
        Ok(())
    }

    fn create_delegation(&self, d: &crate::store::Delegation, record: &crate::audit::Event, max: usize, now: i64) -> Result<bool, StoreError> {
        let phases = serde_json::to_string(&d.phases).map_err(|e| StoreError::Backend(e.to_string()))?;
        let mut conn = self.conn();
        let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let made: i64 = tx.prepare_cached("SELECT count(*) FROM delegations WHERE parent_task = ?1")?.query_row(params![d.parent_task], |r| r.get(0))?;
        if usize::try_from(made).unwrap_or(usize::MAX) >= max {
            return Ok(false);
        }
        tx.prepare_cached("INSERT INTO delegations(id, parent_task, parent_agent, child_agent, objective, phases, constraints, depth, created_at, expires_at, child_task) VALUES (?1,?2,?3,?4,?5,?6,?7,?8,?9,?10,NULL)")?.execute(params![
            d.id, d.parent_task, d.parent_agent, d.child_agent, d.objective, phases, d.constraints, i64::from(d.depth), d.created_at, d.expires_at
        ])?;
        audit::append_in(&tx, record, now).map_err(units::audit_error)?;
        tx.commit()?;
        Ok(true)
    }

    fn delegation(&self, id: &str) -> Result<Option<crate::store::Delegation>, StoreError> {
        delegation_where(&self.conn(), "id = ?1", id)
    }

    fn delegation_of_task(&self, task: &str) -> Result<Option<crate::store::Delegation>, StoreError> {
        delegation_where(&self.conn(), "child_task = ?1", task)
    }

    fn claim_delegation(&self, id: &str, task: &str, now: i64) -> Result<bool, StoreError> {
        let n = self.conn().prepare_cached("UPDATE delegations SET child_task = ?1 WHERE id = ?2 AND child_task IS NULL AND expires_at > ?3")?.execute(params![task, id, now])?;
        Ok(n == 1)
    }

    fn orphaned_delegated_tasks(&self, now: i64) -> Result<Vec<String>, StoreError> {
        let conn = self.conn();
        let mut stmt = conn.prepare(
            "SELECT c.id FROM delegations d JOIN tasks c ON c.id = d.child_task JOIN tasks p ON p.id = d.parent_task
             WHERE d.expires_at > ?1 AND c.state = 'active' AND (p.state <> 'active' OR p.expires_at <= ?1)",
        )?;
        let rows = stmt.query_map(params![now], |r| r.get::<_, String>(0))?;
        rows.map(|r| r.map_err(StoreError::from)).collect()
    }

    fn last_call_of(&self, agent: &str) -> Result<Option<crate::store::Call>, StoreError> {
        last_call_of(&self.conn(), agent, false)
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
        self.conn().prepare_cached("INSERT INTO audit_checkpoints(seq, hash, at, jws) VALUES (?1,?2,?3,?4)")?.execute(params![c.seq, c.hash, c.at, c.jws])?;
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
