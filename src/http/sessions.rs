//! Handshake-era sessions (`Mcp-Session-Id`) belong to the agent that
//! opened them.
//!
//! A session is bound to the verified agent of its `initialize` request,
//! when rmcp hands out its id. From then on, every request that names the
//! session (POST, the GET stream and its resumption with `Last-Event-ID`,
//! DELETE, and every notification, `notifications/cancelled` included) is let
//! through only when its own verified identity is that agent. Another
//! agent's session, an unknown one and an expired one look the same: 404,
//! as for a session that does not exist. Session ids are never logged;
//! a short digest stands in for them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures::Stream;
use rmcp::model::{ClientJsonRpcMessage, ServerJsonRpcMessage};
use rmcp::transport::WorkerTransport;
use rmcp::transport::streamable_http_server::session::local::{LocalSessionManager, LocalSessionManagerError, LocalSessionWorker, create_local_session};
use rmcp::transport::streamable_http_server::session::{ServerSseMessage, SessionId, SessionManager};
use tokio_util::sync::CancellationToken;

/// Which agent (SPIFFE id) owns each live session id of this process.
#[derive(Default)]
pub struct SessionBindings {
    owners: Mutex<HashMap<String, String>>,
}

/// Whether a request naming a session may proceed.
#[derive(Debug, PartialEq, Eq)]
pub enum SessionCheck {
    /// The session is this agent's.
    Owner,
    /// No such session for this agent (unknown, expired, or another agent's).
    NotFound,
}

impl SessionBindings {
    fn owners(&self) -> std::sync::MutexGuard<'_, HashMap<String, String>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Bind a session id rmcp just issued to the agent whose `initialize`
    /// opened it; false (and not bound) when the agent already holds `max`.
    pub fn bind(&self, session_id: &str, agent: &str, max: usize) -> bool {
        let mut owners = self.owners();
        if owners.values().filter(|owner| owner.as_str() == agent).count() >= max {
            tracing::warn!(agent, max, "session refused: the agent holds its maximum of sessions on this process");
            return false;
        }
        owners.insert(session_id.to_owned(), agent.to_owned());
        tracing::debug!(session = %digest(session_id), agent, "session bound to its agent");
        true
    }

    /// May `agent` use `session_id`?
    pub fn check(&self, session_id: &str, agent: &str) -> SessionCheck {
        match self.owners().get(session_id) {
            Some(owner) if crate::jws::constant_time_eq(owner.as_bytes(), agent.as_bytes()) => SessionCheck::Owner,
            Some(owner) => {
                tracing::warn!(session = %digest(session_id), owner = %owner, presented = agent, "a request named another agent's session; refused");
                SessionCheck::NotFound
            }
            None => SessionCheck::NotFound,
        }
    }

    /// The session ended (DELETE by its owner).
    pub fn unbind(&self, session_id: &str) {
        self.owners().remove(session_id);
    }

    fn len(&self) -> usize {
        self.owners().len()
    }

    /// Drop bindings of sessions rmcp no longer has (idle expiry, closed
    /// streams), so that the map never outgrows the live sessions.
    async fn prune(&self, sessions: &ReplicaSessions) {
        let ids: Vec<String> = self.owners().keys().cloned().collect();
        for id in ids {
            let live = sessions.has_session(&Arc::<str>::from(id.as_str())).await.unwrap_or(false);
            if !live {
                self.unbind(&id);
            }
        }
    }
}

/// This process's handshake-era sessions: rmcp's own, with ids that begin
/// with the replica's name (`r1.` and a random UUID) when it has one, so that
/// a load balancer in front of several replicas sends every request of a
/// session to the replica that holds it (a session's stream, its pending
/// questions to the user and its handler live in that process). Without a
/// name, ids are rmcp's.
pub struct ReplicaSessions {
    inner: LocalSessionManager,
    prefix: String,
}

impl ReplicaSessions {
    pub fn new(replica: Option<&str>) -> Self {
        Self { inner: LocalSessionManager::default(), prefix: replica.map(|r| format!("{r}.")).unwrap_or_default() }
    }
}

impl SessionManager for ReplicaSessions {
    type Error = LocalSessionManagerError;
    type Transport = WorkerTransport<LocalSessionWorker>;

