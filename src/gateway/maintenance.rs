//! The gateway's one background task that owns the clock: expires tasks at
//! their TTL, turns every recorded revocation (from this gateway or from
//! `jitgate revoke` in another process) into cancellation of in-flight calls
//! (the revocation's audit record is the store's, written once where it was
//! made; each process records only the calls it cancelled),
//! reloads the keyring after `jitgate keys rotate`, and reloads the policy
//! set when its files change (a set that does not validate is rejected and
//! the one in force stays).

use std::sync::Arc;
use std::time::Duration;

use super::Shared;
use crate::policy::PolicyEngine;
use crate::token::Keyring;

/// How often revocations are polled.
const TICK: Duration = Duration::from_millis(200);
/// Task expiry and key reload run every this many ticks.
const SLOW_EVERY: u32 = 5;

/// Run until shutdown.
pub async fn run(shared: Arc<Shared>) {
    let mut last_seq = {
        let store = shared.store.clone();
        tokio::task::spawn_blocking(move || store.revocations_since(0).map(|v| v.last().map(|r| r.seq).unwrap_or(0)))
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or(0)
    };
    let mut ticks: u32 = 0;
    let checkpoint_every = u32::try_from(shared.config.audit.checkpoint_interval.as_millis() / TICK.as_millis().max(1)).unwrap_or(u32::MAX).max(1);
    let mut rejected_policy = None;
    let mut interval = tokio::time::interval(TICK);
    loop {
        tokio::select! {
            _ = interval.tick() => {}
            _ = shared.shutdown.cancelled() => {
                record_identity_refusals(&shared).await;
                checkpoint(&shared).await;
                return;
            }
        }
        ticks = ticks.wrapping_add(1);
        if ticks % checkpoint_every == 0 {
            checkpoint(&shared).await;
        }
        if ticks % SLOW_EVERY == 0 {
            record_identity_refusals(&shared).await;
            expire_tasks(&shared).await;
            end_orphaned_delegations(&shared).await;
            forget_old_taint(&shared).await;
            reload_keys(&shared);
            reload_policy(&shared, &mut rejected_policy, false);
        }
        if ticks % LEASE_EVERY == 0 {
            renew_lease(&shared).await;
            end_lapsed_instances(&shared).await;
        }
        last_seq = cancel_revoked(&shared, last_seq).await;
    }
}

/// Leases (`limits.instance_lease`) are renewed every this many ticks (1 s).
/// Another process on the same store revokes the handshake-era sessions of
/// an instance whose lease ran out (it crashed or was killed); nothing else
/// it did is undone.
const LEASE_EVERY: u32 = 5;

/// The lease end for a renewal at `now`.
pub fn lease_until(lease: Duration, now: i64) -> i64 {
    now.saturating_add(i64::try_from(lease.as_secs()).unwrap_or(30))
}

async fn renew_lease(shared: &Shared) {
    let until = lease_until(shared.config.limits.instance_lease, shared.clock.now_unix());
    let (store, id) = (shared.store.clone(), shared.instance.clone());
    match tokio::task::spawn_blocking(move || store.renew_instance(&id, until)).await {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => tracing::error!(
            instance = %shared.instance,
            "this gateway's lease had lapsed (was the process paused?) and another process revoked what its sessions held; the lease is renewed, those agents must begin new tasks"
        ),
        Ok(Err(e)) => tracing::error!(error = %e, "cannot renew this gateway's lease"),
        Err(e) => tracing::error!(error = %e, "lease renewal task failed"),
    }
}

