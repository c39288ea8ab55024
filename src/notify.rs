//! Notifications to people: a webhook is told when an approval is pending
//! and when it is decided, when break-glass is used and when an agent is
//! quarantined.
//!
//! What is notified is read from the audit trail (every process's records,
//! the CLI's included), after the records are committed; delivering never
//! blocks, delays or changes a decision. Each delivery is signed by the
//! Standard Webhooks scheme (`webhook-id`, `webhook-timestamp`,
//! `webhook-signature: v1,<base64 HMAC-SHA256 of "id.timestamp.body">`),
//! retried with doubling waits up to a bound, and ends in an audit record:
//! `notification.delivered` or `notification.gave_up`. A notification names
//! agents, tools and approval ids and links to `/ui`; it carries no token,
//! credential, argument or purpose.
//!
//! The `webhook-id` is the same for every attempt and every replica that
//! sends the same notification (it is derived from the record or the
//! approval), so a receiver that keeps the ids it has seen acts once.

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::audit::{Event, Record};
use crate::clock::Clock;
use crate::config::{NotifyConfig, WebhookConfig, WebhookFormat};
use crate::store::Store;

/// Deliveries under way at once per webhook, at most; a notification beyond
/// that is given up at once (and recorded so).
const MAX_IN_FLIGHT: usize = 64;
/// Each attempt's limit.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// The longest wait between attempts.
const MAX_RETRY_WAIT: Duration = Duration::from_secs(300);
/// Records read from the audit trail at a time.
const BATCH: usize = 256;
/// How often the audit trail is read for new records.
const POLL: Duration = Duration::from_secs(1);
const SECRET_PREFIX: &str = "whsec_";

/// One configured webhook, its secret read.
struct Hook {
    config: WebhookConfig,
    key: Vec<u8>,
    /// Its deliveries under way: a dead receiver holds only its own.
    in_flight: Arc<tokio::sync::Semaphore>,
}

/// One notification, ready to send to every webhook that wants it.
#[derive(Debug, Clone)]
pub struct Notice {
    /// `approval.pending`, `approval.decided`, `break_glass.used`, `agent.quarantined`.
    pub event: &'static str,
    /// The Standard Webhooks id: the same for every attempt and replica.
    pub id: String,
    pub task: Option<String>,
    pub agent: Option<String>,
    pub data: Value,
    /// A line for people (the Slack format).
    pub text: String,
}

/// The webhooks and what they need.
pub struct Notifier {
    hooks: Vec<Hook>,
    ui_url: Option<String>,
    gateway: String,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    /// Names of agents by id, for people.
    agent_names: std::collections::HashMap<String, String>,
}

impl Notifier {
    /// The webhooks of `config`, their secrets read now (a missing or
    /// malformed secret stops the start: notifications would fail silently).
    pub fn new(
        config: &NotifyConfig,
        gateway: &str,
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        agent_names: std::collections::HashMap<String, String>,
    ) -> Result<Option<Arc<Self>>, String> {
        if config.webhooks.is_empty() {
            return Ok(None);
        }
        let mut hooks = Vec::new();
        for w in &config.webhooks {
            let secret = w.secret.read().map_err(|e| format!("webhook `{}`: {e}", w.name))?;
            let key = secret_key(&secret).map_err(|e| format!("webhook `{}`: {e}", w.name))?;
            hooks.push(Hook { config: w.clone(), key, in_flight: Arc::new(tokio::sync::Semaphore::new(MAX_IN_FLIGHT)) });
        }
        Ok(Some(Arc::new(Self {
            hooks,
            ui_url: config.ui_url.clone(),
            gateway: gateway.to_owned(),
            store,
            clock,
            agent_names,
        })))
    }

