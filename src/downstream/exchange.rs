//! Per-caller credentials for downstream servers (OAuth 2.0 Token Exchange,
//! RFC 8693).
//!
//! A server whose manifest has `exchange = { audience = ... }` must know who
//! is calling. For each agent, jitgate presents the agent's own credential as
//! the `subject_token` at the configured authorization server, authenticating
//! as itself, and asks for a token whose audience is that server. The answer
//! goes in a header of that agent's calls only, on a connection of its own;
//! the agent's credential never leaves for the downstream server.
//!
//! Only credentials of the issuers listed in `[token_exchange] issuers` are
//! ever sent: an agent's credential is a bearer token for this gateway, so
//! it goes to no one but the server that issued it.
//!
//! An exchanged token is reused for the same agent and the same presented
//! credential until shortly before the first of: its `expires_in`,
//! `[token_exchange] max_ttl`, the agent's credential's expiry. Nothing is
//! reused across agents, or across two credentials of one agent (another
//! subject or other scopes behind the same client get their own exchange).

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rmcp::RoleClient;
use rmcp::service::RunningService;
use serde_json::Value;

use super::connect::{DownstreamClient, connect_with};
use crate::config::TokenExchangeConfig;
use crate::identity::VerifiedAgent;
use crate::manifest::{ExchangedCredential, Manifest};

const GRANT_TYPE: &str = "urn:ietf:params:oauth:grant-type:token-exchange";
const ACCESS_TOKEN_TYPE: &str = "urn:ietf:params:oauth:token-type:access_token";
/// Longest exchanged token put in a header.
const MAX_TOKEN_BYTES: usize = 16 * 1024;
/// Connections kept at once per server, over all agents; beyond this, idle
/// ones are dropped (they reconnect, with a fresh exchange, on their next
/// call).
const MAX_CALLERS: usize = 1024;
/// Connections kept per agent and server (one per credential it presents):
/// an agent that can mint credentials must not fill [`MAX_CALLERS`] by
/// itself. Beyond this, the agent's least recently used one is dropped.
const MAX_PER_AGENT: usize = 4;

/// jitgate's client at the authorization server that exchanges credentials.
pub struct TokenExchanger {
    config: TokenExchangeConfig,
    client_secret: String,
}

impl std::fmt::Debug for TokenExchanger {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenExchanger").field("token_endpoint", &self.config.token_endpoint).field("client_id", &self.config.client_id).finish()
    }
}

/// An exchanged credential and how long it may be used.
struct Exchanged {
    token: String,
    lifetime: Duration,
}

impl TokenExchanger {
    /// Read the client secret now, so that a missing secret stops the gateway
    /// at start rather than failing every call later.
    pub fn new(config: TokenExchangeConfig) -> Result<Self, String> {
        let client_secret = config.client_secret.read().map_err(|e| format!("[token_exchange] client secret: {e}"))?;
        Ok(Self { config, client_secret })
    }

    /// Exchange the agent's credential for one naming `wanted.audience`.
    async fn exchange(&self, agent: &VerifiedAgent, wanted: &ExchangedCredential, now_unix: i64) -> Result<Exchanged, String> {
        if !self.config.issuers.contains(&agent.issuer) {
            return Err(format!(
                "the agent's credential is from issuer `{}`, which is not in [token_exchange] issuers; it is not sent to another party",
                agent.issuer
            ));
        }
        let mut form = vec![
            ("grant_type", GRANT_TYPE),
            ("subject_token", agent.credential.expose()),
            ("subject_token_type", self.config.subject_token_type.as_str()),
            ("requested_token_type", ACCESS_TOKEN_TYPE),
            ("audience", wanted.audience.as_str()),
        ];
        if let Some(scope) = &wanted.scope {
            form.push(("scope", scope));
        }
        let answer = crate::issuer_keys::post_form(&self.config.token_endpoint, &form, &self.config.client_id, &self.client_secret).await?;
        let (token, expires_in) = read_answer(&answer)?;
        Ok(Exchanged { token, lifetime: reuse_lifetime(expires_in, self.config.max_ttl, agent.expires_at, now_unix) })
    }
}

/// How long an exchanged credential may be reused: never past its own
/// `expires_in`, `max_ttl`, or the credential it was exchanged for (once the
/// agent's own credential has expired, nothing it obtained is reused).
fn reuse_lifetime(expires_in: Option<u64>, max_ttl: Duration, agent_expires_at: i64, now_unix: i64) -> Duration {
    let agent_left = u64::try_from(agent_expires_at.saturating_sub(now_unix)).unwrap_or(0);
    let secs = [expires_in.unwrap_or(u64::MAX), max_ttl.as_secs(), agent_left].into_iter().min().unwrap_or(0);
    Duration::from_secs(secs)
}

