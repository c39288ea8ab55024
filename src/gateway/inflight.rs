//! Calls in flight, so that a revocation can cancel them.
//!
//! Every forwarded call registers its task, agent, session and token with a
//! cancellation token. When a revocation is recorded (by this gateway or by
//! `jitgate revoke` in another process), the maintenance loop cancels the
//! matching calls; dropping the downstream request sends
//! `notifications/cancelled` to the downstream server.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio_util::sync::CancellationToken;

use crate::store::Scope;

struct Call {
    task: String,
    agent: String,
    sid: String,
    jti: String,
    cancel: CancellationToken,
}

/// The registry of calls in flight.
#[derive(Default)]
pub struct Inflight {
    next: AtomicU64,
    calls: Mutex<HashMap<u64, Call>>,
}

/// Removes its call from the registry when dropped.
pub struct InflightGuard<'a> {
    registry: &'a Inflight,
    id: u64,
}

impl Drop for InflightGuard<'_> {
    fn drop(&mut self) {
        self.registry.lock().remove(&self.id);
    }
}

impl Inflight {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Call>> {
        self.calls.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Register a call; it stays registered while the guard lives.
    pub fn register(&self, task: &str, agent: &str, sid: &str, jti: &str, cancel: CancellationToken) -> InflightGuard<'_> {
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        self.lock().insert(id, Call { task: task.into(), agent: agent.into(), sid: sid.into(), jti: jti.into(), cancel });
        InflightGuard { registry: self, id }
    }

    /// Cancel every call the revocation covers; returns how many.
    pub fn cancel_matching(&self, scope: &Scope) -> usize {
        let calls = self.lock();
        let mut n = 0;
        for call in calls.values() {
            let hit = match scope {
                Scope::Token(j) => &call.jti == j,
                Scope::Task(t) => &call.task == t,
                Scope::Agent(a) => &call.agent == a,
                Scope::Session(s) => &call.sid == s,
                // A phase change kills unused tokens; calls already running were
                // authorized in their phase and finish.
                Scope::Phase(_) => false,
            };
            if hit {
                call.cancel.cancel();
                n += 1;
            }
        }
        n
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}