    /// Read the audit trail from its head now on, and notify, until `shutdown`.
    pub async fn run(self: Arc<Self>, shutdown: tokio_util::sync::CancellationToken) {
        let store = self.store.clone();
        // From the head as it is now: what happened before this process
        // started was notified by the process that saw it. Never from the
        // beginning: a failed read is retried, not taken for an empty trail.
        let mut after = loop {
            match crate::store::run_blocking(&store, |s| s.audit_head()).await.and_then(|r| r) {
                Ok(head) => break head.map_or(0, |(seq, _)| seq),
                Err(e) => tracing::error!(error = %e, "notifications: the audit trail's head could not be read; retrying"),
            }
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep(POLL) => {}
            }
        };
        let mut announced = std::collections::VecDeque::<String>::new();
        let mut behind = false;
        loop {
            // A full batch means more is waiting: read on at once, so that
            // a flood of other records cannot hold notifications back.
            if !behind {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = tokio::time::sleep(POLL) => {}
                }
            } else if shutdown.is_cancelled() {
                return;
            }
            let read = crate::store::run_blocking(&store, move |s| s.audit_records(after, BATCH)).await.and_then(|r| r);
            let records = match read {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(error = %e, "notifications: the audit trail could not be read");
                    behind = false;
                    continue;
                }
            };
            behind = records.len() == BATCH;
            for record in records {
                after = record.seq;
                let Some(notice) = self.notice_of(&record).await else { continue };
                // An agent asking again for a pending approval writes its
                // record again: the people were told once.
                if announced.contains(&notice.id) {
                    continue;
                }
                if announced.len() >= 4096 {
                    announced.pop_front();
                }
                announced.push_back(notice.id.clone());
                self.send(notice);
            }
        }
    }

    /// The notification an audit record calls for, if any.
    async fn notice_of(&self, r: &Record) -> Option<Notice> {
        let agent_name = r.agent.as_ref().map(|a| self.agent_names.get(a).cloned().unwrap_or_else(|| a.clone()));
        let name = agent_name.clone().unwrap_or_default();
        let tool = r.data["tool"].as_str().unwrap_or_default().to_owned();
        let task_link = r.task.as_ref().and_then(|t| self.link(&format!("/ui/tasks/{t}")));
        let (event, id, data, text) = match (r.kind.as_str(), r.data["decision"].as_str()) {
            ("intent", Some("pending_approval")) => {
                let approval = r.data["approval"].as_str()?.to_owned();
                let (id, now) = (approval.clone(), self.clock.now_unix());
                let found = match crate::store::run_blocking(&self.store, move |s| s.approval(&id, now)).await.and_then(|r| r) {
                    Ok(Some(a)) if a.state != crate::store::ApprovalState::Pending => return None,
                    Ok(found) => found,
                    // People still hear of it, without what the store would have added.
                    Err(e) => {
                        tracing::warn!(error = %e, approval = %approval, "notifications: the approval could not be read; notifying without its group");
                        None
                    }
                };
                let (group, expires) = found.as_ref().map_or((String::new(), String::new()), |a| (a.group.clone(), crate::clock::rfc3339(a.expires_at)));
                let link = self.link("/ui/approvals");
                let text = format!("jitgate: approval {approval} is waiting for group {group}: agent {name} asks to call {tool}. Decide before {expires}: {}", link.clone().unwrap_or_else(|| "jitgate approvals list".into()));
                let data = json!({"approval": approval, "group": group, "tool": tool, "policies": found.map(|a| a.policies), "expires_at": expires, "link": link, "task_link": task_link});
                ("approval.pending", format!("{}.approval.pending.{approval}", self.gateway), data, text)
            }
            ("approval.decided", _) => {
                let approval = r.data["approval"].as_str()?.to_owned();
                let decision = r.data["decision"].as_str().unwrap_or_default().to_owned();
                let by = r.data["by"].as_str().unwrap_or_default().to_owned();
                let text = format!("jitgate: approval {approval} ({tool} for agent {name}) was {decision} by {by}");
                let data = json!({"approval": approval, "decision": decision, "by": by, "tool": tool, "group": r.data["group"], "task_link": task_link});
                ("approval.decided", format!("{}.approval.decided.{approval}", self.gateway), data, text)
            }
            ("intent", Some("allow_break_glass")) => {
                let link = self.link("/ui/reviews");
                let text = format!("jitgate: agent {name} used break-glass to call {tool}; a person must review it: {}", link.clone().unwrap_or_else(|| "jitgate review list".into()));
                let data = json!({"tool": tool, "link": link, "task_link": task_link});
                ("break_glass.used", format!("{}.audit.{}", self.gateway, r.seq), data, text)
            }
            ("quarantine", _) => {
                // A drift's explanation names what the agent chose (phase
                // names, argument names): people read it on /ui, not here.
                // An operator's reason is the operator's own words.
                let (cause, reason) = match r.data["score"].as_i64() {
                    Some(score) => ("drift", format!("baseline drift, score {score}")),
                    None => ("operator", crate::telemetry::cut(r.data["reason"].as_str().unwrap_or_default(), 300)),
                };
                let text = format!("jitgate: agent {name} is quarantined ({reason}); every task and token it held is revoked until a person runs `jitgate agents release`");
                let data = json!({"cause": cause, "reason": reason, "link": self.link("/ui")});
                ("agent.quarantined", format!("{}.audit.{}", self.gateway, r.seq), data, text)
            }
            _ => return None,
        };
        let mut data = data;
        data["agent"] = json!(r.agent);
        data["agent_name"] = json!(agent_name);
        data["task"] = json!(r.task);
        data["audit_seq"] = json!(r.seq);
        Some(Notice { event, id, task: r.task.clone(), agent: r.agent.clone(), data, text })
    }

    fn link(&self, path: &str) -> Option<String> {
        self.ui_url.as_ref().map(|u| format!("{u}{path}"))
    }

    /// Deliver `notice` to every webhook that wants it, in the background.
    pub fn send(self: &Arc<Self>, notice: Notice) {
        for (i, hook) in self.hooks.iter().enumerate() {
            if !hook.config.events.iter().any(|e| e == notice.event) {
                continue;
            }
            let Ok(permit) = hook.in_flight.clone().try_acquire_owned() else {
                tracing::warn!(webhook = %hook.config.name, event = notice.event, "notification given up: too many deliveries under way");
                let me = self.clone();
                let (notice, name) = (notice.clone(), hook.config.name.clone());
                tokio::spawn(async move { me.record(&name, &notice, false, 0, "too many deliveries under way").await });
                continue;
            };
            let (me, notice) = (self.clone(), notice.clone());
            tokio::spawn(async move {
                me.deliver(i, &notice).await;
                drop(permit);
            });
        }
    }

    /// Attempt until delivered or out of attempts; then the audit record.
    async fn deliver(&self, hook: usize, notice: &Notice) {
        let Some(hook) = self.hooks.get(hook) else { return };
        let body = body_of(hook.config.format, notice, self.clock.now_unix());
        let mut wait = hook.config.first_retry;
        let mut last = String::new();
        for attempt in 1..=hook.config.max_attempts {
            match post(&hook.config.url, &hook.key, &notice.id, self.clock.now_unix(), &body).await {
                Ok(()) => {
                    tracing::info!(webhook = %hook.config.name, event = notice.event, id = %notice.id, attempt, "notification delivered");
                    self.record(&hook.config.name, notice, true, attempt, "").await;
                    return;
                }
                Err(e) => {
                    tracing::warn!(webhook = %hook.config.name, event = notice.event, id = %notice.id, attempt, error = %e, "notification not delivered");
                    last = e;
                }
            }
            if attempt < hook.config.max_attempts {
                tokio::time::sleep(wait).await;
                wait = wait.saturating_mul(2).min(MAX_RETRY_WAIT);
            }
        }
        self.record(&hook.config.name, notice, false, hook.config.max_attempts, &last).await;
    }

    async fn record(&self, webhook: &str, notice: &Notice, delivered: bool, attempts: u32, error: &str) {
        let kind = if delivered { "notification.delivered" } else { "notification.gave_up" };
        let mut data = json!({"webhook": webhook, "event": notice.event, "id": notice.id, "attempts": attempts});
        if !delivered {
            data["error"] = json!(crate::telemetry::cut(error, 300));
        }
        let event = Event::new(kind, notice.task.as_deref(), notice.agent.as_deref(), data);
        let now = self.clock.now_unix();
        if let Err(e) = crate::store::run_blocking(&self.store, move |s| s.append_audit(&event, now)).await.and_then(|r| r) {
            tracing::error!(error = %e, webhook, "the notification's outcome could not be recorded");
        }
    }
}