    async fn create_session(&self) -> Result<(SessionId, Self::Transport), Self::Error> {
        if self.prefix.is_empty() {
            return self.inner.create_session().await;
        }
        let id: SessionId = format!("{}{}", self.prefix, rmcp::transport::common::server_side_http::session_id()).into();
        let (handle, worker) = create_local_session(id.clone(), self.inner.session_config.clone());
        self.inner.sessions.write().await.insert(id.clone(), handle);
        Ok((id, WorkerTransport::spawn(worker)))
    }

    async fn initialize_session(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<ServerJsonRpcMessage, Self::Error> {
        self.inner.initialize_session(id, message).await
    }

    async fn has_session(&self, id: &SessionId) -> Result<bool, Self::Error> {
        self.inner.has_session(id).await
    }

    async fn close_session(&self, id: &SessionId) -> Result<(), Self::Error> {
        self.inner.close_session(id).await
    }

    async fn create_stream(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_stream(id, message).await
    }

    async fn accept_message(&self, id: &SessionId, message: ClientJsonRpcMessage) -> Result<(), Self::Error> {
        self.inner.accept_message(id, message).await
    }

    async fn create_standalone_stream(&self, id: &SessionId) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.create_standalone_stream(id).await
    }

    async fn resume(&self, id: &SessionId, last_event_id: String) -> Result<impl Stream<Item = ServerSseMessage> + Send + Sync + 'static, Self::Error> {
        self.inner.resume(id, last_event_id).await
    }
}

/// How often bindings of expired sessions are dropped.
const PRUNE_EVERY: Duration = Duration::from_secs(30);

/// Keep `bindings` in step with rmcp's sessions until shutdown.
pub fn spawn_pruning(bindings: Arc<SessionBindings>, sessions: Arc<ReplicaSessions>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut every = tokio::time::interval(PRUNE_EVERY);
        loop {
            tokio::select! {
                _ = every.tick() => bindings.prune(&sessions).await,
                _ = shutdown.cancelled() => return,
            }
            tracing::debug!(sessions = bindings.len(), "session bindings pruned");
        }
    });
}

/// A short, non-reversible stand-in for a session id in logs.
pub fn digest(session_id: &str) -> String {
    use sha2::Digest as _;
    hex::encode(&sha2::Sha256::digest(session_id.as_bytes())[..6])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_usable_only_by_the_agent_that_opened_it() {
        let b = SessionBindings::default();
        assert!(b.bind("s1", "spiffe://x/agent/a", 2));
        assert!(b.bind("s3", "spiffe://x/agent/a", 2));
        assert!(!b.bind("s4", "spiffe://x/agent/a", 2), "at most two sessions");
        assert_eq!(b.check("s4", "spiffe://x/agent/a"), SessionCheck::NotFound);
        assert!(b.bind("s5", "spiffe://x/agent/b", 2), "another agent has its own count");
        assert_eq!(b.check("s1", "spiffe://x/agent/a"), SessionCheck::Owner);
        assert_eq!(b.check("s1", "spiffe://x/agent/b"), SessionCheck::NotFound);
        assert_eq!(b.check("s2", "spiffe://x/agent/a"), SessionCheck::NotFound);
        b.unbind("s1");
        assert_eq!(b.check("s1", "spiffe://x/agent/a"), SessionCheck::NotFound);
    }

    #[tokio::test]
    async fn bindings_of_sessions_rmcp_no_longer_has_are_pruned() {
        let b = SessionBindings::default();
        b.bind("gone", "a", 1);
        b.prune(&ReplicaSessions::new(None)).await;
        assert_eq!(b.len(), 0);
    }

    #[tokio::test]
    async fn a_named_replica_hands_out_session_ids_that_name_it() {
        let named = ReplicaSessions::new(Some("r2"));
        let (id, _transport) = named.create_session().await.unwrap();
        assert!(id.starts_with("r2.") && id.len() > 30, "{id}");
        assert!(named.has_session(&id).await.unwrap());
        named.close_session(&id).await.unwrap();
        assert!(!named.has_session(&id).await.unwrap());
        let (plain, _transport) = ReplicaSessions::new(None).create_session().await.unwrap();
        assert!(!plain.contains('.'), "{plain}");
    }

    #[test]
    fn digests_do_not_reveal_the_id() {
        let d = digest("0b5c7a1e-3f1a-4a55-8d0e-9a1f2b3c4d5e");
        assert_eq!(d.len(), 12);
        assert!(!d.contains("0b5c7a1e"));
    }
}