/// The token and its `expires_in` from a token endpoint's answer.
fn read_answer(answer: &Value) -> Result<(String, Option<u64>), String> {
    let token = answer
        .get("access_token")
        .and_then(Value::as_str)
        .filter(|t| !t.is_empty())
        .ok_or("the authorization server's answer has no access_token")?;
    if token.len() > MAX_TOKEN_BYTES || !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err("the authorization server's access_token is not a header-safe token".into());
    }
    if let Some(kind) = answer.get("issued_token_type").and_then(Value::as_str)
        && kind != ACCESS_TOKEN_TYPE
        && kind != "urn:ietf:params:oauth:token-type:jwt"
    {
        return Err(format!("the authorization server issued a `{kind}`, not an access token"));
    }
    let expires_in = match answer.get("expires_in") {
        None | Some(Value::Null) => None,
        Some(v) => Some(v.as_u64().ok_or("the authorization server's expires_in is not a whole number of seconds")?),
    };
    Ok((token.to_owned(), expires_in))
}

/// One agent's connection to the server, carrying its exchanged credential.
struct CallerConnection {
    reuse_until: Instant,
    service: Arc<RunningService<RoleClient, DownstreamClient>>,
}

type Slot = Arc<tokio::sync::Mutex<Option<CallerConnection>>>;

/// The slots of one server's connections: per agent, one per presented
/// credential, least recently used first. A slot dropped from here while a
/// call holds it stays alive for that call and closes when it ends.
#[derive(Default)]
struct Slots {
    by_agent: HashMap<String, VecDeque<(String, Slot)>>,
    total: usize,
}

impl Slots {
    /// The slot of `agent`'s credential (by digest), made when there is
    /// none, within [`MAX_PER_AGENT`] and [`MAX_CALLERS`].
    fn get(&mut self, agent: &str, credential: &str) -> Slot {
        let mine = self.by_agent.entry(agent.to_owned()).or_default();
        if let Some(at) = mine.iter().position(|(c, _)| c == credential) {
            // Most recently used goes last.
            if let Some(used) = mine.remove(at) {
                let slot = used.1.clone();
                mine.push_back(used);
                return slot;
            }
        }
        while mine.len() >= MAX_PER_AGENT {
            mine.pop_front();
            self.total = self.total.saturating_sub(1);
        }
        if self.total >= MAX_CALLERS {
            // Keep the slots someone is using; the others reconnect later.
            for slots in self.by_agent.values_mut() {
                slots.retain(|(_, slot)| Arc::strong_count(slot) > 1);
            }
            self.by_agent.retain(|a, slots| !slots.is_empty() || a == agent);
            self.total = self.by_agent.values().map(VecDeque::len).sum();
        }
        let slot = Slot::default();
        self.by_agent.entry(agent.to_owned()).or_default().push_back((credential.to_owned(), slot.clone()));
        self.total += 1;
        slot
    }

    /// Drop every slot of `agent`.
    fn forget(&mut self, agent: &str) {
        if let Some(slots) = self.by_agent.remove(agent) {
            self.total = self.total.saturating_sub(slots.len());
        }
    }
}

/// The per-agent connections of one downstream server.
pub struct CallerConnections {
    exchanger: Arc<TokenExchanger>,
    credential: ExchangedCredential,
    slots: Mutex<Slots>,
}

impl CallerConnections {
    pub fn new(exchanger: Arc<TokenExchanger>, credential: ExchangedCredential) -> Self {
        Self { exchanger, credential, slots: Mutex::new(Slots::default()) }
    }

    /// The connection that carries `agent`'s calls, exchanging (again) when
    /// it has none or its credential is due.
    pub async fn for_agent(&self, manifest: &Manifest, agent: &VerifiedAgent, now_unix: i64) -> Result<Arc<RunningService<RoleClient, DownstreamClient>>, String> {
        let slot = self.slots.lock().unwrap_or_else(|p| p.into_inner()).get(&agent.agent.id, &credential_digest(agent));
        // One exchange at a time per agent and credential; other agents are not held up.
        let mut held = slot.lock().await;
        if let Some(c) = held.as_ref()
            && c.reuse_until > Instant::now()
            && !c.service.peer().is_transport_closed()
        {
            return Ok(c.service.clone());
        }
        *held = None;
        // Reuse is counted from before the exchange, not after the connect.
        let asked_at = Instant::now();
        let exchanged = self.exchanger.exchange(agent, &self.credential, now_unix).await?;
        let header = header(&self.credential, &exchanged.token)?;
        let service = connect_with(manifest, Arc::new(tokio::sync::Notify::new()), Some(header)).await.map_err(|e| e.to_string())?;
        let service = Arc::new(service);
        // Reuse stops a little before the credential expires, so no call
        // sets out with one that lapses on the way.
        let margin = (exchanged.lifetime / 10).min(Duration::from_secs(10));
        let reuse_until = asked_at + exchanged.lifetime.saturating_sub(margin);
        tracing::info!(agent = %agent.agent.name, lifetime_s = exchanged.lifetime.as_secs(), "exchanged a per-caller credential");
        *held = Some(CallerConnection { reuse_until, service: service.clone() });
        Ok(service)
    }