/// The key of a Standard Webhooks secret (`whsec_` and base64).
fn secret_key(secret: &str) -> Result<Vec<u8>, String> {
    let encoded = secret.strip_prefix(SECRET_PREFIX).ok_or_else(|| format!("the secret must be a Standard Webhooks secret: {SECRET_PREFIX} followed by base64 (24 to 64 random bytes)"))?;
    let key = base64::engine::general_purpose::STANDARD.decode(encoded.trim_end_matches('=')).or_else(|_| base64::engine::general_purpose::STANDARD_NO_PAD.decode(encoded.trim_end_matches('='))).map_err(|e| format!("the secret after {SECRET_PREFIX} is not base64: {e}"))?;
    if key.len() < 24 || key.len() > 64 {
        return Err(format!("the secret is {} bytes; use 24 to 64 random bytes", key.len()));
    }
    Ok(key)
}

/// `v1,<base64 HMAC-SHA256 of "id.timestamp.body">`.
pub fn signature(key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes()))
}

fn body_of(format: WebhookFormat, notice: &Notice, now: i64) -> Vec<u8> {
    let value = match format {
        WebhookFormat::Standard => json!({"type": notice.event, "timestamp": crate::clock::rfc3339(now), "data": notice.data}),
        WebhookFormat::Slack => json!({"text": slack_escaped(&notice.text)}),
    };
    serde_json::to_vec(&value).unwrap_or_default()
}

