//! `[notify]`: webhooks that tell people about approvals, break-glass and
//! quarantines (see `crate::notify`).

#[allow(unused_imports)]
use super::*;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawNotify {
    /// The gateway's public base URL, for links to `/ui` in notifications.
    pub(in crate::config) ui_url: Option<String>,
    #[serde(default)]
    pub(in crate::config) webhooks: Vec<Spanned<RawWebhook>>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(in crate::config) struct RawWebhook {
    pub(in crate::config) name: String,
    pub(in crate::config) url: String,
    pub(in crate::config) secret_file: Option<PathBuf>,
    pub(in crate::config) secret_env: Option<String>,
    #[serde(default)]
    pub(in crate::config) format: WebhookFormat,
    pub(in crate::config) events: Option<Vec<String>>,
    pub(in crate::config) max_attempts: Option<u32>,
    #[serde(default, with = "source::duration::option")]
    pub(in crate::config) first_retry: Option<Duration>,
}

/// The body a webhook gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum WebhookFormat {
    /// A Standard Webhooks JSON event: `{type, timestamp, data}`.
    #[default]
    Standard,
    /// A Slack-compatible incoming-webhook body: `{text}`.
    Slack,
}

/// What notifications go out, and where.
#[derive(Debug, Clone, Default)]
pub struct NotifyConfig {
    pub ui_url: Option<String>,
    pub webhooks: Vec<WebhookConfig>,
}

/// One webhook.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub name: String,
    pub url: String,
    /// The Standard Webhooks secret (`whsec_` and base64), read at start.
    pub secret: SecretSource,
    pub format: WebhookFormat,
    pub events: Vec<String>,
    pub max_attempts: u32,
    /// The wait before the first retry; each next one waits twice as long (at most 5 minutes).
    pub first_retry: Duration,
}

/// The notifications there are.
pub const NOTIFY_EVENTS: &[&str] = &["approval.pending", "approval.decided", "break_glass.used", "agent.quarantined"];

pub(in crate::config) fn validate_notify(file: &SourceFile, raw: RawNotify) -> Result<NotifyConfig, SourceError> {
    if let Some(u) = &raw.ui_url
        && !u.starts_with("https://")
        && !u.starts_with("http://")
    {
        return Err(file.error_at(None, format!("[notify] ui_url `{u}` must be the gateway's base URL, such as https://gateway.example.org")));
    }
    let mut webhooks: Vec<WebhookConfig> = Vec::new();
    for spanned in raw.webhooks {
        let span = spanned.span();
        let w = spanned.into_inner();
        let at = |m: String| file.error_at(Some(span.clone()), m);
        if w.name.is_empty() || webhooks.iter().any(|o| o.name == w.name) {
            return Err(at(format!("[[notify.webhooks]] name `{}` must be given and unique", w.name)));
        }
        // The host as an HTTP client reads it (after any user info).
        let uri: Option<http::Uri> = w.url.parse().ok();
        let host = uri.as_ref().and_then(http::Uri::host).unwrap_or_default();
        let scheme = uri.as_ref().and_then(http::Uri::scheme_str).unwrap_or_default();
        let loopback = scheme == "http" && matches!(host, "127.0.0.1" | "localhost" | "[::1]" | "::1");
        let secure = scheme == "https" && !host.is_empty();
        if !secure && !loopback {
            return Err(at(format!(
                "[[notify.webhooks]] `{}`: url `{}` must be https (plain http is allowed only on loopback: notifications name agents and approvals)",
                w.name, w.url
            )));
        }
        let Ok(Some(secret)) = secret_source(file, w.secret_file, w.secret_env) else {
            return Err(at(format!(
                "[[notify.webhooks]] `{}` needs exactly one of secret_file or secret_env: a Standard Webhooks secret (whsec_ and base64; the receiver verifies with it), never written in this file",
                w.name
            )));
        };
        let events = w.events.unwrap_or_else(|| NOTIFY_EVENTS.iter().map(|e| (*e).to_owned()).collect());
        if let Some(e) = events.iter().find(|e| !NOTIFY_EVENTS.contains(&e.as_str())) {
            return Err(at(format!("[[notify.webhooks]] `{}`: unknown event `{e}`; use {}", w.name, NOTIFY_EVENTS.join(", "))));
        }
        if w.first_retry.is_some_and(|d| d.is_zero() || d > Duration::from_secs(300)) {
            return Err(at(format!("[[notify.webhooks]] `{}`: first_retry must be between 1s and 5m", w.name)));
        }
        let max_attempts = w.max_attempts.unwrap_or(6);
        if !(1..=20).contains(&max_attempts) {
            return Err(at(format!("[[notify.webhooks]] `{}`: max_attempts must be 1-20", w.name)));
        }
        webhooks.push(WebhookConfig {
            name: w.name,
            url: w.url,
            secret,
            format: w.format,
            events,
            max_attempts,
            first_retry: w.first_retry.unwrap_or(Duration::from_secs(5)),
        });
    }
    Ok(NotifyConfig { ui_url: raw.ui_url.map(|u| u.trim_end_matches('/').to_owned()), webhooks })
}

#[cfg(test)]
mod tests {
    use crate::config::tests::load;

    fn webhook(url: &str, extra: &str) -> Result<crate::config::Config, crate::source::SourceError> {
        load(&format!("{}\n[[notify.webhooks]]\nname = \"oncall\"\nurl = \"{url}\"\nsecret_env = \"HOOK_SECRET\"\n{extra}\n", crate::config::tests::MINIMAL))
    }

    #[test]
    fn a_webhook_is_https_or_on_loopback_as_a_client_reads_the_host() {
        assert!(webhook("https://hooks.example.org/jitgate", "").is_ok());
        assert!(webhook("http://127.0.0.1:9000/hook", "").is_ok());
        assert!(webhook("http://[::1]:9000/hook", "").is_ok());
        for bad in ["http://hooks.example.org/hook", "http://localhost:1@evil.example/", "http://127.0.0.1.evil.example/", "ftp://127.0.0.1/", "hooks.example.org"] {
            let e = webhook(bad, "").err().unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(e.message.contains("must be https"), "{bad}: {e}");
        }
    }

    #[test]
    fn retries_and_events_are_bounded_and_known() {
        assert!(webhook("https://h.example.org/", "first_retry = \"10m\"").unwrap_err().message.contains("first_retry"));
        assert!(webhook("https://h.example.org/", "max_attempts = 50").unwrap_err().message.contains("max_attempts"));
        assert!(webhook("https://h.example.org/", "events = [\"approval.pendng\"]").unwrap_err().message.contains("approval.pendng"));
        let c = webhook("https://h.example.org/", "first_retry = \"2s\"").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(c.notify.webhooks[0].events.len(), super::NOTIFY_EVENTS.len(), "every event by default");
    }
}