/// Revoke what instances that died without stopping held (their
/// handshake-era sessions, which no process can serve any more).
pub async fn end_lapsed_instances(shared: &Shared) {
    let (store, now) = (shared.store.clone(), shared.clock.now_unix());
    let ended = tokio::task::spawn_blocking(move || -> Result<Vec<(String, usize)>, crate::store::StoreError> {
        let mut out = Vec::new();
        for id in store.lapsed_instances(now)? {
            let revoked = store.end_instance(&id, "the gateway process serving the session stopped without a clean shutdown (lease lapsed)", now)?;
            out.push((id, revoked.len()));
        }
        Ok(out)
    })
    .await;
    match ended {
        Ok(Ok(ended)) => {
            for (id, sessions) in ended {
                tracing::warn!(instance = %id, sessions, "a gateway instance's lease lapsed; revoked the sessions it owned");
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "cannot check for lapsed gateway instances"),
        Err(e) => tracing::error!(error = %e, "lapsed-instance task failed"),
    }
}

/// One audit record for the HTTP requests refused before any agent was
/// known (bad or missing credentials, DPoP, another agent's session), by
/// reason, per second at most.
async fn record_identity_refusals(shared: &Shared) {
    let counts = shared.take_identity_refusals();
    if counts.is_empty() {
        return;
    }
    let total: u64 = counts.values().sum();
    let event = crate::audit::Event::new("identity.refused", None, None, serde_json::json!({"counts": counts, "total": total, "instance": shared.instance}));
    super::record_or_log(shared, event).await;
}

/// No task lives longer than max_task_ttl, so older taint is of dead tasks.
async fn forget_old_taint(shared: &Shared) {
    let horizon = i64::try_from(shared.config.tokens.max_task_ttl.as_secs()).unwrap_or(i64::MAX / 2);
    let (store, before) = (shared.store.clone(), shared.clock.now_unix().saturating_sub(horizon));
    match tokio::task::spawn_blocking(move || store.forget_taint(before)).await {
        Ok(Ok(_)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "cannot forget old taint; the ledger keeps growing until it fails closed"),
        Err(e) => tracing::error!(error = %e, "taint clean-up task failed"),
    }
}

async fn expire_tasks(shared: &Shared) {
    let now = shared.clock.now_unix();
    let store = shared.store.clone();
    match tokio::task::spawn_blocking(move || store.expire_tasks(now)).await {
        Ok(Ok(ids)) => {
            for id in ids {
                tracing::info!(task = %id, "task TTL expired; its tokens revoked");
            }
        }
        Ok(Err(e)) => tracing::error!(error = %e, "task expiry failed; expired tasks are still refused at verification"),
        Err(e) => tracing::error!(error = %e, "task expiry task failed"),
    }
}

/// Authority ends from the top: a task begun under a delegation whose
/// parent task is no longer active (ended, revoked, expired, its agent
/// quarantined; by any process) is revoked with its tokens, level by level
/// down the tree. Until then its requests and calls are refused anyway
/// (`gateway::delegation`); this makes the store, the traces and in-flight
/// calls say so too.
pub async fn end_orphaned_delegations(shared: &Shared) {
    // Each round ends one level; a chain is at most this deep.
    for _ in 0..16 {
        let now = shared.clock.now_unix();
        let orphans = match crate::store::run_blocking(&shared.store, move |s| s.orphaned_delegated_tasks(now)).await.and_then(|r| r) {
            Ok(o) => o,
            Err(e) => {
                tracing::error!(error = %e, "cannot read delegated tasks whose parent ended; their requests are refused at use");
                return;
            }
        };
        if orphans.is_empty() {
            return;
        }
        for task in orphans {
            let scope = crate::store::Scope::Task(task.clone());
            match crate::store::run_blocking(&shared.store, move |s| s.revoke(&scope, "the task that delegated it is no longer active", now)).await.and_then(|r| r) {
                Ok(r) => tracing::info!(task = %task, tokens = r.tokens, "delegated task ended with its parent"),
                Err(e) => tracing::error!(error = %e, task = %task, "could not end a delegated task whose parent ended"),
            }
        }
    }
}

async fn cancel_revoked(shared: &Shared, since: i64) -> i64 {
    let store = shared.store.clone();
    let revocations = match tokio::task::spawn_blocking(move || store.revocations_since(since)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => {
            tracing::error!(error = %e, "cannot read revocations; in-flight calls are not being cancelled");
            return since;
        }
        Err(_) => return since,
    };
    let mut last = since;
    for r in revocations {
        let cancelled = shared.inflight.cancel_matching(&r.scope);
        tracing::info!(scope = r.scope.kind(), target = %crate::telemetry::Clean(r.scope.target()), reason = %crate::telemetry::Clean(&r.reason), tokens = r.tokens, cancelled, "revocation");
        let task = matches!(r.scope, crate::store::Scope::Task(_) | crate::store::Scope::Phase(_)).then(|| r.scope.target().to_owned());
        let agent = matches!(r.scope, crate::store::Scope::Agent(_)).then(|| r.scope.target().to_owned());
        // A revoked agent's exchanged downstream credentials are not reused.
        if let Some(a) = &agent {
            for ds in shared.downstreams.iter() {
                ds.forget_caller(a);
            }
        }
        // The revocation has its record already (the store wrote it with
        // the revocation); every process polls it, so each adds only what
        // it did: the calls it cut off, where there were any.
        if cancelled > 0 {
            let event = crate::audit::Event::new(
                "revocation.cancelled",
                task.as_deref(),
                agent.as_deref(),
                serde_json::json!({"scope": r.scope.kind(), "target": r.scope.target(), "revocation_seq": r.seq, "cancelled_calls": cancelled, "instance": shared.instance}),
            );
            super::record_or_log(shared, event).await;
        }
        last = r.seq;
    }
    last
}

fn reload_keys(shared: &Shared) {
    let dir = shared.config.keys_dir();
    if !shared.keyring().is_stale(&dir) {
        return;
    }
    match Keyring::load(&dir) {
        Ok(k) => {
            tracing::info!(active = %k.active().kid, keys = k.public_keys().len(), "capability keys reloaded");
            shared.keyring.send_replace(Arc::new(k));
        }
        Err(e) => tracing::error!(error = %e, "cannot reload capability keys; keeping the current ones"),
    }
}

/// Reload the policy set if its files changed (or always, when `force`).
/// `rejected` remembers the fingerprint of the last set that failed, so that
/// a broken file is reported once, not every second. Returns true if a new
/// set is now in force.
pub fn reload_policy(shared: &Shared, rejected: &mut Option<[u8; 32]>, force: bool) -> bool {
    let current = shared.policy();
    let dir = shared.config.policy.dir.clone();
    let sources = match crate::policy::read_dir_sources(&dir) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(errors = %e, "cannot read the policy directory; the policy set in force stays");
            return false;
        }
    };
    let fingerprint = crate::policy::fingerprint(&sources);
    if fingerprint == current.fingerprint || (!force && *rejected == Some(fingerprint)) {
        return false;
    }
    match PolicyEngine::from_sources(&dir, sources) {
        Ok(engine) => {
            tracing::info!(dir = %dir.display(), policies = engine.len(), "policy set reloaded");
            shared.policy.send_replace(Arc::new(engine));
            *rejected = None;
            true
        }
        Err(errors) => {
            for e in &errors.0 {
                tracing::error!(error = %e, "policy error");
            }
            tracing::error!(errors = errors.0.len(), "policy reload REJECTED: the changed policy set does not validate; the previous set stays in force");
            *rejected = Some(fingerprint);
            false
        }
    }
}

/// Sign the audit chain's head (at the interval and on shutdown).
pub async fn checkpoint(shared: &Shared) {
    let key = shared.keyring().active().clone();
    let (store, iss, now) = (shared.store.clone(), shared.config.gateway_id.clone(), shared.clock.now_unix());
    let witness = shared.config.audit.witness.clone();
    match tokio::task::spawn_blocking(move || crate::audit::write_checkpoint(store.as_ref(), &key, &iss, now, &witness)).await {
        Ok(Ok(Some(c))) => tracing::info!(seq = c.seq, "audit checkpoint signed"),
        Ok(Ok(None)) => {}
        Ok(Err(e)) => tracing::error!(error = %e, "AUDIT CHECKPOINT FAILED"),
        // The runtime is shutting down (a stdio client went away); the
        // shutdown's own checkpoint signs the head.
        Err(e) if e.is_cancelled() => tracing::debug!("audit checkpoint cancelled at shutdown"),
        Err(e) => tracing::error!(error = %e, "audit checkpoint task failed"),
    }
}