/// Slack's mrkdwn control characters escaped, so that no name in a
/// notification becomes a link or a mention.
fn slack_escaped(text: &str) -> String {
    text.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// One signed POST; Ok on a 2xx answer.
async fn post(url: &str, key: &[u8], id: &str, timestamp: i64, body: &[u8]) -> Result<(), String> {
    let client: hyper_util::client::legacy::Client<_, http_body_util::Full<bytes::Bytes>> =
        hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new()).build(crate::issuer_keys::connector()?);
    let uri: http::Uri = url.parse().map_err(|e| format!("`{url}` is not a URL: {e}"))?;
    let request = http::Request::post(uri)
        .header(http::header::CONTENT_TYPE, "application/json")
        .header("webhook-id", id)
        .header("webhook-timestamp", timestamp.to_string())
        .header("webhook-signature", signature(key, id, timestamp, body))
        .body(http_body_util::Full::new(bytes::Bytes::copy_from_slice(body)))
        .map_err(|e| e.to_string())?;
    match tokio::time::timeout(ATTEMPT_TIMEOUT, client.request(request)).await {
        Err(_) => Err(format!("no answer within {} s", ATTEMPT_TIMEOUT.as_secs())),
        Ok(Err(e)) => Err(format!("not reached: {e}")),
        Ok(Ok(r)) if r.status().is_success() => Ok(()),
        Ok(Ok(r)) => Err(format!("HTTP {}", r.status())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signs_as_the_standard_webhooks_scheme_says() {
        // The scheme's own example (standard-webhooks spec, "Signature scheme").
        let key = secret_key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_or_else(|e| panic!("{e}"));
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(signature(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body), "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=");
    }

    fn notifier() -> (Arc<Notifier>, tempfile::TempDir) {
        let dir = tempfile::tempdir().unwrap_or_else(|e| panic!("{e}"));
        let secret = dir.path().join("secret");
        std::fs::write(&secret, "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap_or_else(|e| panic!("{e}"));
        let hook = WebhookConfig {
            name: "oncall".into(),
            url: "http://127.0.0.1:9/".into(),
            secret: crate::config::SecretSource::File(secret),
            format: WebhookFormat::Standard,
            events: crate::config::NOTIFY_EVENTS.iter().map(|e| (*e).to_owned()).collect(),
            max_attempts: 1,
            first_retry: Duration::from_secs(1),
        };
        let config = NotifyConfig { ui_url: None, webhooks: vec![hook] };
        let store: Arc<dyn Store> = Arc::new(crate::store::SqliteStore::in_memory().unwrap_or_else(|e| panic!("{e}")));
        let n = Notifier::new(&config, "gw", store, Arc::new(crate::clock::SystemClock), Default::default()).unwrap_or_else(|e| panic!("{e}"));
        (n.unwrap_or_else(|| panic!("one webhook")), dir)
    }

    fn record(kind: &str, data: Value) -> Record {
        Record { seq: 7, at: 1, kind: kind.into(), task: Some("task_1".into()), agent: Some("spiffe://x/agent/a".into()), data, prev_hash: String::new(), hash: String::new() }
    }

    #[tokio::test]
    async fn what_an_agent_wrote_stays_out_of_a_notification() {
        let (n, _dir) = notifier();
        // A drift's explanation names the agent's own argument and phase names.
        let drift = record("quarantine", json!({"reason": "drift (score 95): argument shape `<https://evil|Approve>:eq` is new", "score": 95, "explanation": "x"}));
        let notice = n.notice_of(&drift).await.unwrap_or_else(|| panic!("a quarantine is notified"));
        let body = String::from_utf8(body_of(WebhookFormat::Standard, &notice, 0)).unwrap_or_default();
        assert!(!body.contains("evil") && !notice.text.contains("evil"), "{body}");
        assert_eq!(notice.data["cause"], "drift");
        // Break-glass: the justification is the agent's, and stays on /ui.
        let bg = record("intent", json!({"decision": "allow_break_glass", "tool": "ws__rotate", "break_glass": {"justification": "INC-1 <!channel>"}, "purpose": "p", "arguments": {"a": "b"}}));
        let notice = n.notice_of(&bg).await.unwrap_or_else(|| panic!("break-glass is notified"));
        let body = String::from_utf8(body_of(WebhookFormat::Standard, &notice, 0)).unwrap_or_default();
        assert!(!body.contains("INC-1") && !body.contains("\"purpose\"") && !body.contains("\"arguments\""), "{body}");
        // The notifier's own records are never notified (no loop).
        assert!(n.notice_of(&record("notification.gave_up", json!({"webhook": "oncall"}))).await.is_none());
    }

    #[test]
    fn a_slack_body_cannot_carry_a_link_or_a_mention() {
        let n = Notice { event: "agent.quarantined", id: "x".into(), task: None, agent: None, data: json!({}), text: "agent <https://evil|Approve> & <!channel>".into() };
        let body: Value = serde_json::from_slice(&body_of(WebhookFormat::Slack, &n, 0)).unwrap_or_default();
        assert_eq!(body["text"], "agent &lt;https://evil|Approve&gt; &amp; &lt;!channel&gt;");
    }

    #[test]
    fn a_secret_that_is_not_a_standard_webhooks_secret_is_refused() {
        assert!(secret_key("hunter2").unwrap_err().contains("whsec_"));
        assert!(secret_key("whsec_!!!").unwrap_err().contains("base64"));
        assert!(secret_key("whsec_c2hvcnQ=").unwrap_err().contains("24 to 64"));
    }
}
