//! The [`Store`] trait on PostgreSQL: each operation is one transaction.
//! The request path's units of work are in `units`.

#[allow(unused_imports)]
use super::*;

impl Store for PostgresStore {
    fn units(&self) -> Option<&dyn crate::store::units::AsyncUnits> {
        Some(self)
    }

    fn create_task(&self, t: &Task) -> Result<(), StoreError> {
        let phases = phases_text(&t.phases)?;
        self.with_client(|c| insert_task(c, t, &phases))
    }

    fn begin_task(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, now: i64) -> Result<BeginTask, StoreError> {
        self.begin_task_under(t, session, event, max_active, None, now)
    }

    fn begin_delegated_task(&self, t: &Task, session: Option<(&str, &str)>, event: &crate::audit::Event, max_active: usize, delegation: &str, now: i64) -> Result<BeginTask, StoreError> {
        self.begin_task_under(t, session, event, max_active, Some(delegation), now)
    }

    fn task(&self, id: &str) -> Result<Option<Task>, StoreError> {
        self.with_client(|c| c.query_opt("SELECT * FROM tasks WHERE id=$1", &[&id])?.map(|r| task_from_row(&r)).transpose())
    }

    fn advance_phase(&self, task: &str, from: usize, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            // Conditional: of concurrent advances from the same phase, the
            // first to commit moves it; the others re-check the row as
            // committed and match nothing.
            let moved = tx.execute(
                "UPDATE tasks SET current_phase=current_phase+1 WHERE id=$1 AND state='active' AND current_phase=$2 AND expires_at>$3",
                &[&task, &to_i64(from), &now],
            )?;
            if moved == 1 {
                revoke_in(tx, &Scope::Phase(task.to_owned()), &format!("phase {} ended", from.saturating_add(1)), now, TaskState::Active)?;
            }
            Ok(moved == 1)
        })
    }

    fn end_task(&self, task: &str, outcome: &str, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            let state: Option<String> = tx.query_opt("SELECT state FROM tasks WHERE id=$1 FOR UPDATE", &[&task])?.map(|r| r.try_get(0)).transpose()?;
            let active = state.as_deref() == Some("active");
            if active {
                revoke_in(tx, &Scope::Task(task.to_owned()), &format!("task ended: {outcome}"), now, TaskState::Ended)?;
            }
            Ok(active)
        })
    }

    fn record_token(&self, t: &TokenRecord) -> Result<(), StoreError> {
        self.with_client(|c| insert_token(c, t))
    }

    fn token(&self, jti: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.with_client(|c| c.query_opt("SELECT * FROM tokens WHERE jti=$1", &[&jti])?.map(|r| token_from_row(&r)).transpose())
    }

    fn consume(&self, jti: &str, now: i64) -> Result<Consumption, StoreError> {
        self.transaction(|tx| consume_in(tx, jti, now))
    }

    fn revoke(&self, scope: &Scope, reason: &str, now: i64) -> Result<Revocation, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            let (tokens, seq) = revoke_in(tx, scope, reason, now, TaskState::Revoked)?;
            Ok(Revocation { seq, scope: scope.clone(), reason: reason.to_owned(), at: now, tokens })
        })
    }

    fn expire_tasks(&self, now: i64) -> Result<Vec<String>, StoreError> {
        // Every replica asks every second: the locks below (the audit's
        // among them) are taken only when some task has run out.
        let due = self.with_client(|c| Ok(c.query_opt("SELECT 1 FROM tasks WHERE state='active' AND expires_at<=$1 LIMIT 1", &[&now])?.is_some()))?;
        if !due {
            return Ok(Vec::new());
        }
        self.transaction(|tx| {
            // Under the revocation lock no other transaction changes a
            // task's state, so the list is exact; a second replica
            // expiring at the same moment finds nothing left.
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            let ids: Vec<String> = tx
                .query("SELECT id FROM tasks WHERE state='active' AND expires_at<=$1 ORDER BY expires_at, id", &[&now])?
                .iter()
                .map(|r| r.try_get(0))
                .collect::<Result<_, _>>()?;
            for id in &ids {
                revoke_in(tx, &Scope::Task(id.clone()), "task TTL expired", now, TaskState::Expired)?;
            }
            Ok(ids)
        })
    }

    fn revocations_since(&self, seq: i64) -> Result<Vec<Revocation>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT seq, scope, target, reason, at, tokens FROM revocations WHERE seq>$1 ORDER BY seq", &[&seq])?;
            let mut out = Vec::with_capacity(rows.len());
            for r in rows {
                let kind: String = r.try_get(1)?;
                let tokens: i64 = r.try_get(5)?;
                out.push(Revocation {
                    seq: r.try_get(0)?,
                    scope: scope_of(&kind, r.try_get(2)?)?,
                    reason: r.try_get(3)?,
                    at: r.try_get(4)?,
                    tokens: u64::try_from(tokens).unwrap_or(0),
                });
            }
            Ok(out)
        })
    }

    fn active_tasks_of(&self, agent: &str) -> Result<Vec<String>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT id FROM tasks WHERE agent=$1 AND state='active' ORDER BY created_at, id", &[&agent])?;
            Ok(rows.iter().map(|r| r.try_get(0)).collect::<Result<_, _>>()?)
        })
    }

    fn recent_tasks(&self, agent: Option<&str>, since: i64, before: Option<(i64, String)>, limit: usize) -> Result<Vec<Task>, StoreError> {
        let (before_at, before_id) = before.unwrap_or((i64::MAX, String::new()));
        self.with_client(|c| {
            let rows = c.query(
                "SELECT * FROM tasks WHERE created_at >= $1 AND ($2::TEXT IS NULL OR agent = $2::TEXT)
                 AND (created_at < $3 OR (created_at = $3 AND ($4::TEXT = '' OR id < $4::TEXT)))
                 ORDER BY created_at DESC, id DESC LIMIT $5",
                &[&since, &agent, &before_at, &before_id, &to_i64(limit)],
            )?;
            rows.iter().map(task_from_row).collect()
        })
    }

    fn session_opened(&self, sid: &str, agent: &str, instance: &str, now: i64) -> Result<(), StoreError> {
        self.with_client(|c| {
            c.execute(
                "INSERT INTO sessions(sid, agent, opened_at, instance) VALUES ($1,$2,$3,$4) ON CONFLICT (sid) DO NOTHING",
                &[&sid, &agent, &now, &instance],
            )?;
            Ok(())
        })
    }

    fn register_instance(&self, id: &str, kind: &str, now: i64, lease_until: i64) -> Result<(), StoreError> {
        self.with_client(|c| runtime::register_instance(c, id, kind, now, lease_until))
    }

    fn renew_instance(&self, id: &str, lease_until: i64) -> Result<bool, StoreError> {
        self.with_client(|c| runtime::renew_instance(c, id, lease_until))
    }

    fn end_instance(&self, id: &str, reason: &str, now: i64) -> Result<Vec<Revocation>, StoreError> {
        self.transaction(|tx| runtime::end_instance(tx, id, reason, now))
    }

    fn lapsed_instances(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.with_client(|c| runtime::lapsed_instances(c, now))
    }

    fn record_taint(&self, agent: &str, entries: &[crate::taint::TaintEntry], source: &crate::taint::Source, now: i64, max: usize) -> Result<(), StoreError> {
        if entries.is_empty() {
            return Ok(());
        }
        self.transaction(|tx| runtime::record_taint(tx, agent, entries, source, now, max))
    }

    fn taint_ledger(&self, agent: &str) -> Result<crate::taint::TaintLedger, StoreError> {
        self.with_client(|c| runtime::taint_ledger(c, agent))
    }

    fn taint_lookup(&self, agent: &str, probe: &crate::taint::TaintProbe) -> Result<crate::taint::TaintLedger, StoreError> {
        self.with_client(|c| runtime::taint_lookup(c, agent, probe))
    }

    fn forget_taint(&self, before: i64) -> Result<u64, StoreError> {
        self.with_client(|c| runtime::forget_taint(c, before))
    }

    fn count_request(&self, agent: &str, now: i64) -> Result<u32, StoreError> {
        self.with_client(|c| units::count_request(c, agent, now))
    }

    fn dpop_proof_first_use(&self, jkt: &str, jti: &str, expires_at: i64, now: i64) -> Result<bool, StoreError> {
        self.with_client(|c| runtime::dpop_proof_first_use(c, jkt, jti, expires_at, now))
    }

    fn read_request(&self, read: &crate::store::RequestRead) -> Result<crate::store::RequestState, StoreError> {
        self.with_client(|c| units::read_request(c, read))
    }

    fn grant(&self, grant: &crate::store::Grant<'_>) -> Result<crate::store::Granted, StoreError> {
        // One statement: it commits on its own, all or nothing.
        self.with_client(|c| units::grant(c, grant)).map_err(audit_or_store)
    }

    fn consume_for_call(&self, jti: &str, forwarded: &crate::audit::Event, now: i64) -> Result<Consumption, StoreError> {
        // Almost always one statement. When it consumed nothing, a
        // transaction that consumes nothing says why; should the token be
        // consumable after all (its task's row moved in between), the
        // statement is tried again.
        for _ in 0..3 {
            if self.with_client(|c| units::consume_for_call(c, jti, forwarded, now)).map_err(audit_or_store)? {
                return Ok(Consumption::Consumed);
            }
            let why = self.transaction(|tx| consume_refusal(tx, jti, now))?;
            if let Some(refused) = why {
                return Ok(refused);
            }
        }
        Err(StoreError::Backend(format!("token {jti} could not be consumed: its task kept changing; try again")))
    }

    fn create_approval(&self, a: &Approval) -> Result<(), StoreError> {
        self.with_client(|c| human::create_approval(c, a))
    }

    fn open_approval(&self, a: &Approval, max_pending: usize, record: &crate::audit::Event, now: i64) -> Result<Option<usize>, StoreError> {
        self.transaction(|tx| {
            // The head first, as every writer: concurrent openings of any
            // agent take turns, so each counts the ones before it.
            lock(tx, AUDIT_LOCK)?;
            let pending = human::pending_of(tx, &a.agent, now)?;
            if pending >= max_pending {
                return Ok(Some(pending));
            }
            human::create_approval(tx, a)?;
            audit::append_in(tx, record, now).map_err(as_audit_failure)?;
            Ok(None)
        })
    }

    fn pending_approvals_of(&self, agent: &str, now: i64) -> Result<usize, StoreError> {
        self.with_client(|c| human::pending_of(c, agent, now))
    }

    // Reads take no lock (agents poll them): a lapsed approval is reported
    // as expired without rewriting the row; deciding rewrites it.
    fn approval(&self, id: &str, now: i64) -> Result<Option<Approval>, StoreError> {
        self.with_client(|c| Ok(human::approval_where(c, "id=$1", id)?.map(|a| human::lapse(a, now))))
    }

    fn approval_for_request(&self, digest: &str, now: i64) -> Result<Option<Approval>, StoreError> {
        self.with_client(|c| Ok(human::approval_where(c, &format!("digest=$1 {}", human::DECIDING_APPROVAL), digest)?.map(|a| human::lapse(a, now))))
    }

    fn approvals(&self, all: bool, now: i64) -> Result<Vec<Approval>, StoreError> {
        self.with_client(|c| human::approvals(c, all, now))
    }

    fn decide_approval(&self, id: &str, approve: bool, by: &str, note: &str, now: i64, use_until: i64, audit: &(dyn Fn(&Approval) -> crate::audit::Event + Sync)) -> Result<DecideOutcome, StoreError> {
        self.transaction(|tx| human::decide(tx, id, approve, by, note, now, use_until, audit))
    }

    fn use_approval(&self, id: &str, jti: &str, now: i64) -> Result<bool, StoreError> {
        // Conditional: concurrent users of one approval queue on its row,
        // and only the first finds it still approved.
        self.with_client(|c| {
            let n = c.execute("UPDATE approvals SET state='used', used_jti=$2 WHERE id=$1 AND state='approved' AND expires_at > $3", &[&id, &jti, &now])?;
            Ok(n == 1)
        })
    }

    fn record_break_glass(&self, g: &BreakGlassGrant) -> Result<(), StoreError> {
        self.with_client(|c| human::record_break_glass(c, g))
    }

    fn break_glass_grants(&self, all: bool) -> Result<Vec<BreakGlassGrant>, StoreError> {
        self.with_client(|c| human::break_glass_grants(c, all))
    }

    fn ack_break_glass(&self, id: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            let n = tx.execute("UPDATE break_glass SET reviewed_at=$2, reviewed_by=$3, note=$4 WHERE id=$1 AND reviewed_at IS NULL", &[&id, &now, &by, &note])?;
            if n == 1 {
                audit::append_in(tx, event, now)?;
            }
            Ok(n == 1)
        })
    }

    fn quarantine(&self, agent: &str, reason: &str, event: &crate::audit::Event, now: i64) -> Result<Revocation, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            lock(tx, REVOCATION_LOCK)?;
            audit::append_in(tx, event, now)?;
            tx.execute("INSERT INTO quarantine(agent, reason, since) VALUES ($1,$2,$3) ON CONFLICT (agent) DO NOTHING", &[&agent, &reason, &now])?;
            let scope = Scope::Agent(agent.to_owned());
            let why = format!("quarantined: {reason}");
            let (tokens, seq) = revoke_in(tx, &scope, &why, now, TaskState::Revoked)?;
            Ok(Revocation { seq, scope, reason: why, at: now, tokens })
        })
    }

    fn release(&self, agent: &str, by: &str, note: &str, event: &crate::audit::Event, now: i64) -> Result<bool, StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            let n = tx.execute(
                "INSERT INTO quarantine_releases(agent, reason, since, released_at, released_by, note)
                 SELECT agent, reason, since, $2, $3, $4 FROM quarantine WHERE agent=$1",
                &[&agent, &now, &by, &note],
            )?;
            tx.execute("DELETE FROM quarantine WHERE agent=$1", &[&agent])?;
            if n == 1 {
                // A person looked at the burst that quarantined it: its rate
                // window starts again, or the next request would drift at once.
                tx.execute("DELETE FROM request_windows WHERE agent=$1", &[&agent])?;
                tx.execute("DELETE FROM request_counts WHERE agent=$1", &[&agent])?;
                audit::append_in(tx, event, now)?;
            }
            Ok(n == 1)
        })
    }

    fn quarantined(&self, agent: &str) -> Result<Option<Quarantine>, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt("SELECT agent, reason, since FROM quarantine WHERE agent=$1", &[&agent])?;
            Ok(match row {
                Some(r) => Some(Quarantine { agent: r.try_get(0)?, reason: r.try_get(1)?, since: r.try_get(2)? }),
                None => None,
            })
        })
    }

    fn ask_end_user(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64, expires_at: i64, record: &crate::audit::Event) -> Result<(), StoreError> {
        self.transaction(|tx| {
            lock(tx, AUDIT_LOCK)?;
            // Questions and declines are kept until they expire.
            tx.execute("DELETE FROM confirmations WHERE expires_at <= $1", &[&now])?;
            tx.execute(
                "INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6)",
                &[&id, &agent, &task, &digest, &now, &expires_at],
            )?;
            audit::append_in(tx, record, now).map_err(as_audit_failure)?;
            Ok(())
        })
    }

    fn take_end_user_answer(&self, id: &str, agent: &str, task: &str, digest: &str, now: i64) -> Result<bool, StoreError> {
        // Conditional: only the first taker finds it unanswered.
        self.with_client(|c| {
            let n = c.execute(
                // A decline by the end user, or a person's denial, of the same
                // request closes every question about it, whichever came first.
                "UPDATE confirmations SET answered_at=$5 WHERE id=$1 AND agent=$2 AND task=$3 AND digest=$4 AND answered_at IS NULL AND expires_at > $5
                   AND NOT EXISTS (SELECT 1 FROM confirmations d WHERE d.agent=$2 AND d.digest=$4 AND d.declined AND d.expires_at > $5)
                   AND NOT EXISTS (SELECT 1 FROM approvals a WHERE a.agent=$2 AND a.digest=$4 AND a.state='denied')",
                &[&id, &agent, &task, &digest, &now],
            )?;
            Ok(n == 1)
        })
    }

    fn record_end_user_decline(&self, agent: &str, task: &str, digest: &str, now: i64, until: i64) -> Result<(), StoreError> {
        let mut id = [0u8; 12];
        getrandom::fill(&mut id).map_err(|e| StoreError::Backend(e.to_string()))?;
        let id = format!("d_{}", hex::encode(id));
        self.transaction(|tx| {
            tx.execute(
                "INSERT INTO confirmations(id, agent, task, digest, asked_at, expires_at, answered_at, declined) VALUES ($1,$2,$3,$4,$5,$6,$5,true)",
                &[&id, &agent, &task, &digest, &now, &until],
            )?;
            // Every other open question about this request is closed with it.
            tx.execute("UPDATE confirmations SET answered_at=$3 WHERE agent=$1 AND digest=$2 AND answered_at IS NULL", &[&agent, &digest, &now])?;
            Ok(())
        })
    }

    fn end_user_declined(&self, agent: &str, digest: &str, now: i64) -> Result<bool, StoreError> {
        self.with_client(|c| {
            let row = c.query_opt("SELECT 1 FROM confirmations WHERE agent=$1 AND digest=$2 AND declined AND expires_at > $3 LIMIT 1", &[&agent, &digest, &now])?;
            Ok(row.is_some())
        })
    }

    fn record_token_and_intent(&self, t: &TokenRecord, i: &Intent) -> Result<(), StoreError> {
        self.transaction(|tx| {
            insert_token(tx, t)?;
            tx.execute("INSERT INTO intents(jti, agent, task, tool, shape, at) VALUES ($1,$2,$3,$4,$5,$6)", &[&i.jti, &i.agent, &i.task, &i.tool, &i.shape, &i.at])?;
            Ok(())
        })
    }

    fn record_observed(&self, t: &Task, i: &Intent, record: &crate::audit::Event, now: i64) -> Result<(), StoreError> {
        let phases = phases_text(&t.phases)?;
        self.transaction(|tx| {
            // The audit head first, as every write takes it.
            audit::append_in(tx, record, now).map_err(as_audit_failure)?;
            tx.execute(
                "INSERT INTO tasks(id, agent, sid, objective, phases, current_phase, state, created_at, expires_at) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9) ON CONFLICT (id) DO NOTHING",
                &[&t.id, &t.agent, &t.sid, &t.objective, &phases, &to_i64(t.current_phase), &t.state.as_str(), &t.created_at, &t.expires_at],
            )?;
            tx.execute("INSERT INTO intents(jti, agent, task, tool, shape, at) VALUES ($1,$2,$3,$4,$5,$6)", &[&i.jti, &i.agent, &i.task, &i.tool, &i.shape, &i.at])?;
            tx.execute("INSERT INTO calls(agent, task, tool, jti, at) VALUES ($1,$2,$3,$4,$5)", &[&i.agent, &i.task, &i.tool, &i.jti, &now])?;
            Ok(())
        })
    }

    fn create_delegation(&self, d: &crate::store::Delegation, record: &crate::audit::Event, max: usize, now: i64) -> Result<bool, StoreError> {
        let phases = phases_text(&d.phases)?;
        self.transaction(|tx| {
            // The parent task's row, locked: concurrent delegations of one
            // task count one after another.
            tx.query_opt("SELECT 1 FROM tasks WHERE id = $1 FOR UPDATE", &[&d.parent_task])?;
            let made: i64 = tx.query_one("SELECT count(*) FROM delegations WHERE parent_task = $1", &[&d.parent_task])?.try_get(0)?;
            if usize::try_from(made).unwrap_or(usize::MAX) >= max {
                return Ok(false);
            }
            audit::append_in(tx, record, now).map_err(as_audit_failure)?;
            tx.execute(
                "INSERT INTO delegations(id, parent_task, parent_agent, child_agent, objective, phases, constraints, depth, created_at, expires_at, child_task) VALUES ($1,$2,$3,$4,$5,$6,$7,$8,$9,$10,NULL)",
                &[&d.id, &d.parent_task, &d.parent_agent, &d.child_agent, &d.objective, &phases, &d.constraints, &i64::from(d.depth), &d.created_at, &d.expires_at],
            )?;
            Ok(true)
        })
    }

    fn delegation(&self, id: &str) -> Result<Option<crate::store::Delegation>, StoreError> {
        self.with_client(|c| delegation_where(c, "id = $1", id))
    }

    fn delegation_of_task(&self, task: &str) -> Result<Option<crate::store::Delegation>, StoreError> {
        self.with_client(|c| delegation_where(c, "child_task = $1", task))
    }

    fn claim_delegation(&self, id: &str, task: &str, now: i64) -> Result<bool, StoreError> {
        self.with_client(|c| Ok(c.execute("UPDATE delegations SET child_task = $1 WHERE id = $2 AND child_task IS NULL AND expires_at > $3", &[&task, &id, &now])? == 1))
    }

    fn orphaned_delegated_tasks(&self, now: i64) -> Result<Vec<String>, StoreError> {
        self.with_client(|c| {
            let rows = c.query(
                "SELECT c.id FROM delegations d JOIN tasks c ON c.id = d.child_task JOIN tasks p ON p.id = d.parent_task
                 WHERE d.expires_at > $1 AND c.state = 'active' AND (p.state <> 'active' OR p.expires_at <= $1)",
                &[&now],
            )?;
            rows.iter().map(|r| Ok(r.try_get(0)?)).collect()
        })
    }

    fn last_call_of(&self, agent: &str) -> Result<Option<Call>, StoreError> {
        self.with_client(|c| {
            // Observed calls are not the protocol's history (OBSERVATION_TASK_PREFIX).
            let row = c.query_opt("SELECT jti, task, tool, at FROM calls WHERE agent=$1 AND task NOT LIKE 'obs\\_%' ORDER BY seq DESC LIMIT 1", &[&agent])?;
            Ok(match row {
                Some(r) => Some(Call { jti: r.try_get(0)?, task: r.try_get(1)?, tool: r.try_get(2)?, at: r.try_get(3)? }),
                None => None,
            })
        })
    }

    fn intents_of(&self, agent: &str, since: i64, limit: usize) -> Result<Vec<Intent>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT jti, agent, task, tool, shape, at FROM intents WHERE agent=$1 AND at >= $2 ORDER BY at, ord LIMIT $3", &[&agent, &since, &to_i64(limit)])?;
            rows.iter()
                .map(|r| Ok(Intent { jti: r.try_get(0)?, agent: r.try_get(1)?, task: r.try_get(2)?, tool: r.try_get(3)?, shape: r.try_get(4)?, at: r.try_get(5)? }))
                .collect()
        })
    }

    fn append_audit(&self, e: &crate::audit::Event, now: i64) -> Result<i64, StoreError> {
        // One statement, which commits on its own (audit::append).
        self.with_client(|c| audit::append(c, e, now)).map_err(|err| match err {
            StoreError::Audit(m) => StoreError::Audit(m),
            other => StoreError::Audit(other.to_string()),
        })
    }

    fn audit_records(&self, after: i64, limit: usize) -> Result<Vec<crate::audit::Record>, StoreError> {
        self.with_client(|c| audit::records(c, "seq > $1 ORDER BY seq LIMIT $2", &[&after, &to_i64(limit)]))
    }

    fn audit_of_task(&self, task: &str) -> Result<Vec<crate::audit::Record>, StoreError> {
        self.with_client(|c| audit::records(c, "task = $1 ORDER BY seq", &[&task]))
    }

    fn audit_head(&self) -> Result<Option<(i64, String)>, StoreError> {
        self.with_client(audit::head)
    }

    fn record_checkpoint(&self, c: &crate::audit::Checkpoint) -> Result<(), StoreError> {
        self.with_client(|client| {
            client.execute("INSERT INTO audit_checkpoints(seq, hash, at, jws) VALUES ($1,$2,$3,$4)", &[&c.seq, &c.hash, &c.at, &c.jws])?;
            Ok(())
        })
    }

    fn checkpoints(&self) -> Result<Vec<crate::audit::Checkpoint>, StoreError> {
        self.with_client(|c| {
            let rows = c.query("SELECT seq, hash, at, jws FROM audit_checkpoints ORDER BY ord", &[])?;
            rows.iter().map(|r| Ok(crate::audit::Checkpoint { seq: r.try_get(0)?, hash: r.try_get(1)?, at: r.try_get(2)?, jws: r.try_get(3)? })).collect()
        })
    }
}