    /// Forget an agent's connections (its authority was revoked), by agent id.
    pub fn forget(&self, agent: &str) {
        self.slots.lock().unwrap_or_else(|p| p.into_inner()).forget(agent);
    }
}

/// Which of an agent's credentials a slot is for: a digest, never the
/// credential itself.
fn credential_digest(agent: &VerifiedAgent) -> String {
    use sha2::{Digest as _, Sha256};
    hex::encode(Sha256::digest(agent.credential.expose().as_bytes()))
}

fn header(credential: &ExchangedCredential, token: &str) -> Result<(http::HeaderName, http::HeaderValue), String> {
    let name = http::HeaderName::from_bytes(credential.header.as_bytes()).map_err(|e| format!("header `{}`: {e}", credential.header))?;
    let mut value = http::HeaderValue::from_str(&format!("{}{token}", credential.prefix)).map_err(|e| format!("header `{}`: {e}", credential.header))?;
    value.set_sensitive(true);
    Ok((name, value))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn reuse_never_outlives_the_answer_the_limit_or_the_agents_credential() {
        let max = Duration::from_secs(300);
        assert_eq!(reuse_lifetime(Some(120), max, 10_000, 1_000), Duration::from_secs(120));
        assert_eq!(reuse_lifetime(None, max, 10_000, 1_000), Duration::from_secs(300));
        assert_eq!(reuse_lifetime(Some(120), max, 1_005, 1_000), Duration::from_secs(5));
        assert_eq!(reuse_lifetime(Some(120), max, 900, 1_000), Duration::ZERO);
    }

    #[test]
    fn an_answer_needs_a_header_safe_access_token_and_whole_seconds() {
        assert_eq!(read_answer(&json!({"access_token": "abc.def", "expires_in": 120})).unwrap(), ("abc.def".into(), Some(120)));
        assert_eq!(read_answer(&json!({"access_token": "abc", "issued_token_type": ACCESS_TOKEN_TYPE})).unwrap(), ("abc".into(), None));
        assert!(read_answer(&json!({"token_type": "Bearer"})).unwrap_err().contains("no access_token"));
        assert!(read_answer(&json!({"access_token": "a\r\nX-Injected: 1"})).unwrap_err().contains("header-safe"));
        assert!(read_answer(&json!({"access_token": "a b"})).unwrap_err().contains("header-safe"));
        assert!(read_answer(&json!({"access_token": "abc", "expires_in": -5})).unwrap_err().contains("expires_in"));
        assert!(read_answer(&json!({"access_token": "abc", "issued_token_type": "urn:ietf:params:oauth:token-type:refresh_token"})).unwrap_err().contains("not an access token"));
    }

    #[test]
    fn one_agent_keeps_at_most_four_connections_and_drops_its_least_recently_used() {
        let mut slots = Slots::default();
        let other = slots.get("other", "c0");
        let first: Vec<Slot> = (0..MAX_PER_AGENT).map(|i| slots.get("minter", &format!("c{i}"))).collect();
        // Using c0 again hands out the same slot and makes c1 the oldest.
        assert!(Arc::ptr_eq(&slots.get("minter", "c0"), &first[0]));
        for i in MAX_PER_AGENT..40 {
            slots.get("minter", &format!("c{i}"));
        }
        assert_eq!(slots.by_agent["minter"].len(), MAX_PER_AGENT);
        assert_eq!(slots.total, MAX_PER_AGENT + 1);
        let kept: Vec<&str> = slots.by_agent["minter"].iter().map(|(c, _)| c.as_str()).collect();
        assert_eq!(kept, ["c36", "c37", "c38", "c39"]);
        // Another agent's connection is untouched; a dropped credential gets a new slot.
        assert!(Arc::ptr_eq(&slots.get("other", "c0"), &other));
        assert!(!Arc::ptr_eq(&slots.get("minter", "c0"), &first[0]));
        slots.forget("minter");
        assert_eq!((slots.by_agent.len(), slots.total), (1, 1));
    }

    #[test]
    fn the_global_bound_drops_idle_connections_and_keeps_those_in_use() {
        let mut slots = Slots::default();
        let in_use = slots.get("agent0", "c");
        for a in 1..MAX_CALLERS {
            slots.get(&format!("agent{a}"), "c");
        }
        assert_eq!(slots.total, MAX_CALLERS);
        slots.get("newcomer", "c");
        assert_eq!(slots.total, 2);
        assert!(Arc::ptr_eq(&slots.get("agent0", "c"), &in_use));
        assert!(slots.by_agent.contains_key("newcomer"));
    }
}
